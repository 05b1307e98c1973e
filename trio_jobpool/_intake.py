"""Intake: ``submit`` and ``submit_nowait``, new jobs and their ids, blocked submissions
(*offers*), and with a journal the write of an accepted job before a worker may take it."""

from __future__ import annotations

import datetime
import math
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar, TypeVarTuple

from ._errors import (
    DuplicateJob,
    PoolClosed,
    QueueFull,
)
from ._job import (
    SUBMIT_CANCELLED,
    JobHandle,
    JobStatus,
    RecordedJob,
)
from ._later import Later, due_time
from ._limits import check_key
from ._records import policy_to_json
from ._registry import check_json
from ._retry import RetryPolicy
from ._validate import seconds
from ._waiting_room import Offer
from .stores._base import JobRecord

__all__ = ["Intake"]


T = TypeVar("T")
Ts = TypeVarTuple("Ts")

_QUEUED: Final = JobStatus.QUEUED
_SCHEDULED: Final = JobStatus.SCHEDULED
_CANCELLED: Final = JobStatus.CANCELLED
_INF: Final = math.inf


class Intake(Later):
    """Submitting jobs (see the module docstring)."""

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
        """Submit ``fn(*args)`` as a job and return its handle once the pool has accepted it.

        Waits while the pool is full (backpressure). With a store, it returns once the job is
        written; that write is not interrupted by a cancellation.

        Cancellation: always a cancel point. If ``submit`` is cancelled, the job was not
        accepted (it has no handle, is not counted, and ``get`` does not find it); if it
        returns, the job was accepted. When the pool is full it blocks until the job is
        accepted, and that wait is a schedule point. When it accepts at once, it yields to the
        scheduler only if no ``submit`` to the same pool has yielded in the last 0.5 ms (each
        pool keeps its own pace), so a submit loop never starves other tasks, yet does not pay
        a trip through the scheduler per job:

        * on Trio it checks for cancellation first, accepts the job, and then yields if a yield
          is due; that yield is shielded, so a cancellation arriving during it is delivered at
          the caller's next checkpoint and the handle is returned;
        * on asyncio, before accepting the job, it yields if a yield is due, and otherwise only
          checks for cancellation (raising if an enclosing AnyIO cancel scope is cancelled);
          either way it is an AnyIO cancel point, and it never yields after acceptance.

        On asyncio, a plain ``task.cancel()`` (as ``asyncio.wait_for``, ``asyncio.timeout``
        and ``asyncio.TaskGroup`` do) can land in the same loop iteration as the acceptance of
        a waiting submission. The cancellation wins: ``submit`` raises it, and the acceptance
        is undone. A job that was waiting is taken back (no handle, not counted, ``get`` does
        not find it). A job that had already been handed to a worker stays accepted and
        counted, and is cancelled: it ends ``CANCELLED`` with ``JobCancelled("job '…' was
        cancelled: its submit was cancelled")``, and its code does not run unless its worker
        had already started it. Trio and AnyIO cancel scopes never race like this: once the
        job is accepted, the cancellation comes at the caller's next checkpoint, after
        ``submit`` has returned the handle.

        Args:
            fn: an async callable (only ``callable()`` is checked; a callable whose result
                cannot be awaited makes the job fail with ``TypeError``), or, when the pool has
                a registry, the name of a registered job. For keyword arguments, use
                ``functools.partial``.
            args: passed to ``fn`` positionally.
            job_id: a non-empty ``str``; ``None`` generates a unique id of 32 lowercase hex
                characters: 16 drawn at random when the pool opens, then a 16-hex-digit
                counter. An id given here in that form (this pool's first 16 characters, then
                16 lowercase hex digits) moves the counter past it, so no id generated later
                equals it.
            priority: any ``int``; lower runs first, FIFO within one priority. Stored as a
                plain ``int``.
            timeout: seconds from the start of each attempt, a number ``>= 0``; ``None`` for
                the pool's ``job_timeout``; ``math.inf`` for none. With ``0`` the job never
                runs: it ends ``TIMED_OUT`` as soon as a worker takes it.
            retry: a :class:`RetryPolicy`; ``None`` for the pool's policy;
                ``RetryPolicy(max_attempts=1)`` for no retry.
            delay: run the job no earlier than this many seconds from now (a finite number
                ``>= 0``). A job due in the future is accepted at once as ``SCHEDULED``: it
                never waits for room and never raises ``QueueFull``; when due, it enters the
                waiting room as a retry does (beyond the bound, behind the jobs of its priority
                already waiting), and its wait time counts from its due time. Due times follow
                the pool's clock (Trio's ``MockClock`` moves them). A due time that is not in
                the future (``delay=0``) makes an ordinary submission.
            at: the same as an aware ``datetime``, converted to the pool's clock once, here.
            key: the job's flow-control key (a non-empty ``str`` of at most 200 characters),
                or ``None``. A key's limit (:meth:`set_limit`, ``open_job_pool(key_limit=)``)
                holds its jobs ``queued`` without holding a worker or blocking other jobs; see
                docs/flow-control.md.

        Returns:
            The job's :class:`JobHandle`. The job is live from this moment: ``scheduled``,
            ``queued``, or ``running`` if an idle worker took it.

        Raises:
            TypeError: ``fn`` is not callable; ``fn`` is given by name to a pool without a
                registry; ``job_id`` is not a ``str``; ``priority`` is not an ``int`` (a
                ``bool`` is refused); ``timeout`` is not a number or ``None``; ``retry`` is not
                a :class:`RetryPolicy` or ``None``.
            ValueError: ``job_id == ""``; ``timeout`` is negative or NaN; ``delay`` is
                negative, NaN or infinite; ``at`` is naive; both ``delay`` and ``at`` given;
                ``key`` is empty or longer than 200 characters (a ``key`` that is not a ``str``
                is a ``TypeError``).
            JobNotRegistered: ``fn`` names no registered job.
            PoolClosed: the pool is closed, when called or while waiting for room.
            DuplicateJob: a live job has this id, when called or when the waiting submission's
                turn comes (see the guide, "Semantics the contract leaves open").
            RuntimeError: called from a job's own task of the same pool when the pool is full
                and no room would ever come: every worker is busy and every other running job
                waits on the pool already (see :meth:`JobHandle.wait`). The job was not
                accepted. Not on a distributed pool.
            StoreError: with a store, the job could not be written (it is not accepted).
            StoreOutcomeUnknown: on a distributed pool, the write was sent to Redis and no
                answer came (see :class:`StoreOutcomeUnknown`).

        Argument errors are raised before the checkpoint.
        """
        job = self._new_job(fn, args, job_id, priority, timeout, retry)
        if key is not None:
            self._key_job(job, key)
        runtime = self._runtime
        if delay is not None or at is not None:
            due = self._due_of(delay, at)
            if due is not None:
                await runtime.checkpoint_before()
                if self._journal is not None:
                    await self._accept_later(job, due)
                    return job
                self._admit_later(job, due)
                if runtime.yield_due():
                    await runtime.schedule_point()
                return job
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
        delay: float | None = None,
        at: datetime.datetime | None = None,
        key: str | None = None,
    ) -> JobHandle[T]:
        """Like :meth:`submit`, but never waits; synchronous.

        Raises:
            QueueFull: the pool is full (the job was not accepted; the message gives the number
                of waiting jobs and the bound). Never for a job due in the future.
            PoolClosed, DuplicateJob, JobNotRegistered, TypeError, ValueError: as for
                :meth:`submit`.
        """
        job = self._new_job(fn, args, job_id, priority, timeout, retry)
        if key is not None:
            self._key_job(job, key)
        if delay is not None or at is not None:
            due = self._due_of(delay, at)
            if due is not None:
                self._accept_later_now(job, due)
                return job
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

    def _key_job(self, job: JobHandle[Any], key: object) -> None:
        """Give the new ``job`` its flow-control ``key`` (checked); the pool's waiting room is
        a :class:`FlowRoom` from now on (a distributed pool's keys are Redis's)."""
        job._set_key(check_key(key, allow_none=False))  # type: ignore[arg-type]
        if self._flow is None and not self._shared_queue:
            self._use_flow()

    def _due_of(self, delay: float | None, at: datetime.datetime | None) -> float | None:
        """The due time (pool clock) of a submission given ``delay`` or ``at``; ``None``: now."""
        now = self._now()
        # The common case first: a float or int delay (not a bool, an int subclass), finite
        # and positive; everything else (and its errors) is due_time's.
        if at is None and (type(delay) is float or type(delay) is int) and 0 < delay < _INF:
            due = now + delay
            return due if due > now else None
        return due_time(delay, at, now, self._wall(now))

    def _admit_later(self, job: JobHandle[Any], due: float) -> None:
        """Accept ``job`` as scheduled, due at ``due``: counted and live, and (without a
        journal) in the timer's heap. With a journal it stays out of the heap until it is on
        record (``_write_later``), so it cannot start before that."""
        if self._closed:
            raise PoolClosed(f"cannot accept job {job.job_id!r}: the pool is closed")
        key = job._key
        if key in self._live:
            raise DuplicateJob(job.job_id)
        now = self._now()
        job._submitted_m = now
        self._live[key] = job
        self._counters.submitted += 1
        journal = self._journal
        if journal is None:
            self._schedule(job, due)
            return
        assert isinstance(job, RecordedJob)
        journal.accepted(job, now)
        journal.scheduled(job, self._wall(due))
        self._reserve_later(job, due)

    async def _accept_later(self, job: JobHandle[Any], due: float) -> None:
        """``submit`` of a job due at ``due`` to a pool with a journal: accepted without
        waiting for room, and returns once it is on record (a cancellation is delivered after
        the write, as for any submit). In memory, ``submit`` calls :meth:`_admit_later`
        itself, without the coroutine of this method."""
        self._admit_later(job, due)
        await self._write_accepted(job)

    def _accept_later_now(self, job: JobHandle[Any], due: float) -> None:
        """``submit_nowait`` of a job due at ``due`` (see :meth:`_accept_later`)."""
        self._admit_later(job, due)
        if self._journal is not None:
            self._write_accepted_now(job)

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
        if type(priority) is not int:
            if isinstance(priority, bool) or not isinstance(priority, int):
                raise TypeError(f"priority must be an int, got {priority!r}")
            priority = int(priority)  # an int subclass (an IntEnum, say): a plain int
        limit = self._default_timeout if timeout is None else seconds("timeout", timeout)
        given_retry = retry
        if retry is None:
            retry = self._default_retry
        elif not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy or None, got {retry!r}")
        if self._named_jobs:
            return self._new_recorded_job(
                key, fn, args, priority, limit, retry, timeout, given_retry
            )
        return JobHandle(self, key, fn, args, priority, limit, retry)

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
        slot = (
            self._pop_idle()
            if self._idle and (self._flow is None or self._flow.may_start(job))
            else None
        )
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

    def _reserve(self, job: JobHandle[Any]) -> bool:
        """With a store: accept ``job`` into a place of the waiting room, where it stays out of
        the workers' reach until it is on disk (``_write_accepted``); ``False`` if full."""
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
        """Write a reserved job to the store, then let the workers (or, for a scheduled job,
        the timer) have it.

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
        """A reserved job is on record: place it, or schedule it (unless it was cancelled while
        it was being written)."""
        if job._status is _QUEUED:
            self._bounded_waiting -= 1  # its reservation; _place counts it again if it waits
            self._place(job, bounded=True)
        elif job._status is _SCHEDULED:
            self._schedule_reserved(job)

    def _revoke(self, job: JobHandle[Any]) -> None:
        """Undo the acceptance of a job whose ``submit`` was cancelled in the same instant.

        Only on asyncio, for a plain ``task.cancel()`` (see ``Runtime.park``). A job still
        waiting is taken back as if never submitted; one already handed to a worker is
        cancelled (it does not start unless its worker already started it).
        """
        if job._status is _SCHEDULED and job._seq < 0:  # reserved, not in the heap yet
            job._status = _CANCELLED
            job._cancel_reason = SUBMIT_CANCELLED
            del self._live[job._key]
            counters = self._counters
            counters.submitted -= 1
            counters.scheduled -= 1
            self._wake_join()
        elif job._status is _QUEUED and not job._attempts:
            job._status = _CANCELLED  # dead in the waiting room; never counted as ended
            job._cancel_reason = SUBMIT_CANCELLED
            del self._live[job._key]
            counters = self._counters
            counters.submitted -= 1
            counters.queued -= 1
            self._bounded_waiting -= 1
            if self._journal is None:  # with a journal it was only reserved, never queued
                self._waiting.discard(job)
            self._wake_join()
            if self._offers.size:
                self._admit_offers()
        elif not job._status.ended:
            self._cancel_job(job, SUBMIT_CANCELLED)
