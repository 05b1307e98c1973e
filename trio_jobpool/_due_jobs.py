"""Scheduled jobs, by due time: a heap with lazy deletion, for a pool's one timer.

A scheduled job (``delay=``, ``at=``, a ``Defer``) waits here until it is due. The pool's timer
task sleeps until :meth:`DueJobs.earliest` and then takes every job that is due with
:meth:`DueJobs.pop_due`; a job scheduled earlier than the timer's wake-up moves the wake-up
(see ``_later.py``). Nothing polls.

The heap holds the handles themselves (ordered by ``JobHandle.__lt__``: due time, then the
order of scheduling), so a scheduled job costs one pointer here, its due time and its
sequence number: the memory figure is in docs/performance.md. Removal is lazy, as in Trio's
``Deadlines``: a cancelled job stays in the heap, no longer ``SCHEDULED``, until it surfaces or
until dead entries outnumber live ones, when the heap is rebuilt in one pass (rarely, in a
batch, to keep the amortized cost of a cancel O(1)).
"""

from __future__ import annotations

import heapq
import math
import operator
from typing import Any, Final

from ._job import JobHandle, JobStatus

__all__ = ["DueJobs"]

_SCHEDULED: Final = JobStatus.SCHEDULED
_COMPACT_MIN_DEAD: Final = 1024
_ORDER: Final = operator.attrgetter("_due_m", "_seq")  # JobHandle.__lt__'s order, as a key


class DueJobs:
    """The scheduled jobs of a pool, earliest due first.

    Invariants: every ``SCHEDULED`` job of the pool is in :attr:`heap` exactly once, with its
    ``_due_m`` and ``_seq`` set; an entry that is not ``SCHEDULED`` is dead (its job was
    cancelled or ended meanwhile) and is counted in ``_dead`` once :meth:`discard` was called
    for it.
    """

    __slots__ = ("_dead", "_next_seq", "heap")

    def __init__(self) -> None:
        self.heap: list[JobHandle[Any]] = []
        self._dead = 0
        self._next_seq = 0

    def __len__(self) -> int:
        """Entries held, dead ones not yet dropped included."""
        return len(self.heap)

    def push(self, job: JobHandle[Any], due: float) -> None:
        """Add ``job`` (already ``SCHEDULED``), due at ``due`` on the pool's clock; among jobs
        due at the same time it comes after those pushed before it."""
        job._due_m = due
        job._seq = seq = self._next_seq
        self._next_seq = seq + 1
        heapq.heappush(self.heap, job)

    def earliest(self) -> float:
        """The due time of the earliest live job (``inf``: none); drops dead entries on top."""
        heap = self.heap
        while heap:
            job = heap[0]
            if job._status is _SCHEDULED:
                return job._due_m  # type: ignore[return-value]
            heapq.heappop(heap)
            if self._dead:
                self._dead -= 1
        return math.inf

    def pop_due(self, now: float) -> list[JobHandle[Any]]:
        """Remove and return the live jobs due at or before ``now``, earliest first (and in
        the order they were pushed among equal due times).

        Due jobs are popped one by one, O(log n) comparisons each, every one a Python call
        (``JobHandle.__lt__``). When every entry is due (a burst falling due together, with
        nothing scheduled later), they are sorted at once instead, by a key that compares in
        C: O(n log n) C comparisons, several times faster than n pops.
        """
        heap = self.heap
        if not heap or heap[0]._due_m > now:  # type: ignore[operator]
            return []
        # Every entry is due if every leaf is (an entry is due no earlier than its parent).
        # Usually the last leaf is not, and this costs one comparison; at most one per due
        # leaf, fewer than the pops take.
        for job in reversed(heap):
            if job._due_m > now:
                break
        else:
            self.heap = []
            heap.sort(key=_ORDER)  # the heap's order
            due = [job for job in heap if job._status is _SCHEDULED]
            self._dead = 0
            return due
        due = []
        while heap and heap[0]._due_m <= now:  # type: ignore[operator]
            job = heapq.heappop(heap)
            if job._status is _SCHEDULED:
                due.append(job)
            elif self._dead:
                self._dead -= 1
        return due

    def discard(self) -> None:
        """Note that one job in the heap is no longer scheduled (cancelled, ended); rebuild the
        heap without the dead ones once they are the majority."""
        self._dead += 1
        if self._dead >= _COMPACT_MIN_DEAD and self._dead * 2 > len(self.heap):
            self.heap = [job for job in self.heap if job._status is _SCHEDULED]
            heapq.heapify(self.heap)
            self._dead = 0

    def live(self, limit: int | None = None) -> list[JobHandle[Any]]:
        """The live jobs, earliest due first, at most ``limit`` (a copy, for views: O(n log
        limit), or O(n log n) for all)."""
        alive = (job for job in self.heap if job._status is _SCHEDULED)
        return sorted(alive) if limit is None else heapq.nsmallest(limit, alive)
