"""Where W6's time goes: the submits and the drain of keyed jobs, apart, in one process.

    python benchmarks/flow_parts.py                    # 15 rounds, Trio and asyncio
    python benchmarks/flow_parts.py --rounds 5 --n 50000 --no-gc --backends trio

Each measurement opens a pool of 10 workers with an unbounded queue (``max_pending=None``),
holds all 10 workers with a job each, submits n jobs with ``submit_nowait`` (timed: the
submits alone, no event loop in between), then releases the workers and waits until the pool
has drained (timed: the drain, with the 10 held jobs' ends). The jobs are W6's: one checkpoint
each, the tenant of each drawn at random over 1,000 keys (``workloads.tenant_keys``). The
variants, alternated in every round (their order rotated), each on a fresh pool:

* ``plain``: no key, no flow control (the plain waiting room);
* ``room``: no key, but the pool has ``key_limit=Limit(max_running=1)``, so its waiting room is
  the keyed one from the start (every job in the key ``None``, which has no limit);
* ``keys``: ``key="tenant:<k>"`` and every key ``max_running=1`` (W6);
* ``fair``: the same with ``fair=True`` (W6F).

Printed: per backend and variant, the median over rounds of the CPU time per job of the
submits and of the drain, and the median of the per-round ratios to ``plain``. ``--no-gc``
turns the cyclic garbage collector off for the timed parts (it is collected before each
measurement either way), which shows what the collector's passes over the waiting jobs cost.
``--profile submit`` (or ``drain``) runs that part of every measurement under cProfile and prints
the 25 functions with the most time of their own, per measurement, to stderr (the times are then
not comparable with the others; the shares are what to read), for example::

    python benchmarks/flow_parts.py --rounds 1 --backends trio --variants keys --no-gc \
        --profile drain
Only trio_jobpool's public API is used (``Limit`` is imported from the version on the path).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import functools
import gc
import os
import pstats
import statistics
import sys
import time
from typing import Any

from workloads import W6_KEYS, tenant_keys

VARIANTS = ("plain", "room", "keys", "fair")
TIMES = "\N{MULTIPLICATION SIGN}"
WORKERS = 10


async def _one(
    variant: str, n: int, checkpoint: Any, event: Any, collect: bool, profile: str | None
) -> tuple[float, float]:
    from trio_jobpool import Limit, open_job_pool

    profiler = cProfile.Profile() if profile else None

    tenants = tenant_keys(n)
    names = [f"tenant:{k}" for k in range(W6_KEYS)]
    release = event()

    async def hold() -> None:
        await release.wait()

    async def body() -> None:
        await checkpoint()

    options: dict[str, Any] = {}
    if variant != "plain":
        options.update(key_limit=Limit(max_running=1), fair=variant == "fair")
    cpu = time.process_time
    async with open_job_pool(
        max_workers=WORKERS, max_pending=None, shutdown_timeout=None, **options
    ) as pool:
        for _ in range(WORKERS):
            pool.submit_nowait(hold)
        while pool.stats().active_workers < WORKERS:
            await checkpoint()
        submit = pool.submit_nowait
        gc.collect()
        if not collect:
            gc.disable()
        if profiler is not None and profile == "submit":
            profiler.enable()
        start = cpu()
        if variant in ("keys", "fair"):
            for k in tenants:
                submit(body, key=names[k])
        else:
            for _k in tenants:
                submit(body)
        submitted = cpu()
        if profiler is not None:
            profiler.disable()
            if profile == "drain":
                profiler.enable()
        release.set()
    drained = cpu()
    gc.enable()
    if profiler is not None:
        profiler.disable()
        print(f"-- {variant}: the {profile} under cProfile", file=sys.stderr)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    if pool.stats().total_completed != n + WORKERS:
        raise RuntimeError(f"{pool.stats().total_completed} jobs completed, expected {n + WORKERS}")
    return (submitted - start) / n * 1e6, (drained - submitted) / n * 1e6


def measure(
    backend: str, variant: str, n: int, collect: bool, profile: str | None = None
) -> tuple[float, float]:
    if backend == "trio":
        import trio

        return trio.run(_one, variant, n, trio.lowlevel.checkpoint, trio.Event, collect, profile)
    import anyio

    return anyio.run(
        _one,
        variant,
        n,
        functools.partial(asyncio.sleep, 0),
        anyio.Event,
        collect,
        profile,
        backend="asyncio",
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--backends", default="trio,asyncio")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--no-gc", action="store_true", help="no cyclic GC in the timed parts")
    parser.add_argument("--profile", choices=("submit", "drain"), help="that part under cProfile")
    args = parser.parse_args(argv)
    variants = args.variants.split(",")
    backends = args.backends.split(",")
    figures: dict[tuple[str, str, int], tuple[float, float]] = {}
    for round_ in range(args.rounds):
        turn = round_ % len(variants)
        for backend in backends:
            for variant in variants[turn:] + variants[:turn]:
                figures[backend, variant, round_] = measure(
                    backend, variant, args.n, not args.no_gc, args.profile
                )
        print(f"round {round_ + 1}/{args.rounds}", end="\r", flush=True, file=sys.stderr)
    print(
        f"{args.rounds} rounds, n={args.n:,}, gc {'off' if args.no_gc else 'on'}; "
        f"load average at end {os.getloadavg()}; CPU µs per job, medians over rounds; "
        f"{TIMES} plain: the median of the per-round ratios"
    )
    for backend in backends:
        for variant in variants:
            line = f"{backend:8s} {variant:6s}"
            for part, name in ((0, "submit"), (1, "drain")):
                values = [figures[backend, variant, r][part] for r in range(args.rounds)]
                line += f"  {name} {statistics.median(values):6.2f}"
                if variant != "plain" and "plain" in variants:
                    ratios = [
                        figures[backend, variant, r][part] / figures[backend, "plain", r][part]
                        for r in range(args.rounds)
                    ]
                    line += f" ({TIMES}{statistics.median(ratios):.2f})"
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
