"""W6's drain, the waiting room's data structures alone: heaps, as ``FlowRoom`` keeps them, against
deques.

    python benchmarks/flow_structures.py

100,000 jobs of 1,000 keys (W6's draw, ``workloads.tenant_keys``), all of one priority, are put
in a waiting room and then taken out one by one, each taken key going back in line behind the
others when it has jobs left (W6's order of starts with ``max_running=1`` and ``fair=True``,
without the pool around it). Timed (CPU time per job): the taking out, in two ways:

* **heaps**, as ``trio_jobpool._flow_room.FlowRoom`` does it: a heap of ``(rank, order, job,
  epoch)`` tuples per key and a line that is a heap of ``[rank, order, state]`` lists; per job a
  ``heappop`` from the line, a ``heappop`` from the key's heap, and a ``heappush`` of the key's
  new entry;
* **deques**: a ``deque`` of jobs per key and a ``deque`` of keys for the line; per job two
  ``popleft`` and one ``append``.

Printed: the best and the median of 7 runs of each, with the cyclic GC on and off. What it
shows is what the structures cost, not the pool: the pool's own work per job comes on top in
both cases.
"""

from __future__ import annotations

import gc
import heapq
import statistics
import sys
import time
from collections import deque
from typing import Any

from workloads import W6_KEYS, tenant_keys

N = 100_000
RUNS = 7


class Job:
    __slots__ = ("key",)

    def __init__(self, key: int) -> None:
        self.key = key


class State:
    __slots__ = ("entry", "jobs")

    def __init__(self, jobs: Any) -> None:
        self.jobs = jobs
        self.entry: list[Any] | None = None


def heaps(keys: list[int]) -> float:
    """CPU µs per job to take every job out of heaps kept as FlowRoom keeps them."""
    states = [State([]) for _ in range(W6_KEYS)]
    for order, key in enumerate(keys):
        heapq.heappush(states[key].jobs, (5, order, Job(key), 0))
    line: list[list[Any]] = []
    for state in states:
        if state.jobs:
            rank, order, _, _ = state.jobs[0]
            state.entry = [rank, order, state]
            heapq.heappush(line, state.entry)
    start = time.process_time()
    while line:
        state = heapq.heappop(line)[2]
        heapq.heappop(state.jobs)
        if state.jobs:
            rank, order, _, _ = state.jobs[0]
            state.entry = [rank, order, state]
            heapq.heappush(line, state.entry)
    return (time.process_time() - start) / len(keys) * 1e6


def deques(keys: list[int]) -> float:
    """CPU µs per job to take every job out of a deque per key and a deque line."""
    states = [State(deque()) for _ in range(W6_KEYS)]
    for key in keys:
        states[key].jobs.append(Job(key))
    line = deque(state for state in states if state.jobs)
    start = time.process_time()
    while line:
        state = line.popleft()
        state.jobs.popleft()
        if state.jobs:
            line.append(state)
    return (time.process_time() - start) / len(keys) * 1e6


def main() -> int:
    keys = tenant_keys(N)
    for collect in (True, False):
        if not collect:
            gc.disable()
        for name, fn in (("heaps", heaps), ("deques", deques)):
            times = [fn(keys) for _ in range(RUNS)]
            print(
                f"gc {'on ' if collect else 'off'} {name:6s} per job: best {min(times):.2f} µs, "
                f"median {statistics.median(times):.2f} µs ({RUNS} runs, n={N:,})"
            )
        gc.enable()
    return 0


if __name__ == "__main__":
    sys.exit(main())
