"""JobPool and open_job_pool: the nursery, the workers, submission, cancel, resize, join, stop.

How a job moves (every step is synchronous, so the counters are exact between checkpoints):

* ``submit`` accepts a job when the pool has room: an idle worker takes it at once, or it joins
  the waiting room (:mod:`._promoter`). Without room the submitter parks as an *offer* until a
  worker frees a place (or, for a rendezvous pool, takes the job straight from the offer).
* A worker that finishes a job pulls the next one itself (no scheduler round trip when one is
  ready) and parks as *idle* only when nothing waits.
* A failed attempt that its :class:`RetryPolicy` retries leaves the worker and sleeps out its
  backoff in a small task of its own, then re-enters the waiting room behind its priority.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import re
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from typing import Any, Final, TypeVar, TypeVarTuple

from ._config import PoolConfig
from ._errors import (
    DuplicateJob,
    JobNotFound,
    JobNotRegistered,
    JobNotSerializable,
    PoolClosed,
    QueueFull,
    StoreError,
)
from ._excgroups import first_leaf
from ._job import (
    ABANDONED,
    CANCELLED,
    NO_CAUSE,
    OWN_CODE,
    SHUTDOWN,
    SUBMIT_CANCELLED,
    TIMED_OUT,
    CancelKind,
    CancelReason,
    JobHandle,
    JobStatus,
    RecordedJob,
    Unbuilt,
    _current_job,
    interrupted,
)
from ._journal import Journal
from ._records import job_from_record, policy_to_json, wall_clock_converter
from ._registry import check_json
from ._retry import RetryPolicy
from ._runtime import EventLike, Runtime, Slot, TaskGroupLike
from ._stats import Counters, PoolStats, TimeHistogram
from ._validate import check_count, seconds
from ._waiting_room import Offer, Offers, WaitingJobs
from .stores._base import JobRecord, NamedStore

__all__ = ["JobPool"]

logger = logging.getLogger("trio_jobpool")

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

_QUEUED: Final = JobStatus.QUEUED
_RETRYING: Final = JobStatus.RETRYING
_RUNNING: Final = JobStatus.RUNNING
_CANCELLED: Final = JobStatus.CANCELLED
_INF: Final = math.inf
# A worker that keeps finding work ready yields to the scheduler at least this often, so that
# jobs which never checkpoint cannot starve the rest of the program.
_YIELD_EVERY: Final = 64
_HEX16: Final = re.compile("[0-9a-f]{16}")


def _started_m(job: JobHandle[Any]) -> float:
    started = job._started_m
    return 0.0 if started is None else started


class JobPool:
    """A pool of workers running async jobs; create it with :func:`open_job_pool`.

    All methods must be called from tasks of the event loop that opened the pool.
    The synchronous methods (``submit_nowait``, ``cancel``, ``resize``, ``close``, ``get``,
    ``stats``) never yield and take effect before they return.
    """

    _shared_queue = False
    """Whether the pool's queue is shared with other processes (a distributed pool): then
    every job has a record (a :class:`RecordedJob`) though the pool has no journal, a running
    job's scope carries its fence (``_fence_deadline``), and a wait on a job cannot be a
    deadlock (another process may run it)."""

    def __init__(
        self,
        config: PoolConfig,
        runtime: Runtime,
        nursery: TaskGroupLike,
        journal: Journal | None = None,
    ) -> None:
        self._config = config
        self._runtime = runtime
        self._nursery = nursery
        self._now = runtime.clock()
        self._wall_offset = time.time() - self._now()
        self._max_workers = config.max_workers
        # how many waiting jobs count as full (inf: no bound)
        self._bound = _INF if config.max_pending is None else config.queue_size + config.max_pending
        self._default_timeout = config.job_timeout
        self._default_retry = config.retry
        self._history_size = config.history
        self._journal = journal
        # Jobs by registered name, each with a record: one test on submit's path.
        self._named_jobs = journal is not None or self._shared_queue
        self._counters = Counters()
        self._live: dict[str | int, JobHandle[Any]] = {}  # by key (see _key)
        # The last `history` ended jobs, oldest first, and the newest of them for each key.
        self._ended: deque[JobHandle[Any]] = deque()
        self._history: dict[str | int, JobHandle[Any]] = {}
        self._waiting = WaitingJobs()
        self._bounded_waiting = 0  # waiting jobs that count against the bound
        self._offers = Offers()
        self._idle: list[Slot] = []  # parked workers, most recently idle last
        self._running: set[JobHandle[Any]] = set()
        self._watch_target = _INF  # when the deadline watcher wakes next
        self._watch_scope = runtime.CancelScope()
        self._workers = 0  # workers not yet told (or deciding) to exit
        self._worker_tasks = 0  # worker tasks still alive
        self._closed = False
        self._stopping = False
        self._idle_event: Any = None  # set when the last live job ends, made on demand
        self._workers_gone = runtime.Event()
        # The workers run in a task group of their own, hosted by a task the pool's block can
        # stop waiting for (see _host_workers); set once it has ended, or the pool gave up on
        # it (_abandon).
        self._workers_group: TaskGroupLike | None = None
        self._workers_settled = runtime.Event()
        self._workers_host_error: BaseException | None = None  # what the host's group raised
        self._no_more_workers = runtime.Event()  # lets the host's group end with its workers
        self._abandon_at = _INF  # when the shutdown stops waiting for the jobs (pool clock)
        self._abandoned = False
        self._abandoned_ids: list[str] = []  # the jobs _abandon stopped waiting for
        # For the detection of waits that cannot end (see _begin_wait): the worker tasks,
        # and how many running jobs' own tasks wait on a job of this pool or for room in it.
        self._worker_task_set: set[object] = set()
        self._blocked = 0
        self._rng = random.Random()
        self._id_prefix = secrets.token_hex(8)
        # Starts paused while the store fails to commit: no job is taken until _resume_at (a
        # wake-up of the deadline watcher) or until a commit succeeds, whichever comes first.
        self._starts_paused = False
        self._resume_at = _INF
        self._next_id = 0  # the counter of the next generated id (see _key)
        if journal is not None:
            journal.attach(self._wall, self._commit_result)

    def __repr__(self) -> str:
        c = self._counters
        state = "stopped" if self._workers_gone.is_set() else "closed" if self._closed else "open"
        return (
            f"<JobPool {state} workers={self._max_workers} running={c.running} "
            f"queued={c.queued} submitted={c.submitted}>"
        )

    # -- submitting ------------------------------------------------------------------------

    async def submit(
        self,
        fn: Callable[[*Ts], Awaitable[T]] | str,
        *args: *Ts,
        job_id: str | None = None,
        priority: int = 5,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> JobHandle[T]:
        """Submit ``fn(*args)`` as a job and return its handle once the pool accepted it.

        Waits while the pool is full (backpressure). Always a cancel point: if it is cancelled,
        the job was not accepted; if it returns, the job was accepted. (One exception, on
        asyncio only: a plain ``task.cancel()`` that lands in the same loop iteration as the
        acceptance wins, and the job is taken back -- or, if a worker was handed it already,
        cancelled before it starts unless it had started.) With a store, it returns once the
        job is written; that write is not interrupted by a cancellation.
        A schedule point whenever it waits, and otherwise at least every 0.5 ms of consecutive
        submits to this pool (see ``trio_jobpool._runtime.SCHEDULE_INTERVAL``): a submit loop
        never starves other tasks, yet does not pay a trip through the scheduler per job.

        Args:
            fn: an async callable (or, with a registry, a registered job's name).
            job_id: a non-empty ``str``; by default 32 lowercase hex characters, unique: a
                random prefix per pool and a counter.
            priority: any ``int``; lower runs first, FIFO within one priority.
            timeout: seconds from the job's start; ``None``: the pool's ``job_timeout``;
                ``math.inf``: none.
            retry: ``None``: the pool's policy; ``RetryPolicy(max_attempts=1)``: no retry.

        Raises:
            PoolClosed: the pool was closed (before or while waiting for room).
            DuplicateJob: a live job has this id.
            TypeError, ValueError: bad arguments.
        """
        job = self._new_job(fn, args, job_id, priority, timeout, retry)
        runtime = self._runtime
        await runtime.checkpoint_before()
        if self._journal is not None:
            if not self._reserve(job):
                await self._wait_for_room(job)
            await self._write_accepted(job)
            return job
        if self._accept(job):
            if runtime.yield_due():
                await runtime.schedule_point()
            return job
        await self._wait_for_room(job)
        return job

    async def _wait_for_room(self, job: JobHandle[Any]) -> None:
        """Park a submission until the pool accepts it (or, with a store, reserves it room).

        Raises:
            RuntimeError: from a job's own task, when every other running job of the pool
                waits likewise (see ``_begin_wait``): no room would ever come.
        """
        counted = self._begin_wait(None)
        offer = Offer(job)
        self._offers.push(offer)
        try:
            answer = await self._runtime.park(offer.slot)
        except BaseException:
            if offer.slot.late is True:  # asyncio: accepted in the instant it was cancelled
                self._revoke(job)
            elif offer.slot.abandoned:
                self._offers.discard()
            raise
        finally:
            if counted:
                self._blocked -= 1
        if answer is not True:
            raise answer

    def submit_nowait(
        self,
        fn: Callable[[*Ts], Awaitable[T]] | str,
        *args: *Ts,
        job_id: str | None = None,
        priority: int = 5,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> JobHandle[T]:
        """Like :meth:`submit`, but never waits.

        Raises:
            QueueFull: the pool is full.
            PoolClosed, DuplicateJob, TypeError, ValueError: as for :meth:`submit`.
        """
        job = self._new_job(fn, args, job_id, priority, timeout, retry)
        if self._journal is not None:
            if not self._reserve(job):
                raise QueueFull(
                    f"cannot accept job {job.job_id!r}: {self._bounded_waiting} jobs are "
                    f"waiting (queue_size + max_pending = {self._bound})"
                )
            self._write_accepted_now(job)
            return job
        if not self._accept(job):
            raise QueueFull(
                f"cannot accept job {job.job_id!r}: {self._bounded_waiting} jobs are waiting "
                f"(queue_size + max_pending = {self._bound})"
            )
        return job

    def _new_job(
        self,
        fn: Callable[..., Awaitable[T]] | str,
        args: tuple[Any, ...],
        job_id: str | None,
        priority: int,
        timeout: float | None,
        retry: RetryPolicy | None,
    ) -> JobHandle[T]:
        if isinstance(fn, str):
            if self._config.registry is None:
                raise TypeError(f"job {fn!r} given by name, but the pool has no registry")
            fn = self._config.registry.get(fn)
        elif not callable(fn):
            raise TypeError(f"a job must be an async callable, got {fn!r}")
        key: str | int
        if job_id is None:
            key = self._next_id
            self._next_id = key + 1
        elif not isinstance(job_id, str):
            raise TypeError(f"job_id must be a str, got {job_id!r}")
        elif not job_id:
            raise ValueError("job_id must not be empty")
        else:
            key = self._key(job_id)
            if type(key) is int and key >= self._next_id:
                # An id in this pool's generated form that it has not generated yet: never
                # generate it (or anything before it) later.
                self._next_id = key + 1
        if type(priority) is not int and (
            isinstance(priority, bool) or not isinstance(priority, int)
        ):
            raise TypeError(f"priority must be an int, got {priority!r}")
        limit = self._default_timeout if timeout is None else seconds("timeout", timeout)
        given_retry = retry
        if retry is None:
            retry = self._default_retry
        elif not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy or None, got {retry!r}")
        if self._named_jobs:
            return self._new_recorded_job(
                key, fn, args, int(priority), limit, retry, timeout, given_retry
            )
        return JobHandle(self, key, fn, args, int(priority), limit, retry)

    def _new_recorded_job(
        self,
        key: str | int,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        priority: int,
        limit: float,
        retry: RetryPolicy | None,
        timeout: float | None,
        given_retry: RetryPolicy | None,
    ) -> RecordedJob[T]:
        """A job with a record: a registered function and JSON arguments only."""
        assert self._config.registry is not None
        name = self._config.registry.name_of(fn)
        job_id = self._job_id(key)
        if args:
            check_json(args, f"an argument of job {job_id!r}")
        record = JobRecord(
            job_id=job_id,
            name=name,
            args=list(args),
            priority=priority,
            timeout=None if timeout is None else limit,
            retry=policy_to_json(given_retry),
        )
        return RecordedJob(self, key, fn, args, priority, limit, retry, record)

    def _key(self, job_id: str) -> str | int:
        """The key of ``job_id`` in the pool's maps.

        Generated ids are this pool's 16-hex-digit prefix plus a 16-hex-digit counter, and only
        the counter is kept (the id string costs more memory than the rest of a queued job);
        the string is made again when asked for. Any other id is its own key.
        """
        if len(job_id) == 32 and job_id.startswith(self._id_prefix):
            suffix = job_id[16:]
            if _HEX16.fullmatch(suffix):
                return int(suffix, 16)
        return job_id

    def _job_id(self, key: str | int) -> str:
        return key if isinstance(key, str) else f"{self._id_prefix}{key:016x}"

    def _accept(self, job: JobHandle[Any]) -> bool:
        """Accept ``job`` if there is room now; ``False`` if the pool is full.

        The hot path of every submission: ``_register`` and ``_place`` written out.
        """
        if self._closed:
            raise PoolClosed(f"cannot accept job {job.job_id!r}: the pool is closed")
        live = self._live
        key = job._key
        if key in live:
            raise DuplicateJob(job.job_id)
        slot = self._pop_idle() if self._idle else None
        if slot is None and self._bounded_waiting >= self._bound:
            return False
        now = self._now()
        job._submitted_m = job._ready_m = now
        live[key] = job
        counters = self._counters
        counters.submitted += 1
        counters.queued += 1
        if slot is not None:
            self._start(job, now)
            self._runtime.unpark(slot, job)
        else:
            self._bounded_waiting += 1
            self._waiting.push(job)
        return True

    def _register(self, job: JobHandle[Any]) -> None:
        """Count an accepted job in as live and queued; its clocks start now."""
        now = self._now()
        job._submitted_m = job._ready_m = now
        journal = self._journal
        if journal is not None:
            assert isinstance(job, RecordedJob)
            journal.accepted(job, now)
        self._live[job._key] = job
        self._counters.submitted += 1
        self._counters.queued += 1

    def _reserve(self, job: JobHandle[Any]) -> bool:
        """With a store: accept ``job`` into a place of the waiting room, where it stays out of
        the workers' reach until it is on disk (``_make_durable``); ``False`` if full."""
        if self._closed:
            raise PoolClosed(f"cannot accept job {job.job_id!r}: the pool is closed")
        if job._key in self._live:
            raise DuplicateJob(job.job_id)
        if self._bounded_waiting >= self._bound:
            return False
        self._register(job)
        self._bounded_waiting += 1
        return True

    async def _write_accepted(self, job: JobHandle[Any]) -> None:
        """Write a reserved job to the store, then let the workers have it.

        The wait for the write is shielded (``Store.wait``): once it has begun, ``submit``
        finishes (a cancellation is delivered at the caller's next checkpoint), so "returned"
        and "on disk" stay the same thing. If the write fails, the job is taken back and the
        error raised.
        """
        assert self._journal is not None
        assert isinstance(job, RecordedJob)
        try:
            await self._journal.write_accepted(job)
        except BaseException:
            self._revoke(job)
            raise
        self._place_reserved(job)

    def _write_accepted_now(self, job: JobHandle[Any]) -> None:
        """As :meth:`_write_accepted`, blocking for the write (``submit_nowait``)."""
        assert self._journal is not None
        assert isinstance(job, RecordedJob)
        try:
            self._journal.write_accepted_now(job)
        except BaseException:
            self._revoke(job)
            raise
        self._place_reserved(job)

    def _place_reserved(self, job: JobHandle[Any]) -> None:
        if job._status is _QUEUED:  # not cancelled while it was being written
            self._bounded_waiting -= 1  # its reservation; _place counts it again if it waits
            self._place(job, bounded=True)

    def _pop_idle(self) -> Slot | None:
        idle = self._idle
        while idle:
            slot = idle.pop()
            if not slot.abandoned:
                return slot
        return None

    def _place(self, job: JobHandle[Any], *, bounded: bool, slot: Slot | None = None) -> None:
        """Give a queued job to an idle worker (``slot``, else any), or to the waiting room."""
        if slot is None and not self._starts_paused:
            slot = self._pop_idle()
        if slot is not None:
            self._start(job)
            self._runtime.unpark(slot, job)
            return
        job._status = _QUEUED
        if bounded:  # a first attempt (a retry re-enters beyond the bound)
            self._bounded_waiting += 1
        self._waiting.push(job)

    def _admit_offers(self) -> None:
        """Accept blocked submissions, best first, while there is room for them."""
        bound = self._bound
        offers = self._offers
        while len(offers) and self._bounded_waiting < bound:
            offer = offers.pop()
            if offer is None:
                return
            if self._settle_offer(offer):
                if self._journal is None:
                    self._place(offer.job, bounded=True)
                else:  # reserved: its submitter writes it to the store, then places it
                    self._bounded_waiting += 1

    def _revoke(self, job: JobHandle[Any]) -> None:
        """Undo the acceptance of a job whose ``submit`` was cancelled in the same instant.

        Only on asyncio, for a plain ``task.cancel()`` (see ``Runtime.park``). A job still
        waiting is taken back as if never submitted; one already handed to a worker is
        cancelled (it does not start unless its worker already started it).
        """
        if job._status is _QUEUED and not job._attempts:
            job._status = _CANCELLED  # dead in the waiting room; never counted as ended
            job._cancel_reason = SUBMIT_CANCELLED
            del self._live[job._key]
            counters = self._counters
            counters.submitted -= 1
            counters.queued -= 1
            self._bounded_waiting -= 1
            if self._journal is None:  # with a journal it was only reserved, never queued
                self._waiting.discard()
            if not self._live and self._idle_event is not None:
                self._idle_event.set()
                self._idle_event = None
            if len(self._offers):
                self._admit_offers()
        elif not job._status.ended:
            self._cancel_job(job, SUBMIT_CANCELLED)

    def _settle_offer(self, offer: Offer) -> bool:
        """Accept an offer taken from ``_offers``; ``False`` if its id became live meanwhile."""
        job = offer.job
        if job._key in self._live:
            self._runtime.unpark(offer.slot, DuplicateJob(job.job_id))
            return False
        self._register(job)
        self._runtime.unpark(offer.slot, True)
        return True

    # -- the workers -----------------------------------------------------------------------

    async def _open_workers_group(self, nursery: TaskGroupLike) -> None:
        """Start the host of the workers' task group, and its supervisor in the pool's
        ``nursery``; return once the group is open."""
        opened = self._runtime.Event()
        self._runtime.spawn_detached(partial(self._host_workers, opened), "trio_jobpool workers")
        nursery.start_soon(self._supervise_workers)
        await opened.wait()

    async def _host_workers(self, opened: EventLike) -> None:
        """The workers' task group: its own task, outside the pool's nursery, so that the pool
        can stop waiting for a job that ignores its cancellation (see ``_abandon``).

        While the pool has not given up on it, everything the group raises is handed to
        ``_supervise_workers``, a child of the pool's nursery, which raises it there: to the
        pool's block, the workers behave as children of its nursery. A cancellation of this
        task itself (the end of the run) propagates. Once the pool has abandoned it, anything
        else it raises (an abandoned job's ``KeyboardInterrupt``, say) has nobody to go to, and
        out of a Trio system task it would crash the run (``TrioInternalError``): it is logged
        (an error on the ``trio_jobpool`` logger, with its traceback), and the task ends.
        """
        try:
            async with self._runtime.open_task_group() as group:
                self._workers_group = group
                opened.set()
                await self._no_more_workers.wait()  # then the group waits for its workers
        except BaseException as exc:
            if isinstance(exc, self._runtime.cancelled_exc):
                raise
            if self._abandoned:
                logger.error(
                    "a worker whose job the pool's shutdown abandoned raised this, which no "
                    "one waits for any more",
                    exc_info=exc,
                )
                return
            self._workers_host_error = exc  # raised by _supervise_workers
        finally:
            self._workers_settled.set()
            opened.set()  # (if it failed to open: _open_workers_group must not wait)

    async def _supervise_workers(self) -> None:
        """Stand for the workers' task group in the pool's nursery: raise what the group
        raised; if the pool's nursery is cancelled first, cancel the workers and wait for
        them, up to the shutdown's grace (then abandon those left)."""
        try:
            await self._workers_settled.wait()
        finally:
            if not self._workers_settled.is_set():
                self._abort_workers()
                with self._runtime.CancelScope(shield=True) as scope:
                    scope.deadline = self._abandon_at
                    await self._workers_settled.wait()
                if not self._workers_settled.is_set():
                    self._abandon()
            error, self._workers_host_error = self._workers_host_error, None
            if error is not None:
                while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
                    error = error.exceptions[0]  # as a worker in the pool's nursery raised it
                raise error

    def _spawn_workers(self, count: int) -> None:
        """Start ``count`` workers. Each is idle (or holds a waiting job) from this moment on,
        so jobs submitted before its task first runs are handed to it, not queued."""
        group = self._workers_group
        assert group is not None
        for _ in range(count):
            self._workers += 1
            self._worker_tasks += 1
            slot = Slot()
            job = self._take()
            if job is None:
                self._idle.append(slot)
            else:
                self._runtime.unpark(slot, job)
            group.start_soon(self._worker, slot)

    async def _worker(self, slot: Slot) -> None:
        """Run jobs until told to exit (resize, stop) or cancelled (the pool is torn down).

        Cancelled from outside (the pool is going away) or interrupted (``KeyboardInterrupt``),
        it records the job it was running or being handed as cancelled, and lets the exception
        go on.
        """
        task = self._runtime.current_task()
        self._worker_task_set.add(task)
        try:
            job: JobHandle[Any] | None = await self._runtime.park(slot)
            while job is not None:
                job = await self._run_jobs(job, slot)
        except BaseException:
            late = slot.late
            if isinstance(late, JobHandle) and late._status is _RUNNING:
                self._end_cancelled(late, None)
            self._workers -= 1
            raise
        finally:
            self._worker_task_set.discard(task)
            self._worker_tasks -= 1
            if self._worker_tasks == 0 and self._stopping:
                self._workers_gone.set()

    async def _run_jobs(self, job: JobHandle[Any], slot: Slot) -> JobHandle[Any] | None:
        """Run ``job`` and then the jobs this worker takes next, in one cancel scope, until the
        scope is spent; return the worker's next job, or ``None``: the worker exits (it is
        uncounted already, or its job was abandoned and it is no longer the pool's).

        Invariants: the scope belongs to the attempt in progress alone (cancelling a job, by
        id, by its timeout through the deadline watcher or by the shutdown, cancels it); it is
        *spent* once cancelled for the job that used it, and a fresh one serves the next job.
        Between attempts nothing can cancel it and it has no deadline, so it is inert (a
        distributed pool's fence is its deadline only while an attempt runs). One scope serves
        a run of attempts because creating one costs more than the rest of a short job.
        """
        runtime = self._runtime
        fence = self._fence_deadline if self._shared_queue else None
        stray_cancel = runtime.stray_cancel_check()
        ready_in_a_row = 0
        scope = runtime.CancelScope()
        with scope:
            while True:
                if self._journal is not None and not await self._start_written(job):
                    pass  # not recorded as started: requeued, ended, or abandoned
                elif job._cancel_reason is not None or not job._timeout:
                    self._end_unstarted(job)  # its code never runs
                else:
                    ended = job  # (its reason is read again once the attempt is over)
                    _current_job.set(job)
                    job._scope = scope
                    if fence is not None:
                        scope.deadline = fence(job)
                    try:
                        value = await job._fn(*job._args)
                    except BaseException as exc:
                        if job._status is not _RUNNING:  # abandoned: no longer the pool's
                            if isinstance(exc, (Exception, runtime.cancelled_exc)):
                                return None
                            raise
                        job._scope = None
                        propagate = self._attempt_raised_in_worker(job, exc)
                        if propagate is exc:
                            raise
                        if propagate is not None:
                            raise propagate from None
                    else:
                        if job._status is not _RUNNING:  # abandoned
                            return None
                        job._scope = None
                        self._attempt_ended(job, JobStatus.COMPLETED, value)
                    if ended._cancel_reason is not None:
                        break  # spent
                    if fence is not None:
                        if scope.cancel_called:  # a fenced attempt: its reason was cleared
                            break
                        scope.deadline = _INF
                    if stray_cancel is not None and stray_cancel():
                        await runtime.absorb_stray_cancel()
                ready_in_a_row += 1
                if ready_in_a_row >= _YIELD_EVERY:
                    ready_in_a_row = 0
                    await runtime.checkpoint()  # never starve the rest of the program
                next_job = self._take() if self._workers <= self._max_workers else None
                if next_job is None:
                    ready_in_a_row = 0
                    next_job = await self._next_job(slot)
                    if next_job is None:
                        return None
                job = next_job
        return await self._next_job(slot)

    def _attempt_raised_in_worker(
        self, job: JobHandle[Any], exc: BaseException
    ) -> BaseException | None:
        """Record how an attempt of ``job`` that raised ``exc`` ended; return what the worker
        must raise (``exc`` itself, or another exception), ``None`` for nothing."""
        if isinstance(exc, Exception):
            self._attempt_raised(job, exc)
            return None
        return self._job_base_exception(job, exc, self._runtime.cancelled_exc)

    def _job_base_exception(
        self, job: JobHandle[Any], exc: BaseException, cancelled_exc: type[BaseException]
    ) -> BaseException | None:
        """Record how a job that raised a ``BaseException`` ended; return what must propagate.

        * The job's own cancel scope was cancelled (by id, timeout or shutdown): the job ends
          cancelled or timed out; its scope catches the cancellation on the way out.
        * Something around the pool is being cancelled: the job ends cancelled and the
          cancellation goes on (if the job's tasks raised errors as well, they become the
          cause, and one plain cancellation goes on).
        * The job raised a cancellation although nothing cancelled it (on asyncio, for
          example, by awaiting a task that someone else cancelled): that is the job's own
          outcome; it ends cancelled and the worker carries on.
        * ``KeyboardInterrupt``, ``SystemExit`` and the like are never swallowed: the job ends
          cancelled and the exception goes on.
        """
        cancelled: BaseException
        rest: BaseExceptionGroup[BaseException] | None
        if isinstance(exc, BaseExceptionGroup):
            cancelled_part, rest = exc.split(cancelled_exc)
            if cancelled_part is None or (
                rest is not None and not isinstance(rest, ExceptionGroup)
            ):
                self._end_cancelled(job, None, interrupted(exc))
                return exc
            cancelled = first_leaf(cancelled_part)
        elif isinstance(exc, cancelled_exc):
            cancelled, rest = exc, None
        else:
            self._end_cancelled(job, None, interrupted(exc))
            return exc
        if job._cancel_reason is not None:  # this job's scope
            self._attempt_ended(job, job._cancel_reason.kind.status, None, cause=rest)
            return exc if rest is None else None
        if self._runtime.outer_cancelled():
            self._end_cancelled(job, rest)
            return exc if rest is None else cancelled
        self._runtime.forget_stray_cancel()
        job._cancel_reason = OWN_CODE
        self._attempt_ended(job, JobStatus.CANCELLED, None, cause=exc)
        return None

    def _fence_deadline(self, job: JobHandle[Any]) -> float:
        """A distributed pool's hook: when (pool clock) the running ``job`` must stop because
        its lease may lapse; its scope's deadline while it runs (see ``_worker``)."""
        return _INF

    def _end_unstarted(self, job: JobHandle[Any]) -> None:
        """End a job handed to this worker that must not start (see ``_worker``)."""
        if job._cancel_reason is None:
            job._cancel_reason = TIMED_OUT
        self._attempt_ended(job, job._cancel_reason.kind.status, None)

    def _end_cancelled(
        self,
        job: JobHandle[Any],
        cause: BaseException | None,
        reason: CancelReason = SHUTDOWN,
    ) -> None:
        """End a running job whose worker is being cancelled from outside (or interrupted).
        It ends ``CANCELLED``: with ``reason``, unless it was cancelled already for a reason
        other than its timeout."""
        job._scope = None
        current = job._cancel_reason
        if current is None or current.kind is CancelKind.TIMEOUT:
            job._cancel_reason = reason
        self._attempt_ended(job, JobStatus.CANCELLED, None, cause=cause)

    async def _next_job(self, slot: Slot) -> JobHandle[Any] | None:
        """The next job for this worker, parking if none waits; ``None``: exit (uncounted)."""
        if self._workers > self._max_workers:
            self._workers -= 1
            return None
        job = self._take()
        if job is None:
            job = await self._idle_wait(slot)
        return job

    async def _idle_wait(self, slot: Slot) -> JobHandle[Any] | None:
        """Park as an idle worker until handed a job; ``None``: exit (already uncounted)."""
        if self._journal is not None and not self._stopping and not self._starts_paused:
            # Commit the ends of this worker's jobs now rather than with a later job's start;
            # a failed commit is raised to whoever needs it next: a submit, a start.
            with contextlib.suppress(StoreError):
                await self._journal.flush()
            if self._workers <= self._max_workers:
                ready = self._take()
                if ready is not None:
                    return ready
        if self._stopping or self._workers > self._max_workers:
            self._workers -= 1
            return None
        _current_job.set(None)
        self._idle.append(slot)
        job: JobHandle[Any] | None = await self._runtime.park(slot)
        return job

    async def _watch_deadlines(self) -> None:
        """Time out running jobs: one task per pool sleeps until the earliest deadline.

        Arming a cancel scope's deadline for every job costs about as much as a short job's
        whole run, so timeouts are kept here instead: starting a job with a deadline earlier
        than the watcher's next wake-up moves that wake-up (rare: with a common timeout, later
        jobs have later deadlines); otherwise starting and ending a job costs a set insertion.
        When it wakes, the watcher cancels the scope of every running job whose deadline has
        passed (exactly as the scope's own deadline would have) and sleeps until the next one.
        """
        runtime = self._runtime
        while True:
            with self._watch_scope:  # cancelled by _shut_down, or its deadline passes
                await runtime.sleep(_INF)
            if self._stopping:
                return
            now = self._now()
            target = _INF
            if self._starts_paused:
                if self._resume_at <= now:
                    self._resume_starts()
                else:
                    target = self._resume_at
            for job in list(self._running):
                deadline = job._started_m + job._timeout  # type: ignore[operator]
                if deadline <= now:
                    if job._cancel_reason is None:
                        job._cancel_reason = TIMED_OUT
                        if job._scope is not None:
                            job._scope.cancel()
                elif deadline < target:
                    target = deadline
            self._watch_scope = runtime.CancelScope()
            self._watch_scope.deadline = self._watch_target = target

    def _take(self) -> JobHandle[Any] | None:
        """The next job for a free worker, already marked running; ``None`` if none waits (or
        if starts are paused because the store cannot commit)."""
        if self._starts_paused:
            return None
        if len(self._offers):
            return self._take_contended()
        job = self._waiting.pop()
        if job is not None:
            if not job._attempts:  # a first attempt counts against the bound; a retry does not
                self._bounded_waiting -= 1
            self._start(job)
        return job

    def _take_contended(self) -> JobHandle[Any] | None:
        """``_take`` while blocked submissions wait: the best of the queue and the offers."""
        waiting = self._waiting
        while True:
            job = waiting.peek()
            offer = self._offers.peek()
            if (
                offer is not None
                and self._journal is None  # with a journal, an offer must be written first
                and (job is None or offer._priority < job._priority)
            ):
                self._offers.pop()
                if not self._settle_offer(offer):
                    continue
                self._start(offer.job)
                return offer.job
            if job is None:
                return None
            waiting.pop()
            bounded = not job._attempts
            self._start(job)
            if bounded:
                self._bounded_waiting -= 1
                self._admit_offers()
            return job

    def _start(self, job: JobHandle[Any], now: float | None = None) -> None:
        """Count a taken job as running from ``now``; with a journal, queue its start's write
        (the worker waits for it before the job's code runs: ``_start_written``)."""
        if now is None:
            now = self._now()
        counters = self._counters
        counters.queued -= 1
        counters.running += 1
        counters.record_wait(now - job._ready_m)
        job._status = _RUNNING
        job._attempts += 1
        job._started_m = now
        job._exec_time = None
        deadline = now + job._timeout
        if self._journal is not None:
            assert isinstance(job, RecordedJob)
            self._journal.started(job, now)
        self._running.add(job)
        if deadline < self._watch_target:
            self._watch_target = self._watch_scope.deadline = deadline

    def _attempt_raised(self, job: JobHandle[Any], exc: Exception) -> None:
        """An attempt of the running ``job`` raised ``exc``: retry it, or end it."""
        reason = job._cancel_reason
        if reason is not None:
            # The job raised while being cancelled or timed out (for example from cleanup
            # code): it ends as cancelled/timed out, with what it raised as the cause.
            self._attempt_ended(job, reason.kind.status, None, cause=exc)
            return
        policy = job._retry
        # An attempt a crash or a shutdown cut short is counted in attempts, not as a failure.
        failures = job._attempts
        if isinstance(job, RecordedJob):
            failures -= job._record.crashes + job._record.interrupted
        if policy is not None and not self._stopping and policy.should_retry(failures, exc):
            self._schedule_retry(job, exc, policy.delay(job._attempts, self._rng))
            return
        # A failed job's outcome keeps the traceback it ended with (see JobHandle.wait).
        self._attempt_ended(job, JobStatus.FAILED, (exc, exc.__traceback__))

    def _attempt_ended(
        self,
        job: JobHandle[Any],
        status: JobStatus,
        result: Any,
        cause: BaseException | None = None,
    ) -> None:
        """Record the end of a running attempt that ends the job with ``status``. A job with
        a record must return JSON: any other value fails it with ``JobNotSerializable``."""
        counters = self._counters
        now = self._attempt_over(job)
        if status is JobStatus.COMPLETED and self._named_jobs and result is not None:
            try:
                check_json(result, f"the result of job {job.job_id!r}")
            except JobNotSerializable as exc:
                status, result = JobStatus.FAILED, (exc, exc.__traceback__)
        if status is JobStatus.COMPLETED:
            counters.completed += 1
        elif status is JobStatus.FAILED:
            counters.failed += 1
        else:
            result = NO_CAUSE if cause is None else Unbuilt(cause)
            if status is JobStatus.CANCELLED:
                counters.cancelled += 1
            else:
                counters.timed_out += 1
        self._end(job, status, result, now)

    def _attempt_over(self, job: JobHandle[Any]) -> float:
        """Count a running attempt out (its run time into the stats); return the time."""
        self._counters.running -= 1
        self._running.discard(job)
        now = self._now()
        exec_time = job._exec_time = now - job._started_m  # type: ignore[operator]
        self._counters.record_exec(exec_time)
        return now

    def _schedule_retry(self, job: JobHandle[Any], exc: Exception, delay: float) -> None:
        """The failed attempt of the running ``job`` is retried after ``delay`` seconds, in a
        timer task of the pool's nursery (holding no worker)."""
        counters = self._counters
        self._attempt_over(job)
        counters.queued += 1
        counters.retried += 1
        job._status = _RETRYING
        job._result = exc
        if self._journal is not None:
            assert isinstance(job, RecordedJob)
            self._journal.retrying(job, exc, delay)
        self._nursery.start_soon(self._retry_later, job, delay)

    async def _retry_later(self, job: JobHandle[Any], delay: float) -> None:
        if job._status is not _RETRYING:  # cancelled before this task started
            return
        with self._runtime.CancelScope() as scope:
            job._scope = scope
            await self._runtime.sleep(delay)
        if job._status is _RETRYING:
            job._scope = None
            job._ready_m = self._now()
            self._place(job, bounded=False)

    def _end(self, job: JobHandle[Any], status: JobStatus, result: Any, now: float) -> None:
        """A live job of this pool, no longer counted as queued or running, ends: it leaves the
        live jobs, takes its final state, and its end is reported (``_report_end``)."""
        live = self._live
        del live[job._key]
        self._finish(job, status, result, now)
        if self._named_jobs:
            self._report_end(job, status, result, now)
        if not live and self._idle_event is not None:
            self._idle_event.set()
            self._idle_event = None

    def _finish(self, job: JobHandle[Any], status: JobStatus, result: Any, now: float) -> None:
        """Give ``job``'s handle its final state: status, outcome, end time; keep it in the
        history, release its arguments, wake the tasks that wait for it."""
        job._status = status
        job._result = result
        job._finished_m = now
        job._args = ()  # an ended job no longer holds on to its arguments
        if self._history_size:
            key = job._key
            history = self._history
            history[key] = job  # an id used again: the newest job is the one found
            ended = self._ended
            ended.append(job)
            if len(ended) > self._history_size:
                oldest = ended.popleft()
                if history.get(oldest._key) is oldest:
                    del history[oldest._key]
        extra = job._extra
        if extra is not None and extra.done is not None:
            extra.done.set()

    def _report_end(self, job: JobHandle[Any], status: JobStatus, result: Any, now: float) -> None:
        """Hook: where the end of a job with a record goes. Here: to the journal."""
        assert self._journal is not None
        assert isinstance(job, RecordedJob)
        self._journal.ended(job, status, result, now)

    # -- the journal -----------------------------------------------------------------------

    async def _start_written(self, job: JobHandle[Any]) -> bool:
        """Before a job's code runs, wait until its start is durable (see ``_journal.py``).
        ``False`` if it must not run: the write failed (then the job ended unstarted if it was
        cancelled meanwhile, else it is queued again), or the shutdown abandoned it during the
        wait (then it is no longer the pool's, and nothing is done with it)."""
        assert self._journal is not None
        assert isinstance(job, RecordedJob)
        try:
            await self._journal.start_written(job)
        except StoreError:
            if job._status is not _RUNNING:  # abandoned meanwhile (see _abandon)
                return False
            if job._cancel_reason is not None:  # cancelled meanwhile: it ends, unstarted
                self._end_unstarted(job)
            else:
                self._requeue_unstarted(job)
            return False
        return job._status is _RUNNING  # else abandoned meanwhile: it ended already

    def _requeue_unstarted(self, job: RecordedJob[Any]) -> None:
        """Put back a job whose start could not be written, as if it had never been taken: in
        front of the waiting jobs of its priority. It runs once the store commits again
        (starts are paused meanwhile: see ``_commit_result``)."""
        assert self._journal is not None
        counters = self._counters
        counters.running -= 1
        counters.queued += 1
        counters.forget_wait(job._started_m - job._ready_m)  # type: ignore[operator]
        self._running.discard(job)
        job._attempts -= 1
        job._status = _QUEUED
        self._journal.requeued(job)
        if not job._attempts:  # never started: no start time (a retry shows its failed one)
            job._started_m = None
            self._bounded_waiting += 1  # and a first attempt waits within the bound again
        self._waiting.push_front(job)

    def _commit_result(self, error: StoreError | None) -> None:
        """The store's report of a failed commit (``error``), or of the first commit that
        succeeded after failures (``None``); called on the event loop.

        A failure pauses the starts of jobs (a start that cannot be written would leave the
        job's run unrecorded) for the journal's backoff; then the deadline watcher lets the
        workers try again, and first queues the failed updates again. A success resumes the
        starts at once and resets the backoff. Submits are not paused: each one is its own
        test of the store, and fails with ``StoreError`` while it fails.
        """
        journal = self._journal
        if self._stopping or journal is None:
            return
        if error is None:
            journal.recovered()
            if self._starts_paused:
                self._resume_starts()
            return
        if self._starts_paused:
            return
        self._starts_paused = True
        self._resume_at = resume = self._now() + journal.pause_for()
        if resume < self._watch_target:
            self._watch_target = self._watch_scope.deadline = resume

    def _resume_starts(self) -> None:
        """End a pause of the starts: write the failed updates again, and hand waiting jobs to
        the idle workers (their starts are the next test of the store)."""
        self._starts_paused = False
        self._resume_at = _INF
        assert self._journal is not None
        self._journal.retry_failed()
        while True:
            slot = self._pop_idle()
            if slot is None:
                return
            job = self._take()
            if job is None:
                self._idle.append(slot)
                return
            self._runtime.unpark(slot, job)

    def _job_from_record(self, record: JobRecord, key: str | int) -> RecordedJob[Any]:
        """A handle for a stored job (to resume it, or to show an ended one)."""
        registry = self._config.registry
        fn = registry.get(record.name) if registry is not None and record.name in registry else None
        return job_from_record(
            self,
            record,
            fn,
            key,
            self._default_timeout,
            self._default_retry,
            wall_clock_converter(self._now()),
        )

    def _recover(self, records: list[JobRecord]) -> None:
        """Take over the live jobs a store returned on opening, in their stored order.

        They count as submitted to this pool. A recovered backlog counts against the bound
        (first attempts) like any waiting job, so new submissions wait for it to drain.
        """
        wall_now = time.time()
        for record in records:
            key = self._key(record.job_id)
            if type(key) is int and key >= self._next_id:
                self._next_id = key + 1
            job = self._job_from_record(record, key)
            self._live[key] = job
            self._counters.submitted += 1
            self._counters.queued += 1
            if record.status == "retrying":
                job._status = _RETRYING
                delay = max(0.0, (record.retry_at or wall_now) - wall_now)
                self._nursery.start_soon(self._retry_later, job, delay)
            else:
                job._status = _QUEUED
                self._place(job, bounded=not job._attempts)

    # -- cancelling ------------------------------------------------------------------------

    def cancel(self, job_id: str) -> None:
        """Cancel a live job by id: it ends ``CANCELLED``.

        A waiting or retrying job is removed at once (O(1)) and never runs again. A running
        job's cancel scope is cancelled; it ends as soon as it reaches a checkpoint, and its
        worker moves on. A job that shields itself and returns a value ends ``COMPLETED``.

        Raises:
            JobNotFound: no live job has this id (unknown, or already ended).
        """
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
                if len(self._offers):
                    self._admit_offers()
        else:
            self._cancel_job(job, CANCELLED)

    def _cancel_job(self, job: JobHandle[Any], reason: CancelReason) -> None:
        """Cancel the live ``job`` for ``reason``: a running job's scope is cancelled (it ends
        when its code next reaches a checkpoint, keeping its first reason); a waiting or
        retrying one ends ``CANCELLED`` now."""
        status = job._status
        if status is _RUNNING:
            if job._cancel_reason is None:
                job._cancel_reason = reason
            if job._scope is not None:
                job._scope.cancel()
            return
        job._cancel_reason = reason
        counters = self._counters
        counters.queued -= 1
        counters.cancelled += 1
        if status is _QUEUED:
            self._waiting.discard()
            if not job._attempts:
                self._bounded_waiting -= 1
        elif job._scope is not None:  # retrying: stop its backoff timer
            job._scope.cancel()
            job._scope = None
        self._end(job, JobStatus.CANCELLED, NO_CAUSE, self._now())
        if status is _QUEUED and len(self._offers):
            self._admit_offers()

    async def acancel(self, job_id: str) -> None:
        """:meth:`cancel`, as a checkpoint. The same call works on every pool: on a distributed
        pool it reaches jobs of any process, through Redis.

        Raises:
            JobNotFound: no live job has this id.
        """
        self.cancel(job_id)
        await self._runtime.checkpoint()

    # -- looking at jobs -------------------------------------------------------------------

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
        jobs = sorted(self._running, key=_started_m)[:limit]
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

    # -- for the handles (JobOwner) --------------------------------------------------------

    def _wall(self, monotonic: float) -> float:
        return self._wall_offset + monotonic

    def _name_of(self, fn: Callable[..., Awaitable[Any]]) -> str | None:
        registry = self._config.registry
        if registry is None:
            return None
        try:
            return registry.name_of(fn)
        except JobNotRegistered:
            return None

    def _new_event(self) -> EventLike:
        return self._runtime.Event()

    async def _checkpoint(self) -> None:
        await self._runtime.checkpoint()

    # -- resizing, joining, stopping -------------------------------------------------------

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

    def close(self) -> None:
        """Stop accepting jobs: ``submit`` raises :class:`PoolClosed` from now on, and so do
        submissions that are waiting for room. Jobs already accepted are not affected."""
        if self._closed:
            return
        self._closed = True
        for offer in self._offers.drain():
            self._runtime.unpark(
                offer.slot,
                PoolClosed(f"cannot accept job {offer.job.job_id!r}: the pool is closed"),
            )

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

    def _begin_wait(self, target: JobHandle[Any] | None) -> bool:
        """Before the current task waits on ``target`` (a job of this pool; ``None``: room in
        this pool, for a submit). ``True``: the task is the own task of a running job of the
        pool, now counted as blocked; the caller calls ``_end_wait`` once the wait is over.
        ``False``: anyone else (a task the job started does not count: the job itself may go
        on), or a pool with a shared queue (other processes may run what it waits for).

        Invariant: ``_blocked`` counts the running jobs whose own task waits so. When every
        worker is busy (``running >= max_workers``) and every running job waits so, no worker
        will ever be free to run what they wait for (a job not started yet, or a running job
        that waits likewise), and no room will come for a submit: only a timeout or a cancel
        from outside would end the waits.

        Raises:
            RuntimeError: the wait would complete that deadlock (or ``target`` is the job
                itself). The waits already under way go on.
        """
        if self._shared_queue:
            return False
        current = _current_job.get()
        if current is None or current._owner is not self or current._status is not _RUNNING:
            return False
        if self._runtime.current_task() not in self._worker_task_set:
            return False
        if target is current:
            raise RuntimeError(f"job {current.job_id!r} waits for itself")
        running = self._counters.running
        if self._blocked + 1 >= running >= self._max_workers:
            what = "room in the pool" if target is None else f"job {target.job_id!r}"
            raise RuntimeError(
                f"job {current.job_id!r} would wait forever for {what}: all {running} "
                f"running jobs of its pool (max_workers={self._max_workers}) wait on jobs of "
                "the same pool or for room in it, so no worker would ever be free to run "
                "them. Submit without awaiting the handle (return it, or let another task "
                "collect it), or run the sub-jobs in a separate pool (see docs/guide.md)"
            )
        self._blocked += 1
        return True

    def _end_wait(self) -> None:
        """A wait that ``_begin_wait`` counted is over."""
        self._blocked -= 1

    def _refuse_inside_own_job(self, what: str) -> None:
        current = _current_job.get()
        if current is not None and current._owner is self and current._status is _RUNNING:
            raise RuntimeError(
                f"{what} called from inside job {current.job_id!r} of the same pool "
                "would wait for itself"
            )

    def _shut_down(self) -> None:
        """Close, cancel every live job, and tell every worker to exit (idempotent, sync)."""
        self.close()
        if not self._stopping:
            self._stopping = True
            self._abandon_at = self._now() + self._config.shutdown_grace
            self._no_more_workers.set()
            for job in list(self._live.values()):
                self._cancel_job(job, SHUTDOWN)
            idle, self._idle = self._idle, []
            for slot in idle:
                if not slot.abandoned:
                    self._workers -= 1
                    self._runtime.unpark(slot, None)
            self._watch_scope.cancel()
        if self._worker_tasks == 0:
            self._workers_gone.set()

    def _progressed(self, job: RecordedJob[Any]) -> None:
        """Hook (``JobOwner``): a live job with a record reported progress. Here: to the
        journal."""
        if self._journal is not None:
            self._journal.progressed(job)

    async def _start_services(self, nursery: TaskGroupLike) -> None:
        """Hook: start the pool's own service tasks in its ``nursery``, once the workers'
        group is open and before any worker exists (a distributed pool has some)."""

    def _after_stop(self) -> None:
        """Once stopped: end the pool's own service tasks (a distributed pool has some)."""

    async def _final_flush(self) -> None:
        """Once the nursery is gone: send what is still queued for a shared store."""

    def _abort(self) -> None:
        """Cancel everything at once, including the pool's own tasks (the block failed)."""
        self._abort_workers()
        self._nursery.cancel_scope.cancel()

    def _abort_workers(self) -> None:
        """Cancel every job and the workers' task group (they are going away)."""
        self._shut_down()
        if self._workers_group is not None:
            self._workers_group.cancel_scope.cancel()

    def _abandon(self) -> None:
        """Stop waiting for the jobs still running after the shutdown's grace: they ignored
        their cancellation. Each is logged, ended ``CANCELLED`` here (counted in
        ``total_cancelled``, no longer in ``active_workers``) and left as it was in the store;
        its worker, when the job finally ends, leaves without touching the pool."""
        if self._abandoned:
            return
        self._abandoned = True
        grace = self._config.shutdown_grace
        for job in sorted(self._running, key=_started_m):
            logger.warning(
                "job %r was still running %g s after the pool's shutdown cancelled it: "
                "abandoned; it runs on in the background (name: %s)%s",
                job.job_id,
                grace,
                job.name,
                "" if not self._named_jobs else ", and stays running in the store",
            )
            self._abandoned_ids.append(job.job_id)
            job._cancel_reason = ABANDONED
            job._scope = None
            self._attempt_over(job)
            self._end_abandoned(job)
        self._workers_gone.set()
        self._workers_settled.set()

    def _end_abandoned(self, job: JobHandle[Any]) -> None:
        """End the handle of an abandoned job, counted in ``total_cancelled``, writing nothing
        to the store: its record stays ``running``, so the next pool on the file counts a
        crash and runs it again."""
        self._counters.cancelled += 1
        self._end(job, _CANCELLED, NO_CAUSE, self._now())
