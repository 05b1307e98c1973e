"""The longest single take of the keyed waiting room, past a flood of one key.

    PYTHONPATH=$PWD python benchmarks/flow_flood.py                 # n = 10,000 to 1,000,000
    PYTHONPATH=$PWD python benchmarks/flow_flood.py --n 100000 --rounds 5

Without ``fair`` and ``aging``, a keyed job that arrives while its key is under its limit waits
in the shared order, and is set aside into its key's own queue if it comes up while its key is
at its limit (docs/design.md, "Flow control"). The worst case for one take is a flood: n jobs of
one key submitted while the key is under its limit, then one of them starts (the key is now at
``max_running=1``) and another worker looks for a job: that take sets aside the key's jobs
ahead of the job behind them. The shared order holds at most ``_SHARED_PER_KEY`` (1,024) jobs
of a key (the rest wait in the key's own queue from the start), so that take does not grow with
n; this measures how long it holds the event loop.

A pool of 2 workers, both held by a gate; n jobs of the key ``flood`` (``max_running=1``),
then one job without a key; the gate opens; each job notes ``time.perf_counter()`` when its
code starts. Printed, per n: the gap from the first flood job's start to the unkeyed job's
start (the take past the flood, plus one job's start), the same with ``fair=True`` (no shared
order: the flood waits in its key's queue from the start), and the submits' time per job for
scale. Trio; medians over ``--rounds``.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

import trio

from trio_jobpool import Limit, open_job_pool


async def _one(n: int, fair: bool) -> tuple[float, float]:
    starts: dict[str, float] = {}
    gate = trio.Event()

    async def hold() -> None:
        await gate.wait()

    async def job(name: str) -> None:
        starts.setdefault(name, time.perf_counter())
        await trio.lowlevel.checkpoint()

    async with open_job_pool(
        max_workers=2, max_pending=None, key_limit=Limit(max_running=1), fair=fair
    ) as pool:
        pool.submit_nowait(hold)
        pool.submit_nowait(hold)
        while pool.stats().active_workers < 2:
            await trio.lowlevel.checkpoint()
        begin = time.perf_counter()
        for _ in range(n):
            pool.submit_nowait(job, "flood", key="flood")
        submits = (time.perf_counter() - begin) / n
        pool.submit_nowait(job, "other")
        gate.set()
    return starts["other"] - starts["flood"], submits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, action="append", help="jobs in the flood (repeatable)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sizes = args.n or [10_000, 100_000, 1_000_000]
    print("n | fair | the take past the flood (ms) | submit (µs/job)")
    for n in sizes:
        for fair in (False, True):
            gaps: list[float] = []
            submits: list[float] = []
            for _ in range(args.rounds):
                gc.collect()
                gap, submit = trio.run(_one, n, fair)
                gaps.append(gap)
                submits.append(submit)
            gap = statistics.median(gaps)
            print(f"{n:,} | {fair} | {gap * 1e3:.2f} | {statistics.median(submits) * 1e6:.2f}")


if __name__ == "__main__":
    main()
