"""How jobs end in a distributed pool: a job that ran here (its end goes to Redis with the
link's next trip), one whose run here is not its end (fenced, handed back at shutdown, lost
with the queue, deferred, retried), and the handle of a job submitted here that ran elsewhere
(or is scheduled in Redis)."""

from __future__ import annotations

import json
import math
from typing import Any, Final

from ._errors import (
    StoreError,
)
from ._job import (
    NO_CAUSE,
    CancelKind,
    CancelReason,
    JobHandle,
    JobStatus,
    RecordedJob,
    Unbuilt,
)
from ._leases import Leases
from ._records import apply_run, ended_outcome, error_fields, record_from_fields
from .stores._base import JobRecord
from .stores._redis_queue import (
    Fields,
)

__all__ = ["SharedEnds"]


_QUEUED: Final = JobStatus.QUEUED
_RUNNING: Final = JobStatus.RUNNING
_RETRYING: Final = JobStatus.RETRYING
_SCHEDULED: Final = JobStatus.SCHEDULED
_FENCES: Final = (CancelKind.FENCED, CancelKind.STALLED)  # kinds that hand the job back, fenced


class SharedEnds(Leases):
    """How jobs end in a distributed pool (see the module docstring)."""

    def _attempt_ended(
        self,
        job: JobHandle[Any],
        status: JobStatus,
        result: Any,
        cause: BaseException | None = None,
    ) -> None:
        """As the base pool's, except for attempts that are not the job's end: Redis lost
        the job (its handle fails, nothing is sent or counted); the attempt was fenced
        (whatever its outcome, the job goes back to the queue, counted in no total, and the
        handle follows it there); or the pool's shutdown cancelled it (the job goes back to
        the queue and the handle ends ``CANCELLED``)."""
        assert isinstance(job, RecordedJob)
        self._check_fence(job)
        reason = job._cancel_reason
        kind = None if reason is None else reason.kind
        if kind is CancelKind.LOST:
            self._attempt_over(job)
            self._release(job)
            job._scope = None
            self._end_gone(job)
        elif kind in _FENCES:
            self._attempt_over(job)
            self._release(job)
            self._hand_back(job, started=True, stalled=kind is CancelKind.STALLED)
            job._status = _QUEUED  # live, in Redis
            job._cancel_reason = None
            job._scope = None
        elif kind is CancelKind.SHUTDOWN and status is JobStatus.CANCELLED:
            self._attempt_over(job)
            self._release(job)
            self._hand_back(job, started=True)
            self._counters.cancelled += 1
            self._end_here(job, status, NO_CAUSE if cause is None else Unbuilt(cause))
        else:
            super()._attempt_ended(job, status, result, cause)

    def _report_end(self, job: JobHandle[Any], status: JobStatus, result: Any, now: float) -> None:
        """Where the end of a job that ran here goes: to Redis, with the link's next trip.
        Its lease is renewed until Redis has the end (see ``_end_and_claim``)."""
        assert isinstance(job, RecordedJob)
        self._out.forget_progress(job.job_id)
        fields: Fields = {}
        if job._exec_time is not None:
            fields["exec_time"] = job._exec_time
        if job._extra is not None:
            fields["progress"] = job.progress
            if job.progress_message is not None:
                fields["progress_message"] = job.progress_message
        if status is JobStatus.COMPLETED:
            fields["result"] = json.dumps(result)
        elif status is JobStatus.FAILED:
            error_type, message, text = error_fields(result[0])
            fields.update(error_type=error_type, error_message=message, error_traceback=text)
        else:
            reason = job._cancel_reason
            fields["error_message"] = "cancelled" if reason is None else reason.message
        self._out.ends.add((job.job_id, status.value, fields))
        self._ending.add(job.job_id)
        self._wake_link()

    def _end(
        self, job: JobHandle[Any], status: JobStatus, result: Any, now: float, held: bool = True
    ) -> None:
        """As the engine's; a handle of a job submitted here also stops being followed, and
        ``join`` and ``cluster_stats`` look again."""
        if self._remote.get(job._key) is job:
            del self._remote[job._key]
            self._unfollow_scheduled(job)
        super()._end(job, status, result, now, held)
        self._notify()

    def _follow_scheduled(self, job: RecordedJob[Any], due: float) -> None:
        """The handle of a job submitted here (in ``_remote``) learns that Redis has it
        scheduled, due at ``due`` (pool clock)."""
        job._status = _SCHEDULED
        job._due_m = due
        self._scheduled[job._key] = job

    def _unfollow_scheduled(self, job: JobHandle[Any]) -> None:
        """The handle of a job submitted here is no longer scheduled (as far as this process
        knows): it ended, was claimed here, or Redis says so."""
        if self._scheduled.get(job._key) is job:
            del self._scheduled[job._key]

    def _end_here(
        self, job: RecordedJob[Any], status: JobStatus, result: Any, now: float | None = None
    ) -> None:
        """End the handle of a job this process does not hold (any more): one submitted here
        that ran elsewhere, or one whose run here ended without an end to send. The handle
        takes its final state; nothing is sent."""
        self._end(job, status, result, self._now() if now is None else now, held=False)

    def _end_abandoned(self, job: JobHandle[Any]) -> None:
        """End the handle of a job the shutdown abandoned (see ``JobPool._abandon``), and
        tell Redis nothing: neither an end nor a hand-back. Its lease, no longer renewed,
        lapses, and a reaper puts it back in the queue (as after a crash of this process).
        Like a fenced attempt, it counts in no total here: the job's next run is the one the
        cluster counts, so the processes' totals still add up to the cluster's."""
        assert isinstance(job, RecordedJob)
        self._release(job)
        self._end_here(job, JobStatus.CANCELLED, NO_CAUSE)

    def _defer(self, job: JobHandle[Any], delay: float) -> None:
        """The running attempt of ``job`` raised ``Defer(delay)``: it is over, not failed, and
        counted in no total; the job is no longer held here, and Redis schedules it (with the
        link's next trip), due ``delay`` seconds after Redis has it (its own clock; ``0``: it
        enters the queue at once, behind its priority), its attempts kept and the attempt
        counted as a deferral, which its retry policy does not count as a failure. The handle
        of a job submitted here follows it (``SCHEDULED``)."""
        assert isinstance(job, RecordedJob)
        now = self._attempt_over(job)
        self._release(job)
        fields: Fields = {}
        if job._exec_time is not None:
            fields["exec_time"] = job._exec_time
        delay_ms = math.ceil(delay * 1000)  # (never due early: see the scripts' due_after)
        self._out.retries.add((job.job_id, delay_ms, fields, True))
        if delay_ms and self._remote.get(job._key) is job:
            self._follow_scheduled(job, now + delay)
        else:  # a handle nobody here follows, or one that is queued again at once
            job._status = _SCHEDULED if delay_ms else _QUEUED
            job._due_m = now + delay
        self._wake_link()

    def _schedule_retry(self, job: JobHandle[Any], exc: Exception, delay: float) -> None:
        """A failed attempt is retried: the job waits out its backoff in Redis."""
        assert isinstance(job, RecordedJob)
        self._attempt_over(job)
        self._counters.retried += 1
        job._status = _RETRYING
        job._result = exc
        self._release(job)
        error_type, message, text = error_fields(exc)
        fields: Fields = {"error_type": error_type, "error_message": message}
        fields["error_traceback"] = text
        if job._exec_time is not None:
            fields["exec_time"] = job._exec_time
        self._out.retries.add((job.job_id, max(0, round(delay * 1000)), fields, False))
        # No other process hears of it: this one's link puts it back in the queue when it is
        # due (and the reaper does, if this process is gone by then).
        self._retry_due = min(self._retry_due, self._now() + delay)
        self._wake_link_at(self._retry_due)
        self._wake_link()

    def _remote_ended(self, job_id: str, fields: dict[str, str]) -> None:
        """A job submitted here ended elsewhere (or was cancelled in Redis): end its handle.
        Or another process deferred it: its handle follows it as scheduled."""
        key = self._key(job_id)
        job = self._remote.get(key)
        if job is None or key in self._live:
            return
        if not fields:  # Redis no longer has this live job (a failover lost it, say)
            if job._record.seq:
                self._end_gone(job)
            return
        record = record_from_fields(job_id, fields)
        if not JobStatus(record.status).ended:
            if record.status == "scheduled" and record.seq == job._record.seq:
                self._apply_live(job, record)
                self._follow_scheduled(job, self._due_of_record(record))
                self._notify()  # join: a job no longer waited for
            return  # else submitted again since (an ended id may be reused)
        job._attempts = record.attempts
        apply_run(job, record, lambda wall: wall - self._wall_offset)
        status, result = ended_outcome(job, record)
        self._end_here(job, status, result, job._finished_m)

    def _hand_back(self, job: RecordedJob[Any], started: bool, stalled: bool = False) -> None:
        """Give an unfinished job back to the queue (shutdown, or fenced), no crash counted
        (``stalled``: fenced after a stall of this process, which Redis counts as such)."""
        record = job._record
        fields: Fields = {}
        if started:
            fields["interrupted"] = record.interrupted + 1
        self._out.give_backs.add((job.job_id, started, fields, stalled))
        self._wake_link()

    def _progressed(self, job: RecordedJob[Any]) -> None:
        """Send a running job's progress with the link's next trip (the latest only)."""
        if job._key in self._live:
            fields: Fields = {"progress": job.progress}
            fields["progress_message"] = job.progress_message or ""
            self._out.progress[job.job_id] = fields
            self._wake_link()

    def _cancel_job(self, job: JobHandle[Any], reason: CancelReason) -> None:
        """Cancel ``job`` (see :meth:`cancel`). The shutdown of this pool cancels what it holds
        (a claimed job goes back to the queue) and leaves the jobs of the shared queue."""
        assert isinstance(job, RecordedJob)
        if job._key in self._live:  # held here
            if job._status is _RUNNING:
                super()._cancel_job(job, reason)
                return
            # claimed, waiting here for a worker
            job._cancel_reason = reason
            self._waiting.discard(job)
            counters = self._counters
            counters.queued -= 1
            counters.cancelled += 1
            if reason.kind is CancelKind.SHUTDOWN:
                self._release(job)
                self._hand_back(job, started=False)
                self._end_here(job, JobStatus.CANCELLED, NO_CAUSE)
            else:
                self._end(job, JobStatus.CANCELLED, NO_CAUSE, self._now())
            return
        if reason.kind is CancelKind.SHUTDOWN or job._cancel_reason is not None:
            return  # a job of the shared queue: the shutdown of this pool leaves it there
        job._cancel_reason = reason
        if job._record.seq:  # else its submit is under way, and the answer sends the cancel
            self._out.cancels.add(job.job_id)
            self._wake_link()

    def _end_gone(self, job: RecordedJob[Any]) -> None:
        """End the handle of a job that Redis no longer has, failed with :class:`StoreError`."""
        error = StoreError(
            f"job {job.job_id!r} is lost: Redis at {self._redis.url} no longer has the queue's "
            "data (restarted without persistence, flushed, or evicted its keys)"
        )
        self._end_here(job, JobStatus.FAILED, (error, None))

    def _uncount_refused(self, ends: list[tuple[str, str, Fields]], recorded: list[str]) -> None:
        """Ends that Redis refused (this process no longer held the job: its lease lapsed
        and was reaped) are not counted here either, as they are not in the cluster's
        counters: the job runs again elsewhere, and that run is the one that counts."""
        if len(recorded) == len(ends):
            return
        done = set(recorded)
        counters = self._counters
        for job_id, status, _ in ends:
            if job_id not in done:  # a status's value names its counter
                setattr(counters, status, getattr(counters, status) - 1)

    def _refresh(self, job: RecordedJob[Any], fields: dict[str, str]) -> None:
        """Bring the handle of a job submitted here, live elsewhere, up to date."""
        record = record_from_fields(job.job_id, fields)
        status = JobStatus(record.status)
        if status.ended:
            self._remote_ended(job.job_id, fields)
            return
        self._apply_live(job, record)
        if status is _SCHEDULED:
            self._follow_scheduled(job, self._due_of_record(record))
        else:
            self._unfollow_scheduled(job)

    def _apply_live(self, job: RecordedJob[Any], record: JobRecord) -> None:
        """Give ``job`` the state of the live job ``record`` (as Redis has it): its status,
        attempts, due time, and the timings and progress of its latest attempt."""
        job._status = JobStatus(record.status)
        job._attempts = record.attempts
        if record.scheduled_for is not None:
            job._due_m = self._due_of_record(record)
        apply_run(job, record, lambda wall: wall - self._wall_offset)

    def _due_of_record(self, record: JobRecord) -> float:
        """The due time (pool clock) of a job that Redis has (had) scheduled: its
        ``scheduled_for`` is on Redis's clock (see docs/distributed.md, "Later jobs")."""
        assert record.scheduled_for is not None
        return record.scheduled_for - self._wall_offset
