"""The narrow protocol between a pool and the store that keeps its jobs durable.

The pool keeps its waiting room, workers and timers in memory; a store is the
write-ahead record of every job, so that the next pool on the same store can pick up what a
crashed one left. The pool (through its journal, ``_journal.py``) talks to a store through
these calls only, and accepts any object that has them (``open_job_pool(store=...)``):

* ``open(runtime)`` once, before any job runs: recover from a crash and return the jobs to
  resume;
* ``add(record)`` for each accepted job (``add_now(record)``: written before it returns, for
  ``submit_nowait``), and for every later change ``started(record)``, ``progressed(record)`` or
  ``changed(record)`` (its end, a retry, a requeue): each queues a write and returns its
  *ticket* at once;
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

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .._errors import StoreError
from .._runtime import Runtime

__all__ = ["LIVE_STATUSES", "JobRecord", "NamedStore", "Store"]

LIVE_STATUSES = ("queued", "retrying", "running")


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
    seq: int = 0  # the store's number for this job (submission order); 0: not stored yet


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
        """Recover and return the live jobs to resume, in (priority, submission) order.

        Jobs a crash interrupted while running go back to the queue with the interrupted
        attempt counted (``attempts``) and recorded as a crash (``crashes``); those
        interrupted by more crashes than the store allows end ``failed`` instead.
        ``runtime`` is the opening pool's backend, for the store's own waits and callbacks.

        Raises:
            StoreError: the store cannot be opened (or is in use by another pool).
        """
        ...

    def add(self, record: JobRecord) -> int:
        """Queue the insert of a new live job (numbering it: ``record.seq``); its ticket."""
        ...

    def add_now(self, record: JobRecord) -> None:
        """Insert a new live job and make it durable before returning (numbering it).

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
        """Queue a write of every changing field of ``record`` (an end, a retry, a requeue)."""
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
