"""The SQLite store's book of periodic schedules and of limits: the steps that read and write
the ``schedules`` and ``limits`` tables, each made inside one of the store's commits.

A step is queued like any write (``SqliteStore._run_step``): behind every write queued before
it, in the same transaction as the writes around it or a later one, and its caller waits until
that transaction is committed. Inside the transaction it reads the schedule's row, decides, and
writes (or not); what it decided is in ``result`` once the commit succeeded. If the commit
fails, the whole transaction is rolled back (the step too: a tick's schedule update and its
job's insert are kept together or not at all) and the caller gets the ``StoreError``; a step
is never tried again by the store (its caller acts on the error).

Comparisons are made between records as the file gives them back (:func:`stored_form`): a
declaration's arguments with a tuple are the same definition as the list JSON keeps.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Final

from ._base import JobRecord, ScheduleRecord
from ._sqlite_schema import (
    DELETE_LIMIT,
    INSERT,
    PUT_LIMIT,
    PUT_SCHEDULE,
    SCHEDULE_COLUMNS,
    insert_values,
    limit_values,
    schedule_values,
    to_schedule,
)

__all__ = [
    "SCHEDULE_STEP",
    "Declare",
    "Fire",
    "PutLimit",
    "Remove",
    "ScheduleStep",
    "stored_form",
]

SCHEDULE_STEP: Final = "-- a schedule step"
"""The statement of a queued write that is a :class:`ScheduleStep` (its values: the step)."""

_SELECT: Final = f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE name = ?"


def stored_form(record: ScheduleRecord) -> ScheduleRecord:
    """``record`` as the file would give it back (JSON's lists for tuples)."""
    return to_schedule(schedule_values(record))


def _read(db: sqlite3.Connection, name: str) -> ScheduleRecord | None:
    row = db.execute(_SELECT, (name,)).fetchone()
    return None if row is None else to_schedule(row)


class ScheduleStep:
    """One step of the book, made by :meth:`apply` inside the store's transaction (in the
    thread that commits). Hashable by identity: it travels in the store's write queue."""

    __slots__ = ()

    def apply(self, db: sqlite3.Connection) -> None:
        raise NotImplementedError


class Declare(ScheduleStep):
    """Keep ``record`` unless a schedule of its name has an equal definition; ``result``: the
    schedule kept (a replaced one's counters and last run carried over)."""

    __slots__ = ("record", "result")

    def __init__(self, record: ScheduleRecord) -> None:
        self.record = record
        self.result: ScheduleRecord | None = None

    def apply(self, db: sqlite3.Connection) -> None:
        record = stored_form(self.record)
        current = _read(db, record.name)
        kept = record.declared_over(current)
        if kept is None:
            self.result = current
            return
        db.execute(PUT_SCHEDULE, schedule_values(kept))
        self.result = kept


class Remove(ScheduleStep):
    """Delete the schedule ``name``; ``result``: whether there was one."""

    __slots__ = ("name", "result")

    def __init__(self, name: str) -> None:
        self.name = name
        self.result = False

    def apply(self, db: sqlite3.Connection) -> None:
        self.result = db.execute("DELETE FROM schedules WHERE name = ?", (self.name,)).rowcount > 0


class PutLimit(ScheduleStep):
    """Keep ``limit`` (a limit's JSON form) as ``key``'s own, or delete the key's (``None``)."""

    __slots__ = ("key", "limit")

    def __init__(self, key: str, limit: dict[str, Any] | None) -> None:
        self.key = key
        self.limit = limit

    def apply(self, db: sqlite3.Connection) -> None:
        if self.limit is None:
            db.execute(DELETE_LIMIT, (self.key,))
        else:
            db.execute(PUT_LIMIT, limit_values(self.key, self.limit))


class Fire(ScheduleStep):
    """A tick's step: if the schedule's row is still ``before`` (its definition, anchor and
    ``handled_until``: every other change of the row changes one of them), write ``after`` and
    insert ``job`` (numbered by the store already); else write nothing. ``result``: the
    schedule kept (``after`` itself when it fired; ``None``: it was removed); ``fired``: whether
    it did."""

    __slots__ = ("after", "before", "fired", "job", "result")

    def __init__(
        self, before: ScheduleRecord, after: ScheduleRecord, job: JobRecord | None
    ) -> None:
        self.before = before
        self.after = after
        self.job = job
        self.result: ScheduleRecord | None = None
        self.fired = False

    def apply(self, db: sqlite3.Connection) -> None:
        current = _read(db, self.before.name)
        self.result = current
        if current is None or current.position() != stored_form(self.before).position():
            return
        db.execute(PUT_SCHEDULE, schedule_values(self.after))
        if self.job is not None:
            db.execute(INSERT, insert_values(self.job))
        self.result = self.after
        self.fired = True
