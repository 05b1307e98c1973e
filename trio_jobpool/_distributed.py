"""The distributed pool: a JobPool whose waiting jobs live in Redis (see docs/distributed.md).

What stays local is what runs here: the workers, the jobs they run (each in its own cancel
scope, timed out by the pool's deadline watcher), and the handles of the jobs this process
submitted. What is shared lives in Redis (``stores/_redis_queue.py``), reached through the
service tasks of :mod:`._link`; leases and fencing are in :mod:`._leases`, how jobs end in
:mod:`._shared_ends`. This module holds the public API.
"""

from __future__ import annotations

import datetime
import functools
import heapq
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Final, TypeVar, TypeVarTuple

import anyio

from ._errors import (
    DuplicateJob,
    JobNotFound,
    PoolClosed,
    QueueFull,
)
from ._job import (
    CANCELLED,
    JobHandle,
    JobStatus,
    RecordedJob,
)
from ._limits import KeyStats, Limit, check_key, in_force, limit_from_json, stored_limit
from ._link import ROOM
from ._outbox import Submission
from ._records import record_from_fields
from ._retry import RetryPolicy
from ._runtime import Slot
from ._shared_schedules import SharedSchedules
from ._stats import PoolStats
from .stores._base import NamedStore
from .stores._redis_queue import (
    MAX_PRIORITY,
    redis_errors,
)

__all__ = ["DistributedPool"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

_SCHEDULED: Final = JobStatus.SCHEDULED


def _due(job: JobHandle[Any]) -> float:
    assert job._due_m is not None
    return job._due_m


class DistributedPool(SharedSchedules):
    """A :class:`JobPool` on a :class:`RedisStore` (created by ``open_job_pool``).

    Differences from a pool in one process (docs/distributed.md has them all):

    * ``submit`` returns once Redis has the job (one round trip, shared by concurrent
      submits); ``submit_nowait`` returns at once and sends the job with the next trip: if
      Redis then refuses it (a live job has its id, or there is no room), the handle ends
      ``FAILED`` with that error.
    * ``cancel``, ``get`` act on what this process knows: jobs it submitted or runs.
      ``await acancel(id)`` and ``await aget(id)`` ask Redis, for jobs of any process.
    * ``stats()`` is this process's view: ``total_submitted`` counts the jobs it submitted,
      the other totals the attempts its workers ended and Redis recorded (a fenced attempt
      counts in none; an end Redis refused is taken back out), ``queued_tasks`` jobs it
      claimed that have not started yet. So the processes' totals add up to the cluster's;
      the invariant holds for ``await cluster_stats()``.
    * Leaving the block (``stop``) drains the jobs running here, not the shared queue: jobs
      that wait in Redis stay there for the other processes (or the next pool).
    * Jobs due later (``delay=``, ``at=``, ``Defer``) are scheduled in Redis, due on Redis's
      clock; whichever process claims first once they are due lets them into the queue.
      ``stats().scheduled_tasks`` is 0 (no process holds a scheduled job);
      ``cluster_stats().scheduled_tasks`` counts them all; ``scheduled_jobs()`` lists those
      this process submitted (docs/distributed.md, "Later jobs").
    """

    @property
    def store(self) -> NamedStore:
        """The pool's :class:`RedisStore`."""
        return self._redis

    async def submit(
        self,
        fn: Callable[[*Ts], Awaitable[T]] | str,
        *args: *Ts,
        job_id: str | None = None,
        priority: int = 5,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        delay: float | None = None,
        at: datetime.datetime | None = None,
        key: str | None = None,
    ) -> JobHandle[T]:
        """Submit a job to the shared queue; return once Redis has it (see the class).

        Waits while the queue holds ``queue_size + max_pending`` waiting jobs. The round trip
        is not interrupted by a cancellation once the job has been handed to the link (the
        cancellation is delivered at the caller's next checkpoint): returned means queued.

        With ``delay`` or ``at`` (a due time in the future), the job is scheduled in Redis:
        it never waits for room; Redis lets it into the queue when it is due, on Redis's
        clock (the time from now until the due time, as this process counts it, is what
        Redis waits from when it has the job; docs/distributed.md, "Later jobs").

        Raises:
            PoolClosed, DuplicateJob, TypeError, ValueError: as for a pool in memory.
            StoreError: Redis cannot be reached.
        """
        job = self._new_job(fn, args, job_id, priority, timeout, retry)
        if key is not None:
            self._key_job(job, key)
        if delay is not None or at is not None:
            self._later(job, self._due_of(delay, at))
        await self._runtime.checkpoint_before()
        assert isinstance(job, RecordedJob)
        while True:
            self._check_submittable(job)
            room = self._room  # taken now: a "room" message after the refusal sets this one
            slot = Slot()
            self._remote[job._key] = job
            self._out.submits.add(Submission(job, slot, self._now()))
            self._wake_link()
            answer = await self._runtime.park_shielded(slot)
            if answer is True:
                return job
            if answer is not ROOM:
                raise answer
            await room.wait()

    def submit_nowait(
        self,
        fn: Callable[[*Ts], Awaitable[T]] | str,
        *args: *Ts,
        job_id: str | None = None,
        priority: int = 5,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        delay: float | None = None,
        at: datetime.datetime | None = None,
        key: str | None = None,
    ) -> JobHandle[T]:
        """Hand a job to the link and return its handle at once (see the class).

        Raises:
            QueueFull: by the latest count from Redis (plus the submits not yet sent), the
                queue is full. Never for a job due in the future.
            PoolClosed, DuplicateJob (of a job this process knows), TypeError, ValueError.
        """
        job = self._new_job(fn, args, job_id, priority, timeout, retry)
        if key is not None:
            self._key_job(job, key)
        if delay is not None or at is not None:
            self._later(job, self._due_of(delay, at))
        assert isinstance(job, RecordedJob)
        self._check_submittable(job)
        if job._status is not _SCHEDULED and (
            self._waiting_estimate + len(self._out.submits) >= self._bound
        ):
            raise QueueFull(
                f"cannot accept job {job.job_id!r}: about {self._waiting_estimate} jobs are "
                f"waiting in Redis (queue_size + max_pending = {self._bound})"
            )
        self._remote[job._key] = job
        self._out.submits.add(Submission(job, None, self._now()))
        self._wake_link()
        return job

    def _later(self, job: JobHandle[Any], due: float | None) -> None:
        """Make the new ``job`` one to schedule, due at ``due`` (pool clock), unless ``due`` is
        ``None`` (not in the future: an ordinary submission). Redis takes it as due that long
        after it has it (docs/distributed.md, "Later jobs")."""
        if due is not None:
            job._status = _SCHEDULED
            job._due_m = due

    def close(self) -> None:
        super().close()
        self._room.set()  # submits waiting for room find the pool closed

    def _check_submittable(self, job: RecordedJob[Any]) -> None:
        if not -MAX_PRIORITY < job._priority < MAX_PRIORITY:
            raise ValueError(f"priority {job._priority} is out of range for a Redis queue")
        if self._closed:
            raise PoolClosed(f"cannot accept job {job.job_id!r}: the pool is closed")
        if job._key in self._remote or job._key in self._live:
            raise DuplicateJob(job.job_id)

    def cancel(self, job_id: str) -> None:
        """Cancel a job this process submitted or runs (see the class; ``acancel`` for any).

        A job running here is cancelled at once; any other is cancelled in Redis with the
        link's next trip (a waiting or retrying job never runs again; a job running in
        another process is cancelled there through pub/sub), and its handle ends when Redis
        has done it.

        Raises:
            JobNotFound: this process knows of no live job with this id.
        """
        key = self._key(job_id) if isinstance(job_id, str) else None
        job = None if key is None else self._live.get(key) or self._remote.get(key)
        if job is None or job._status.ended:
            raise JobNotFound(job_id)
        self._cancel_job(job, CANCELLED)

    async def acancel(self, job_id: str) -> None:
        """Cancel a live job of any process, through Redis; return once it is done (a
        waiting or retrying job) or its process has been told (a running job).

        Raises:
            JobNotFound: no live job has this id.
            StoreError: Redis cannot be reached.
        """
        key = self._key(job_id) if isinstance(job_id, str) else None
        held = None if key is None else self._live.get(key)
        if held is not None:
            self._cancel_job(held, CANCELLED)
            await self._runtime.checkpoint()
            return
        if job_id in self._ending:
            await self._runtime.checkpoint()
            raise JobNotFound(job_id)
        try:
            answer = await self._read(self._queue.cancel, job_id)
        except redis_errors() as exc:
            raise self._lost_error(f"cannot cancel {job_id!r}", exc) from exc
        if answer == "not live":
            raise JobNotFound(job_id)
        if answer == "cancelled" and key is not None and key in self._remote:
            self._out.fetches.add(job_id)
            self._wake_link()

    def _live_newest_first(self) -> Iterator[JobHandle[Any]]:
        # Jobs this process submitted (waiting in Redis, or running anywhere), then those it
        # claimed from other submitters; a job of both is given once.
        yield from reversed(self._remote.values())
        for job in reversed(self._live.values()):
            if self._remote.get(job._key) is not job:
                yield job

    def get(self, job_id: str) -> JobHandle[Any]:
        """The handle of a job this process submitted or runs, or of one of its last
        ``history`` ended jobs (``aget`` reads any job from Redis).

        Raises:
            JobNotFound: neither.
        """
        key = self._key(job_id) if isinstance(job_id, str) else None
        job = (
            None
            if key is None
            else (self._live.get(key) or self._remote.get(key) or self._history.get(key))
        )
        if job is None:
            raise JobNotFound(job_id)
        return job

    async def aget(self, job_id: str) -> JobHandle[Any]:
        """A job of any process as Redis has it now (a handle of this process if it has one
        that is live; otherwise a snapshot that does not change).

        Raises:
            JobNotFound: Redis knows no job with this id.
            StoreError: Redis cannot be reached.
        """
        key = self._key(job_id) if isinstance(job_id, str) else None
        held = None if key is None else self._live.get(key)
        if held is not None:  # running here: the handle is up to date
            await self._runtime.checkpoint()  # if it ends meanwhile, the handle says so
            return held
        ended = self._history.get(key) if key is not None and job_id in self._ending else None
        if ended is not None:  # ended here, and Redis has yet to hear of it
            await self._runtime.checkpoint()
            return ended
        try:
            fields = await self._read(self._queue.job, job_id) if key is not None else {}
        except redis_errors() as exc:
            raise self._lost_error(f"cannot read {job_id!r}", exc) from exc
        assert key is not None
        job = self._remote.get(key)
        if not fields:
            if job is not None and key not in self._live and job._record.seq:
                # Redis lost this live job (its key was evicted or deleted): so does its handle
                self._end_gone(job)
            raise JobNotFound(job_id)
        if job is not None and key not in self._live:
            self._refresh(job, fields)
            return job
        record = record_from_fields(job_id, fields)
        snapshot = self._job_from_record(record, key)
        if not JobStatus(record.status).ended:
            self._apply_live(snapshot, record)  # its status (scheduled, ...) and due time
        return snapshot

    # -- flow control: the limits are the queue's, in Redis ---------------------------------

    async def _put_limit(self, key: str, limit: Limit) -> None:
        """Keep ``limit`` in Redis as ``key``'s own (``Limit()``: remove it): every process's
        next claim applies it.

        Raises:
            StoreError: Redis cannot be reached (it is unknown whether the limit was kept).
        """
        data = stored_limit(limit)
        try:
            await self._read(functools.partial(self._queue.set_limit, key), data)
        except redis_errors() as exc:
            raise self._lost_error("cannot set the limit", exc) from exc
        if data is None:
            self._known_limits.pop(key, None)
        else:
            self._known_limits[key] = limit

    async def limits(self) -> dict[str, Limit]:
        """Every key's own limit, read from Redis (the queue's default is not listed).

        Raises:
            StoreError: Redis cannot be reached.
        """
        try:
            stored = await self._read(lambda _: self._queue.limits(), None)
        except redis_errors() as exc:
            raise self._lost_error("cannot read the limits", exc) from exc
        found = {key: limit_from_json(data) for key, data in sorted(stored.items()) if key}
        self._known_limits = dict(found)
        return found

    def key_stats(self, key: str) -> KeyStats:
        """The key's jobs this process runs (``running``) or holds claimed for a worker
        (``waiting``), and its limit as this process last knew it (its own ``set_limit`` and
        ``limits()`` calls, else its ``key_limit``). O(jobs this process holds: at most about
        ``max_workers``). The queue's counts are in Redis (``{q}:krun``; see
        docs/flow-control.md)."""
        check_key(key, allow_none=False)
        running = waiting = 0
        for job in self._live.values():
            if job.key == key:
                if job._status is JobStatus.RUNNING:
                    running += 1
                elif job._status is JobStatus.QUEUED:
                    waiting += 1
        return KeyStats(key, running, waiting, self._limit_known(key))

    def limited_keys(self) -> list[KeyStats]:
        """The keys with a limit of their own, as this process last knew them, with its
        counts (see :meth:`key_stats`)."""
        return [self.key_stats(key) for key in sorted(self._known_limits)]

    def _limit_known(self, key: str) -> Limit | None:
        return self._known_limits.get(key, in_force(self._config.key_limit))

    async def cluster_stats(self) -> PoolStats:
        """Every process on this queue together, read from Redis in one round trip.

        The totals and ``queued_tasks`` (waiting or retrying) and ``active_workers`` (jobs
        running under a lease) come from counters that each step updates atomically, so the
        invariant holds exactly. ``max_workers`` sums the processes seen within three lease
        renewals; averages are weighted by their counts, and each percentile is the largest
        of the processes' (an upper bound).

        Raises:
            StoreError: Redis cannot be reached.
        """
        # This process's news first: what is pending now goes with the next trip at the latest;
        # the trip under way may have started before it came.
        target = self._trips_done + (2 if self._sending else 1)
        with anyio.move_on_after(self._redis.timeout):
            while self._pending_writes() and self._trips_done < target:
                await self._wait_changed()
        try:
            read = await self._read(self._queue.stats, self._lease_ms)
        except redis_errors() as exc:
            raise self._lost_error("cannot read the stats", exc) from exc
        counters = read.counters
        # the others as they last said, this one as it is now
        processes = [p for p in read.processes if p.get("owner") != self._owner]
        processes.append(self._process_stats())
        exec_count = sum(p.get("exec_count", 0) for p in processes)
        wait_count = sum(p.get("wait_count", 0) for p in processes)

        def weighted(total: str, count: int) -> float:
            return sum(p.get(total, 0.0) for p in processes) / count if count else 0.0

        def largest(name: str) -> float:
            return max((p.get(name, 0.0) for p in processes), default=0.0)

        return PoolStats(
            total_submitted=counters.get("submitted", 0),
            total_completed=counters.get("completed", 0),
            total_failed=counters.get("failed", 0),
            total_cancelled=counters.get("cancelled", 0),
            total_timed_out=counters.get("timed_out", 0),
            total_retried=counters.get("retried", 0),
            active_workers=read.running,
            max_workers=sum(p.get("max_workers", 0) for p in processes),
            queued_tasks=read.waiting + read.retrying,
            scheduled_tasks=read.scheduled,
            average_exec_time=weighted("exec_total", exec_count),
            average_wait_time=weighted("wait_total", wait_count),
            exec_time_p50=largest("p50"),
            exec_time_p95=largest("p95"),
            exec_time_p99=largest("p99"),
        )

    def scheduled_jobs(self, limit: int | None = None) -> list[JobHandle[Any]]:
        """The handles of the jobs this process submitted that are scheduled in Redis as far
        as it knows (it follows them until they end; a job another process deferred is
        announced to its submitter) and not yet due by this process's clock, earliest due
        first (at most ``limit``). Jobs of other processes are not listed: ``aget`` reads
        any job.

        O(n log n) in those jobs: for views such as a dashboard, not for a hot path.
        """
        now = self._now()
        jobs = (job for job in self._scheduled.values() if _due(job) > now)
        if limit is None:
            return sorted(jobs, key=_due)
        return heapq.nsmallest(limit, jobs, key=_due)

    def _busy(self) -> bool:
        """Whether ``join`` waits: a job runs here, Redis has news to hear, or a job submitted
        here is live and not scheduled (as far as this process knows), or scheduled and due."""
        if self._live or self._pending_writes():
            return True
        scheduled = self._scheduled  # a subset of _remote
        if len(self._remote) > len(scheduled):
            return True
        now = self._now()
        return any(_due(job) <= now for job in scheduled.values())

    async def join(self) -> None:
        """Wait until every job this process submitted has ended (wherever it ran), no job
        runs here, and Redis has been told everything. A checkpoint. Jobs that are scheduled
        (as far as this process knows: see :meth:`scheduled_jobs`) are not waited for, unless
        their due time passes meanwhile.

        Raises:
            RuntimeError: called from inside one of this pool's own jobs.
        """
        self._refuse_inside_own_job("join()")
        await self._runtime.checkpoint()
        while self._busy():
            await self._wait_changed()

    async def _drain(self) -> None:
        """``stop(drain=True)``: no more claims; the jobs running here finish."""
        self._draining = True
        while self._live or self._pending_writes():
            await self._wait_changed()
