"""The heap of scheduled jobs alone: handles ordered by ``JobHandle.__lt__`` against
``(due, seq, job)`` tuples, for time and memory (docs/performance.md, "Later jobs").

    python benchmarks/due_heap.py            # n = 100,000, best of 5 alternated runs each

Per entry, in one process with the garbage collector off while timing (CPU time):

* push: ``DueJobs.push`` (the handle gets its due time and sequence number and goes on the
  heap) against the same pushing a tuple, for due times drawn in the next hour, and all equal;
* pop: ``heappop`` until the heap is empty (what ``pop_due`` does when not every entry is due);
* ``pop_due`` of a burst, every entry due (one sort: by a key for handles, of the tuples);
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


class TupleHeap:
    """``DueJobs`` with ``(due, seq, job)`` tuples on its heap (as in
    ``benchmarks/variants/due-tuples.diff``): push and pop_due, the parts measured here."""

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, JobHandle[Any]]] = []
        self._next_seq = 0

    def push(self, job: JobHandle[Any], due: float) -> None:
        job._due_m = due
        job._seq = seq = self._next_seq
        self._next_seq = seq + 1
        heapq.heappush(self.heap, (due, seq, job))

    def pop_due(self, now: float) -> list[JobHandle[Any]]:
        heap = self.heap
        if not heap or heap[0][0] > now:
            return []
        for entry in reversed(heap):
            if entry[0] > now:
                break
        else:
            self.heap = []
            heap.sort()
            return [entry[2] for entry in heap if entry[2]._status is SCHEDULED]
        due = []
        while heap and heap[0][0] <= now:
            job = heapq.heappop(heap)[2]
            if job._status is SCHEDULED:
                due.append(job)
        return due


def pushed(kind: type[Any], jobs: list[JobHandle[Any]], dues: list[float]) -> Any:
    """A ``DueJobs`` (or ``TupleHeap``) holding ``jobs`` due at ``dues``."""
    heap = kind()
    push = heap.push
    for job, due in zip(jobs, dues, strict=True):
        push(job, due)
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
        kinds = [("handles", DueJobs), ("tuples", TupleHeap)]
        for name, kind in kinds if round_ % 2 else kinds[::-1]:
            for spread_name, dues in (("random", spread), ("equal", equal)):
                seconds, heap = timed(functools.partial(pushed, kind, handles(n), dues))
                results.setdefault(f"push, {spread_name} due times, {name}", []).append(seconds)
                seconds, _ = timed(functools.partial(drain, heap.heap))
                results.setdefault(f"pop, {spread_name} due times, {name}", []).append(seconds)
            burst = pushed(kind, handles(n), equal)
            seconds, _ = timed(functools.partial(burst.pop_due, 5.0))
            results.setdefault(f"pop_due of a burst (one sort), {name}", []).append(seconds)
    print(f"n = {n:,}; CPU time per entry, best of 5 (alternated):")
    for name, values in results.items():
        print(f"  {name:40s} {min(values) / n * 1e6:6.3f} us")
    for name, kind in (("handles", DueJobs), ("tuples", TupleHeap)):
        jobs = handles(n)
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        kept = pushed(kind, jobs, spread)
        grown = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        del kept
        print(f"  memory per entry, {name:8s} {grown / n:6.1f} B (the due floats excluded)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
