"""Periodic schedules: the public :class:`Schedule` snapshot, what a tick does
(:func:`plan`), and the book of a pool in memory (:class:`MemoryBook`).

A schedule's state is one number, ``handled_until``: every tick at or before it was handled
(fired or skipped). When the pool's timer reaches ``next_run`` (the first tick after it),
:func:`plan` decides, from the rule, the clock and the schedule's options, which tick fires
(if any), how many are skipped and the next state; the pool then asks its book to make that
step (``ScheduleBook.fire``), which happens only if nobody else made it first. The rules:

* **Missed ticks.** A tick is *on time* if it is handled within :data:`MISFIRE_GRACE` seconds
  of its time (and before the next tick: otherwise it is not the latest). Ticks that passed
  while no pool could fire them (a restart, a stalled loop) are *missed*. Of the ticks due at
  one step only the latest can fire: it fires if it is on time or with ``misfire="once"``;
  every other one is skipped (``misfire="skip"`` thus runs none of the missed ticks, ``"once"``
  one job for the latest of them).
* **Overlap.** With ``overlap="skip"`` a tick whose schedule still has a live job (its last
  one) is skipped; ``"allow"`` fires it anyway.
* **Paused.** A paused schedule handles its ticks without firing or counting them.

``skipped`` counts the ticks skipped, at most :data:`SKIPS_COUNTED` per step (a cron schedule's
ticks over a long downtime are counted one by one).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from ._retry import RetryPolicy
from ._ticks import TickRule, tick_id
from .stores._base import JobRecord, ScheduleRecord

__all__ = [
    "MISFIRE_GRACE",
    "MISFIRES",
    "OVERLAPS",
    "SKIPS_COUNTED",
    "MemoryBook",
    "Schedule",
    "Step",
    "plan",
]

MISFIRE_GRACE: Final = 60.0
"""Seconds after its time within which a tick still counts as on time."""
SKIPS_COUNTED: Final = 10_000
"""The most skipped ticks one step counts (see the module docstring)."""
OVERLAPS: Final = ("skip", "allow")
MISFIRES: Final = ("skip", "once")


@dataclass(frozen=True, slots=True)
class Schedule:
    """A periodic schedule, as :meth:`JobPool.schedule` and :meth:`JobPool.schedules` return
    it: a snapshot, taken when the call returned.

    Attributes:
        name: the schedule's name; each tick's job has the id ``f"{name}@{tick}"``, ``tick``
            being the tick's UTC time as ``YYYY-MM-DDTHH:MM:SSZ``.
        job_name: the registered name of its job (in memory: the function's qualified name).
        cron: the cron expression (canonical: single spaces, upper case), or ``None``.
        every: the period in seconds, or ``None``.
        tz: the IANA zone the cron expression is evaluated in.
        next_run: the next tick (wall-clock seconds), also while paused.
        last_run: the tick of the last job it submitted (wall-clock seconds), or ``None``.
        last_job_id: that job's id, or ``None``.
        paused: a paused schedule fires nothing.
        runs: jobs submitted by it.
        skipped: ticks it skipped (overlap, missed ticks; see the guide), not counting the
            ticks that passed while it was paused.
        args: the job's positional arguments.
        priority, timeout, retry: those of every tick's job (``retry``: the schedule's own
            policy, or ``None`` for the pool's).
        overlap: ``"skip"`` or ``"allow"``.
        misfire: ``"skip"`` or ``"once"``.

    ``job_name`` with ``args``, ``cron``, ``every``, ``tz``, ``priority``, ``timeout``,
    ``retry``, ``overlap``, ``misfire`` and ``paused`` are the definition: declaring them again
    changes nothing (the HTTP service's pause toggle declares them with ``paused`` flipped).
    ``args`` is left out of the hash (it may hold lists).
    """

    name: str
    job_name: str
    cron: str | None
    every: float | None
    tz: str
    next_run: float
    last_run: float | None
    last_job_id: str | None
    paused: bool
    runs: int
    skipped: int
    args: tuple[Any, ...] = field(default=(), hash=False)
    priority: int = 5
    timeout: float | None = None
    retry: RetryPolicy | None = None
    overlap: str = "skip"
    misfire: str = "skip"

    @classmethod
    def of(cls, record: ScheduleRecord, retry: RetryPolicy | None = None) -> Schedule:
        """The snapshot of a stored schedule; ``retry`` is its policy (a record keeps it as
        JSON, which only a higher layer reads back)."""
        return cls(
            name=record.name,
            job_name=record.job_name,
            cron=record.cron,
            every=record.every,
            tz=record.tz,
            next_run=record.next_run,
            last_run=record.last_run,
            last_job_id=record.last_job_id,
            paused=record.paused,
            runs=record.runs,
            skipped=record.skipped,
            args=tuple(record.args),
            priority=record.priority,
            timeout=record.timeout,
            retry=retry,
            overlap=record.overlap,
            misfire=record.misfire,
        )


@dataclass(frozen=True, slots=True)
class Step:
    """What a schedule does at one wake-up of the timer: go to state ``after``, and fire the
    tick ``tick`` (wall-clock seconds) with the job id ``job_id``, or fire nothing (``None``)."""

    after: ScheduleRecord
    tick: float | None
    job_id: str | None


def rule_of(record: ScheduleRecord) -> TickRule:
    """The tick rule of a stored (so already checked) schedule."""
    return TickRule.parse(record.cron, record.every, record.tz, record.anchor)


def plan(record: ScheduleRecord, rule: TickRule, now: float, live: Callable[[str], bool]) -> Step:
    """The step of ``record`` at wall-clock ``now`` (not before its ``next_run``), by the rules
    of the module docstring; ``live(job_id)`` tells whether a job is live (for the overlap)."""
    due = rule.due(record.handled_until, now, cap=2)
    after = dataclasses.replace(record, handled_until=now, next_run=due.next_tick)
    if due.latest is None or record.paused:
        return Step(after, None, None)
    count = due.missed
    if count > 1:
        count = rule.count_in(record.handled_until, now, SKIPS_COUNTED)
    fires = now - due.latest <= MISFIRE_GRACE or record.misfire == "once"
    skipped = count - 1 if fires else count
    if fires and record.overlap == "skip" and record.last_job_id and live(record.last_job_id):
        fires = False
        skipped += 1
    after.skipped += skipped
    if not fires:
        return Step(after, None, None)
    job_id = tick_id(record.name, due.latest)
    after.runs += 1
    after.last_run = due.latest
    after.last_job_id = job_id
    return Step(after, due.latest, job_id)


class MemoryBook:
    """The schedules of a pool in memory (a ``ScheduleBook``); they last as long as it does."""

    def __init__(self) -> None:
        self._schedules: dict[str, ScheduleRecord] = {}

    async def load_schedules(self) -> list[ScheduleRecord]:
        return [dataclasses.replace(s) for _, s in sorted(self._schedules.items())]

    async def declare_schedule(self, record: ScheduleRecord) -> ScheduleRecord:
        current = self._schedules.get(record.name)
        kept = record.declared_over(current)
        if kept is None:
            assert current is not None
            return dataclasses.replace(current)
        self._schedules[kept.name] = kept
        return dataclasses.replace(kept)

    async def remove_schedule(self, name: str) -> bool:
        return self._schedules.pop(name, None) is not None

    async def fire(
        self, before: ScheduleRecord, after: ScheduleRecord, job: JobRecord | None
    ) -> ScheduleRecord | None:
        current = self._schedules.get(before.name)
        if current is None or current.position() != before.position():
            return None if current is None else dataclasses.replace(current)
        self._schedules[after.name] = dataclasses.replace(after)
        return after
