"""The journal of a pool with a :class:`~trio_jobpool.stores._base.Store`: what the pool writes
of each job, and when.

The pool keeps its waiting room, workers and timers in memory as always; the journal turns each
step of a job into a write to the store, so that the next pool on the same store can resume what
a crash left (see docs/durability.md):

* accepted: the job's insert; ``submit`` returns once it is durable, ``submit_nowait`` writes it
  before returning;
* started: a write that must be durable before the job's code runs, so that a crash during the
  run is counted against the job (and the end of the worker's previous job is durable with it:
  at a crash, at most one job per worker can have run without its end on record);
* retrying, requeued (a start that could not be written), ended: queued writes, committed with
  the next group commit;
* a shutdown's cancellation is not the job's end: the record goes back to ``queued`` (the
  attempt counted as interrupted, not failed), and an abandoned job's record stays ``running``
  (the next pool counts a crash and runs it again).

It also keeps the backoff of the pool's pause of starts while the store fails to commit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

from ._errors import StoreError
from ._job import CancelKind, JobStatus, RecordedJob
from ._records import error_fields
from ._runtime import Runtime
from .stores._base import JobRecord, Store

__all__ = ["Journal"]

# While the store fails to commit, the pool starts no job for this long, doubling after each
# failed try up to the maximum.
_BACKOFF_MIN: Final = 0.05
_BACKOFF_MAX: Final = 5.0


def _unattached(monotonic: float) -> float:
    raise RuntimeError("the journal is not attached to a pool")


class Journal:
    """The writes a pool with a store makes of its jobs (see the module docstring).

    Every method but the ``async`` ones returns at once. Records keep wall-clock times; the
    pool's clock is converted by the function its pool gives :meth:`attach`.
    """

    __slots__ = ("_backoff", "_wall", "store")

    def __init__(self, store: Store) -> None:
        self.store = store
        self._wall: Callable[[float], float] = _unattached
        self._backoff = _BACKOFF_MIN

    async def open(self, runtime: Runtime) -> list[JobRecord]:
        """Open the store; return the live jobs to resume, in (priority, submission) order.

        Raises:
            StoreError: the store cannot be opened.
        """
        return await self.store.open(runtime)

    def attach(
        self,
        wall: Callable[[float], float],
        on_commit_result: Callable[[StoreError | None], None],
    ) -> None:
        """Bind the journal to its pool: ``wall`` converts the pool's clock to wall-clock
        seconds; ``on_commit_result`` hears of failed commits (``Store.on_commit_result``)."""
        self._wall = wall
        self.store.on_commit_result = on_commit_result

    async def aclose(self) -> None:
        """Write what is queued and release the store (shielded, as ``Store.aclose``).

        Raises:
            StoreError: the last writes failed.
        """
        await self.store.aclose()

    # -- a job's life ----------------------------------------------------------------------

    def accepted(self, job: RecordedJob[Any], now: float) -> None:
        """``job`` was accepted at ``now`` (pool clock): its record says so. Nothing is written
        yet (see :meth:`write_accepted`)."""
        job._record.submitted_at = self._wall(now)

    def scheduled(self, job: RecordedJob[Any], due: float) -> None:
        """The accepted ``job`` is scheduled, due at wall-clock ``due``: its record says so
        (written with it, see :meth:`write_accepted`)."""
        record = job._record
        record.status = "scheduled"
        record.scheduled_for = due

    def deferred(self, job: RecordedJob[Any], due: float) -> None:
        """Queue the write of an attempt that ended with ``Defer``: the job is scheduled again,
        due at wall-clock ``due``."""
        record = job._record
        record.status = "scheduled"
        record.scheduled_for = due
        record.attempts = job._attempts
        record.exec_time = job._exec_time
        self.store.changed(record)

    async def write_accepted(self, job: RecordedJob[Any]) -> None:
        """Insert the accepted ``job`` and wait until that is durable; a cancellation is
        delivered at the caller's next checkpoint, after the write (``Store.wait``).

        Raises:
            StoreError: the write failed: the job is not on record.
        """
        store = self.store
        await store.wait(store.add(job._record))

    def write_accepted_now(self, job: RecordedJob[Any]) -> None:
        """Insert the accepted ``job``, durable before this returns (blocks for one commit).

        Raises:
            StoreError: the write failed: the job is not on record.
        """
        self.store.add_now(job._record)

    def started(self, job: RecordedJob[Any], now: float) -> None:
        """Queue the write of ``job``'s start (its ticket is kept on the job)."""
        record = job._record
        record.status = "running"
        record.attempts = job._attempts
        record.started_at = self._wall(now)
        record.retry_at = None
        job._ticket = self.store.started(record)

    async def start_written(self, job: RecordedJob[Any]) -> None:
        """Wait until ``job``'s start is durable (uninterrupted, as ``Store.wait``).

        Raises:
            StoreError: the write failed: the job must not run.
        """
        await self.store.wait(job._ticket)

    def requeued(self, job: RecordedJob[Any]) -> None:
        """``job``, whose start could not be written, waits again as if never taken. Nothing
        is written: on disk it never left the state its record now has again."""
        record = job._record
        record.status = "queued"
        record.attempts = job._attempts
        if not job._attempts:
            record.started_at = None

    def progressed(self, job: RecordedJob[Any]) -> None:
        """Queue the write of ``job``'s progress."""
        self.store.progressed(job._record)

    def retrying(self, job: RecordedJob[Any], exc: Exception, delay: float) -> None:
        """Queue the write of a failed attempt whose retry comes due in ``delay`` seconds."""
        record = job._record
        record.status = "retrying"
        record.exec_time = job._exec_time
        record.retry_at = time.time() + delay
        record.error_type, record.error_message, record.error_traceback = error_fields(exc)
        self.store.changed(record)

    def ended(self, job: RecordedJob[Any], status: JobStatus, result: Any, now: float) -> None:
        """Queue the write of ``job``'s end in this pool with ``status`` and ``result`` (as
        the handle keeps them). A cancellation whose kind does not end the job writes no end:
        a shutdown's requeues the job for the next pool, an abandoned job's writes nothing."""
        record = job._record
        reason = job._cancel_reason
        if status is JobStatus.CANCELLED and reason is not None and not reason.kind.ends_job:
            if reason.kind is CancelKind.SHUTDOWN and record.status == "running":
                record.status = "queued"
                record.interrupted += 1
                self.store.changed(record)
            return
        record.status = status.value
        record.finished_at = self._wall(now)
        record.exec_time = job._exec_time
        if status is JobStatus.COMPLETED:
            record.result = result
        elif status is JobStatus.FAILED:
            record.error_type, record.error_message, record.error_traceback = error_fields(
                result[0]
            )
        else:  # cancelled or timed out: the reason is enough to build the error again
            timed_out = status is JobStatus.TIMED_OUT
            record.error_type = f"trio_jobpool.{'JobTimeout' if timed_out else 'JobCancelled'}"
            record.error_message = "cancelled" if reason is None else reason.message
            record.error_traceback = ""
        self.store.changed(record)

    async def flush(self) -> None:
        """Wait until every write queued so far is durable.

        Raises:
            StoreError: a commit failed.
        """
        await self.store.flush()

    def load_ended(self, job_id: str) -> JobRecord | None:
        """The record of the latest job stored as ``job_id`` if it has ended, else ``None``.

        A record still live on disk may be of a job that ended a moment ago whose end is
        queued: the queued writes are committed first, then it is read again.

        Raises:
            StoreError: the store cannot be read.
        """
        store = self.store
        record = store.load(job_id)
        if record is not None and not JobStatus(record.status).ended:
            store.flush_now()
            record = store.load(job_id)
        if record is None or not JobStatus(record.status).ended:
            return None
        return record

    # -- commit failures -------------------------------------------------------------------

    def pause_for(self) -> float:
        """A commit failed: how long the pool pauses its starts now (0.05 s, doubling with
        each further failure up to 5 s)."""
        pause = self._backoff
        self._backoff = min(2 * pause, _BACKOFF_MAX)
        return pause

    def recovered(self) -> None:
        """A commit succeeded after failures: the next failure pauses for the minimum."""
        self._backoff = _BACKOFF_MIN

    def retry_failed(self) -> None:
        """The pool tries the store again: queue the updates of failed commits again."""
        self.store.rewrite_failed()
