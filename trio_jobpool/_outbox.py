"""What a distributed pool has to tell Redis, waiting for the link's next trip.

Each kind of message waits in a :class:`Batch`: items in the order they came, all taken by one
trip and sent as one script call. A trip that fails puts its batch back in front of what came
meanwhile, so that nothing is lost or reordered and the next trip sends it again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from ._job import RecordedJob
from ._runtime import Slot
from .stores._redis_queue import Fields

__all__ = ["Batch", "Outbox", "Submission"]

T = TypeVar("T")


class Batch(Generic[T]):
    """Items waiting to be sent, oldest first."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[T] = []

    def __bool__(self) -> bool:
        return bool(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def add(self, item: T) -> None:
        self.items.append(item)

    def take(self) -> list[T]:
        """Every waiting item, removed."""
        items, self.items = self.items, []
        return items

    def put_back(self, items: list[T]) -> None:
        """Return ``items`` (taken earlier, not sent) ahead of those that came since."""
        self.items[:0] = items

    @contextmanager
    def sending(self) -> Iterator[list[T]]:
        """Take every item for the body to send. If the body raises (a cancellation too),
        what is left in the list it was given goes back (:meth:`put_back`): the body removes
        from that list what it has sent, if it sends item by item."""
        items = self.take()
        try:
            yield items
        except BaseException:
            self.put_back(items)
            raise


class Submission:
    """A submit waiting for the link to send it (a job to schedule is ``SCHEDULED``, its due
    time in ``_due_m``)."""

    __slots__ = ("job", "slot")

    def __init__(self, job: RecordedJob[Any], slot: Slot | None, now: float) -> None:
        self.job = job
        self.slot = slot  # None: submit_nowait (the answer goes to the handle)
        job._submitted_m = job._ready_m = now


class Outbox:
    """Everything a distributed pool has yet to send; each batch goes with the next trip.

    ``submits``: submissions (their submitters get an answer each); ``ends``:
    ``(job_id, status, fields)``; ``retries``: ``(job_id, delay_ms, fields, deferred)`` (a
    retry's backoff, or a ``Defer``);
    ``give_backs``: ``(job_id, started, fields, stalled)``; ``cancels``: job ids; ``progress``:
    the latest progress of each running job, by id (newer replaces older); ``fetches``: ids of
    jobs submitted here whose end happened elsewhere and must be read.
    """

    __slots__ = ("cancels", "ends", "fetches", "give_backs", "progress", "retries", "submits")

    def __init__(self) -> None:
        self.submits: Batch[Submission] = Batch()
        self.ends: Batch[tuple[str, str, Fields]] = Batch()
        self.retries: Batch[tuple[str, int, Fields, bool]] = Batch()
        self.give_backs: Batch[tuple[str, bool, Fields, bool]] = Batch()
        self.cancels: Batch[str] = Batch()
        self.progress: dict[str, Fields] = {}
        self.fetches: set[str] = set()

    def has_writes(self) -> bool:
        """Whether anything waits that changes Redis (everything but the fetches)."""
        return bool(
            self.submits
            or self.ends
            or self.retries
            or self.give_backs
            or self.cancels
            or self.progress
        )

    def drop(self) -> None:
        """Forget everything but the submits (Redis lost the queue the rest was about; the
        submits go to its new epoch)."""
        for batch in (self.ends, self.retries, self.give_backs, self.cancels):
            batch.take()
        self.progress.clear()
        self.fetches.clear()

    def forget_progress(self, job_id: str) -> None:
        """Drop the queued progress of ``job_id`` (its end or hand-back carries the last)."""
        self.progress.pop(job_id, None)
