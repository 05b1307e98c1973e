"""The service tasks of a distributed pool, children of the pool's nursery, that connect the
process to Redis (``stores/_redis_queue.py``):

* the *link* sends everything that waits to be sent (:mod:`._outbox`), in as few round trips as
  it can: the submits of every task that submitted since the last trip (one script call),
  cancels, retries and deferrals, the jobs handed back at shutdown, and then the ends of this
  process's jobs together with a claim of as many waiting jobs as it has idle workers (one
  script call). It sleeps on an event: something to send, a worker going idle while Redis has
  work ("new" on pub/sub), or a timer: the next retry of this process coming due, or the next
  retry or scheduled job in Redis coming due (its time comes with each claim, and from a
  "due:" message when a job is scheduled earlier than any before it; docs/distributed.md,
  "Later jobs").
* the *listener* follows the queue's pub/sub channel: new work, room in the queue, due times,
  jobs that ended or were deferred elsewhere (so the handles of jobs submitted here follow), and
  cancels of jobs running here.
* the *keeper* renews the leases of the jobs running here every third of the lease timeout
  and reaps lapsed leases (one process per interval does the work).

Redis lost mid-run: submits fail with :class:`StoreError`; what this process has to tell Redis
waits and is sent when it is back (a job whose lease lapsed meanwhile was fenced here, and
Redis refuses the late end); the listener reconnects and checks the handles it follows.

Redis lost the *queue* (restarted without persistence, flushed, evicted): every script checks
the queue's epoch and refuses with :class:`QueueLost`. The pool then ends every handle of a job
of the lost epoch with :class:`StoreError` (cancelling those running here), drops what it had
to send about them, adopts the queue's new epoch and goes on serving: unsent and new submits go
to the new epoch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import anyio

from ._attempts import log_start_over
from ._errors import (
    DuplicateJob,
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
)
from ._leases import RECONNECT_DELAY
from ._limits import stored_limit
from ._outbox import Submission
from ._runtime import Slot, TaskGroupLike
from ._shared_ends import SharedEnds
from .stores._base import JobRecord
from .stores._redis_queue import (
    DUPLICATE,
    FULL,
    Claimed,
    NewJob,
    QueueLost,
    never_sent,
    redis_errors,
)

__all__ = ["Link"]

T = TypeVar("T")

_QUEUED: Final = JobStatus.QUEUED
_RUNNING: Final = JobStatus.RUNNING
_SCHEDULED: Final = JobStatus.SCHEDULED
logger = logging.getLogger("trio_jobpool.distributed")

_MAX_RECONNECT_DELAY: Final = 2.0  # the longest wait before a retry after Redis was lost
ROOM: Final = object()  # a submit's answer: no room in the queue, wait and try again
LOST: Final = CancelReason(CancelKind.LOST, "Redis lost the queue")


class Link(SharedEnds):
    """The service tasks of a distributed pool (see the module docstring)."""

    async def _start_services(self, nursery: TaskGroupLike) -> None:
        """Start the link, the listener and the keeper (see the module docstring)."""
        await nursery.start(self._serve)

    async def _serve(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Run the link, the listener and the keeper until :meth:`_after_stop` (or until the
        pool's nursery is cancelled)."""
        try:
            await self._queue.open_epoch()
            policy = await self._queue.eviction_policy()
            await self._declare_default_limit()
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
            self._waiting.discard(job)
            counters.queued -= 1
            self._release(job)
            self._end_gone(job)
            ended += 1
        for job in list(self._remote.values()):
            if job._key not in self._live and job._record.seq:  # else: not sent yet
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
        # A trip, even with nothing to send: it adopts the new epoch and claims for the idle
        # workers, which registers them in the new run (the register was lost with the rest;
        # an idle process would otherwise never be woken for a job again).
        self._trip_due = True
        self._wake_link()

    async def _adopt_epoch(self) -> None:
        """After :meth:`_queue_lost`: work in the queue's new epoch from now on."""
        if self._epoch_lost is not None:
            await self._queue.open_epoch()
            await self._queue.keep_ended(self._redis.keep_ended)
            await self._declare_default_limit()
            for key, limit in list(self._known_limits.items()):  # what Redis lost with the rest
                await self._queue.set_limit(key, limit.to_json())
            self._epoch_lost = None
            self._more = True
            self._due_at = math.inf  # the lost queue's; the next claim tells the new one's

    async def _declare_default_limit(self) -> None:
        """Make this pool's ``key_limit`` the queue's default (the last process to open with
        one sets it; ``Limit()`` removes it; ``None`` leaves the queue's as it is)."""
        default = self._config.key_limit
        if default is not None:
            await self._queue.set_limit("", stored_limit(default))

    def _queued(self) -> bool:
        """Whether anything but fetches waits for the link."""
        return self._out.has_writes()

    def _unsent(self) -> bool:
        """Whether a trip would have anything to send now."""
        return self._queued() or bool(self._out.fetches) or self._claimable() > 0 or self._trip_due

    def _pending_writes(self) -> bool:
        """Whether Redis has yet to hear something this process has to tell it."""
        return self._queued() or self._sending

    async def _idle_wait(self, slot: Slot) -> JobHandle[Any] | None:
        if self._more:
            self._wake_link()  # a worker is free: the link claims for it
        return await super()._idle_wait(slot)

    def _capacity(self) -> int:
        """How many jobs the idle workers could take now: 0 while draining or stopping."""
        if self._draining or self._stopping:
            return 0
        idle = sum(1 for slot in self._idle if not slot.abandoned)
        return max(0, idle - len(self._waiting) - self._claiming)

    def _claimable(self) -> int:
        """As :meth:`_capacity`, while Redis may have jobs for them (``_more``)."""
        return self._capacity() if self._more else 0

    def _spawn_workers(self, count: int) -> None:
        """New workers (the pool opens, or grows): claim for them, which also registers them
        as idle in Redis if no job waits."""
        super()._spawn_workers(count)
        self._more = True
        self._wake_link()

    async def _link(self) -> None:
        """Make a trip whenever there is something to send. One trip at a time: whatever
        comes during a trip goes with the next one (docs/design.md says why)."""
        while True:
            with self._runtime.CancelScope() as scope:
                # the timers (see _wake_link_at, which brings the deadline nearer meanwhile)
                scope.deadline = min(self._retry_due, self._due_at)
                self._link_scope = scope
                await self._wake.wait()
            now = self._now()
            if now >= self._retry_due:
                self._retry_due = math.inf
                self._more = True
                self._trip_due = True  # the retry goes back to the queue even if no worker is free
            if now >= self._due_at:
                # Jobs are due in Redis: a claim lets them in, if a worker is free here (else
                # this process has nothing to gain from them now: its next claim, or another
                # process's, or the reaper, lets them in; docs/distributed.md, "Later jobs").
                self._due_at = math.inf
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
            self._delay = RECONNECT_DELAY
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
        # Every free worker is offered, also when the trip is for the ends: a claim keeps this
        # process's idle workers registered in Redis (see stores/_redis_scripts.py, wake-ups).
        count = self._capacity()
        if out.ends or (count and self._more) or self._trip_due:
            self._trip_due = False
            await self._end_and_claim(count)

    async def _end_and_claim(self, count: int) -> None:
        """Send the ends of this process's jobs and claim up to ``count`` waiting jobs for
        the idle workers, in one call; hand the claimed jobs to the workers."""
        self._cancels_seen.clear()
        self._claiming += count
        sent, news = self._now(), self._news
        try:
            with self._out.ends.sending() as ends:
                recorded, claimed, next_due = await self._queue.end_and_claim(
                    self._owner, ends, count, self._lease_ms
                )
        finally:
            self._claiming -= count
        for job_id, _, _ in ends:
            self._ending.discard(job_id)
            if self._live.get(self._key(job_id)) is None:  # else it was claimed here again
                self._leases.pop(job_id, None)
        self._uncount_refused(ends, recorded)
        if next_due is not None:
            self._due_in(next_due)
        if count:
            self._more = len(claimed) == count or self._news != news
            self._take_in(claimed, sent)

    def _due_in(self, ms: int) -> None:
        """Redis has a retry or scheduled job due in ``ms`` milliseconds (its clock, as of its
        answer or message): the link claims then, if a worker is free. An earlier time this
        process knew stays (a message may pass the answer of a claim): at worst a claim finds
        nothing due, and its answer tells the next time."""
        due = self._now() + ms / 1000
        if due < self._due_at:
            self._due_at = due
            self._wake_link_at(due)

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
        now = self._now()
        for submission in submits:
            job = submission.job
            record = job._record
            options = {"timeout": record.timeout, "retry": record.retry}
            delay_ms = None
            if job._status is _SCHEDULED:  # due at _due_m: how long from now, on Redis's clock
                delay_ms = max(0, math.ceil((job._due_m - now) * 1000))  # type: ignore[operator]
            jobs.append(
                NewJob(
                    record.job_id,
                    record.name,
                    record.args,
                    record.priority,
                    options,
                    delay_ms,
                    record.key,
                )
            )
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
        for submission, new, seq in zip(submits, jobs, answers, strict=True):
            if seq == DUPLICATE:
                self._submit_answer(submission, DuplicateJob(submission.job.job_id))
            elif seq == FULL:
                self._submit_answer(submission, ROOM)
            else:
                job = submission.job
                job._record.seq = seq
                self._counters.submitted += 1
                if new.delay_ms:  # scheduled in Redis: the handle follows it
                    self._follow_scheduled(job, job._due_m)  # type: ignore[arg-type]
                elif new.delay_ms == 0:  # due already: it entered the queue
                    job._status = _QUEUED
                self._submit_answer(submission, True)

    def _submit_answer(self, submission: Submission, answer: object) -> None:
        job = submission.job
        if answer is not True and self._remote.get(job._key) is job:
            del self._remote[job._key]
        if submission.slot is not None:
            self._runtime.unpark_shielded(submission.slot, answer)
        elif answer is not True:  # submit_nowait: the refusal goes to the handle
            error = answer
            if answer is ROOM:
                error = QueueFull(f"Redis refused job {job.job_id!r}: the queue is full")
            assert isinstance(error, Exception)
            self._end_here(job, JobStatus.FAILED, (error, None))
        if job._cancel_reason is not None and answer is True and job._record.seq:
            self._out.cancels.add(job.job_id)  # cancelled while Redis was taking it

    def _take_in(self, claimed: list[Claimed], sent: float) -> None:
        """Give jobs just claimed to the idle workers; their leases run from ``sent``."""
        for c in claimed:
            if self._stopping:  # no worker will take it: straight back to the queue
                self._out.give_backs.add((c.job_id, False, {}, False))
                self._wake_link()
                continue
            key = self._key(c.job_id)
            job = self._remote.get(key)
            if job is None or job._record.seq != c.seq:  # another submission: a handle of its own
                record = JobRecord(
                    job_id=c.job_id,
                    name=c.name,
                    args=c.args,
                    priority=c.priority,
                    timeout=c.options.get("timeout"),
                    retry=c.options.get("retry"),
                    submitted_at=c.submitted_at,
                    key=c.key,
                    seq=c.seq,
                )
                job = self._job_from_record(record, key)
            else:
                self._unfollow_scheduled(job)  # (if it was scheduled: it came due)
            record = job._record
            record.crashes, record.interrupted = c.crashes, c.interrupted
            record.deferrals = c.deferrals
            if c.crashes or c.interrupted:
                log_start_over(record, c.attempts)
            job._attempts = c.attempts - 1  # _start counts the attempt
            job._status = _QUEUED
            job._ready_m = c.ready_at - self._wall_offset  # its wait runs from here
            if c.scheduled_for is not None:
                job._due_m = c.scheduled_for - self._wall_offset
            self._live[key] = job
            self._leases[c.job_id] = sent + self._lease
            self._counters.queued += 1
            if c.job_id in self._cancels_seen:
                job._cancel_reason = CANCELLED
            self._place(job, bounded=False)

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
                        for job_id in cancel:  # cancels whose pub/sub message was missed
                            self._on_message(f"cancel:{job_id}")
                        with contextlib.suppress(
                            *redis_errors(), QueueLost
                        ):  # else the next one reaps
                            await queue.reap(self._redis.max_crashes, round(interval * 1000))
                self._keeper_ran = self._now()
            now = self._now()
            for job_id, lapse in list(self._leases.items()):
                if lapse - margin <= now:
                    self._fence(job_id)

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
        except QueueLost as exc:  # lost again at once
            self._queue_lost(exc)
            raise StoreError(f"Redis at {self._redis.url} keeps losing the queue") from exc

    async def _listen(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Follow the queue's channel; after a lost connection, subscribe again and look up
        the jobs whose end it may have missed."""
        from coredis.retry import NoRetryPolicy

        delay = RECONNECT_DELAY
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
                        self._resubscribed()
                        self._wake_link()
                    delay = RECONNECT_DELAY
                    async for message in pubsub:
                        self._on_message(str(message["data"]))
            except BaseException as exc:  # coredis's task groups wrap what it raises in groups
                if not _redis_lost(exc):
                    raise
                if not started:
                    raise self._lost_error("cannot subscribe", exc) from exc
                await anyio.sleep(delay)
                delay = min(_MAX_RECONNECT_DELAY, delay * 2)

    def _resubscribed(self) -> None:
        """Hook: the listener subscribed again after a loss (the messages sent meanwhile are
        lost). The periodic schedules read theirs again (``_shared_schedules.py``)."""

    def _on_message(self, data: str) -> None:
        if data == "new":  # a wake-up of this process's registered idle workers
            self._more = True
            self._news += 1
            if not self._capacity():
                self._trip_due = True  # pass it on: the claim leaves the jobs to others
            self._wake_link()
        elif data == "room":
            self._room.set()
            self._room = self._runtime.Event()
        elif data.startswith(("ended:", "scheduled:")):  # jobs submitted here: read them
            ids = json.loads(data.partition(":")[2])
            mine = [i for i in ids if self._key(i) in self._remote]
            if mine:
                self._out.fetches.update(mine)
                self._wake_link()
        elif data.startswith("due:"):
            self._due_in(int(data[4:]))
        elif data.startswith("cancel:"):
            job_id = data[7:]
            job = self._live.get(self._key(job_id))
            if job is None:
                self._cancels_seen.add(job_id)  # a claim in flight may bring it
            elif job._cancel_reason is None:
                self._cancel_job(job, CANCELLED)


def _redis_lost(exc: BaseException) -> bool:
    """Whether ``exc`` says Redis was lost (also inside the exception groups of coredis's
    task groups), as opposed to a cancellation or a bug."""
    return every_leaf(exc, lambda leaf: isinstance(leaf, redis_errors()))
