"""JobPool: the public API of a pool (cancel, look up, stats, resize, join, stop), on top of
the classes that build it (:mod:`._pool_core`, :mod:`._attempts`, :mod:`._workers`,
:mod:`._intake`); ``open_job_pool`` (:mod:`._open`) creates it.

How a job moves (every step is synchronous, so the counters are exact between checkpoints):

* ``submit`` accepts a job when the pool has room: an idle worker takes it at once, or it joins
  the waiting room (:mod:`._waiting_room`). Without room the submitter parks as an *offer* until a
  worker frees a place (or, for a rendezvous pool, takes the job straight from the offer).
* A worker that finishes a job pulls the next one itself (no scheduler round trip when one is
  ready) and parks as *idle* only when nothing waits.
* A failed attempt that its :class:`RetryPolicy` retries leaves the worker and sleeps out its
  backoff in a small task of its own, then re-enters the waiting room behind its priority.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final, TypeVar

from ._errors import (
    JobNotFound,
    PoolClosed,
)
from ._intake import Intake
from ._job import (
    CANCELLED,
    NO_CAUSE,
    JobHandle,
    JobStatus,
)
from ._runtime import TaskGroupLike
from ._stats import PoolStats, TimeHistogram
from ._validate import check_count, seconds
from .stores._base import NamedStore

__all__ = ["JobPool"]


T = TypeVar("T")

_QUEUED: Final = JobStatus.QUEUED
_RUNNING: Final = JobStatus.RUNNING
_CANCELLED: Final = JobStatus.CANCELLED


class JobPool(Intake):
    """A pool of workers running async jobs; create it with :func:`open_job_pool`.

    All methods must be called from tasks of the event loop that opened the pool.
    The synchronous methods (``submit_nowait``, ``cancel``, ``resize``, ``close``, ``get``,
    ``stats``) never yield and take effect before they return.
    """

    def __repr__(self) -> str:
        c = self._counters
        state = "stopped" if self._workers_gone.is_set() else "closed" if self._closed else "open"
        return (
            f"<JobPool {state} workers={self._max_workers} running={c.running} "
            f"queued={c.queued} submitted={c.submitted}>"
        )

    def cancel(self, job_id: str) -> None:
        """Cancel a live job by id: it ends ``CANCELLED``.

        A waiting or retrying job is removed at once (O(1)) and never runs again. A running
        job's cancel scope is cancelled; it ends as soon as it reaches a checkpoint, and its
        worker moves on. A job that shields itself and returns a value ends ``COMPLETED``.

        Raises:
            JobNotFound: no live job has this id (unknown, or already ended).
        """
        if type(job_id) is str and self._generated_id(job_id) is not None:
            job = self._live.get(int(job_id[16:], 16))  # _key, written out
        else:
            job = self._live.get(self._key(job_id)) if isinstance(job_id, str) else None
        if job is None:
            raise JobNotFound(job_id)
        if job._status is _QUEUED:  # the common case, written out (see _cancel_job)
            job._cancel_reason = CANCELLED
            counters = self._counters
            counters.queued -= 1
            counters.cancelled += 1
            self._waiting.discard()
            bounded = not job._attempts
            self._end(job, _CANCELLED, NO_CAUSE, self._now())
            if bounded:
                self._bounded_waiting -= 1
                if self._offers.size:
                    self._admit_offers()
        else:
            self._cancel_job(job, CANCELLED)

    async def acancel(self, job_id: str) -> None:
        """:meth:`cancel`, as a checkpoint. The same call works on every pool: on a distributed
        pool it reaches jobs of any process, through Redis.

        Raises:
            JobNotFound: no live job has this id.
        """
        self.cancel(job_id)
        await self._runtime.checkpoint()

    async def aget(self, job_id: str) -> JobHandle[Any]:
        """:meth:`get`, as a checkpoint. The same call works on every pool: on a distributed
        pool it reads any job from Redis.

        Raises:
            JobNotFound: no such job.
        """
        await self._runtime.checkpoint()
        return self.get(job_id)

    def get(self, job_id: str) -> JobHandle[Any]:
        """The handle of a live job, or of one of the last ``history`` ended jobs.

        Raises:
            JobNotFound: neither.
        """
        if not isinstance(job_id, str):
            raise JobNotFound(job_id)
        key = self._key(job_id)
        job = self._live.get(key) or self._history.get(key)
        if job is None and self._journal is not None:
            record = self._journal.load_ended(job_id)
            if record is not None:
                job = self._job_from_record(record, key)
        if job is None:
            raise JobNotFound(job_id)
        return job

    def stats(self) -> PoolStats:
        """A snapshot of the pool's counters; O(1) (see :class:`PoolStats`)."""
        return self._counters.snapshot(self._max_workers)

    def histograms(self) -> dict[str, TimeHistogram]:
        """Every execution and wait time since the pool opened, in buckets: a ``dict`` with the
        keys ``"exec_time"`` (each attempt that ended) and ``"wait_time"`` (each attempt that
        started), each a :class:`TimeHistogram` with the bounds of ``TIME_BUCKETS``.
        O(buckets); this process's jobs only, also on a distributed pool.
        """
        return self._counters.histograms()

    def recent_jobs(self, limit: int = 50) -> list[JobHandle[Any]]:
        """Handles of the jobs a dashboard would show, at most ``limit``: the running jobs
        (earliest start first), then the waiting and retrying ones (latest submitted first),
        then the ended jobs kept in the history (latest ended first). On a distributed pool,
        the jobs this process submitted or runs. O(limit + running jobs).

        Raises:
            TypeError, ValueError: ``limit`` is not an ``int >= 0``.
        """
        check_count("limit", limit, 0)
        jobs = self._running_oldest_first()[:limit]
        if len(jobs) < limit:
            for job in self._live_newest_first():
                if job._status is not _RUNNING:
                    jobs.append(job)
                    if len(jobs) == limit:
                        return jobs
            for job in reversed(self._ended):
                jobs.append(job)
                if len(jobs) == limit:
                    break
        return jobs

    def _live_newest_first(self) -> Iterator[JobHandle[Any]]:
        return reversed(self._live.values())

    async def cluster_stats(self) -> PoolStats:
        """The stats of every process sharing this pool's queue. A pool in one process (in
        memory or on SQLite) is the whole cluster: this is :meth:`stats`, after a checkpoint.
        A distributed pool reads them from Redis."""
        await self._runtime.checkpoint()
        return self.stats()

    @property
    def abandoned_jobs(self) -> tuple[str, ...]:
        """The ids of the jobs the shutdown abandoned (they were still running
        ``shutdown_grace`` seconds after it cancelled them), in the order they started; empty
        until then. Such a job's task runs on, outside the pool: the program can exit only
        once it ends (``trio.run`` and ``asyncio.run`` wait for it), or by ``os._exit``."""
        return tuple(self._abandoned_ids)

    @property
    def max_workers(self) -> int:
        """The current target number of workers (see :meth:`resize`)."""
        return self._max_workers

    @property
    def store(self) -> NamedStore | None:
        """The pool's store (a :class:`SqliteStore` or a :class:`RedisStore`, or any other
        ``Store`` it was given), or ``None`` for a pool in memory."""
        return None if self._journal is None else self._journal.store

    @property
    def closed(self) -> bool:
        """Whether the pool has stopped accepting jobs."""
        return self._closed

    def resize(self, max_workers: int) -> None:
        """Set the number of workers.

        Growing starts the new workers at once. Shrinking never cancels a running job: idle
        surplus workers exit now, busy ones after their current job, and from now on no more
        than ``max_workers`` jobs start running at once.

        Raises:
            ValueError: ``max_workers < 1``.
            TypeError: not an ``int``.
            PoolClosed: the pool is stopping or stopped.
        """
        check_count("max_workers", max_workers, 1)
        if self._stopping:
            raise PoolClosed(f"cannot resize to {max_workers}: the pool is stopping")
        self._max_workers = max_workers
        surplus = self._workers - max_workers
        if surplus < 0:
            self._spawn_workers(-surplus)
            return
        idle = self._idle
        while surplus > 0 and idle:
            slot = idle.pop()
            if not slot.abandoned:
                self._workers -= 1
                surplus -= 1
                self._runtime.unpark(slot, None)

    async def join(self) -> None:
        """Wait until no job is waiting, retrying or running. A checkpoint.

        Cancelling the wait does not affect the jobs.

        Raises:
            RuntimeError: called from inside one of this pool's own jobs (it would wait for
                itself).
        """
        self._refuse_inside_own_job("join()")
        if not self._live:
            await self._runtime.checkpoint()
            return
        while self._live:
            if self._idle_event is None:
                self._idle_event = self._runtime.Event()
            await self._idle_event.wait()

    async def stop(self, drain: bool = True, timeout: float | None = None) -> None:
        """Close the pool, finish or cancel its jobs, and wait until its workers have exited.

        With ``drain``, waiting, retrying and running jobs go on for up to ``timeout`` seconds
        (default: the pool's ``shutdown_timeout``); whatever is left then is cancelled. Without
        ``drain`` everything is cancelled at once. Returns once every job has ended and every
        worker has exited, or once the pool's ``shutdown_grace`` has passed since it cancelled
        the jobs: then each job still running (one that shields itself from cancellation, or
        catches it) is *abandoned*: logged (a warning per job, by id and name), ended
        ``CANCELLED`` here without waiting for it (with a store, left ``running`` there, so
        that another pool runs it again), and left to run on in a task the pool no longer
        waits for (see docs/design.md). So ``stop(timeout=T)`` returns within
        ``T + shutdown_grace`` seconds. Calling it again, or concurrently, is safe; a call with
        ``drain=False`` cuts a draining stop short.

        If the call itself is cancelled, every job is cancelled before the cancellation
        propagates.

        Raises:
            RuntimeError: called from inside one of this pool's own jobs.
            ValueError: a negative or NaN ``timeout``.
            TypeError: a ``timeout`` that is not a number.
        """
        self._refuse_inside_own_job("stop()")
        limit = self._config.shutdown_timeout if timeout is None else seconds("timeout", timeout)
        self.close()
        if drain and not self._stopping:
            try:
                with self._runtime.CancelScope() as scope:
                    scope.deadline = self._now() + limit
                    await self._drain()
            finally:
                self._shut_down()
        else:
            self._shut_down()
        with self._runtime.CancelScope() as scope:
            scope.deadline = self._abandon_at
            await self._workers_gone.wait()
        if not self._workers_gone.is_set():
            self._abandon()

    async def _drain(self) -> None:
        """What ``stop(drain=True)`` waits for before it cancels the rest."""
        await self.join()

    async def _start_services(self, nursery: TaskGroupLike) -> None:
        """Hook: start the pool's own service tasks in its ``nursery``, once the workers'
        group is open and before any worker exists (a distributed pool has some)."""

    def _after_stop(self) -> None:
        """Once stopped: end the pool's own service tasks (a distributed pool has some)."""

    async def _final_flush(self) -> None:
        """Once the nursery is gone: send what is still queued for a shared store."""
