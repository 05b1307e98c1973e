"""Later jobs: the scheduled state (``delay=``, ``at=``, ``Defer``), its timer, and the
cancel, deferral, shutdown and recovery (from a store) of scheduled jobs.

A scheduled job is live (its id is taken, ``get`` finds it, ``cancel`` ends it) but holds no
worker and does not count against the queue bound. It waits in :class:`~._due_jobs.DueJobs`;
one timer task per pool sleeps in a cancel scope whose deadline is the earliest due time, and a
job scheduled earlier than that moves the deadline. When it wakes, every job that is due
enters the waiting room as a retry does (beyond the bound, behind the jobs of its priority
already waiting), in due order. Nothing polls.
"""

from __future__ import annotations

import datetime
import math
from typing import Any, Final

from ._config import PoolConfig
from ._due_jobs import DueJobs
from ._errors import Defer
from ._job import NO_CAUSE, CancelReason, JobHandle, JobStatus, RecordedJob
from ._journal import Journal
from ._runtime import Runtime, TaskGroupLike
from ._workers import Workers
from .stores._base import JobRecord

__all__ = ["Later", "due_time"]

_SCHEDULED: Final = JobStatus.SCHEDULED
_CANCELLED: Final = JobStatus.CANCELLED
_INF: Final = math.inf


def due_time(
    delay: float | None, at: datetime.datetime | None, now: float, wall_now: float
) -> float | None:
    """The due time on the pool's clock (``now`` there is ``wall_now`` on the pool's wall
    clock, whose mapping from the pool's clock is fixed when the pool opens) of a submission
    with ``delay`` or ``at``; ``None`` when neither is given or the time is not in
    the future (an ordinary submission).

    Raises:
        ValueError: both given; ``delay`` negative, NaN or infinite; ``at`` naive.
        TypeError: ``delay`` not a number (a ``bool`` is refused); ``at`` not a ``datetime``.
    """
    if delay is None:
        if at is None:
            return None
        if not isinstance(at, datetime.datetime):
            raise TypeError(f"at must be an aware datetime.datetime or None, got {at!r}")
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError(
                f"at must be an aware datetime (with a time zone), got the naive {at!r}"
            )
        due = now + (at.timestamp() - wall_now)
    else:
        if at is not None:
            raise ValueError(f"give delay or at, not both (delay={delay!r}, at={at!r})")
        if isinstance(delay, bool) or not isinstance(delay, int | float):
            raise TypeError(f"delay must be a number of seconds or None, got {delay!r}")
        if not math.isfinite(delay) or delay < 0:
            raise ValueError(f"delay must be a finite number of seconds >= 0, got {delay!r}")
        due = now + delay
    return due if due > now else None


class Later(Workers):
    """Scheduled jobs (see the module docstring). Invariant: ``_counters.scheduled`` counts the
    live ``SCHEDULED`` jobs: the live entries of ``_due``, and the jobs reserved while their
    record is written (``_seq == -1``); ``_due_target`` is the deadline of ``_due_scope``, never
    later than the earliest due time in ``_due``."""

    def __init__(
        self,
        config: PoolConfig,
        runtime: Runtime,
        nursery: TaskGroupLike,
        journal: Journal | None = None,
    ) -> None:
        super().__init__(config, runtime, nursery, journal)
        self._due = DueJobs()
        self._due_scope = runtime.CancelScope()
        self._due_target = _INF

    def _schedule(self, job: JobHandle[Any], due: float) -> None:
        """Make the live ``job`` (counted in no other state) scheduled, due at ``due`` (pool
        clock), and move the timer's wake-up if it is the earliest."""
        job._status = _SCHEDULED
        job._ready_m = due  # its wait, once due, counts from its due time
        self._counters.scheduled += 1
        self._due.push(job, due)
        if due < self._due_target:
            self._due_target = self._due_scope.deadline = due

    def _reserve_later(self, job: JobHandle[Any], due: float) -> None:
        """Count the live ``job`` as scheduled, due at ``due``, but keep it out of the heap
        (``_seq`` is ``-1``) until :meth:`_schedule_reserved`: its record is being written."""
        job._status = _SCHEDULED
        job._due_m = job._ready_m = due
        job._seq = -1
        self._counters.scheduled += 1

    def _schedule_reserved(self, job: JobHandle[Any]) -> None:
        """Put a reserved job, now on record, in the heap (unless it was cancelled meanwhile)."""
        if job._status is _SCHEDULED:
            self._counters.scheduled -= 1
            self._schedule(job, job._due_m)  # type: ignore[arg-type]

    async def _watch_due(self) -> None:
        """The timer of scheduled jobs: sleep until the earliest due time, then let every due
        job into the waiting room; ends when the pool stops (``_shut_down`` cancels it)."""
        runtime = self._runtime
        while True:
            with self._due_scope:
                await runtime.sleep(_INF)
            if self._stopping:
                return
            # Everything due by the deadline that woke the timer is due: an asyncio timer may
            # fire a little before its time.
            self._fire_due(self._due_target)
            self._due_scope = runtime.CancelScope()
            self._due_scope.deadline = self._due_target = self._due.earliest()

    def _fire_due(self, until: float) -> None:
        """Every scheduled job due by now or by ``until`` (pool clock) enters the waiting room
        (or an idle worker takes it), earliest due first, beyond the queue bound."""
        counters = self._counters
        now = self._now()
        for job in self._due.pop_due(max(now, until)):
            counters.scheduled -= 1
            counters.queued += 1
            if job._ready_m > now:  # the timer fired a moment early: never a negative wait
                job._due_m = job._ready_m = now
            self._place(job, bounded=False)

    def _cancel_job(self, job: JobHandle[Any], reason: CancelReason) -> None:
        if job._status is not _SCHEDULED:
            super()._cancel_job(job, reason)
            return
        job._cancel_reason = reason
        counters = self._counters
        counters.scheduled -= 1
        counters.cancelled += 1
        self._end(job, _CANCELLED, NO_CAUSE, self._now())
        if job._seq >= 0:  # in the heap (not reserved): a dead entry now
            self._due.discard()

    def _attempt_raised(self, job: JobHandle[Any], exc: Exception) -> None:
        if isinstance(exc, Defer) and job._cancel_reason is None:
            self._defer(job, exc.delay)
            return
        super()._attempt_raised(job, exc)

    def _defer(self, job: JobHandle[Any], delay: float) -> None:
        """The running attempt of ``job`` raised ``Defer(delay)``: it is over, not failed, and
        the job is due again in ``delay`` seconds (at once, as a retry re-enters, for ``0``)."""
        now = self._attempt_over(job)
        job._count_deferral()
        due = now + delay
        if self._journal is not None:
            assert isinstance(job, RecordedJob)
            self._journal.deferred(job, self._wall(due))
        if delay > 0:
            self._schedule(job, due)
            self._wake_join()
            return
        job._due_m = job._ready_m = due
        self._counters.queued += 1
        self._place(job, bounded=False)

    def _recover(self, records: list[JobRecord]) -> None:
        """As ``Attempts._recover``, stored scheduled jobs included (see :meth:`_resume`)."""
        super()._recover(records)
        # Stored scheduled jobs whose time passed while no pool ran are due at once: they
        # enter the waiting room now, earliest due first, behind the recovered queue (as a
        # job falling due enters behind the jobs of its priority already waiting).
        self._fire_due(self._now())
        self._due_target = self._due_scope.deadline = self._due.earliest()

    def _resume(self, job: RecordedJob[Any], record: JobRecord, wall_now: float) -> None:
        """A stored scheduled job is scheduled again, due at its stored wall-clock time on
        this pool's clock (in the past if that time passed: :meth:`_recover` lets it in)."""
        if record.status != "scheduled":
            super()._resume(job, record, wall_now)
            return
        now = self._now()
        wall_due = record.scheduled_for
        self._schedule(job, now if wall_due is None else now + (wall_due - self._wall(now)))

    def _shut_down(self) -> None:
        super()._shut_down()  # cancels the scheduled jobs with the rest
        self._due_scope.cancel()

    def scheduled_jobs(self, limit: int | None = None) -> list[JobHandle[Any]]:
        """The handles of the scheduled jobs held here, earliest due first (at most ``limit``).

        O(n log n) in the scheduled jobs: for views such as a dashboard, not for a hot path.
        """
        return self._due.live(limit)
