"""The heap of scheduled jobs alone: handles ordered by ``JobHandle.__lt__`` against
``(due, seq, job)`` tuples, for time and memory (docs/performance.md, "Later jobs").

    python benchmarks/due_heap.py            # n = 100,000, best of 5 alternated runs each

Per entry, in one process with the garbage collector off while timing (CPU time):

* push: ``DueJobs.push`` (the handle gets its due time and sequence number and goes on the heap)
  against the same with a tuple pushed, for due times drawn in the next hour;
* pop: ``heappop`` until the heap is empty, for random due times and for equal ones (a burst),
  and ``DueJobs.pop_due`` of a burst when every entry is due (one sort);
* memory: tracemalloc's growth per entry while pushing (the sequence number's int included;
  the handle itself is not counted, it exists either way).
"""

from __future__ import annotations

import functools
import gc
import heapq
import random
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any, cast

from trio_jobpool._due_jobs import DueJobs
from trio_jobpool._job import JobHandle, JobOwner, JobStatus

SCHEDULED = JobStatus.SCHEDULED
cpu = time.process_time


def handles(n: int) -> list[JobHandle[Any]]:
    owner = cast("JobOwner", object())
    made: list[JobHandle[Any]] = []
    for i in range(n):
        job: JobHandle[Any] = JobHandle(owner, i, time.sleep, (), 5, 1.0, None)
        job._status = SCHEDULED
        made.append(job)
    return made


def push_handles(jobs: list[JobHandle[Any]], dues: list[float]) -> Any:
    due_jobs = DueJobs()
    for job, due in zip(jobs, dues, strict=True):
        due_jobs.push(job, due)
    return due_jobs.heap


def push_tuples(jobs: list[JobHandle[Any]], dues: list[float]) -> Any:
    heap: list[tuple[float, int, JobHandle[Any]]] = []
    push = heapq.heappush
    for seq, (job, due) in enumerate(zip(jobs, dues, strict=True)):
        job._due_m = due  # what a DueJobs.push of tuples would do
        job._seq = seq
        push(heap, (due, seq, job))
    return heap


def drain(heap: list[Any]) -> None:
    pop = heapq.heappop
    while heap:
        pop(heap)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """CPU seconds of ``fn()`` with the garbage collector off, and what it returned."""
    gc.collect()
    gc.disable()
    try:
        start = cpu()
        result = fn()
        return cpu() - start, result
    finally:
        gc.enable()


def main(n: int) -> None:
    rng = random.Random(20_261_206)
    spread = [rng.uniform(0.0, 3600.0) for _ in range(n)]
    equal = [5.0] * n
    results: dict[str, list[float]] = {}
    for round_ in range(5):
        kinds = [("handles", push_handles), ("tuples", push_tuples)]
        for kind, push in kinds if round_ % 2 else kinds[::-1]:
            for name, dues in (("random", spread), ("equal", equal)):
                seconds, heap = timed(functools.partial(push, handles(n), dues))
                results.setdefault(f"push {name} {kind}", []).append(seconds)
                seconds, _ = timed(functools.partial(drain, heap))
                results.setdefault(f"pop {name} {kind}", []).append(seconds)
            if kind == "handles":
                burst = DueJobs()
                for job in handles(n):
                    burst.push(job, 5.0)
                seconds, _ = timed(functools.partial(burst.pop_due, 5.0))
            else:
                seconds, _ = timed(push_tuples(handles(n), equal).sort)
            results.setdefault(f"burst, one sort, {kind}", []).append(seconds)
    print(f"n = {n:,}; CPU time per entry, best of 5 (alternated):")
    for name, values in results.items():
        print(f"  {name:40s} {min(values) / n * 1e6:6.3f} us")
    for kind, push in (("handles", push_handles), ("tuples", push_tuples)):
        jobs = handles(n)
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        kept = push(jobs, spread)
        grown = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        del kept
        print(f"  memory per entry, {kind:8s} {grown / n:6.1f} B (the due floats excluded)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
