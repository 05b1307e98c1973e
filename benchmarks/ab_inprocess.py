"""W1 (or W3) of versions of trio_jobpool in one process, alternated many times: for differences
of 1-3%.

    python benchmarks/ab_inprocess.py before=9145353 after=HEAD --rounds 60 --n 20000
    python benchmarks/ab_inprocess.py before=43fce5b after=HEAD --workload W3 --n 20000

On a machine shared with other work, the fresh-process runs of ``ab.py`` move by 10-50% from one
measurement to the next, so a difference of 1-3% needs hundreds of them. Here each version's
``trio_jobpool/`` (``LABEL=REF`` as for ``ab.py``: a commit-ish or a directory) is imported
under a package name of its own (``jobpool_<label>``; the engine imports itself only
relatively, so the versions do not mix), and one process runs W1's loop (no-op jobs, 10
workers, queue 100, ``shutdown_timeout=None``, submit loop + drain, as ``workloads.w1_throughput``
with ``impls_jobpool``'s settings) through each version in turn, on Trio and on asyncio, the
versions' order rotated every round. Per round and backend, each version's time over the first
version's; printed: the median (and quartiles) of those ratios, of wall and of CPU time, and
the medians of the figures. A GC collection precedes every measurement.

``--workload W3``: W3's drain instead (``workloads.w3_priorities``: n jobs of random priorities
1..10, seeded, queued behind the one worker held by a first job, unbounded queue,
``max_pending=None``; each job notes its start in a list, then one checkpoint), timed from the
release of the held worker until the pool has drained; the priority order is checked.

Caveat: the versions share one interpreter (its allocator, its caches, Trio's and asyncio's
modules), so this measures the engine's own code, not the cost of importing or of a fresh
process; ``ab.py`` is the end-to-end figure.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from ab import export
from run import RESULTS
from workloads import W3_SEED, count_inversions

HERE = Path(__file__).resolve().parent
WORKERS, QUEUE = 10, 100


def load(label: str, ref: str, tmp: Path) -> tuple[ModuleType, dict[str, Any]]:
    """Import ``ref``'s trio_jobpool as the package ``jobpool_<label>``."""
    where = tmp / label
    info = export(ref, where)
    name = f"jobpool_{label}"
    (where / "trio_jobpool").rename(where / name)
    sys.path.insert(0, str(where))
    return importlib.import_module(name), info


async def _w1(pkg: ModuleType, checkpoint: Any, n: int) -> tuple[float, float]:
    async def noop() -> None:
        await checkpoint()

    clock, cpu_clock = time.perf_counter, time.process_time
    async with pkg.open_job_pool(
        max_workers=WORKERS, queue_size=QUEUE, max_pending=0, shutdown_timeout=None
    ) as pool:
        submit = pool.submit
        start, cpu_start = clock(), cpu_clock()
        for _ in range(n):
            await submit(noop)
    elapsed, cpu = clock() - start, cpu_clock() - cpu_start
    stats = pool.stats()
    if stats.total_completed != n:
        raise RuntimeError(f"{stats.total_completed} jobs completed, expected {n}")
    return elapsed / n * 1e6, cpu / n * 1e6


async def _w3(pkg: ModuleType, checkpoint: Any, n: int) -> tuple[float, float]:
    import anyio

    rng = random.Random(W3_SEED)
    priorities = [rng.randint(1, 10) for _ in range(n)]
    order: list[int] = []
    release = anyio.Event()
    started = anyio.Event()

    async def blocker() -> None:
        started.set()
        await release.wait()

    async def record(i: int) -> None:
        order.append(i)
        await checkpoint()

    clock, cpu_clock = time.perf_counter, time.process_time
    async with pkg.open_job_pool(max_workers=1, max_pending=None, shutdown_timeout=None) as pool:
        submit = pool.submit
        await submit(blocker)
        await started.wait()
        for i in range(n):
            await submit(record, i, priority=priorities[i])
        start, cpu_start = clock(), cpu_clock()
        release.set()
    elapsed, cpu = clock() - start, cpu_clock() - cpu_start
    if sorted(order) != list(range(n)):
        raise RuntimeError(f"{len(order)} starts recorded for {n} jobs")
    if count_inversions(order, priorities) != (0, 0):
        raise RuntimeError(f"priority order broken: {count_inversions(order, priorities)}")
    return elapsed / n * 1e6, cpu / n * 1e6


DRIVERS = {"W1": _w1, "W3": _w3}


def measure(pkg: ModuleType, backend: str, n: int, workload: str = "W1") -> tuple[float, float]:
    gc.collect()
    driver = DRIVERS[workload]
    if backend == "trio":
        import trio

        return trio.run(driver, pkg, trio.lowlevel.checkpoint, n)  # type: ignore[no-any-return]
    import asyncio
    import functools

    import anyio

    return anyio.run(  # type: ignore[no-any-return]
        driver, pkg, functools.partial(asyncio.sleep, 0), n, backend="asyncio"
    )


def _quartiles(values: list[float]) -> str:
    q1, q2, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else (values * 3)
    return f"{q2:.3f} (quartiles {q1:.3f}-{q3:.3f})"


def bootstrap(values: list[float], resamples: int = 2000, seed: int = 17) -> tuple[float, float]:
    """A 95% percentile-bootstrap interval of the median of ``values`` (seeded: the same
    values give the same interval)."""
    rng = random.Random(seed)
    medians = sorted(
        statistics.median(rng.choices(values, k=len(values))) for _ in range(resamples)
    )
    return medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("versions", nargs="+", metavar="LABEL=REF")
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--backends", default="trio,asyncio")
    parser.add_argument("--workload", choices=sorted(DRIVERS), default="W1")
    parser.add_argument("--name", default="ab-inprocess")
    args = parser.parse_args(argv)
    pairs = [v.partition("=")[::2] for v in args.versions]
    labels = [label for label, _ in pairs]
    backends = args.backends.split(",")
    load_start = os.getloadavg()
    records: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="jobpool-abin-") as tmp:
        packages, infos = {}, []
        for label, ref in pairs:
            packages[label], info = load(label, ref, Path(tmp))
            infos.append({"label": label, **info})
        for label in labels:  # a warm-up each, not counted
            for backend in backends:
                measure(packages[label], backend, args.n // 4, args.workload)
        for round_ in range(args.rounds):
            turn = round_ % len(labels)
            for backend in backends:
                for label in labels[turn:] + labels[:turn]:
                    wall, cpu = measure(packages[label], backend, args.n, args.workload)
                    records.append(
                        {
                            "round": round_,
                            "backend": backend,
                            "version": label,
                            "wall": wall,
                            "cpu": cpu,
                        }
                    )
            print(f"round {round_ + 1}/{args.rounds}", end="\r", flush=True, file=sys.stderr)
    print(
        f"versions: {infos}\nload average at start {load_start}, at end {os.getloadavg()}; "
        f"{args.rounds} rounds of {args.workload} with n={args.n:,}"
    )
    summary: dict[str, Any] = {}
    for backend in backends:
        for label in labels:
            mine = [r for r in records if r["backend"] == backend and r["version"] == label]
            line = f"{backend:8s} {label:10s}"
            for figure in ("wall", "cpu"):
                line += f"  {figure} {statistics.median(r[figure] for r in mine):.3f} us/job"
            if label != labels[0]:
                for figure in ("wall", "cpu"):
                    ratios = [
                        r[figure] / b[figure]
                        for r in mine
                        for b in records
                        if b["round"] == r["round"]
                        and b["backend"] == backend
                        and b["version"] == labels[0]
                    ]
                    low, high = bootstrap(ratios)
                    summary[f"{backend} {label} {figure}"] = statistics.median(ratios)
                    summary[f"{backend} {label} {figure} interval"] = [low, high]
                    summary[f"{backend} {label} {figure} higher"] = sum(x > 1 for x in ratios)
                    line += (
                        f"\n{'':20s}{figure} ÷ {labels[0]} per round: {_quartiles(ratios)}, "
                        f"95% bootstrap interval of the median {low:.3f}-{high:.3f}, higher in "
                        f"{sum(x > 1 for x in ratios)}/{len(ratios)}"
                    )
            print(line)
    RESULTS.mkdir(exist_ok=True)
    out = {
        "versions": infos,
        "workload": args.workload,
        "n": args.n,
        "rounds": args.rounds,
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
        "summary": summary,
        "records": records,
    }
    (RESULTS / f"{args.name}.json").write_text(json.dumps(out, indent=1) + "\n")
    print(f"written: {RESULTS / args.name}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
