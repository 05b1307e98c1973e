"""Periodic schedules on a distributed pool: the queue in Redis is the pool's book (see
docs/distributed.md, "Periodic schedules").

Every process keeps a copy of every schedule it can fire (its registry has the job) and its
own timer, as a pool of one process does (``_periodic.py``); each tick's step is one script in
Redis (``RedisQueue.fire_schedule``) that makes it only if the schedule is still as that process
last saw it, and submits the tick's job into the shared queue. So however many processes wake
for one tick, it fires once; the others get the state back and adopt it. What this module adds:

* the book's calls go through the link's handling of a lost Redis: an unreachable Redis is a
  :class:`StoreError` (the timer tries the step again after a backoff), a Redis that lost the
  queue (a new epoch) is handled as for any call, and the call is made again in the new epoch;
* a tick's job is not placed here: it waits in Redis, and registered idle workers (of any
  process) are woken for it by the script; its handle is followed as a job submitted here;
* copies are kept up to date without polling: a declaration or a removal by any process is
  announced on the queue's channel, and the listener adopts it (a process that was cut off from
  pub/sub reads every schedule again when it subscribes again);
* clock skew: a step whose tick is more than :data:`EARLY_TOLERANCE` seconds ahead of Redis's
  clock is refused by the script, and this process's timer waits until Redis's clock has come
  that far (a host whose clock is fast fires no tick early);
* Redis lost the queue's data: the schedules are gone with it; each process puts back the ones
  it has copies of (unless the queue has one of that name already), handled from the moment it
  does so (ticks that fell while the data was lost do not fire, as the lost jobs do not run).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

from ._config import PoolConfig
from ._job import JobHandle, JobStatus, RecordedJob
from ._link import Link
from ._runtime import Runtime, TaskGroupLike
from .stores._base import JobRecord, ScheduleBook, ScheduleRecord
from .stores._redis_queue import RedisQueue, redis_errors, schedule_message
from .stores.redis import RedisStore

__all__ = ["EARLY_TOLERANCE", "SharedSchedules"]

T = TypeVar("T")

logger = logging.getLogger("trio_jobpool.distributed")

EARLY_TOLERANCE: Final = 1.0
"""How far (seconds) a tick's step may be ahead of Redis's clock: the step of a process whose
clock is further ahead than this is refused until Redis's clock comes that far."""

_QUEUED: Final = JobStatus.QUEUED


class SharedSchedules(Link):
    """The periodic schedules of a distributed pool (see the module docstring)."""

    early_tolerance: float = EARLY_TOLERANCE  # (a class attribute: tests shorten it)

    def __init__(
        self,
        config: PoolConfig,
        runtime: Runtime,
        nursery: TaskGroupLike,
        store: RedisStore,
        queue: RedisQueue,
    ) -> None:
        super().__init__(config, runtime, nursery, store, queue)
        # Redis lost the queue and this process has yet to put its copies back (the link's next
        # trip does, or any call that adopts the new epoch)
        self._restore_pending = False
        # The listener subscribed again: the link's next trip reads every schedule again
        self._reload_schedules = False
        self._early_warned = False

    def _schedule_book(self) -> ScheduleBook:
        """The queue in Redis (through this pool: the queue is not open yet when this is
        called, and a lost Redis is the pool's to handle)."""
        return _QueueBook(self)

    # -- the book: the queue's scripts, with the link's handling of a lost Redis ---------------

    async def _book_call(self, what: str, call: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``await call(*args)``; if Redis lost the queue, in its new epoch (after putting
        the schedules back). Cancelled while the call is under way, the step may or may not have
        been made (as when its answer is lost): the next step finds out.

        Raises:
            StoreError: Redis cannot be reached (or keeps losing the queue). A step whose
                answer was lost may have been made: the next step finds it made.
        """
        try:
            return await self._read(lambda _: call(*args), None)
        except redis_errors() as exc:
            raise self._lost_error(what, exc) from exc

    async def _load_shared(self) -> list[ScheduleRecord]:
        return await self._book_call("cannot read the schedules", self._queue.load_schedules)

    async def _declare_shared(self, record: ScheduleRecord) -> ScheduleRecord:
        return await self._book_call(
            f"cannot declare schedule {record.name!r}",
            self._queue.declare_schedule,
            record,
            self._owner,
        )

    async def _remove_shared(self, name: str) -> bool:
        return await self._book_call(
            f"cannot remove schedule {name!r}", self._queue.remove_schedule, name, self._owner
        )

    async def _fire_shared(
        self, before: ScheduleRecord, after: ScheduleRecord, job: JobRecord | None
    ) -> ScheduleRecord | None:
        """A tick's step in Redis (``RedisQueue.fire_schedule``). A job submitted takes its
        number (``job.seq``: ``_admit_tick`` follows it). A step refused as early (this host's
        clock is ahead of Redis's) keeps ``before`` and holds the timer back until Redis's
        clock has come as far."""
        fired = await self._book_call(
            f"cannot fire schedule {before.name!r}",
            self._queue.fire_schedule,
            before,
            after,
            job,
            self._owner,
            round(self.early_tolerance * 1000),
        )
        if fired.early_ms:
            self._early(before.name, fired.early_ms / 1000)
        elif fired.seq and job is not None:
            job.seq = fired.seq
        return fired.kept

    def _early(self, name: str, ahead: float) -> None:
        """Redis refused a step whose tick is ``ahead`` seconds ahead of its clock: no step
        until then (the timer's resume time, as after a failed step); warn once."""
        self._ticker_resume = max(self._ticker_resume, self._now() + ahead)
        if not self._early_warned:
            self._early_warned = True
            logger.warning(
                "schedule %r: this host's clock is %.1f s ahead of Redis's (on %s), more than "
                "the %g s allowed: its ticks wait for Redis's clock (keep the hosts' clocks "
                "in sync; see docs/distributed.md, 'Periodic schedules')",
                name,
                ahead,
                self._redis.url,
                self.early_tolerance,
            )

    # -- a tick's job ----------------------------------------------------------------------

    def _admit_tick(self, job: JobHandle[Any], tick: float) -> None:
        """The tick's job is in Redis, submitted by this process: its handle follows it (as a
        submit's does) and counts as submitted here. It is not placed here: the script woke
        registered idle workers for it, this process's among them."""
        assert isinstance(job, RecordedJob)
        now = self._now()
        job._submitted_m = now
        job._due_m = job._ready_m = min(tick, now)
        job._status = _QUEUED
        self._remote[job._key] = job
        self._counters.submitted += 1

    # -- copies of the schedules -------------------------------------------------------------

    def _adopt(self, record: ScheduleRecord) -> None:
        """Keep ``record`` as this process's copy if it can fire it (its job is registered
        here); else drop any copy of it (warned once: it may have been declared anew by a
        process whose registry has another job)."""
        registry = self._config.registry
        if registry is not None and record.job_name in registry:
            super()._adopt(record)
        else:
            self._plans.pop(record.name, None)
            self._adopt_stored(record)  # (warns)

    def _on_message(self, data: str) -> None:
        """As the link's, and: a schedule declared or removed by another process."""
        if data.startswith(("schedule:", "unschedule:")):
            sender, said = schedule_message(data.partition(":")[2])
            if sender == self._owner or self._closed:
                return  # this process adopted what it did already
            if isinstance(said, str):
                self._plans.pop(said, None)
            else:
                self._adopt(said)
            return
        super()._on_message(data)

    def _resubscribed(self) -> None:
        """Messages were lost while the listener was away: read every schedule again."""
        self._reload_schedules = True
        self._wake_link()

    def _unsent(self) -> bool:
        return self._reload_schedules or self._restore_pending or super()._unsent()

    async def _send(self) -> None:
        """As the link's trip, first reading every schedule again if the listener was away."""
        if self._reload_schedules:
            self._reload_schedules = False
            try:
                records = await self._queue.load_schedules()
            except BaseException:
                self._reload_schedules = True
                raise
            names = {record.name for record in records}
            for record in records:
                self._adopt(record)
            for name in [name for name in self._plans if name not in names]:
                del self._plans[name]  # removed meanwhile
        await super()._send()

    # -- Redis lost the queue ----------------------------------------------------------------

    async def _adopt_epoch(self) -> None:
        """As the link's; and after a new epoch, put back the schedules this process has
        copies of (each unless the queue has one of that name already), their ticks handled
        from now on, and adopt the ones kept. Tried again by every trip until it is done."""
        if self._epoch_lost is not None and self._plans:
            self._restore_pending = True
        await super()._adopt_epoch()
        if not self._restore_pending:
            return
        now = self._wall(self._now())
        records = []
        for record, rule in self._plans.values():
            handled = max(record.handled_until, now)
            next_run = rule.next_after(handled)
            records.append(dataclasses.replace(record, handled_until=handled, next_run=next_run))
        kept = await self._queue.restore_schedules(records, self._owner)
        self._restore_pending = False
        for record in kept:
            self._adopt(record)
        logger.warning(
            "Redis at %s lost the queue's schedules with its data: this process put back %d "
            "(those it had copies of, unless another process did first)",
            self._redis.url,
            len(records),
        )


class _QueueBook:
    """The distributed pool's ``ScheduleBook``: the queue's schedules in Redis, through the
    pool (:class:`SharedSchedules`), which knows how to handle a lost Redis."""

    __slots__ = ("_pool",)

    def __init__(self, pool: SharedSchedules) -> None:
        self._pool = pool

    async def load_schedules(self) -> list[ScheduleRecord]:
        return await self._pool._load_shared()

    async def declare_schedule(self, record: ScheduleRecord) -> ScheduleRecord:
        return await self._pool._declare_shared(record)

    async def remove_schedule(self, name: str) -> bool:
        return await self._pool._remove_shared(name)

    async def fire(
        self, before: ScheduleRecord, after: ScheduleRecord, job: JobRecord | None
    ) -> ScheduleRecord | None:
        return await self._pool._fire_shared(before, after, job)
