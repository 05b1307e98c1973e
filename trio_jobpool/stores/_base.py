"""The narrow protocol between a pool and the store that keeps its jobs durable.

The pool keeps its waiting room, workers and timers in memory as always; a store is the
write-ahead record of every job, so that the next pool on the same store can pick up what a
crashed one left. The pool talks to a store through these calls only:

* ``open()`` once, before any job runs: recover from a crash and return the jobs to resume;
* ``add(record)`` for each accepted job, and for every later change ``started(record)``,
  ``progressed(record)`` or ``changed(record)`` (its end, a retry, a requeue): each queues a
  write and returns its *ticket* at once;
* ``wait(ticket)`` where a write must be durable before the pool goes on (a submit returns, a
  job starts); ``flush()`` to wait for every write queued so far;
* ``load(job_id)`` to read an ended job back (``JobPool.get`` beyond its memory);
* ``aclose()`` when the pool is done.

Writes are applied in the order they were queued.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["LIVE_STATUSES", "JobRecord", "Store"]

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
    seq: int = 0  # the store's number for this job (submission order); 0: not stored yet


class Store(Protocol):
    """What a pool needs of a durable store (see the module docstring)."""

    @property
    def url(self) -> str:
        """Where the store keeps its jobs, for messages."""
        ...

    async def open(self) -> list[JobRecord]:
        """Recover and return the live jobs to resume, in (priority, submission) order.

        Jobs a crash interrupted while running go back to the queue with the interrupted
        attempt counted (``attempts``) and recorded as a crash (``crashes``); those
        interrupted by more crashes than the store allows end ``failed`` instead.
        """
        ...

    def add(self, record: JobRecord) -> int:
        """Queue the insert of a new live job (numbering it: ``record.seq``); its ticket."""
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

    def load(self, job_id: str) -> JobRecord | None:
        """The most recent job stored under ``job_id``, if any."""
        ...

    async def aclose(self) -> None:
        """Write what is queued and release the store."""
        ...
