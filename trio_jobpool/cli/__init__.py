"""The ``trio-jobpool`` command line (also ``python -m trio_jobpool``).

Subcommands:

* ``demo``: run a built-in CI-like workload on a Trio pool and show live progress (the live
  display needs the ``[cli]`` extra, i.e. ``rich``; ``--no-live`` needs nothing more).
* ``serve``: serve a registry's jobs over HTTP (``trio_jobpool.http``) with Hypercorn on Trio.
* ``worker``: run the jobs of a shared store (Redis) until stopped.
* ``submit``, ``status``, ``cancel``, ``stats``, ``schedules list|set|delete``,
  ``limits list|set|delete``: talk to a running ``serve`` over HTTP.
* ``prune``: delete old ended jobs from an SQLite store.

Without a command, ``trio-jobpool`` prints its help on stdout and exits 0. Exit codes
(``docs/cli.md``): 0 success; 1 the job or the request failed for a reason other than
bad input (a job that did not complete, 404, 409, 429, 503; a store in use, a port taken);
2 bad input (usage, JSON, ``--app``, a 400/401/422 answer, a missing extra); 3 the server cannot
be reached or answered 5xx; 130 interrupted.

The package, top to bottom (``[tool.importlinter]`` in pyproject.toml checks it): this module
parses the arguments and calls a command module: ``_schedules`` (schedules) and ``_limits``
(limits), over ``_client``'s ``Client``; ``_client`` (submit, status, cancel, stats),
``_serve``, ``_worker`` (worker, prune), ``_demo``; ``serve`` and ``worker`` share
``_running`` (the registry and the app's schedules, the pool until a signal); all of them use
``_errors`` (:class:`CliError`, the exit codes) and ``_output``. No module imports one above
it, and none imports a private module of ``trio_jobpool``: the command line is built on the
public API and :mod:`trio_jobpool.http`.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from trio_jobpool import __version__

from ._client import Client, cancel, parse_args_json, stats, status, submit
from ._demo import DemoConfig, run_demo
from ._errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, CliError
from ._limits import delete_limit, list_limits, set_limit
from ._output import DOCS_URL, dropping_stdout, write_line
from ._running import WorkerOptions
from ._schedules import delete_schedule, list_schedules, set_schedule
from ._serve import ServeOptions, run_serve
from ._worker import run_prune, run_worker

if TYPE_CHECKING:
    _Commands = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["CliError", "build_parser", "main"]

DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_STORE = "sqlite:///trio-jobpool.db"
URL_VARIABLE = "TRIO_JOBPOOL_URL"
TOKEN_VARIABLE = "TRIO_JOBPOOL_TOKEN"

_RICH_MISSING = (
    "the live display needs the [cli] extra (rich is not installed): "
    "pip install 'trio-jobpool[cli]', or run with --no-live"
)

_EXIT_CODES = f"""\
exit codes:
  0  success
  1  failed: the job ended without completing, the server refused
     (404, 409, 429, 503), a store in use, an address taken
  2  bad input: usage, JSON, --app, an answer 400/401/422, a missing extra
  3  the server cannot be reached, or answered 5xx

documentation: {DOCS_URL}
"""
_MAX_HELP_WIDTH = 100  # columns of --help on a wide terminal


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, at most ``_MAX_HELP_WIDTH`` columns wide, whose description and
    epilog are wrapped to the width paragraph by paragraph (paragraphs are separated by a blank
    line). An indented line starts an entry of a list (the exit codes: ``  2  bad input...``),
    which is wrapped under its own text; the lines indented deeper below it continue it."""

    def __init__(self, prog: str) -> None:
        columns = shutil.get_terminal_size().columns
        super().__init__(prog, width=max(40, min(columns, _MAX_HELP_WIDTH) - 2))

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = []
        for paragraph in text.strip("\n").split("\n\n"):
            # Each entry: its first line's head (the indentation and first word of a list
            # entry, "" for a line of prose) and its text.
            entries: list[tuple[str, str]] = []
            for line in paragraph.splitlines():
                last = entries[-1][0] if entries else None
                entry = _LIST_ENTRY.match(line)
                if last and line.startswith(" " * len(last)):  # a list entry's next line
                    entries[-1] = (last, f"{entries[-1][1]} {line}")
                elif entry is not None:
                    entries.append((entry.group(), line[entry.end() :]))
                elif last == "":  # prose goes on
                    entries[-1] = ("", f"{entries[-1][1]} {line}")
                else:
                    entries.append(("", line))
            paragraphs.append(
                "\n".join(
                    textwrap.fill(
                        " ".join(body.split()),
                        width,
                        initial_indent=indent + head,
                        subsequent_indent=indent + " " * len(head),
                        break_on_hyphens=False,
                        break_long_words=False,
                    )
                    for head, body in entries
                )
            )
        return "\n\n".join(paragraphs) + "\n"


_LIST_ENTRY = re.compile(r" +\S+ +")  # "  2  ": an entry of a list in a help text


_DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


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


def parse_duration(text: str) -> float:
    """Seconds from ``"90"``, ``"90s"``, ``"15m"``, ``"12h"``, ``"7d"`` (or ``"1.5h"``).

    Raises:
        ValueError: not such a duration, negative, or not finite.
    """
    stripped = text.strip().lower()
    factor = _DURATION_UNITS.get(stripped[-1:])
    number = stripped[:-1] if factor is not None else stripped
    try:
        value = float(number) * (factor or 1.0)
    except ValueError:
        raise ValueError(
            f"not a duration: {text!r} (a number of seconds, or with a unit: 30s, 15m, 12h, 7d)"
        ) from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"a duration must be finite and >= 0, got {text!r}")
    return value


def _duration(text: str) -> float:
    """An argparse ``type``: :func:`parse_duration`."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _max_pending(text: str) -> int | None:
    """An argparse ``type``: an ``int >= 0``, or ``none`` (no bound: ``None``)."""
    if text.strip().lower() == "none":
        return None
    return _int_at_least(0)(text)


def _rate(text: str) -> tuple[int, float]:
    """An argparse ``type``: ``COUNT/PER``, at most COUNT starts in any PER seconds (``10/60``,
    ``100/1m``, ``5000/1h``: PER a duration as :func:`parse_duration` reads it): ``(count,
    per)``."""
    count_text, slash, per_text = text.partition("/")
    if not slash:
        raise argparse.ArgumentTypeError(
            f"not a rate: {text!r} (COUNT/PER: at most COUNT starts in any PER seconds, e.g. "
            "10/60 or 100/1m)"
        )
    count = _int_at_least(1)(count_text.strip())
    per = _duration(per_text)
    if per <= 0:
        raise argparse.ArgumentTypeError(f"the PER of a rate must be > 0, got {per_text!r}")
    return count, per


def _port(text: str) -> int:
    """An argparse ``type``: a TCP port, 0 (any free port) to 65535."""
    value = _int_at_least(0)(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``trio-jobpool``."""
    parser = argparse.ArgumentParser(
        prog="trio-jobpool",
        description="A job worker pool for Trio and AnyIO: a job server, its client, a demo.",
        epilog=_EXIT_CODES,
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    # Not required: without a command, main prints this help.
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_demo(commands)
    _add_serve(commands)
    _add_worker(commands)
    _add_submit(commands)
    _add_status(commands)
    _add_cancel(commands)
    _add_stats(commands)
    _add_schedules(commands)
    _add_limits(commands)
    _add_prune(commands)
    return parser


def _command(
    commands: _Commands, name: str, help: str, description: str
) -> argparse.ArgumentParser:
    return commands.add_parser(
        name,
        help=help,
        description=description,
        epilog=_EXIT_CODES,
        formatter_class=_HelpFormatter,
    )


def _add_demo(commands: _Commands) -> None:
    demo = _command(
        commands,
        "demo",
        help="run a simulated CI workload and show live progress",
        description=(
            "Run a few hundred simulated CI jobs (builds, tests, lints, deploys) on a Trio job "
            "pool: varied lengths and priorities, failures, retried flaky tests, a timeout, a "
            "cancellation by id and a resize half way, with a live display of the pool's stats "
            "and a summary at the end. The live display needs 'rich' (pip install "
            "'trio-jobpool[cli]'); --no-live prints plain lines and needs nothing more."
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
    demo.set_defaults(handler=_demo_command)


def _add_pool_options(command: argparse.ArgumentParser, *, min_workers: int) -> None:
    """--app, --workers, --queue-size, --shutdown-timeout: what serve and worker share."""
    command.add_argument(
        "--app",
        required=True,
        metavar="MODULE:ATTR",
        help=(
            "the JobRegistry of the jobs to run: a module and an attribute "
            "(examples.ci_jobs:registry; the working directory is searched first) or a file "
            "(examples/ci_jobs.py:registry); ':registry' may be left out"
        ),
    )
    command.add_argument(
        "--workers",
        type=_int_at_least(min_workers),
        default=4,
        metavar="N",
        help="jobs run at once in this process (default: 4)",
    )
    command.add_argument(
        "--queue-size",
        type=_int_at_least(1),
        default=100,
        metavar="N",
        help="jobs that may wait for a worker (default: 100)",
    )
    command.add_argument(
        "--shutdown-timeout",
        type=_duration,
        default=30.0,
        metavar="SECONDS",
        help=(
            "on SIGINT/SIGTERM, how long running jobs may take to finish before they are "
            "cancelled (default: 30; 30s, 2m, ...); a second signal cancels them at once"
        ),
    )
    command.add_argument(
        "--shutdown-grace",
        type=_duration,
        default=1.0,
        metavar="SECONDS",
        help=(
            "how long jobs still running after their cancellation get before they are "
            "abandoned (logged, left running in the store) and the process exits 1 "
            "(default: 1)"
        ),
    )


def _add_serve(commands: _Commands) -> None:
    """The ``serve`` command: the pool's options, where it listens, what it serves, its limits."""
    serve = _command(
        commands,
        "serve",
        help="serve a registry's jobs over HTTP (API, metrics, dashboard)",
        description=(
            "Open a job pool on STORE with the jobs of a registry and serve it over HTTP "
            "with Hypercorn on Trio, until SIGINT or SIGTERM; then stop serving and drain the "
            "pool. Prints 'serving on URL ...' once it listens. Needs the [cli] extra (pip "
            "install 'trio-jobpool[cli]').\n\n"
            f"The HTTP API, the dashboard and the metrics are described in the documentation: "
            f"{DOCS_URL}"
        ),
    )
    _add_pool_options(serve, min_workers=0)
    serve.add_argument(
        "--max-pending",
        type=_max_pending,
        default=0,
        metavar="N",
        help=(
            "overflow room on top of --queue-size: the pool is full (submissions wait, then "
            "429) once queue-size + N jobs wait (default: 0; 'none': no bound)"
        ),
    )
    _add_serve_store(serve)
    _add_listen_options(serve)
    _add_http_options(serve)
    _add_connection_limits(serve)
    serve.set_defaults(handler=_serve_command)


def _add_serve_store(serve: argparse.ArgumentParser) -> None:
    """``serve --store``: SQLite in the working directory unless told otherwise."""
    serve.add_argument(
        "--store",
        default=DEFAULT_STORE,
        metavar="URL",
        help=(
            f"where the jobs are kept: sqlite:///path.db (default: {DEFAULT_STORE}, in the "
            "working directory), memory://, or redis://host:port/db (with --workers 0: "
            "only submit, for worker processes to run)"
        ),
    )


def _add_listen_options(serve: argparse.ArgumentParser) -> None:
    """``serve --host --port``: the address the server listens on."""
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="the address to listen on (default: 127.0.0.1; 0.0.0.0 for every interface)",
    )
    serve.add_argument(
        "--port",
        type=_port,
        default=8000,
        help="the port to listen on (default: 8000; 0 for any free port, printed)",
    )


def _add_http_options(serve: argparse.ArgumentParser) -> None:
    """``serve --token --no-dashboard --access-log``: who may change state, what is served,
    what is logged."""
    serve.add_argument(
        "--token",
        default=os.environ.get(TOKEN_VARIABLE) or None,
        help=(
            "require 'Authorization: Bearer TOKEN' on every request that changes state "
            f"(default: ${TOKEN_VARIABLE}; none: no token)"
        ),
    )
    serve.add_argument(
        "--no-dashboard",
        dest="dashboard",
        action="store_false",
        help="do not serve the dashboard at /",
    )
    serve.add_argument(
        "--access-log",
        action="store_true",
        help="log every request on stderr",
    )


def _add_connection_limits(serve: argparse.ArgumentParser) -> None:
    """``serve --backlog --body-timeout --max-bodies``: the limits that keep many or slow
    clients from taking the server's connections and file descriptors."""
    serve.add_argument(
        "--backlog",
        type=_int_at_least(1),
        default=1024,
        metavar="N",
        help=(
            "connections the system may hold waiting to be accepted (default: 1024; the "
            "kernel caps it at net.core.somaxconn)"
        ),
    )
    serve.add_argument(
        "--body-timeout",
        type=_duration,
        default=10.0,
        metavar="SECONDS",
        help="a request body must arrive whole within this long, else 408 (default: 10)",
    )
    serve.add_argument(
        "--max-bodies",
        type=_int_at_least(1),
        default=64,
        metavar="N",
        help=(
            "request bodies read at once; a request beyond them is answered 503 at once "
            "(default: 64)"
        ),
    )


def _add_worker(commands: _Commands) -> None:
    worker = _command(
        commands,
        "worker",
        help="run the jobs of a shared store (Redis) until stopped",
        description=(
            "Open a job pool on a shared store and run its jobs, up to --workers at once, until "
            "SIGINT or SIGTERM; then take no more and let the running ones finish (up to "
            "--shutdown-timeout; what is left goes back to the queue). Start any number, on "
            "any hosts, next to a 'serve --workers 0' (or any program) that submits."
        ),
    )
    _add_pool_options(worker, min_workers=1)
    worker.add_argument(
        "--store",
        required=True,
        metavar="URL",
        help="the shared store: redis://host:port/db (?queue=NAME&lease_timeout=SECONDS...)",
    )
    worker.set_defaults(handler=_worker_command)


def _add_client_options(command: argparse.ArgumentParser, *, token: bool) -> None:
    command.add_argument(
        "--url",
        default=os.environ.get(URL_VARIABLE) or DEFAULT_URL,
        help=f"the server's URL (default: ${URL_VARIABLE}, else {DEFAULT_URL})",
    )
    if token:
        command.add_argument(
            "--token",
            default=os.environ.get(TOKEN_VARIABLE) or None,
            help=f"the server's token, if it has one (default: ${TOKEN_VARIABLE})",
        )


def _add_wait_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--wait",
        action="store_true",
        help=(
            "wait until the job ends, showing its progress; then print its result (exit 0) "
            "or its error (exit 1)"
        ),
    )


def _add_submit(commands: _Commands) -> None:
    submit = _command(
        commands,
        "submit",
        help="submit a job to a running server",
        description=(
            "Submit the registered job NAME with the arguments ARGS (one JSON array) to a "
            "running 'trio-jobpool serve'. Prints the job's id, or with --wait its result. "
            "With --delay or --at the job is scheduled: it runs no earlier than then, and "
            "'scheduled NAME as ID, due at TIME' is printed on stderr."
        ),
    )
    submit.add_argument("name", metavar="NAME", help="a job name of the server's registry")
    submit.add_argument(
        "args",
        metavar="ARGS",
        nargs="?",
        default="[]",
        help="the job's arguments as one JSON array, e.g. '[\"repo-a\", 3]' (default: [])",
    )
    submit.add_argument(
        "--priority",
        type=int,
        default=None,
        metavar="N",
        help="lower runs first (default: the server's, 5)",
    )
    submit.add_argument("--job-id", default=None, metavar="ID", help="the job's id")
    submit.add_argument(
        "--timeout",
        type=_duration,
        default=None,
        metavar="SECONDS",
        help="per attempt (default: the pool's; 90, 90s, 15m, ...)",
    )
    submit.add_argument(
        "--key",
        default=None,
        metavar="KEY",
        help=(
            "the job's flow-control key (a tenant, an API): the key's limit ('limits set') "
            "holds its jobs queued without holding a worker"
        ),
    )
    later = submit.add_mutually_exclusive_group()
    later.add_argument(
        "--delay",
        type=_duration,
        default=None,
        metavar="SECONDS",
        help="run the job no earlier than this long from now (90, 90s, 15m, 12h, 7d)",
    )
    later.add_argument(
        "--at",
        default=None,
        metavar="TIME",
        help=(
            "run the job no earlier than this RFC 3339 time, with its offset: "
            "2026-12-07T10:00:00Z, 2026-12-07T11:00:00+01:00"
        ),
    )
    _add_wait_option(submit)
    _add_client_options(submit, token=True)
    submit.set_defaults(handler=_submit_command)


def _add_status(commands: _Commands) -> None:
    status = _command(
        commands,
        "status",
        help="show a job of a running server",
        description="Print a job of a running 'trio-jobpool serve' as JSON.",
    )
    status.add_argument("job_id", metavar="ID", help="the job's id")
    status.add_argument(
        "--wait",
        action="store_true",
        help="first wait until the job ends, showing its progress (exit 1 if it failed)",
    )
    _add_client_options(status, token=False)
    status.set_defaults(handler=_status_command)


def _add_cancel(commands: _Commands) -> None:
    cancel = _command(
        commands,
        "cancel",
        help="cancel a job of a running server",
        description=(
            "Cancel a scheduled, waiting or running job of a running 'trio-jobpool serve' "
            "by its id "
            "(exit 1 if there is no such job, or it has ended)."
        ),
    )
    cancel.add_argument("job_id", metavar="ID", help="the job's id")
    _add_client_options(cancel, token=True)
    cancel.set_defaults(handler=_cancel_command)


def _add_stats(commands: _Commands) -> None:
    stats = _command(
        commands,
        "stats",
        help="show the stats of a running server's pool",
        description="Show the pool stats of a running 'trio-jobpool serve' as a table.",
    )
    stats.add_argument("--json", action="store_true", help="print the JSON the server sent")
    stats.add_argument(
        "--cluster",
        action="store_true",
        help="the stats of every process sharing a distributed pool's queue",
    )
    _add_client_options(stats, token=False)
    stats.set_defaults(handler=_stats_command)


def _add_schedules(commands: _Commands) -> None:
    """``schedules list|set|delete``: a command with commands of its own."""
    schedules = _command(
        commands,
        "schedules",
        help="list, set or delete the periodic schedules of a running server",
        description=(
            "The periodic schedules of a running 'trio-jobpool serve': list them, declare one "
            "(or replace it: declaring one identical to the one kept changes nothing), or "
            "delete one. An --app module may also declare its schedules (declare_schedules), "
            "which serve and worker do when their pool opens."
        ),
    )
    actions = schedules.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = _command(
        actions,
        "list",
        help="the schedules as a table",
        description=(
            "Show every periodic schedule of a running server: its name, job, cron expression "
            "and zone or interval, next and last run (in this machine's zone), last job, runs "
            "and skipped ticks."
        ),
    )
    listing.add_argument("--json", action="store_true", help="print the JSON the server sent")
    _add_client_options(listing, token=False)
    listing.set_defaults(handler=_schedules_list_command)
    _add_schedules_set(actions)
    delete = _command(
        actions,
        "delete",
        help="delete a schedule",
        description=(
            "Delete the periodic schedule NAME of a running server (exit 1 if there is none); "
            "the jobs it submitted are not touched."
        ),
    )
    delete.add_argument("name", metavar="NAME", help="the schedule's name")
    _add_client_options(delete, token=True)
    delete.set_defaults(handler=_schedules_delete_command)


def _add_schedules_set(actions: _Commands) -> None:
    declare = _command(
        actions,
        "set",
        help="declare (or replace) a schedule",
        description=(
            "Declare the periodic schedule NAME on a running server: each tick submits the "
            "registered job JOB with the arguments ARGS (one JSON array), as the job "
            "'NAME@<tick's UTC time>'. Give --cron or --every. Declaring a schedule identical "
            "to the one kept changes nothing; a different one replaces it (its counts kept). "
            "Prints 'created' or 'declared', and the next run."
        ),
    )
    declare.add_argument("name", metavar="NAME", help="the schedule's name")
    declare.add_argument("job", metavar="JOB", help="a job name of the server's registry")
    declare.add_argument(
        "args",
        metavar="ARGS",
        nargs="?",
        default="[]",
        help="the job's arguments as one JSON array, e.g. '[\"main\"]' (default: [])",
    )
    when = declare.add_mutually_exclusive_group(required=True)
    when.add_argument(
        "--cron",
        default=None,
        metavar="EXPR",
        help="a 5-field cron expression, e.g. '30 2 * * *' (read in --tz)",
    )
    when.add_argument(
        "--every",
        type=_duration,
        default=None,
        metavar="SECONDS",
        help="seconds between ticks, at least 1 (90, 15m, 6h, 1d)",
    )
    declare.add_argument(
        "--tz",
        default=None,
        metavar="ZONE",
        help="the IANA time zone of --cron, e.g. Europe/Berlin (default: UTC)",
    )
    declare.add_argument(
        "--priority",
        type=int,
        default=None,
        metavar="N",
        help="lower runs first (default: the server's, 5)",
    )
    declare.add_argument(
        "--timeout",
        type=_duration,
        default=None,
        metavar="SECONDS",
        help="per attempt of each job (default: the pool's; 90, 90s, 15m, ...)",
    )
    declare.add_argument(
        "--overlap",
        choices=("skip", "allow"),
        default=None,
        help="skip (default): no tick while the schedule's last job is live; allow: fire anyway",
    )
    declare.add_argument(
        "--misfire",
        choices=("skip", "once"),
        default=None,
        help=(
            "skip (default): run none of the ticks missed while no server ran; once: one job "
            "for the latest of them"
        ),
    )
    declare.add_argument(
        "--paused",
        action="store_true",
        help="declare it paused (it fires nothing until declared again without --paused)",
    )
    _add_client_options(declare, token=True)
    declare.set_defaults(handler=_schedules_set_command)


def _add_limits(commands: _Commands) -> None:
    """``limits list|set|delete``: a command with commands of its own."""
    limits = _command(
        commands,
        "limits",
        help="list, set or delete the flow-control limits of a running server's keys",
        description=(
            "The flow-control limits of a running 'trio-jobpool serve': list the keys with a "
            "limit of their own and the keys at their limit with jobs waiting, set a key's "
            "limit (at most N of its jobs running at once, at most COUNT starts in any PER "
            "seconds), or delete a key's limit. Jobs get a key with 'submit --key KEY'."
        ),
    )
    actions = limits.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = _command(
        actions,
        "list",
        help="the limited keys as a table",
        description=(
            "Show the keys with a limit of their own and the keys now at their limit with jobs "
            "waiting: each key's running and waiting jobs and its limit (the pool's default "
            "limit, key_limit, marked as such)."
        ),
    )
    listing.add_argument("--json", action="store_true", help="print the JSON the server sent")
    _add_client_options(listing, token=False)
    listing.set_defaults(handler=_limits_list_command)
    declare = _command(
        actions,
        "set",
        help="set a key's limit",
        description=(
            "Set the limit of the key KEY on a running server: --max-running, --rate or both. "
            "The limit replaces the key's own limit whole: a part left out is unlimited. "
            "Takes effect at once: a raised limit starts the key's waiting jobs on idle "
            "workers; a lowered one cancels nothing. Prints the limit set and the key's "
            "running and waiting jobs."
        ),
    )
    declare.add_argument("key", metavar="KEY", help="the flow-control key")
    declare.add_argument(
        "--max-running",
        type=_int_at_least(0),
        default=None,
        metavar="N",
        help="at most N of the key's jobs running at once (0 holds them all)",
    )
    declare.add_argument(
        "--rate",
        type=_rate,
        default=None,
        metavar="COUNT/PER",
        help="at most COUNT starts of the key in any PER seconds: 10/60, 100/1m, 5000/1h",
    )
    _add_client_options(declare, token=True)
    declare.set_defaults(handler=_limits_set_command)
    delete = _command(
        actions,
        "delete",
        help="delete a key's limit",
        description=(
            "Delete the limit of the key KEY on a running server (the pool's default limit, "
            "key_limit, applies to it again). A key without a limit of its own is not an "
            "error: it prints 'no limit of its own: KEY' and exits 0."
        ),
    )
    delete.add_argument("key", metavar="KEY", help="the flow-control key")
    _add_client_options(delete, token=True)
    delete.set_defaults(handler=_limits_delete_command)


def _add_prune(commands: _Commands) -> None:
    prune = _command(
        commands,
        "prune",
        help="delete old ended jobs from an SQLite store",
        description=(
            "Delete the jobs of an SQLite store that ended more than --older-than ago (live "
            "jobs are never deleted). The store must not be in use: stop the server using it "
            "first. A Redis store needs no pruning: ended jobs expire by themselves "
            "(keep_ended, an hour by default)."
        ),
    )
    prune.add_argument(
        "--store", required=True, metavar="URL", help="the store: sqlite:///path/jobs.db"
    )
    prune.add_argument(
        "--older-than",
        type=_duration,
        required=True,
        metavar="AGE",
        help="delete jobs that ended longer ago than this: 3600, 30m, 12h, 7d",
    )
    prune.set_defaults(handler=_prune_command)


# -- handlers: each runs one command with its parsed arguments ------------------------------


def _demo_command(args: argparse.Namespace) -> int:
    if args.live:
        try:
            import rich  # noqa: F401
        except ImportError:
            raise CliError(EXIT_BAD_INPUT, _RICH_MISSING) from None
    config = DemoConfig(jobs=args.jobs, workers=args.workers, seed=args.seed, live=args.live)
    return run_demo(config)


def _serve_command(args: argparse.Namespace) -> int:
    options = ServeOptions(
        app=args.app,
        store=args.store,
        workers=args.workers,
        queue_size=args.queue_size,
        max_pending=args.max_pending,
        shutdown_timeout=args.shutdown_timeout,
        shutdown_grace=args.shutdown_grace,
        host=args.host,
        port=args.port,
        token=args.token,
        dashboard=args.dashboard,
        access_log=args.access_log,
        backlog=args.backlog,
        body_timeout=args.body_timeout,
        max_bodies=args.max_bodies,
    )
    return run_serve(options)


def _worker_command(args: argparse.Namespace) -> int:
    options = WorkerOptions(
        app=args.app,
        store=args.store,
        workers=args.workers,
        queue_size=args.queue_size,
        shutdown_timeout=args.shutdown_timeout,
        shutdown_grace=args.shutdown_grace,
    )
    return run_worker(options)


def _submit_command(args: argparse.Namespace) -> int:
    job_args = parse_args_json(args.args)
    client = Client(args.url, token=args.token)
    return submit(
        client,
        args.name,
        job_args,
        priority=args.priority,
        job_id=args.job_id,
        timeout=args.timeout,
        delay=args.delay,
        at=args.at,
        key=args.key,
        wait=args.wait,
    )


def _status_command(args: argparse.Namespace) -> int:
    return status(Client(args.url), args.job_id, wait=args.wait)


def _cancel_command(args: argparse.Namespace) -> int:
    return cancel(Client(args.url, token=args.token), args.job_id)


def _stats_command(args: argparse.Namespace) -> int:
    return stats(Client(args.url), as_json=args.json, cluster=args.cluster)


def _schedules_list_command(args: argparse.Namespace) -> int:
    return list_schedules(Client(args.url), as_json=args.json)


def _schedules_set_command(args: argparse.Namespace) -> int:
    job_args = parse_args_json(args.args)
    return set_schedule(
        Client(args.url, token=args.token),
        args.name,
        args.job,
        job_args,
        cron=args.cron,
        every=args.every,
        tz=args.tz,
        priority=args.priority,
        timeout=args.timeout,
        overlap=args.overlap,
        misfire=args.misfire,
        paused=args.paused,
    )


def _schedules_delete_command(args: argparse.Namespace) -> int:
    return delete_schedule(Client(args.url, token=args.token), args.name)


def _limits_list_command(args: argparse.Namespace) -> int:
    return list_limits(Client(args.url), as_json=args.json)


def _limits_set_command(args: argparse.Namespace) -> int:
    if args.max_running is None and args.rate is None:
        raise CliError(
            EXIT_BAD_INPUT,
            "give --max-running N, --rate COUNT/PER or both ('limits delete KEY' removes a "
            "key's limit)",
        )
    return set_limit(
        Client(args.url, token=args.token), args.key, max_running=args.max_running, rate=args.rate
    )


def _limits_delete_command(args: argparse.Namespace) -> int:
    return delete_limit(Client(args.url, token=args.token), args.key)


def _prune_command(args: argparse.Namespace) -> int:
    return run_prune(args.store, args.older_than)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``trio-jobpool`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code.
    Output that cannot be written (a closed pipe: ``trio-jobpool limits list | head -1``) is
    dropped: it changes neither what the command does nor its exit code."""
    with dropping_stdout():
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error, already printed
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    if args.command is None:  # the bare command: what it can do
        parser.print_help()
        return 0
    try:
        code: int = args.handler(args)
    except CliError as exc:
        command = " ".join(filter(None, (args.command, getattr(args, "action", None))))
        write_line(f"trio-jobpool {command}: {exc.message}", sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        write_line("interrupted", sys.stderr)
        return EXIT_INTERRUPTED
    return code


if __name__ == "__main__":
    sys.exit(main())
