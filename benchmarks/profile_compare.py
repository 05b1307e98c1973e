"""Run ``profile_worker.py`` variants interleaved, and give each figure's median and range.

    python benchmarks/profile_compare.py --rounds 5 \\
        "--incr-only --backend trio" "--incr-only --backend asyncio"
    python benchmarks/profile_compare.py --rounds 5 \\
        "--incr-only --client from_url" "COREDIS_OPTIMIZED=true --incr-only --client from_url"

Each variant is one string: ``NAME=value`` words first set environment variables of its
process, the rest are ``profile_worker.py``'s arguments. Every round runs each variant once, in
an order rotated from round to round (a machine busy with other work shifts every variant
alike within a round), each in a fresh process on a fresh redis-server. Printed: per variant,
the median (min-max) of each numeric figure ``profile_worker.py`` printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def run(variant: str) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(HERE.parent))
    args = []
    for word in variant.split():
        name, eq, value = word.partition("=")
        if eq and not args and not name.startswith("-"):
            env[name] = value
        else:
            args.append(word)
    out = subprocess.run(
        [sys.executable, str(HERE / "profile_worker.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def flat(record: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The numeric figures of a record, nested keys joined with '.'."""
    out: dict[str, float] = {}
    for key, value in record.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[prefix + key] = float(value)
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", help="comma-separated figures to print (default: all)")
    parser.add_argument("variants", nargs="+")
    args = parser.parse_args(argv)
    results: dict[str, list[dict[str, float]]] = {v: [] for v in args.variants}
    for round_ in range(args.rounds):
        shift = round_ % len(args.variants)
        for variant in args.variants[shift:] + args.variants[:shift]:
            results[variant].append(flat(run(variant)))
    only = args.only.split(",") if args.only else None
    for variant, records in results.items():
        print(f"== {variant}")
        keys = [k for k in records[0] if only is None or k in only]
        for key in keys:
            values = [r[key] for r in records if key in r]
            digits = 3 if max(abs(v) for v in values) < 10 else 1  # (shares, trips per job)
            print(
                f"   {key:40s} {statistics.median(values):9.{digits}f} "
                f"({min(values):.{digits}f}-{max(values):.{digits}f})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
