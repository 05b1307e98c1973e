"""The waiting room: jobs (and blocked submissions) ordered by priority, FIFO within one.

The guide's pool had a timer that moved jobs from its priority queue into a channel every so
often, and a job already in the channel could not be overtaken by a more urgent one. Here there is
no channel between the waiting room and the workers: a worker that becomes free *pulls* the best
waiting job itself, synchronously, and a submission that finds an idle worker hands its job over
directly. Promotion is therefore event-driven by construction, with no timer and no extra task
hop, and a job never sits in a hand-off where it could be overtaken.

:class:`PriorityBuckets` keeps one FIFO ``deque`` per priority and a heap of the priorities
present: push and pop are O(1) plus O(log P) for P distinct priorities (usually a handful), and a
queued job costs one pointer. Removal is lazy: a cancelled job stays in its deque, marked dead,
until it surfaces or until dead entries outnumber live ones, when the buckets are compacted.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterator
from typing import Any, Final, Generic, Protocol, TypeVar

from ._job import JobHandle, JobStatus
from ._runtime import Slot

__all__ = ["Offer", "Offers", "PriorityBuckets", "WaitingJobs"]


class _Prioritised(Protocol):
    @property
    def _priority(self) -> int: ...


T = TypeVar("T", bound=_Prioritised)

_COMPACT_MIN_DEAD = 1024


class PriorityBuckets(Generic[T]):
    """Items ordered by ``(item._priority, insertion order)``; subclasses say which are alive.

    One deque per priority, and a heap of the priorities that have one. A bucket is dropped
    once it is empty, except the last one left: a queue that keeps emptying and filling at one
    priority (the common case) keeps its deque instead of making one each time.
    """

    __slots__ = ("_buckets", "_dead", "_priorities", "size")

    def __init__(self) -> None:
        self._buckets: dict[int, deque[T]] = {}
        self._priorities: list[int] = []  # heap of the keys of _buckets
        self.size = 0
        """Entries held, dead ones not yet dropped included: an upper bound of the live ones
        (``0``: none)."""
        self._dead = 0  # entries known to be dead (see discard)

    def _alive(self, item: T) -> bool:
        raise NotImplementedError  # pragma: no cover - overridden

    def __len__(self) -> int:
        """:attr:`size`."""
        return self.size

    def push(self, item: T) -> None:
        bucket = self._buckets.get(item._priority)
        if bucket is None:
            bucket = self._bucket(item._priority)
        bucket.append(item)
        self.size += 1

    def push_front(self, item: T) -> None:
        """Put ``item`` back ahead of every item of its priority (one taken, then returned)."""
        self._bucket(item._priority).appendleft(item)
        self.size += 1

    def _bucket(self, priority: int) -> deque[T]:
        """The bucket of ``priority``, made (and its priority put in the heap) if missing."""
        bucket = self._buckets.get(priority)
        if bucket is None:
            bucket = self._buckets[priority] = deque()
            heapq.heappush(self._priorities, priority)
        return bucket

    def peek(self) -> T | None:
        """The best live item, left in place; ``None`` if there is none."""
        priorities = self._priorities
        buckets = self._buckets
        while priorities:
            bucket = buckets[priorities[0]]
            while bucket:
                item = bucket[0]
                if self._alive(item):
                    return item
                bucket.popleft()
                self.size -= 1
                if self._dead:  # items may also die unannounced (an abandoned submission)
                    self._dead -= 1
            if len(priorities) == 1:
                return None  # the last bucket stays, empty, for the next push (see pop)
            del buckets[heapq.heappop(priorities)]
        return None

    def pop(self) -> T | None:
        """Remove and return the best live item; ``None`` if there is none."""
        priorities = self._priorities
        buckets = self._buckets
        while priorities:
            bucket = buckets[priorities[0]]
            while bucket:
                item = bucket.popleft()
                self.size -= 1
                if self._alive(item):
                    if not bucket and len(priorities) > 1:
                        del buckets[heapq.heappop(priorities)]
                    return item
                if self._dead:
                    self._dead -= 1
            if len(priorities) == 1:
                return None
            del buckets[heapq.heappop(priorities)]
        return None

    def discard(self, item: T | None = None) -> None:
        """Note that one held item (``item``, unused here) has just died in place; compact if
        the dead dominate."""
        self._dead += 1
        if self._dead >= _COMPACT_MIN_DEAD and self._dead * 2 > self.size:
            self._compact()

    def drain(self) -> Iterator[T]:
        """Yield every live item in order and empty the buckets (items may die meanwhile)."""
        buckets, self._buckets, self._priorities = self._buckets, {}, []
        self.size = self._dead = 0
        for priority in sorted(buckets):
            for item in buckets[priority]:
                if self._alive(item):
                    yield item

    def _compact(self) -> None:
        alive = self._alive
        for priority, bucket in list(self._buckets.items()):
            kept = deque(item for item in bucket if alive(item))
            if kept:
                self._buckets[priority] = kept
            else:
                del self._buckets[priority]
        self._priorities = sorted(self._buckets)
        self.size = sum(len(bucket) for bucket in self._buckets.values())
        self._dead = 0


_QUEUED: Final = JobStatus.QUEUED


class WaitingJobs(PriorityBuckets[JobHandle[Any]]):
    """The jobs waiting for a worker; a job is alive here while it is ``QUEUED``."""

    def _alive(self, item: JobHandle[Any]) -> bool:
        return item._status is _QUEUED


class Offer:
    """A submission waiting for room; not yet accepted. Its submitter is parked on ``slot``."""

    __slots__ = ("_priority", "job", "slot")

    def __init__(self, job: JobHandle[Any]) -> None:
        self.job = job
        self._priority = job._priority
        self.slot = Slot()


class Offers(PriorityBuckets[Offer]):
    """Blocked submissions, best first; an offer is alive until its submitter gives up."""

    def _alive(self, item: Offer) -> bool:
        return not item.slot.abandoned
