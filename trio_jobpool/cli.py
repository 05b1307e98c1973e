"""The ``trio-jobpool`` command line (also ``python -m trio_jobpool``).

Subcommands:

* ``demo``: run a built-in CI-like workload on a Trio pool and show live progress (needs the
  ``[cli]`` extra, i.e. ``rich``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

__all__ = ["build_parser", "main"]

_RICH_MISSING = (
    "trio-jobpool demo needs the 'rich' package for its display.\n"
    "Install it with:  pip install 'trio-jobpool[cli]'"
)


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: an ``int`` no smaller than ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``trio-jobpool``."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="trio-jobpool",
        description="A job worker pool for Trio and AnyIO: tools and a live demo.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = commands.add_parser(
        "demo",
        help="run a simulated CI workload and show live progress",
        description=(
            "Run a few hundred simulated CI jobs (builds, tests, lints, deploys) on a Trio job "
            "pool: varied lengths and priorities, failures, retried flaky tests, a timeout, a "
            "cancellation by id and a resize half way, with a live display of the pool's stats "
            "and a summary at the end. Needs 'rich' (pip install 'trio-jobpool[cli]')."
        ),
    )
    demo.add_argument(
        "--jobs",
        type=_int_at_least(10),
        default=300,
        metavar="N",
        help="how many jobs to submit (default: 300, at least 10)",
    )
    demo.add_argument(
        "--workers",
        type=_int_at_least(1),
        default=8,
        metavar="N",
        help="workers at the start; doubled half way through (default: 8)",
    )
    demo.add_argument(
        "--seed",
        type=int,
        default=1,
        metavar="N",
        help="seed of the random workload (default: 1)",
    )
    demo.add_argument(
        "--no-live",
        dest="live",
        action="store_false",
        help="print plain progress lines instead of the live display (for logs and pipes)",
    )
    demo.set_defaults(handler=_demo)
    return parser


def _demo(args: argparse.Namespace) -> int:
    try:
        import rich  # noqa: F401
    except ImportError:
        print(_RICH_MISSING, file=sys.stderr)
        return 2
    from ._demo import DemoConfig, run_demo

    config = DemoConfig(jobs=args.jobs, workers=args.workers, seed=args.seed, live=args.live)
    return run_demo(config)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``trio-jobpool`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
