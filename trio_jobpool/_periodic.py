"""Periodic schedules on a pool: ``schedule``, ``unschedule``, ``schedules``, and the timer
that fires their ticks (see :mod:`._schedules` for the rules of a tick).

The schedules are kept in the pool's *book* (``ScheduleBook``): a dict for a pool in memory,
the store for a durable or distributed pool. The pool keeps a copy of each schedule with its
tick rule, and one timer task sleeps until the earliest ``next_run`` among them (a cancel
scope's deadline, moved when a declaration brings a nearer one; nothing polls). When it wakes,
each due schedule takes its step through the book, which makes it only if the schedule is
still as this pool last saw it: two processes, or a restarted pool, cannot fire one tick twice.
A tick's job enters the waiting room as a due scheduled job does (beyond the queue bound), its
wait counted from the tick's time.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, Final

from ._config import PoolConfig
from ._errors import JobNotFound, JobNotRegistered, PoolClosed, StoreError
from ._intake import Intake
from ._job import JobHandle, RecordedJob
from ._journal import Journal
from ._records import policy_from_json, policy_to_json
from ._registry import check_json
from ._retry import RetryPolicy
from ._runtime import CancelScopeLike, Runtime, TaskGroupLike
from ._schedules import MISFIRES, OVERLAPS, MemoryBook, Schedule, plan, rule_of
from ._ticks import TickRule
from ._validate import validate_timeout
from .stores._base import ScheduleBook, ScheduleRecord

__all__ = ["Periodic"]

logger = logging.getLogger("trio_jobpool")

_INF: Final = math.inf
# After a step the book could not make (StoreError), the timer tries again after this many
# seconds, doubled at each failure in a row up to the maximum.
_RETRY_FIRST: Final = 0.1
_RETRY_MAX: Final = 10.0


def _retry_delay(failures: int) -> float:
    """The backoff after ``failures`` failed steps in a row (0: the first failure)."""
    return min(_RETRY_MAX, _RETRY_FIRST * 2.0**failures)


class Periodic(Intake):
    """Periodic schedules (see the module docstring).

    Invariants: ``_plans`` holds this pool's copy of every schedule it fires, with its rule;
    ``_ticker_target`` is the deadline of ``_ticker_scope``, never later than the earliest
    ``next_run`` (on the pool's clock) among them. ``_local`` holds, for a pool in memory, the
    function and retry policy of each schedule (what a record cannot carry).
    """

    def __init__(
        self,
        config: PoolConfig,
        runtime: Runtime,
        nursery: TaskGroupLike,
        journal: Journal | None = None,
    ) -> None:
        super().__init__(config, runtime, nursery, journal)
        self._book: ScheduleBook = self._schedule_book()
        self._plans: dict[str, tuple[ScheduleRecord, TickRule]] = {}
        self._local: dict[str, tuple[Callable[..., Awaitable[Any]], RetryPolicy | None]] = {}
        self._ticker_scope = runtime.CancelScope()
        self._ticker_target = _INF
        self._unfirable: set[str] = set()  # stored schedules whose job is not registered here
        self._fire_failures = 0  # steps in a row the book could not make
        self._ticker_resume = -_INF  # no step before this time (pool clock): see _fire_failed
        # the wait before the stored schedules are read again (see _load_stored_schedules)
        self._load_scope: CancelScopeLike | None = None

    def _schedule_book(self) -> ScheduleBook:
        """Hook: where this pool keeps its schedules. Here: the store, if it keeps schedules,
        else a book in memory."""
        store = None if self._journal is None else self._journal.store
        if store is not None and callable(getattr(store, "fire", None)):
            book: ScheduleBook = store  # type: ignore[assignment]
            return book
        return MemoryBook()

    # -- the public API --------------------------------------------------------------------

    async def schedule(
        self,
        name: str,
        fn: Callable[..., Awaitable[Any]] | str,
        *args: Any,
        cron: str | None = None,
        every: float | None = None,
        tz: str = "UTC",
        priority: int = 5,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        overlap: str = "skip",
        misfire: str = "skip",
        paused: bool = False,
    ) -> Schedule:
        """Declare the periodic schedule ``name``, or replace the one of that name: each tick
        submits ``fn(*args)`` as a job with the id ``f"{name}@{tick}"``.

        Exactly one of ``cron`` (a 5-field cron expression evaluated in the IANA zone ``tz``,
        correct across daylight saving changes) and ``every`` (seconds ``>= 1``; ticks at the
        declaration's time + k·every, k >= 1). Declaring a schedule identical to the one kept
        (same job, arguments, expression, zone and options) changes nothing, so every process
        of a cluster may declare its schedules when it starts; any difference replaces it (its
        ticks count from now; ``runs``, ``skipped`` and the last run are kept). ``paused`` is
        part of the definition: a schedule paused through the HTTP API is resumed by a
        declaration with ``paused=False``.

        Each tick's job is submitted like a scheduled job falling due: beyond the queue bound,
        behind the jobs of its priority already waiting, its wait counted from the tick's time.
        ``overlap="skip"`` skips a tick while the schedule's last job is live; ``"allow"``
        submits it anyway. ``misfire`` says what happens to ticks missed while no pool could
        fire them (or handled more than a minute late): ``"skip"`` runs none of them,
        ``"once"`` one job for the latest, at once (see docs/schedules.md).

        A checkpoint; with a store, the declaration is written before it returns. Cancelled,
        the declaration may or may not have been made.

        Args:
            name: a non-empty ``str``.
            fn: an async callable, or with a registry the name of a registered job. With a
                store it must be registered (as for ``submit``) and ``args`` JSON.
            timeout, retry, priority: as for ``submit``, for every tick's job.

        Raises:
            ValueError: a bad name, expression, zone, ``every``, or a combination (both or
                neither of ``cron`` and ``every``); ``overlap`` or ``misfire`` not one of the
                words above. The message names the value.
            TypeError: arguments of the wrong type.
            JobNotRegistered, JobNotSerializable: with a store, as for ``submit``.
            PoolClosed: the pool is closed.
            StoreError: the store could not keep it.
        """
        record, local = self._declaration(
            name, fn, args, cron, every, tz, priority, timeout, retry, overlap, misfire, paused
        )
        await self._runtime.checkpoint()
        kept = await self._book.declare_schedule(record)
        if local is not None:
            self._local[name] = local
        self._adopt(kept)
        return self._snapshot(kept)

    async def unschedule(self, name: str) -> None:
        """Remove the schedule ``name``; jobs it already submitted are not affected. A
        checkpoint.

        Raises:
            JobNotFound: there is no schedule of that name.
            StoreError: the store could not remove it.
        """
        await self._runtime.checkpoint()
        if not isinstance(name, str) or not await self._book.remove_schedule(name):
            raise JobNotFound(name, kind="schedule")
        self._plans.pop(name, None)
        self._local.pop(name, None)

    async def schedules(self) -> list[Schedule]:
        """Every schedule, sorted by name (with a store: as the store keeps them, also those
        other processes declared). A checkpoint.

        Raises:
            StoreError: the store could not be read.
        """
        await self._runtime.checkpoint()
        return [self._snapshot(record) for record in await self._book.load_schedules()]

    def _snapshot(self, record: ScheduleRecord) -> Schedule:
        """The public snapshot of ``record``, with its retry policy: in memory the one it was
        declared with, else the one its record names."""
        local = self._local.get(record.name)
        retry = local[1] if local is not None else policy_from_json(record.retry, None)
        return Schedule.of(record, retry)

    # -- declarations ----------------------------------------------------------------------

    def _declaration(
        self,
        name: str,
        fn: Callable[..., Awaitable[Any]] | str,
        args: tuple[Any, ...],
        cron: str | None,
        every: float | None,
        tz: str,
        priority: int,
        timeout: float | None,
        retry: RetryPolicy | None,
        overlap: str,
        misfire: str,
        paused: bool,
    ) -> tuple[ScheduleRecord, tuple[Callable[..., Awaitable[Any]], RetryPolicy | None] | None]:
        """The record of a declaration, checked, and (in memory) what only this pool keeps."""
        if not isinstance(name, str):
            raise TypeError(f"a schedule name must be a str, got {name!r}")
        if not name:
            raise ValueError("a schedule name must not be empty")
        if self._closed:
            raise PoolClosed(f"cannot declare schedule {name!r}: the pool is closed")
        for option, value, allowed in (
            ("overlap", overlap, OVERLAPS),
            ("misfire", misfire, MISFIRES),
        ):
            if value not in allowed:
                raise ValueError(
                    f"schedule {name!r}: {option} must be one of {', '.join(map(repr, allowed))},"
                    f" got {value!r}"
                )
        if not isinstance(paused, bool):
            raise TypeError(f"schedule {name!r}: paused must be a bool, got {paused!r}")
        if type(priority) is not int:
            if isinstance(priority, bool) or not isinstance(priority, int):
                raise TypeError(f"priority must be an int, got {priority!r}")
            priority = int(priority)
        timeout = validate_timeout("timeout", timeout)
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy or None, got {retry!r}")
        registry = self._config.registry
        if isinstance(fn, str):
            if registry is None:
                raise TypeError(f"job {fn!r} given by name, but the pool has no registry")
            function = registry.get(fn)
        elif callable(fn):
            function = fn
        else:
            raise TypeError(f"a job must be an async callable, got {fn!r}")
        job_name: str | None = self._name_of(function)
        local: tuple[Callable[..., Awaitable[Any]], RetryPolicy | None] | None = None
        if self._named_jobs:
            if job_name is None:
                raise JobNotRegistered(f"{function!r} is not registered in the pool's registry")
            check_json(list(args), f"an argument of schedule {name!r}")
        else:
            local = (function, retry)
            if job_name is None:
                qualname = getattr(function, "__qualname__", None)
                job_name = qualname if isinstance(qualname, str) else repr(function)
        now = self._wall(self._now())
        rule = TickRule.parse(cron, every, tz, now)
        return (
            ScheduleRecord(
                name=name,
                job_name=job_name,
                args=list(args),
                cron=rule.cron,
                every=rule.every,
                tz=tz,
                anchor=now,
                priority=priority,
                timeout=timeout,
                retry=policy_to_json(retry),
                overlap=overlap,
                misfire=misfire,
                paused=paused,
                handled_until=now,
                next_run=rule.next_after(now),
            ),
            local,
        )

    def _adopt(self, record: ScheduleRecord) -> None:
        """Keep ``record`` as this pool's copy of its schedule, and move the timer's wake-up
        if its next run is the earliest."""
        current = self._plans.get(record.name)
        if current is not None and (current[0].definition(), current[0].anchor) == (
            record.definition(),
            record.anchor,
        ):
            rule = current[1]
        else:
            rule = rule_of(record)
        self._plans[record.name] = (record, rule)
        due = max(record.next_run - self._wall_offset, self._ticker_resume)
        if due < self._ticker_target:
            self._ticker_target = self._ticker_scope.deadline = due

    # -- the timer -------------------------------------------------------------------------

    async def _watch_schedules(self) -> None:
        """The timer of the schedules: load the stored ones, then sleep until the earliest next
        run, and let each due schedule take its step; ends when the pool closes."""
        if self._journal is not None or self._shared_queue:
            await self._load_stored_schedules()
        runtime = self._runtime
        while True:
            with self._ticker_scope:
                await runtime.sleep(_INF)
            if self._closed:
                return
            # Every schedule due by the deadline that woke the timer is due: an asyncio timer
            # may fire a little before its time.
            await self._fire_schedules(self._ticker_target)
            self._ticker_scope = runtime.CancelScope()
            target = min(
                (record.next_run - self._wall_offset for record, _ in self._plans.values()),
                default=_INF,
            )
            target = max(target, self._ticker_resume)
            self._ticker_scope.deadline = self._ticker_target = target

    async def _load_stored_schedules(self) -> None:
        """Adopt the schedules the store keeps. While it cannot read them (``StoreError``: the
        store fails, Redis does not answer), log it and try again after a backoff (0.1 s,
        doubled at each failure in a row, at most 10 s) until it can or the pool closes: a
        store that fails as the pool opens does not end the pool (a declaration made meanwhile
        is written by its own call, which raises the store's error to its caller)."""
        failures = 0
        while not self._closed:
            try:
                records = await self._book.load_schedules()
            except StoreError as exc:
                delay = _retry_delay(failures)
                failures += 1
                logger.warning(
                    "the stored schedules could not be read (%s); trying again in %g s", exc, delay
                )
                self._load_scope = scope = self._runtime.CancelScope()
                if not self._closed:
                    with scope:  # cancelled by close()
                        await self._runtime.sleep(delay)
                continue
            for record in records:
                self._adopt_stored(record)
            return

    def _adopt_stored(self, record: ScheduleRecord) -> None:
        """Fire a stored schedule from here if its job is registered here (warn once if not)."""
        registry = self._config.registry
        if registry is None or record.job_name not in registry:
            if record.name not in self._unfirable:
                self._unfirable.add(record.name)
                logger.warning(
                    "schedule %r is not fired by this pool: its job %r is not registered here",
                    record.name,
                    record.job_name,
                )
            return
        self._adopt(record)

    async def _fire_schedules(self, until: float) -> None:
        """Let every schedule whose next run has come, by now or by ``until`` (pool clock),
        take its step (see ``_schedules.plan``)."""
        for name, (record, rule) in list(self._plans.items()):
            now = max(self._now(), until)
            if now < record.next_run - self._wall_offset or self._closed:
                continue
            step = plan(record, rule, max(self._wall(now), record.next_run), self._is_live)
            after, job = step.after, None
            if step.job_id is not None:
                job = self._tick_job(after, step.job_id)
                if job is None:  # its id is live: the tick is skipped
                    after = dataclasses.replace(
                        after,
                        runs=record.runs,
                        last_run=record.last_run,
                        last_job_id=record.last_job_id,
                        skipped=after.skipped + 1,
                    )
            job_record = job._record if isinstance(job, RecordedJob) else None
            try:
                kept = await self._book.fire(record, after, job_record)
            except StoreError as exc:
                self._fire_failed(name, exc)
                return  # the timer tries again after a backoff; the tick is not lost
            self._fire_failures = 0
            if job is not None and step.tick is not None and kept == after:
                # It fired: its job is accepted (with a store, on record), even if the schedule
                # was declared anew or removed while the step was being made.
                self._admit_tick(job, step.tick - self._wall_offset)
            if self._plans.get(name, (None, None))[0] is not record:
                continue  # declared anew or removed meanwhile: that declaration decides
            if kept is None:
                del self._plans[name]
                continue
            self._adopt(kept)

    def _fire_failed(self, name: str, exc: StoreError) -> None:
        """The book could not make a step (the store fails): log it, and let the timer try
        again after a backoff (0.1 s, doubled at each failure in a row, at most 10 s). Nothing
        of the step was made, or (Redis, an unknown outcome) the next try finds it made."""
        delay = _retry_delay(self._fire_failures)
        self._fire_failures += 1
        self._ticker_resume = self._now() + delay
        logger.warning(
            "schedule %r: its tick could not be fired (%s); trying again in %g s",
            name,
            exc,
            delay,
        )

    def _is_live(self, job_id: str) -> bool:
        return self._key(job_id) in self._live

    def _tick_job(self, record: ScheduleRecord, job_id: str) -> JobHandle[Any] | None:
        """The job of a tick, not yet accepted; ``None`` if its id is live (a job submitted
        with that id by hand): the tick then fires nothing."""
        local = self._local.get(record.name)
        if local is None:
            fn: Callable[..., Awaitable[Any]] | str = record.job_name
            retry = policy_from_json(record.retry, None)
        else:
            fn, retry = local
        job = self._new_job(fn, tuple(record.args), job_id, record.priority, record.timeout, retry)
        if job._key in self._live:
            return None
        if self._journal is not None:
            assert isinstance(job, RecordedJob)
            self._journal.accepted(job, self._now())
        return job

    def _admit_tick(self, job: JobHandle[Any], tick: float) -> None:
        """Hook: accept the job of a tick that fired (its record, with a store, is written),
        due since ``tick`` (pool clock): it enters the waiting room beyond the bound. A
        distributed pool's tick job is in the shared queue already."""
        now = self._now()
        job._submitted_m = now
        job._due_m = job._ready_m = min(tick, now)
        self._live[job._key] = job
        self._counters.submitted += 1
        self._counters.queued += 1
        self._place(job, bounded=False)

    def close(self) -> None:
        super().close()
        self._ticker_scope.cancel()  # a closed pool fires no tick: the timer ends
        if self._load_scope is not None:
            self._load_scope.cancel()
