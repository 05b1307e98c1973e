"""The narrow protocol between a pool and the store that keeps its jobs durable.

The pool keeps its waiting room, workers and timers in memory; a store is the
write-ahead record of every job, so that the next pool on the same store can pick up what a
crashed one left. The pool (through its journal, ``_journal.py``) talks to a store through
these calls only, and accepts any object that has them (``open_job_pool(store=...)``):

* ``open(runtime)`` once, before any job runs: recover from a crash and return the jobs to
  resume;
* ``add(record)`` for each accepted job (``add_now(record)``: written before it returns, for
  ``submit_nowait``), ``queued``, or ``scheduled`` with its due time ``scheduled_for``; and for
  every later change ``started(record)``, ``progressed(record)`` or ``changed(record)`` (its
  end, a retry, a deferral, a requeue): each queues a write and returns its *ticket* at once.
  A scheduled job that falls due is not written: its record stays ``scheduled`` until its
  start writes ``running``;
* ``wait(ticket)`` where a write must be durable before the pool goes on (a submit returns, a
  job starts); ``flush()`` to wait for every write queued so far, ``flush_now()`` to commit them
  before returning;
* ``on_commit_result``, set by the pool: called on the event loop with the error of a failed
  commit, or ``None`` for the first commit that succeeds after failures; ``rewrite_failed()``
  when the pool tries again (the updates of failed commits are queued again);
* ``load(job_id)`` to read a job back (``JobPool.get`` beyond its memory);
* ``aclose()`` when the pool is done.

Writes are applied in the order they were queued. ``failing`` and ``failed_commits`` say how
the writes fare (the HTTP service's metrics show them).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .._errors import StoreError
from .._runtime import Runtime

__all__ = [
    "LIVE_STATUSES",
    "JobRecord",
    "NamedStore",
    "ScheduleBook",
    "ScheduleRecord",
    "Store",
]

LIVE_STATUSES = ("queued", "retrying", "running", "scheduled")


@dataclass(slots=True)
class JobRecord:
    """One job as a store keeps it: JSON-ready values only.

    Times are wall-clock seconds (``time.time()``). ``timeout`` and ``retry`` are ``None`` for
    "the pool's default"; ``retry`` is a :class:`RetryPolicy` as a JSON object.
    """

    job_id: str
    name: str
    args: list[Any]
    priority: int
    status: str = "queued"
    timeout: float | None = None
    retry: dict[str, Any] | None = None
    attempts: int = 0
    crashes: int = 0  # attempts cut short by a crash of the process running them
    interrupted: int = 0  # attempts cut short by a pool's shutdown (not failures either)
    deferrals: int = 0  # attempts that ended with Defer (not failures either)
    progress: float = 0.0
    progress_message: str | None = None
    result: Any = None
    error_type: str | None = None
    error_message: str | None = None
    error_traceback: str | None = None
    submitted_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    exec_time: float | None = None
    retry_at: float | None = None  # when a retrying job goes back to the queue
    scheduled_for: float | None = None  # when a job given delay/at or deferred is (was) due
    key: str | None = None  # its flow-control key
    seq: int = 0  # the store's number for this job (submission order); 0: not stored yet


@dataclass(slots=True)
class ScheduleRecord:
    """One periodic schedule as a store keeps it: its definition and its state, JSON-ready.

    Times are wall-clock seconds. ``handled_until``: every tick at or before it was handled
    (fired or skipped) and no later one was; ``next_run`` is the first tick after it (cached,
    so that a view need not evaluate the rule). ``anchor`` is the time of the declaration that
    made the current definition (``every`` ticks count from it).
    """

    name: str
    job_name: str
    args: list[Any]
    cron: str | None
    every: float | None
    tz: str
    anchor: float
    priority: int = 5
    timeout: float | None = None
    retry: dict[str, Any] | None = None
    overlap: str = "skip"
    misfire: str = "skip"
    paused: bool = False
    handled_until: float = 0.0
    next_run: float = 0.0
    last_run: float | None = None
    last_job_id: str | None = None
    runs: int = 0
    skipped: int = 0

    def definition(self) -> tuple[Any, ...]:
        """What a declaration says: two declarations with equal definitions are identical (the
        anchor and the state are not part of it)."""
        return (
            self.job_name,
            self.args,
            self.cron,
            self.every,
            self.tz,
            self.priority,
            self.timeout,
            self.retry,
            self.overlap,
            self.misfire,
            self.paused,
        )

    def position(self) -> tuple[Any, ...]:
        """What a tick's step is conditional on (``ScheduleBook.fire``): the definition, the
        anchor and ``handled_until``. Every other change of a kept schedule changes one of
        them."""
        return (self.definition(), self.anchor, self.handled_until)

    def declared_over(self, current: ScheduleRecord | None) -> ScheduleRecord | None:
        """What a book keeps when this record is declared while ``current`` is kept: ``None``
        when ``current`` has the same definition (it stays as it is), else this record with
        ``current``'s counters and last run (``runs``, ``skipped``, ``last_run``,
        ``last_job_id``)."""
        if current is None:
            return self
        if current.definition() == self.definition():
            return None
        return dataclasses.replace(
            self,
            runs=current.runs,
            skipped=current.skipped,
            last_run=current.last_run,
            last_job_id=current.last_job_id,
        )


class ScheduleBook(Protocol):
    """Where a pool keeps its periodic schedules, and the one step that fires a tick.

    A pool in memory keeps them in a dict; a durable store in its file, a distributed pool in
    Redis. Every method is atomic on its own, which is what makes a tick fire once across
    processes and restarts (see :meth:`fire`). A :class:`Store` that has these methods too
    (``SqliteStore``) is its pool's book: the pool takes its store for that when the store has
    a callable ``fire``. Such a store makes each step durable before returning, after the
    writes queued before it.
    """

    async def load_schedules(self) -> list[ScheduleRecord]:
        """Every schedule, sorted by name."""
        ...

    async def declare_schedule(self, record: ScheduleRecord) -> ScheduleRecord:
        """Keep ``record`` unless a schedule of that name with an equal definition exists;
        return the schedule now kept (the existing one, unchanged, or ``record``). A replaced
        schedule keeps its counters and last run (``runs``, ``skipped``, ``last_run``,
        ``last_job_id``); the returned record carries them."""
        ...

    async def remove_schedule(self, name: str) -> bool:
        """Remove the schedule; ``False`` if there was none."""
        ...

    async def fire(
        self, before: ScheduleRecord, after: ScheduleRecord, job: JobRecord | None
    ) -> ScheduleRecord | None:
        """Move the schedule from state ``before`` to ``after`` and, with ``job``, submit that
        job (a tick's), all at once, only if the schedule kept is still ``before`` (the same
        definition, anchor and ``handled_until``); return the schedule now kept (``None``: it
        was removed).

        The result equals ``after`` when it did so. Otherwise nothing was written (another
        process or an earlier pool handled those ticks, or the schedule was declared anew),
        except in one case: a book shared by several processes (Redis) also checks the overlap
        rule itself, since the firing process may not know every process's jobs. With
        ``after.overlap == "skip"`` and ``before.last_job_id`` still live there, it skips the
        tick instead: ``job`` is not submitted, and the state kept is ``after`` with the run
        counted as skipped (``runs``, ``last_run`` and ``last_job_id`` as in ``before``,
        ``skipped`` one more).
        """
        ...


class NamedStore(Protocol):
    """What every store has, a local one (:class:`Store`) and Redis alike."""

    @property
    def url(self) -> str:
        """Where the store keeps its jobs, for messages."""
        ...


@runtime_checkable
class Store(Protocol):
    """What a pool needs of a durable store (see the module docstring)."""

    on_commit_result: Callable[[StoreError | None], None] | None
    """Set by the pool; the store calls it on the event loop (see the module docstring)."""

    @property
    def url(self) -> str:
        """Where the store keeps its jobs, for messages."""
        ...

    @property
    def failing(self) -> bool:
        """Whether the latest commit failed."""
        ...

    @property
    def failed_commits(self) -> int:
        """How many commits failed since the store was opened."""
        ...

    async def open(self, runtime: Runtime | None = None) -> list[JobRecord]:
        """Recover and return the live jobs to resume, in (priority, submission) order: those
        ``queued``, ``retrying`` (with ``retry_at``) and ``scheduled`` (with ``scheduled_for``,
        returned as stored: the pool decides when each is due).

        Jobs a crash interrupted while running go back to the queue with the interrupted
        attempt counted (``attempts``) and recorded as a crash (``crashes``); those
        interrupted by more crashes than the store allows end ``failed`` instead.
        ``runtime`` is the opening pool's backend, for the store's own waits and callbacks.

        Raises:
            StoreError: the store cannot be opened (or is in use by another pool).
        """
        ...

    def add(self, record: JobRecord) -> int:
        """Queue the insert of a new live job (numbering it: ``record.seq``): ``queued``, or
        ``scheduled`` with ``scheduled_for``; its ticket."""
        ...

    def add_now(self, record: JobRecord) -> None:
        """Insert a new live job (as :meth:`add`) and make it durable before returning.

        Raises:
            StoreError: the write failed; nothing was added.
        """
        ...

    def started(self, record: JobRecord) -> int:
        """Queue a write of a job's start (``status``, ``attempts``, ``started_at``)."""
        ...

    def progressed(self, record: JobRecord) -> int:
        """Queue a write of a job's progress; a store may fold it into a queued one."""
        ...

    def changed(self, record: JobRecord) -> int:
        """Queue a write of every changing field of ``record`` (an end, a retry, a requeue, a
        deferral: ``scheduled`` again with a new ``scheduled_for``)."""
        ...

    async def wait(self, ticket: int) -> None:
        """Wait until write ``ticket`` is durable. A cancellation does not end the wait (it is
        delivered at the caller's next checkpoint), so a caller knows whether the write made
        it.

        Raises:
            StoreError: the write failed.
        """
        ...

    async def flush(self) -> None:
        """Wait until every write queued so far is durable (as :meth:`wait`)."""
        ...

    def flush_now(self) -> None:
        """Make every write queued so far durable before returning (blocking, rarely used)."""
        ...

    def rewrite_failed(self) -> None:
        """Queue again the updates of failed commits (the pool tries the store again)."""
        ...

    def load(self, job_id: str) -> JobRecord | None:
        """The most recent job stored under ``job_id``, if any."""
        ...

    async def aclose(self) -> None:
        """Write what is queued and release the store."""
        ...
