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
from ._flow_control import FlowControl
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


class JobPool(FlowControl):
    """A pool of workers running async jobs; obtain it from :func:`open_job_pool` (it is not
    meant to be constructed directly).

    All methods must be called from tasks of the event loop that opened the pool.
    The synchronous methods (``submit_nowait``, ``cancel``, ``resize``, ``close``, ``get``,
    ``stats``) never yield and take effect before they return. ``repr(pool)`` shows its state
    (``open``, ``closed``, ``stopped``), worker target and counts.
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

        * A ``queued`` or ``retrying`` job ends before ``cancel`` returns and never runs
          (again). Removal is O(1) (lazy deletion). Room freed in the waiting room admits
          blocked submissions.
        * A ``running`` job's cancel scope is cancelled; the job ends when it reaches a
          checkpoint (its status stays ``RUNNING`` until then) and its worker moves on. A job
          that shields itself and returns a value ends ``COMPLETED``; one that raises while
          being cancelled ends ``CANCELLED`` with that exception as ``handle.error.__cause__``
          (an ``ExceptionGroup`` of the errors, if the job's own task group raised them
          together with the cancellation).
        * A job handed to a worker that has not started it yet (status ``RUNNING``) never runs
          its code: it ends ``CANCELLED`` when its worker takes it up, a moment later.

        On a distributed pool it acts on the jobs this process holds; :meth:`acancel` reaches
        the jobs of every process.

        Raises:
            JobNotFound: no live job has this id (unknown, already ended, or not a ``str``).
        """
        job = self._live.get(self._key(job_id)) if isinstance(job_id, str) else None
        if job is None:
            raise JobNotFound(job_id)
        if job._status is _QUEUED:  # the common case, written out (see _cancel_job)
            job._cancel_reason = CANCELLED
            counters = self._counters
            counters.queued -= 1
            counters.cancelled += 1
            self._waiting.discard(job)
            bounded = not job._attempts and job._due_m is None
            self._end(job, _CANCELLED, NO_CAUSE, self._now())
            if bounded:
                self._bounded_waiting -= 1
                if self._offers.size:
                    self._admit_offers()
        else:
            self._cancel_job(job, CANCELLED)

    async def acancel(self, job_id: str) -> None:
        """:meth:`cancel`, as a checkpoint; the same call works on every pool. Where ``cancel``
        acts on what this process holds, this form goes where the job is.

        On a distributed pool it cancels a live job of any process through Redis, returning
        once a waiting or retrying job is cancelled, or once the process running the job has
        been told.

        Raises:
            JobNotFound: no live job has this id.
            StoreError: on a distributed pool, Redis does not answer.
        """
        self.cancel(job_id)
        await self._runtime.checkpoint()

    async def aget(self, job_id: str) -> JobHandle[Any]:
        """:meth:`get`, as a checkpoint; the same call works on every pool.

        On a distributed pool it reads the job from Redis: the handle of a job this process
        submitted, brought up to date (status, attempts, progress, timings), or a snapshot
        handle of another process's job.

        Raises:
            JobNotFound: there is no such job.
            StoreError: on a distributed pool, Redis does not answer.
        """
        await self._runtime.checkpoint()
        return self.get(job_id)

    def get(self, job_id: str) -> JobHandle[Any]:
        """The handle of the live job with this id, or else of the newest ended job with this id
        among the last ``history`` jobs that ended.

        Every ended job takes one of the ``history`` places, also when its id was used before;
        an older job with a reused id can no longer be found. A durable pool also reads ended
        jobs of earlier pools back from its store.

        Raises:
            JobNotFound: neither (or an id that is not a ``str``).
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
        """A snapshot of the pool's counters (see :class:`PoolStats`).

        O(1) in the number of jobs: counters are kept up to date as jobs move, and the
        percentiles need at most one sort of a 1,024-sample window. Works after the pool has
        stopped.
        """
        return self._counters.snapshot(self._max_workers)

    def histograms(self) -> dict[str, TimeHistogram]:
        """Every execution and wait time since the pool opened, in the buckets of
        ``TIME_BUCKETS``.

        The key ``"exec_time"`` holds one sample per attempt that ended (completed, failed,
        retried, timed out, or cancelled while running), ``"wait_time"`` one per attempt that
        started (from acceptance, or the end of a retry's backoff, or the due time, to the
        start), and ``"due_lag"`` one per start of a job that fell due (``delay``, ``at``,
        ``Defer``, a schedule's tick): from its due time to its start. Unlike the
        percentiles of :meth:`stats`, which cover the last 1,024 attempts, these never forget,
        so they can be added up over time and over processes (the ``/metrics`` histograms).
        O(buckets). On a distributed pool: the attempts this process ran.
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
        """The stats of every process sharing this pool's queue.

        For a pool in one process (in memory or on SQLite) it is :meth:`stats`, after a
        checkpoint. A distributed pool reads them from Redis in one round trip, after sending
        its own pending news: totals, ``queued_tasks`` and ``active_workers`` of the whole
        queue, from counters updated atomically with each step (the invariant holds exactly);
        ``max_workers`` summed over the live processes.

        Raises:
            StoreError: on a distributed pool, Redis does not answer.
        """
        await self._runtime.checkpoint()
        return self.stats()

    @property
    def abandoned_jobs(self) -> tuple[str, ...]:
        """The ids of the jobs the shutdown abandoned (they were still running
        ``shutdown_grace`` seconds after it cancelled them; see :meth:`stop`), in the order
        they started; empty until then. Their code runs on in a task nobody waits for, and
        ``trio.run`` / ``asyncio.run`` wait for it before they return: a program that must exit
        checks this after the pool's block and ends itself (``os._exit``)."""
        return tuple(self._abandoned_ids)

    @property
    def max_workers(self) -> int:
        """The current target number of workers, the ``max_workers`` given to
        :func:`open_job_pool` or to the last :meth:`resize`."""
        return self._max_workers

    @property
    def store(self) -> NamedStore | None:
        """The pool's store (a :class:`SqliteStore` or a :class:`RedisStore`, also when the pool
        was opened with a URL, or any other ``Store`` it was given), or ``None`` for a pool in
        memory. For example ``await pool.store.prune(older_than=7 * 86400)``."""
        return None if self._journal is None else self._journal.store

    @property
    def closed(self) -> bool:
        """Whether the pool has stopped accepting jobs (``close()``, ``stop()``, or the end of
        the block)."""
        return self._closed

    def resize(self, max_workers: int) -> None:
        """Set the number of workers.

        Growing starts the new workers at once (each takes a waiting job immediately if there
        is one). Shrinking never cancels a running job: idle surplus workers exit now, busy
        ones after their current job, and from now on no job starts while ``max_workers`` or
        more are running.

        Raises:
            ValueError: ``max_workers < 1``.
            TypeError: not an ``int`` (or a ``bool``).
            PoolClosed: the pool is stopping or stopped: once a ``stop()`` (or the end of the
                block) has finished draining or begins cancelling the jobs. A pool that is only
                closed, or still draining, can be resized.
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
        """Wait until no job is waiting, retrying or running (jobs accepted meanwhile are
        waited for too, and scheduled jobs that fall due meanwhile). Jobs that are still
        scheduled are not waited for. With nothing to wait for, returns after one checkpoint.

        A checkpoint; cancelling the wait does not affect the jobs.

        Raises:
            RuntimeError: called from inside one of this pool's own running jobs, or from a
                task such a job started while the job is running (it would wait for itself).
                Nothing is changed. A task that outlives the job that started it is no longer
                inside that job.
        """
        self._refuse_inside_own_job("join()")
        if len(self._live) <= self._counters.scheduled:
            await self._runtime.checkpoint()
            return
        while len(self._live) > self._counters.scheduled:
            if self._idle_event is None:
                self._idle_event = self._runtime.Event()
            await self._idle_event.wait()

    async def stop(self, drain: bool = True, timeout: float | None = None) -> None:
        """Close the pool, finish or cancel its jobs, and wait until its workers have exited.

        * ``drain=True``: waiting, retrying and running jobs go on for up to ``timeout``
          seconds (``None``: the pool's ``shutdown_timeout``; ``math.inf``: no limit); whatever
          is left then is cancelled.
        * ``drain=False``: every job is cancelled at once.

        Returns once every job has ended and every worker has exited. Calling it again, or
        concurrently, is safe; a call with ``drain=False`` cuts a draining call short. Jobs
        cancelled by it end ``CANCELLED`` with ``JobCancelled("job '…' was cancelled by the
        pool's shutdown")``.

        **Jobs that ignore their cancellation are abandoned.** A job that is still running
        ``shutdown_grace`` seconds after the shutdown cancelled it (it shields itself with
        ``CancelScope(shield=True)``, or catches the cancellation and carries on) is abandoned,
        and ``stop`` returns: ``stop(timeout=T)`` returns within ``T + shutdown_grace`` seconds
        whatever the jobs do (``drain=False``: within ``shutdown_grace``). For each abandoned
        job:

        * the log gets one warning on the ``trio_jobpool`` logger, naming its id and name:
          ``job '…' was still running 1 s after the pool's shutdown cancelled it: abandoned;
          it runs on in the background (name: …)``, plus ``, and stays running in the store``
          with a store;
        * its handle ends ``CANCELLED`` with ``JobCancelled("job '…' was abandoned by the
          pool's shutdown: it did not end when cancelled")``; in the stats it counts in
          ``total_cancelled`` (no longer in ``active_workers``), so the invariant of the stats
          holds after ``stop``;
        * its code runs on, in a task nobody waits for, until it ends by itself: nothing in
          Trio or asyncio can end a task that ignores cancellation. When it ends, its result is
          dropped and nothing in the pool changes; an exception it raises then has nobody to
          go to: one that is not an ``Exception`` (a ``KeyboardInterrupt`` that landed in its
          code, say) is logged as an error on the ``trio_jobpool`` logger with its traceback
          (under Trio, raising it would crash the run with ``TrioInternalError``; under asyncio
          a ``KeyboardInterrupt`` or ``SystemExit`` in a task escapes the event loop as
          always). ``trio.run`` and ``asyncio.run`` still wait for it before they return (see
          the design notes, "Jobs that ignore cancellation"): to exit the process regardless,
          exit it after the block when :attr:`abandoned_jobs` is not empty (``os._exit``, as
          ``trio-jobpool serve`` and ``worker`` do);
        * with a SQLite store, its record stays ``running`` (no end is written): the next pool
          on the file counts a crash and runs it again, as after a ``kill -9``; with Redis,
          neither its end nor a hand-back is sent: its lease, no longer renewed, lapses and
          another process (or the next pool) runs it again. Until the abandoned code ends, the
          job may so run twice at once.

        Cancellation: if the call is cancelled while draining, every job is cancelled (as with
        ``drain=False``) before the cancellation propagates; the call then does not wait for
        the workers to exit.

        Raises:
            RuntimeError: called from inside one of this pool's own running jobs, or from a
                task such a job started while the job is running (it would wait for itself).
                Nothing is changed. A task that outlives the job that started it is no longer
                inside that job.
            ValueError: a negative or NaN ``timeout``. Nothing is changed.
            TypeError: a ``timeout`` that is not a number. Nothing is changed.
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
