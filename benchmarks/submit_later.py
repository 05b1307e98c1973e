"""S2's two submits in one process, in alternated batches: the CPU cost of ``delay=`` alone.

    python benchmarks/submit_later.py               # 25 rounds of 2,000 each, both backends
    python benchmarks/submit_later.py --rounds 40 --backends trio

S2 and S2W (``run.py``) measure 100,000 submits each in a fresh process, and on a machine busy
with other work their ratio moves by ±40% from one round to the next. Here one pool (10
workers, held by blocked jobs; no bound) takes, each round, a batch of 2,000 no-op jobs by
``submit_nowait(delay=)``, ``submit_nowait()``, ``submit(delay=)`` and ``submit()`` in turn
(delays drawn from the next hour, as S2's), with the garbage collector off; each form's figure
is its fastest batch (CPU time), the least disturbed by other work. The pool keeps every job,
so the heap and the waiting room grow to 2,000 x rounds jobs, as in S2.
"""

from __future__ import annotations

import argparse
import gc
import random
import time
from typing import Any

import anyio
import anyio.lowlevel

from trio_jobpool import open_job_pool

FORMS = ("submit_nowait(delay=)", "submit_nowait()", "submit(delay=)", "submit()")


async def _noop() -> None:
    await anyio.lowlevel.checkpoint()


async def _blocker(release: anyio.Event, started: list[int]) -> None:
    started.append(1)
    await release.wait()


async def measure(rounds: int, batch: int) -> dict[str, float]:
    rng = random.Random(20_261_206)
    delays = [rng.uniform(0.0, 3600.0) for _ in range(batch)]
    best = dict.fromkeys(FORMS, float("inf"))
    cpu = time.process_time
    async with open_job_pool(max_workers=10, max_pending=None, shutdown_timeout=None) as pool:
        release, started = anyio.Event(), []
        for _ in range(10):
            await pool.submit(_blocker, release, started)
        while len(started) < 10:
            await anyio.lowlevel.checkpoint()
        nowait, submit = pool.submit_nowait, pool.submit
        gc.collect()
        gc.disable()
        try:
            for _ in range(rounds):
                times: list[float] = [cpu()]
                for delay in delays:
                    nowait(_noop, delay=delay)
                times.append(cpu())
                for _delay in delays:
                    nowait(_noop)
                times.append(cpu())
                for delay in delays:
                    await submit(_noop, delay=delay)
                times.append(cpu())
                for _delay in delays:
                    await submit(_noop)
                times.append(cpu())
                for form, start, end in zip(FORMS, times, times[1:], strict=False):
                    best[form] = min(best[form], (end - start) / batch * 1e6)
        finally:
            gc.enable()
        release.set()
        await pool.stop(drain=False)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--backends", default="trio,asyncio")
    args = parser.parse_args()
    for backend in args.backends.split(","):
        best: Any = anyio.run(measure, args.rounds, args.batch, backend=backend)
        cells = ", ".join(f"{form} {us:.3f}" for form, us in best.items())
        print(f"{backend}: us per call (fastest batch): {cells}")
        nowait = best["submit_nowait(delay=)"] / best["submit_nowait()"]
        awaited = best["submit(delay=)"] / best["submit()"]
        extra = best["submit(delay=)"] - best["submit()"]
        print(f"  with delay= / without: submit_nowait x{nowait:.3f}, submit x{awaited:.3f}")
        print(f"  (+{extra:.2f} us per submit)")


if __name__ == "__main__":
    main()
