"""The distributed pool: a JobPool whose waiting jobs live in Redis (see docs/distributed.md).

What stays local is what runs here: the workers, the jobs they run (each in its own cancel
scope, timed out by the pool's deadline watcher), and the handles of the jobs this process
submitted. What is shared lives in Redis (``stores/_redis_queue.py``). Four service tasks,
children of the pool's nursery, connect the two:

* the *link* sends everything that waits to be sent, in as few round trips as it can: the
  submits of every task that submitted since the last trip (one script call), cancels,
  retries, the jobs handed back at shutdown, and then the ends of this process's jobs together
  with a claim of as many waiting jobs as it has idle workers (one script call). It sleeps on an
  event: something to send, a worker going idle while Redis has work ("new" on pub/sub), or
  the next retry coming due (the only timer).
* the *listener* follows the queue's pub/sub channel: new work, room in the queue, jobs that
  ended (so the handles of jobs submitted here end too), and cancels of jobs running here.
* the *keeper* renews the leases of the jobs running here every third of the lease timeout
  and reaps lapsed leases (one process per interval does the work).

*Fencing*: no job runs here once its lease may have lapsed. While a job runs, its cancel scope's
deadline is its *fence*: the lease's lapse as of the last renewal Redis confirmed (counted from
when that renewal was sent), minus a tenth of the lease. Each renewal moves the deadlines of the
jobs it renewed. So a job is cancelled by the scope itself (no task has to run first): when
Redis cannot be reached, and also when this process could not run at all (paused, or its event
loop blocked by a job) -- then at the job's first checkpoint after the loop runs again, before
the keeper. A job that ends after its fence (it reached no checkpoint) is treated the same way:
its outcome is dropped, its end not reported; it goes back to Redis and runs again.

Redis lost mid-run: submits fail with :class:`StoreError`; what this process has to tell Redis
waits and is sent when it is back (a job whose lease lapsed meanwhile was fenced here, and
Redis refuses the late end); the listener reconnects and checks the handles it follows.

Redis lost the *queue* (restarted without persistence, flushed, evicted): every script checks
the queue's epoch (``stores/_redis_queue.py``) and refuses with :class:`QueueLost`. The pool
then ends every handle of a job of the lost epoch with :class:`StoreError` (cancelling those
running here), drops what it had to send about them, adopts the queue's new epoch and goes on
serving: unsent and new submits go to the new epoch.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Final, TypeVar, TypeVarTuple

import anyio

from ._config import PoolConfig
from ._errors import (
    DuplicateJob,
    JobNotFound,
    PoolClosed,
    QueueFull,
    StoreError,
    StoreOutcomeUnknown,
)
from ._excgroups import every_leaf
from ._job import (
    CANCELLED,
    NO_CAUSE,
    SHUTDOWN,
    CancelKind,
    CancelReason,
    JobHandle,
    JobStatus,
    RecordedJob,
    Unbuilt,
)
from ._outbox import Outbox, Submission
from ._pool import JobPool
from ._records import apply_run, ended_outcome, error_fields, record_from_fields
from ._retry import RetryPolicy
from ._runtime import CancelScopeLike, EventLike, Runtime, Slot, TaskGroupLike
from ._stats import PoolStats
from .stores._base import JobRecord, NamedStore
from .stores._redis_queue import (
    DUPLICATE,
    FULL,
    MAX_PRIORITY,
    Claimed,
    Fields,
    QueueLost,
    RedisQueue,
    never_sent,
    redis_errors,
)
from .stores.redis import RedisStore

__all__ = ["DistributedPool"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

_QUEUED: Final = JobStatus.QUEUED
_RUNNING: Final = JobStatus.RUNNING
_RETRYING: Final = JobStatus.RETRYING
logger = logging.getLogger("trio_jobpool.distributed")

FENCED: Final = CancelReason(
    CancelKind.FENCED,
    "cancelled here: its lease could not be renewed, so it runs again elsewhere",
)
STALLED: Final = CancelReason(
    CancelKind.STALLED,
    "cancelled here: this process stalled (its event loop blocked, or the process paused) "
    "until its lease may have lapsed, so it runs again elsewhere",
)
LOST: Final = CancelReason(CancelKind.LOST, "Redis lost the queue")
_FENCES: Final = (CancelKind.FENCED, CancelKind.STALLED)  # kinds that hand the job back, fenced
_RECONNECT_DELAY: Final = 0.05  # seconds before a first retry after Redis was lost; doubles
_MAX_RECONNECT_DELAY: Final = 2.0
_ROOM: Final = object()  # a submit's answer: no room in the queue, wait and try again
# The message of the cancellation a fence delivers itself on asyncio (see _TaskFence)
_FENCE_CANCEL: Final = "trio_jobpool: the job's lease may have lapsed (fenced)"


class _TaskFence:
    """On asyncio, a running job's fence: a timer that cancels the job's scope, and if AnyIO
    does not deliver that to the task, the task itself.

    AnyIO's delivery does not do alone: it never cancels a task whose awaited future is
    already done, and after a stall the loop runs the callbacks of every expired timer (the
    job's own sleep, due before its fence, among them) before it resumes any task; so a job
    would resume and run on, up to its next await. ``Task.cancel()`` is delivered however the
    task resumes; it is used only when the task is not inside a shielded scope of the job's
    (AnyIO's task state says; unknown counts as shielded: the job is then cancelled at its
    next await, and its outcome is dropped all the same). That cancel request is the pool's,
    not AnyIO's (its message is :data:`_FENCE_CANCEL`, which no AnyIO scope takes as its own):
    the worker takes its delivery when the attempt ends (see ``_job_base_exception``), and the
    request is taken back (``uncancel``) when the attempt is over.
    """

    __slots__ = ("fired", "handle", "scope", "task")

    def __init__(self, task: asyncio.Task[Any], scope: CancelScopeLike) -> None:
        self.task = task
        self.scope = scope
        self.handle: asyncio.TimerHandle | None = None
        self.fired = False


class DistributedPool(JobPool):
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
    """

    _shared_queue = True

    def __init__(
        self,
        config: PoolConfig,
        runtime: Runtime,
        nursery: TaskGroupLike,
        store: RedisStore,
        queue: RedisQueue,
    ) -> None:
        super().__init__(config, runtime, nursery)
        self._redis = store
        self._queue = queue
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._lease = store.lease_timeout
        self._lease_ms = max(1, round(store.lease_timeout * 1000))
        # The jobs this process submitted, until they end (wherever they run), by key.
        self._remote: dict[str | int, RecordedJob[Any]] = {}
        self._out = Outbox()  # what the link has to send
        # Ids of jobs that ended here and whose ends Redis has not confirmed yet (acancel
        # answers for them as Redis soon will: not live).
        self._ending: set[str] = set()
        self._sending = False  # a trip is under way; what it carries is in no batch
        self._trips_done = 0
        self._claiming = 0  # jobs the trips under way are claiming
        self._delay = _RECONNECT_DELAY  # before the next try, while Redis is lost
        self._more = True  # Redis may have jobs for idle workers
        self._news = 0  # "new" and "retry" messages so far (one may pass a claim in flight)
        self._draining = False  # stop() began: no more claims
        self._retry_due = math.inf  # when the next retry comes due (pool clock)
        # The pool's own (native) events and scopes on the busy paths: AnyIO's wrappers cost
        # more than the rest of a trip's bookkeeping.
        self._wake = runtime.Event()
        self._wake.set()  # a first trip at once: claim what waits already
        # set (and dropped) whenever join() should look again; made only when someone waits
        self._changed: EventLike | None = None
        self._room = runtime.Event()  # set (and replaced) when Redis says there is room
        # Held here (claimed, running, or ended with the end not yet confirmed by Redis): job
        # id -> when its lease lapses (pool clock, counted from the sending of the claim or of
        # the last renewal Redis confirmed).
        self._leases: dict[str, float] = {}
        self._margin = self._lease / 10  # a job is fenced this long before its lease lapses
        self._keeper_ran = runtime.clock()()  # when the keeper last ran (stall detection)
        self._stall = (math.inf, math.inf)  # the latest stall the keeper saw: (from, to)
        # asyncio: the fences of the running jobs, by id (see _TaskFence); Trio: None
        self._task_fences: dict[str, _TaskFence] | None = None if runtime.name == "trio" else {}
        self._epoch_lost: str | None = None  # the epoch Redis lost, until a new one is adopted
        self._cancels_seen: set[str] = set()  # cancels for jobs a claim in flight may bring
        self._waiting_estimate = 0  # jobs waiting in Redis, as of the latest submit
        self._service_scope = anyio.CancelScope()
        self._link_scope = runtime.CancelScope()  # the link's wait (its deadline: a retry due)
        self._lost: BaseException | None = None  # the error while Redis is unreachable

    # -- services ----------------------------------------------------------------------------

    async def _start_services(self, nursery: TaskGroupLike) -> None:
        """Start the link, the listener and the keeper (see the module docstring)."""
        await nursery.start(self._serve)

    @property
    def store(self) -> NamedStore:
        """The pool's :class:`RedisStore`."""
        return self._redis

    async def _serve(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Run the link, the listener and the keeper until :meth:`_after_stop` (or until the
        pool's nursery is cancelled)."""
        try:
            await self._queue.open_epoch()
            policy = await self._queue.eviction_policy()
        except redis_errors() as exc:
            raise self._lost_error("cannot open the queue", exc) from exc
        if policy is not None and policy != "noeviction":
            logger.warning(
                "Redis at %s has maxmemory-policy %s: when it reaches maxmemory it may evict "
                "the queue's keys, and the jobs in them are lost (set noeviction; see "
                "docs/distributed.md, 'Running Redis for a queue')",
                self._redis.url,
                policy,
            )
        try:
            with self._service_scope:
                async with anyio.create_task_group() as tg:
                    await tg.start(self._listen)
                    tg.start_soon(self._link)
                    tg.start_soon(self._keep)
                    task_status.started()
        finally:
            self._refuse_unsent()

    def _refuse_unsent(self) -> None:
        """The link is gone: submits it never sent were not accepted (their submitters, parked
        uninterruptibly, must hear of it)."""
        for submission in self._out.submits.take():
            closed = PoolClosed(f"cannot accept job {submission.job.job_id!r}: the pool closed")
            self._submit_answer(submission, closed)

    def _after_stop(self) -> None:
        self._service_scope.cancel()

    async def _final_flush(self) -> None:
        """When the pool is gone (its services too): send what is left, shielded, for as
        long as Redis answers within the store's timeout. Whatever is not sent is recovered
        by Redis anyway: the leases of jobs not handed back lapse and are reaped."""
        queue, owner, out = self._queue, self._owner, self._out
        self._refuse_unsent()
        cancels, retries, give_backs = out.cancels.take(), out.retries.take(), out.give_backs.take()
        ends = out.ends.take()
        with anyio.CancelScope(shield=True), anyio.move_on_after(self._redis.timeout):
            try:
                for job_id in cancels:
                    await queue.cancel(job_id)
                if retries:
                    await queue.retry(owner, retries)
                if give_backs:
                    await queue.give_back(owner, give_backs, self._redis.max_crashes)
                if ends:
                    self._uncount_refused(ends, await queue.end(owner, ends))
                await queue.leave(owner)
            except QueueLost:
                pass
            except redis_errors():
                pass

    def _submit_error(self, submission: Submission, exc: BaseException) -> StoreError:
        """The answer to a submit whose round trip raised ``exc``: not accepted if it surely
        never reached Redis, else :class:`StoreOutcomeUnknown` (it may have been written)."""
        job_id = submission.job.job_id
        if not isinstance(exc, redis_errors()):
            return StoreError(f"the pool on {self._redis.url} closed while submitting")
        if never_sent(exc):
            return self._lost_error(f"cannot submit {job_id!r} (not accepted)", exc)
        return StoreOutcomeUnknown(
            f"cannot submit: Redis at {self._redis.url} did not answer: {exc!r}; job "
            f"{job_id!r} was sent and may or may not have been accepted (look it up by its id)",
            job_id,
        )

    def _lost_error(self, what: str, exc: BaseException) -> StoreError:
        return StoreError(f"{what}: Redis at {self._redis.url} did not answer: {exc!r}")

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
            if job_id not in done:  # (a status's value names its counter)
                setattr(counters, status, getattr(counters, status) - 1)

    def _queue_lost(self, lost: QueueLost) -> None:
        """Redis no longer has the queue's epoch ``lost.epoch``: end every handle of a job of
        that epoch with :class:`StoreError` (cancelling those running here), drop what was to
        be sent about them, and have the link adopt the queue's new epoch. Idempotent: a
        refusal of an epoch that is no longer this pool's, or already handled, does nothing."""
        if lost.epoch != self._queue.epoch or self._epoch_lost == lost.epoch:
            return
        self._epoch_lost = lost.epoch
        counters = self._counters
        ended = 0
        for job in list(self._live.values()):
            assert isinstance(job, RecordedJob)
            if job._status is _RUNNING:
                if job._cancel_reason not in (LOST, SHUTDOWN):
                    job._cancel_reason = LOST
                    if job._scope is not None:
                        job._scope.cancel()
                continue
            # claimed, waiting here for a worker
            job._cancel_reason = LOST
            self._waiting.discard()
            counters.queued -= 1
            self._release(job)
            self._end_gone(job)
            ended += 1
        for job in list(self._remote.values()):
            if job._key not in self._live and job._record.seq:  # (else: not sent yet)
                self._end_gone(job)
                ended += 1
        self._leases.clear()
        self._out.drop()
        self._ending.clear()
        self._cancels_seen.clear()
        logger.error(
            "Redis at %s lost the queue's data (restarted without persistence, flushed, or "
            "evicted its keys): %d jobs this process followed ended with StoreError, and %d "
            "running here are cancelled; new submits go to a new run of the queue",
            self._redis.url,
            ended,
            sum(1 for job in self._live.values() if job._cancel_reason is LOST),
        )
        self._wake_link()

    async def _adopt_epoch(self) -> None:
        """After :meth:`_queue_lost`: work in the queue's new epoch from now on."""
        if self._epoch_lost is not None:
            await self._queue.open_epoch()
            await self._queue.keep_ended(self._redis.keep_ended)
            self._epoch_lost = None
            self._more = True

    def _wake_link(self) -> None:
        self._wake.set()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def _wait_changed(self) -> None:
        if self._changed is None:
            self._changed = self._runtime.Event()
        await self._changed.wait()

    def _queued(self) -> bool:
        """Whether anything but fetches waits for the link."""
        return self._out.has_writes()

    def _unsent(self) -> bool:
        """Whether a trip would have anything to send now."""
        return self._queued() or bool(self._out.fetches) or self._claimable() > 0

    def _pending_writes(self) -> bool:
        """Whether Redis has yet to hear something this process has to tell it."""
        return self._queued() or self._sending

    async def _idle_wait(self, slot: Slot) -> JobHandle[Any] | None:
        if self._more:
            self._wake_link()  # a worker is free: the link claims for it
        return await super()._idle_wait(slot)

    def _claimable(self) -> int:
        """How many jobs the idle workers could take now."""
        if self._draining or self._stopping or not self._more:
            return 0
        idle = sum(1 for slot in self._idle if not slot.abandoned)
        return max(0, idle - len(self._waiting) - self._claiming)

    async def _link(self) -> None:
        """Make a trip whenever there is something to send (one at a time: a second trip
        under way at once gained nothing measurable, and cost a task per trip)."""
        while True:
            with self._runtime.CancelScope() as scope:
                scope.deadline = self._retry_due  # (moved by a trip that learns of one)
                self._link_scope = scope
                await self._wake.wait()
            if self._now() >= self._retry_due:
                self._retry_due = math.inf
                self._more = True
            self._wake = self._runtime.Event()
            if self._unsent():
                await self._trip()

    async def _trip(self) -> None:
        self._sending = True
        try:
            await self._adopt_epoch()
            await self._send()
        except QueueLost as exc:
            self._queue_lost(exc)
            self._wake.set()  # then a new epoch, and what is left to send
        except redis_errors() as exc:
            self._lost = exc
            # Submits that came during this trip were never sent: refused now, so a submit
            # waits for one timeout at most, not for this trip, the delay and one more trip.
            for submission in self._out.submits.take():
                what = f"cannot submit {submission.job.job_id!r} (not sent, not accepted)"
                self._submit_answer(submission, self._lost_error(what, exc))
            await anyio.sleep(self._delay)  # then try again
            self._delay = min(_MAX_RECONNECT_DELAY, self._delay * 2)
            self._wake.set()
        else:
            if self._lost is not None:
                self._lost = None
                self._more = True
            self._delay = _RECONNECT_DELAY
        finally:
            self._sending = False
            self._trips_done += 1
            if self._lost is None and self._unsent():
                self._wake.set()  # what came while it was away (submits wait for their turn)
            self._notify()

    async def _send(self) -> None:
        """One trip of the link: send everything that waits, in this order: the submits, the
        reads of jobs that ended elsewhere, progress, retries, hand-backs, cancels (after the
        retries and hand-backs they may be about), and last the ends together with a claim
        for the idle workers. A batch whose call fails goes back for the next trip."""
        queue, owner, out = self._queue, self._owner, self._out
        if out.submits:
            await self._send_submits()
        if out.fetches:
            ids = list(out.fetches)
            rows = await queue.fetch(ids)
            out.fetches.difference_update(ids)
            for job_id, fields in zip(ids, rows, strict=True):
                self._remote_ended(job_id, fields)
        if out.progress:
            progress, out.progress = out.progress, {}
            await queue.progress(owner, list(progress.items()))  # lost with Redis: not kept
        if out.retries:
            with out.retries.sending() as retries:
                await queue.retry(owner, retries)
        if out.give_backs:
            with out.give_backs.sending() as give_backs:
                await queue.give_back(owner, give_backs, self._redis.max_crashes)
        if out.cancels:
            with out.cancels.sending() as cancels:
                while cancels:
                    if await queue.cancel(cancels[0]) == "cancelled":
                        out.fetches.add(cancels[0])
                    del cancels[0]
        count = self._claimable()
        if out.ends or count:
            await self._end_and_claim(count)

    async def _end_and_claim(self, count: int) -> None:
        """Send the ends of this process's jobs and claim up to ``count`` waiting jobs for
        the idle workers, in one call; hand the claimed jobs to the workers."""
        self._cancels_seen.clear()
        self._claiming += count
        sent, news = self._now(), self._news
        try:
            with self._out.ends.sending() as ends:
                recorded, claimed, next_retry = await self._queue.end_and_claim(
                    self._owner, ends, count, self._lease_ms
                )
        finally:
            self._claiming -= count
        for job_id, _, _ in ends:
            self._ending.discard(job_id)
            if self._live.get(self._key(job_id)) is None:  # else it was claimed here again
                self._leases.pop(job_id, None)
        self._uncount_refused(ends, recorded)
        if count:
            self._more = len(claimed) == count or self._news != news
            if next_retry is not None:
                self._retry_due = min(self._retry_due, self._now() + next_retry / 1000)
                self._link_scope.deadline = self._retry_due
            self._take_in(claimed, sent)

    # -- submitting --------------------------------------------------------------------------

    async def submit(
        self,
        fn: Callable[[*Ts], Awaitable[T]] | str,
        *args: *Ts,
        job_id: str | None = None,
        priority: int = 5,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> JobHandle[T]:
        """Submit a job to the shared queue; return once Redis has it (see the class).

        Waits while the queue holds ``queue_size + max_pending`` waiting jobs. The round trip
        is not interrupted by a cancellation once the job has been handed to the link (the
        cancellation is delivered at the caller's next checkpoint): returned means queued.

        Raises:
            PoolClosed, DuplicateJob, TypeError, ValueError: as for a pool in memory.
            StoreError: Redis cannot be reached.
        """
        job = self._new_job(fn, args, job_id, priority, timeout, retry)
        await self._runtime.checkpoint_before()
        assert isinstance(job, RecordedJob)
        while True:
            self._check_submittable(job)
            room = self._room  # (taken now: a "room" message after the refusal sets it)
            slot = Slot()
            self._remote[job._key] = job
            self._out.submits.add(Submission(job, slot, self._now()))
            self._wake_link()
            answer = await self._runtime.park_shielded(slot)
            if answer is True:
                return job
            if answer is not _ROOM:
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
    ) -> JobHandle[T]:
        """Hand a job to the link and return its handle at once (see the class).

        Raises:
            QueueFull: by the latest count from Redis (plus the submits not yet sent), the
                queue is full.
            PoolClosed, DuplicateJob (of a job this process knows), TypeError, ValueError.
        """
        job = self._new_job(fn, args, job_id, priority, timeout, retry)
        assert isinstance(job, RecordedJob)
        self._check_submittable(job)
        if self._waiting_estimate + len(self._out.submits) >= self._bound:
            raise QueueFull(
                f"cannot accept job {job.job_id!r}: about {self._waiting_estimate} jobs are "
                f"waiting in Redis (queue_size + max_pending = {self._bound})"
            )
        self._remote[job._key] = job
        self._out.submits.add(Submission(job, None, self._now()))
        self._wake_link()
        return job

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

    async def _send_submits(self) -> None:
        """Send every waiting submit in one call and answer each submitter. If Redis lost
        the queue, they go back, for its new epoch; any other failure is every submitter's
        answer (:meth:`_submit_error`), and goes on."""
        submits = []
        for submission in self._out.submits.take():
            if submission.job._cancel_reason is not None:  # cancelled before it was sent
                self._submit_answer(submission, True)
                self._end_here(submission.job, JobStatus.CANCELLED, NO_CAUSE)
            else:
                submits.append(submission)
        if not submits:
            return
        jobs = []
        for submission in submits:
            record = submission.job._record
            options = {"timeout": record.timeout, "retry": record.retry}
            jobs.append((record.job_id, record.name, record.args, record.priority, options))
        bound = None if math.isinf(self._bound) else int(self._bound)
        try:
            answers, self._waiting_estimate = await self._queue.submit(jobs, bound, self._owner)
        except QueueLost:
            self._out.submits.put_back(submits)
            raise
        except BaseException as exc:
            for submission in submits:
                self._submit_answer(submission, self._submit_error(submission, exc))
            raise
        for submission, seq in zip(submits, answers, strict=True):
            if seq == DUPLICATE:
                self._submit_answer(submission, DuplicateJob(submission.job.job_id))
            elif seq == FULL:
                self._submit_answer(submission, _ROOM)
            else:
                submission.job._record.seq = seq
                self._counters.submitted += 1
                self._submit_answer(submission, True)

    def _submit_answer(self, submission: Submission, answer: object) -> None:
        job = submission.job
        if answer is not True and self._remote.get(job._key) is job:
            del self._remote[job._key]
        if submission.slot is not None:
            self._runtime.unpark_shielded(submission.slot, answer)
        elif answer is not True:  # submit_nowait: the refusal goes to the handle
            error = answer
            if answer is _ROOM:
                error = QueueFull(f"Redis refused job {job.job_id!r}: the queue is full")
            assert isinstance(error, Exception)
            self._end_here(job, JobStatus.FAILED, (error, None))
        if job._cancel_reason is not None and answer is True and job._record.seq:
            self._out.cancels.add(job.job_id)  # cancelled while Redis was taking it

    # -- taking jobs in, and handing them back ---------------------------------------------

    def _take_in(self, claimed: list[Claimed], sent: float) -> None:
        """Give jobs just claimed to the idle workers; their leases run from ``sent``."""
        for c in claimed:
            if self._stopping:  # no worker will take it: straight back to the queue
                self._out.give_backs.add((c.job_id, False, {}, False))
                self._wake_link()
                continue
            key = self._key(c.job_id)
            job = self._remote.get(key)
            if job is None or job._record.seq != c.seq:  # (not this submission: its own)
                record = JobRecord(
                    job_id=c.job_id,
                    name=c.name,
                    args=c.args,
                    priority=c.priority,
                    timeout=c.options.get("timeout"),
                    retry=c.options.get("retry"),
                    submitted_at=c.submitted_at,
                    seq=c.seq,
                )
                job = self._job_from_record(record, key)
            record = job._record
            record.crashes, record.interrupted = c.crashes, c.interrupted
            job._attempts = c.attempts - 1  # _start counts the attempt
            job._status = _QUEUED
            job._ready_m = (c.retry_at or c.submitted_at) - self._wall_offset
            self._live[key] = job
            self._leases[c.job_id] = sent + self._lease
            self._counters.queued += 1
            if c.job_id in self._cancels_seen:
                job._cancel_reason = CANCELLED
            self._place(job, bounded=False)

    def _progressed(self, job: RecordedJob[Any]) -> None:
        """Send a running job's progress with the link's next trip (the latest only)."""
        if job._key in self._live:
            fields: Fields = {"progress": job.progress}
            fields["progress_message"] = job.progress_message or ""
            self._out.progress[job.job_id] = fields
            self._wake_link()

    def _release(self, job: RecordedJob[Any]) -> None:
        """This process no longer holds ``job`` (it went to retry or was handed back)."""
        del self._live[job._key]
        self._drop_lease(job)
        if not self._live:
            self._notify()

    def _drop_lease(self, job: RecordedJob[Any]) -> None:
        self._leases.pop(job.job_id, None)
        self._out.progress.pop(job.job_id, None)  # (its end or hand-back carries the last one)

    def _hand_back(self, job: RecordedJob[Any], started: bool, stalled: bool = False) -> None:
        """Give an unfinished job back to the queue (shutdown, or fenced), no crash counted
        (``stalled``: fenced after a stall of this process, which Redis counts as such)."""
        record = job._record
        fields: Fields = {}
        if started:
            fields["interrupted"] = record.interrupted + 1
        self._out.give_backs.add((job.job_id, started, fields, stalled))
        self._wake_link()

    # -- fencing -----------------------------------------------------------------------------

    def _fence_deadline(self, job: JobHandle[Any]) -> float:
        """The running ``job``'s fence (see the module): its scope's deadline on Trio; on
        asyncio, a timer of its own (:class:`_TaskFence`; the scope gets no deadline)."""
        deadline = self._leases.get(job.job_id, -math.inf) - self._margin
        if self._task_fences is None:
            return deadline
        task = asyncio.current_task()
        assert task is not None
        assert job._scope is not None
        self._task_fences[job.job_id] = fence = _TaskFence(task, job._scope)
        self._arm(job.job_id, fence, deadline)
        return math.inf

    def _arm(self, job_id: str, fence: _TaskFence, deadline: float) -> None:
        if fence.handle is not None:
            fence.handle.cancel()
        loop = asyncio.get_running_loop()
        fence.handle = loop.call_at(max(deadline, loop.time()), self._task_fence_passed, job_id)

    def _task_fence_passed(self, job_id: str) -> None:
        """asyncio: a running job's fence passed (see :class:`_TaskFence`)."""
        assert self._task_fences is not None
        fence = self._task_fences.get(job_id)
        job = self._live.get(self._key(job_id))
        if fence is None or job is None or job._scope is not fence.scope:
            return
        scope, task = fence.scope, fence.task
        if job._cancel_reason is None:
            job._cancel_reason = self._fence_reason(job_id, self._now())
        requests = task.cancelling()
        scope.cancel()
        if task.cancelling() == requests and not _shielded_within(task, scope):
            fence.fired = True  # (AnyIO did not deliver it: what the task awaits is done)
            task.cancel(_FENCE_CANCEL)

    def _set_fence(self, job: JobHandle[Any], deadline: float) -> None:
        """Move the fence of the running ``job`` (a renewal)."""
        if self._task_fences is None:
            if job._scope is not None:
                job._scope.deadline = deadline
            return
        fence = self._task_fences.get(job.job_id)
        if fence is not None and not fence.fired:
            self._arm(job.job_id, fence, deadline)

    def _attempt_over(self, job: JobHandle[Any]) -> float:
        if self._task_fences is not None:
            fence = self._task_fences.pop(job.job_id, None)
            if fence is not None:
                if fence.handle is not None:
                    fence.handle.cancel()
                if fence.fired:
                    fence.task.uncancel()
        return super()._attempt_over(job)

    def _stalled(self, fence: float, now: float) -> bool:
        """Whether a fence that passed at ``fence`` passed because this process could not run
        (a stall: its event loop was blocked, or it was paused) rather than because Redis
        could not be reached. The keeper runs at least every third of the lease while the
        loop runs: a stall is a time it did not run for over half a lease."""
        if now - self._keeper_ran > self._lease / 2 and fence >= self._keeper_ran:
            return True  # (a stall the keeper has not seen yet: it is just over)
        start, end = self._stall
        return start <= fence <= end

    def _fence_reason(self, job_id: str, now: float) -> CancelReason:
        fence = self._leases.get(job_id, now) - self._margin
        return STALLED if self._stalled(fence, now) else FENCED

    def _check_fence(self, job: RecordedJob[Any]) -> None:
        """An attempt of ``job`` is ending: if its fence has passed and nothing else cancelled
        it, it ends as fenced (whatever its outcome)."""
        if job._cancel_reason is None:
            now = self._now()
            if now >= self._leases.get(job.job_id, math.inf) - self._margin:
                job._cancel_reason = self._fence_reason(job.job_id, now)

    def _attempt_raised(self, job: JobHandle[Any], exc: Exception) -> None:
        assert isinstance(job, RecordedJob)
        self._check_fence(job)
        super()._attempt_raised(job, exc)

    def _job_base_exception(
        self, job: JobHandle[Any], exc: BaseException, cancelled_exc: type[BaseException]
    ) -> BaseException | None:
        """As the base pool's, and: a cancellation that a fence delivered itself (asyncio,
        see :class:`_TaskFence`) is taken here, as the job's scope takes its own (no AnyIO
        scope takes it: it is not AnyIO's). Anything else it came with still propagates; an
        outer cancellation is AnyIO's, which delivers it again at the worker's next await."""
        assert isinstance(job, RecordedJob)
        self._check_fence(job)  # (its scope's deadline: the fence)
        fence = None if self._task_fences is None else self._task_fences.get(job.job_id)
        fired = fence is not None and fence.fired  # (the attempt's end drops the fence)
        propagate = super()._job_base_exception(job, exc, cancelled_exc)
        if fired and propagate is exc and _only_cancellations(exc, cancelled_exc):
            return None
        return propagate

    # -- how jobs end here -------------------------------------------------------------------

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
        if self._remote.get(job._key) is job:
            del self._remote[job._key]
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
        self._notify()

    def _end_here(
        self, job: RecordedJob[Any], status: JobStatus, result: Any, now: float | None = None
    ) -> None:
        """End the handle of a job this process does not hold (any more): one submitted here
        that ran elsewhere, or one whose run here ended without an end to send. The handle
        takes its final state; nothing is sent."""
        key = job._key
        if self._remote.get(key) is job:
            del self._remote[key]
        self._finish(job, status, result, self._now() if now is None else now)
        self._notify()

    def _end_abandoned(self, job: JobHandle[Any]) -> None:
        """End the handle of a job the shutdown abandoned (see ``JobPool._abandon``), and
        tell Redis nothing: neither an end nor a hand-back. Its lease, no longer renewed,
        lapses, and a reaper puts it back in the queue (as after a crash of this process).
        Like a fenced attempt, it counts in no total here: the job's next run is the one the
        cluster counts, so the processes' totals still add up to the cluster's."""
        assert isinstance(job, RecordedJob)
        self._release(job)
        self._end_here(job, JobStatus.CANCELLED, NO_CAUSE)

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
        self._out.retries.add((job.job_id, max(0, round(delay * 1000)), fields))
        self._wake_link()

    def _remote_ended(self, job_id: str, fields: dict[str, str]) -> None:
        """A job submitted here ended elsewhere (or was cancelled in Redis): end its handle."""
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
            return  # submitted again since (an ended id may be reused)
        job._attempts = record.attempts
        apply_run(job, record, lambda wall: wall - self._wall_offset)
        status, result = ended_outcome(job, record)
        self._end_here(job, status, result, job._finished_m)

    # -- cancelling and looking up -----------------------------------------------------------

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
            self._waiting.discard()
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
        if job._record.seq:  # (else its submit is under way: the answer sends the cancel)
            self._out.cancels.add(job.job_id)
            self._wake_link()

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
            await self._runtime.checkpoint()  # (it may end meanwhile: the handle says so)
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
        return self._job_from_record(record_from_fields(job_id, fields), key)

    async def _read(self, call: Callable[[Any], Awaitable[T]], arg: Any) -> T:
        """``await call(arg)``; if Redis lost the queue, handle that (:meth:`_queue_lost`),
        adopt its new epoch, and call once more there (where the jobs of the lost epoch are
        not)."""
        try:
            return await call(arg)
        except QueueLost as exc:
            self._queue_lost(exc)
        await self._adopt_epoch()
        try:
            return await call(arg)
        except QueueLost as exc:  # (lost again at once)
            self._queue_lost(exc)
            raise StoreError(f"Redis at {self._redis.url} keeps losing the queue") from exc

    def _refresh(self, job: RecordedJob[Any], fields: dict[str, str]) -> None:
        """Bring the handle of a job submitted here, live elsewhere, up to date."""
        record = record_from_fields(job.job_id, fields)
        status = JobStatus(record.status)
        if status.ended:
            self._remote_ended(job.job_id, fields)
            return
        job._status = status
        job._attempts = record.attempts
        apply_run(job, record, lambda wall: wall - self._wall_offset)

    # -- stats, joining, stopping ------------------------------------------------------------

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
        # This process's news first: what is pending now goes with the next trip at the latest
        # (the one under way may have started before it came).
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
            average_exec_time=weighted("exec_total", exec_count),
            average_wait_time=weighted("wait_total", wait_count),
            exec_time_p50=largest("p50"),
            exec_time_p95=largest("p95"),
            exec_time_p99=largest("p99"),
        )

    def _process_stats(self) -> dict[str, Any]:
        """What this process tells the others (with each lease renewal) for cluster_stats."""
        c = self._counters
        p50, p95, p99 = c.window.percentiles(0.50, 0.95, 0.99)
        return {
            "owner": self._owner,
            "max_workers": self._max_workers,
            "active_workers": c.running,
            "exec_total": c.exec_total,
            "exec_count": c.exec_count,
            "wait_total": c.wait_total,
            "wait_count": c.wait_count,
            "p50": p50,
            "p95": p95,
            "p99": p99,
        }

    def _busy(self) -> bool:
        return bool(self._live or self._remote or self._pending_writes())

    async def join(self) -> None:
        """Wait until every job this process submitted has ended (wherever it ran), no job
        runs here, and Redis has been told everything. A checkpoint.

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

    # -- the keeper --------------------------------------------------------------------------

    async def _keep(self) -> None:
        """Renew leases every third of the lease timeout, and reap (see the module). Each
        confirmed renewal moves the fences of the jobs it renewed; a renewal that says a job
        is no longer held here, or a fence that passed before any job's scope saw it (a
        claimed job that has not started), fences the job here."""
        interval = self._lease / 3
        margin = self._margin
        queue, owner = self._queue, self._owner
        next_renewal = self._now()  # the first renewal tells the others this process is here
        while True:
            fence_at = min(self._leases.values(), default=math.inf) - margin
            await anyio.sleep_until(min(next_renewal, fence_at))
            now = self._now()
            if now - self._keeper_ran > self._lease / 2:
                self._stall = (self._keeper_ran, now)
                logger.warning(
                    "this process did not run for %.1f s (its event loop was blocked, by a job "
                    "that does not yield for instance, or the process was paused): jobs whose "
                    "leases (lease_timeout %.1f s) may have lapsed are fenced and run again",
                    now - self._keeper_ran,
                    self._lease,
                )
            self._keeper_ran = now
            if now >= next_renewal:
                next_renewal = now + interval
                held = list(self._leases)
                # A renewal must not outlast the earliest lease it is meant to save.
                limit = min(interval, max(0.0, fence_at - now))
                with anyio.move_on_after(limit):
                    try:
                        lost, cancel = await queue.renew(
                            owner, held, self._lease_ms, self._process_stats()
                        )
                    except QueueLost as exc:
                        self._queue_lost(exc)
                    except redis_errors():
                        pass
                    else:
                        self._renewed(held, now + self._lease, now)
                        for job_id in lost:
                            self._fence(job_id)
                        for job_id in cancel:  # (its pub/sub message was missed)
                            self._on_message(f"cancel:{job_id}")
                        with contextlib.suppress(*redis_errors(), QueueLost):  # (the next reaps)
                            await queue.reap(self._redis.max_crashes, round(interval * 1000))
                self._keeper_ran = self._now()
            now = self._now()
            for job_id, lapse in list(self._leases.items()):
                if lapse - margin <= now:
                    self._fence(job_id)

    def _renewed(self, held: list[str], lapse: float, sent: float) -> None:
        """Redis renewed the leases of ``held`` (those it still gave this process) until
        ``lapse``: move their fences, the deadlines of the running ones' scopes too. A fence
        that had passed when the renewal was sent stays where it is: that job stops."""
        margin = self._margin
        deadline = lapse - margin
        for job_id in held:
            if self._leases.get(job_id, -math.inf) - margin > sent:
                self._leases[job_id] = lapse
                job = self._live.get(self._key(job_id))
                if job is not None and job._status is _RUNNING:
                    self._set_fence(job, deadline)

    def _fence(self, job_id: str) -> None:
        """Stop running a job whose lease this process may no longer hold."""
        job = self._live.get(self._key(job_id))
        reason = self._fence_reason(job_id, self._now())
        self._leases.pop(job_id, None)
        if job is None:
            return
        if job._cancel_reason is not None:
            return  # (cancelled or timed out already: it ends as such)
        job._cancel_reason = reason
        if job._status is _RUNNING and job._scope is not None:
            job._scope.cancel()

    # -- the listener ------------------------------------------------------------------------

    async def _listen(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Follow the queue's channel; after a lost connection, subscribe again and look up
        the jobs whose end it may have missed."""
        from coredis.retry import NoRetryPolicy

        delay = _RECONNECT_DELAY
        started = False
        while True:
            try:
                async with self._queue.client.pubsub(
                    channels=[self._queue.events, self._queue.events_of(self._owner)],
                    ignore_subscribe_messages=True,
                    retry_policy=NoRetryPolicy(),
                ) as pubsub:
                    if not started:
                        started = True
                        task_status.started()
                    else:  # back after a loss: what ended meanwhile, new work, room
                        self._out.fetches.update(
                            job.job_id for job in self._remote.values() if job.job_id
                        )
                        self._more = True
                        self._on_message("room")
                        self._wake_link()
                    delay = _RECONNECT_DELAY
                    async for message in pubsub:
                        self._on_message(str(message["data"]))
            except BaseException as exc:  # (coredis's task groups wrap what it raises)
                if not _redis_lost(exc):
                    raise
                if not started:
                    raise self._lost_error("cannot subscribe", exc) from exc
                await anyio.sleep(delay)
                delay = min(_MAX_RECONNECT_DELAY, delay * 2)

    def _on_message(self, data: str) -> None:
        if data in ("new", "retry"):
            self._more = True
            self._news += 1
            if self._claimable():
                self._wake_link()
        elif data == "room":
            self._room.set()
            self._room = self._runtime.Event()
        elif data.startswith("ended:"):
            mine = [i for i in json.loads(data[6:]) if self._key(i) in self._remote]
            if mine:
                self._out.fetches.update(mine)
                self._wake_link()
        elif data.startswith("cancel:"):
            job_id = data[7:]
            job = self._live.get(self._key(job_id))
            if job is None:
                self._cancels_seen.add(job_id)  # a claim in flight may bring it
            elif job._cancel_reason is None:
                self._cancel_job(job, CANCELLED)


def _shielded_within(task: asyncio.Task[Any], scope: CancelScopeLike) -> bool:
    """Whether ``task`` runs inside a shielded AnyIO scope within ``scope`` (or not within
    ``scope`` at all), by AnyIO's record of the task's innermost scope; ``True`` if unknown."""
    try:
        from anyio._backends._asyncio import _task_states

        inner: Any = _task_states[task].cancel_scope
        while inner is not None and inner is not scope:
            if inner.shield:
                return True
            inner = inner._parent_scope
    except (ImportError, KeyError, AttributeError):  # (another AnyIO: not known)
        return True
    return inner is None


def _only_cancellations(exc: BaseException, cancelled_exc: type[BaseException]) -> bool:
    """Whether ``exc`` is a cancellation, or a group of nothing else."""
    return every_leaf(exc, lambda leaf: isinstance(leaf, cancelled_exc))


def _redis_lost(exc: BaseException) -> bool:
    """Whether ``exc`` says Redis was lost (also inside the exception groups of coredis's
    task groups), as opposed to a cancellation or a bug."""
    return every_leaf(exc, lambda leaf: isinstance(leaf, redis_errors()))
