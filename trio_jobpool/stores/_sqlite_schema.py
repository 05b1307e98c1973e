"""The SQLite store's on-disk format: the ``jobs`` table and its indexes, the ``schedules``
table, their upgrade, the statements the store writes with, and the conversions between a row
and a :class:`JobRecord` or a :class:`ScheduleRecord`.

Cheap writes: the store numbers every job itself (``seq``, the table's row id, which is also the
submission order), so every later write finds its row by the primary key and sets only what
changed: a start sets three columns, a progress report two. The only other index maintained on
each write is the one on ``(finished_at, priority, seq)`` (live jobs are the rows without
``finished_at``: what recovery reads, in order, and what ``prune`` skips; scheduled jobs are
among them, and the pool orders them by ``scheduled_for`` in memory, so no index of due times
is kept) and the one on ``(job_id, seq)`` for ``JobPool.get``. That live job ids are unique is
the pool's check, made in memory where every live job is: the store's :class:`DatabaseLock`
keeps any other pool off the file.

A database's ``user_version`` is the version of this format it holds; :func:`create_schema`
brings a file of an earlier version up to :data:`SCHEMA_VERSION`, keeping its jobs:

* version 1 → 2: new indexes (``jobs_by_end`` instead of ``jobs_live_id`` and
  ``jobs_finished``);
* version 2 → 3: the column ``scheduled_for`` (a job given ``delay=``/``at=`` or deferred:
  status ``scheduled``, live, due at that wall-clock time), ``NULL`` in the rows already there;
* version 3 → 4: the table ``schedules`` (periodic schedules: one row per schedule, its
  definition and its state; see ``_sqlite_book.py`` for the steps that write it), empty;
* version 4 → 5: the columns ``key`` (a job's flow-control key, ``NULL`` for none) and
  ``deferrals`` (its attempts that ended with ``Defer``, 0 in the rows already there), and the
  table ``limits`` (one row per key with a limit of its own), empty.
"""

from __future__ import annotations

import json
import math
import sqlite3
from typing import Any, Final

from ._base import LIVE_STATUSES, JobRecord, ScheduleRecord

__all__ = [
    "CHANGE",
    "COLUMNS",
    "COMPLETE",
    "DELETE_LIMIT",
    "INSERT",
    "LIMIT_ROWS",
    "LIVE_ROWS",
    "LIVE_SQL",
    "PROGRESS",
    "PUT_LIMIT",
    "PUT_SCHEDULE",
    "SCHEDULE_COLUMNS",
    "SCHEMA_VERSION",
    "START",
    "Write",
    "change_values",
    "complete_values",
    "create_schema",
    "insert_values",
    "limit_values",
    "schedule_values",
    "to_record",
    "to_limit",
    "to_schedule",
]

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY,  -- the job's number, given by the store: submission order
    job_id TEXT NOT NULL,
    name TEXT NOT NULL,
    args TEXT NOT NULL,
    priority INTEGER NOT NULL,
    status TEXT NOT NULL,
    timeout REAL,
    retry TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    crashes INTEGER NOT NULL DEFAULT 0,
    interrupted INTEGER NOT NULL DEFAULT 0,
    progress REAL NOT NULL DEFAULT 0,
    progress_message TEXT,
    result TEXT,
    error_type TEXT,
    error_message TEXT,
    error_traceback TEXT,
    submitted_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    exec_time REAL,
    retry_at REAL,
    scheduled_for REAL,
    key TEXT,
    deferrals INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_by_id ON jobs (job_id, seq);
-- Live jobs (no finished_at yet) in the order they run, then ended ones by age (prune).
CREATE INDEX IF NOT EXISTS jobs_by_end ON jobs (finished_at, priority, seq);
-- Periodic schedules (version 4): a ScheduleRecord's fields, args and retry as JSON text.
CREATE TABLE IF NOT EXISTS schedules (
    name TEXT PRIMARY KEY,
    job_name TEXT NOT NULL,
    args TEXT NOT NULL,
    cron TEXT,
    every REAL,
    tz TEXT NOT NULL,
    anchor REAL NOT NULL,
    priority INTEGER NOT NULL,
    timeout REAL,
    retry TEXT,
    overlap TEXT NOT NULL,
    misfire TEXT NOT NULL,
    paused INTEGER NOT NULL,
    handled_until REAL NOT NULL,
    next_run REAL NOT NULL,
    last_run REAL,
    last_job_id TEXT,
    runs INTEGER NOT NULL,
    skipped INTEGER NOT NULL
);
-- Flow-control limits (version 5): a key's own Limit, NULL for a part it does not limit.
CREATE TABLE IF NOT EXISTS limits (
    key TEXT PRIMARY KEY,
    max_running INTEGER,
    rate_count INTEGER,
    rate_per REAL
);
"""
SCHEMA_VERSION: Final = 5
# Indexes of version 1, dropped by the upgrade to version 2.
_OLD_INDEXES: Final = ("jobs_live_id", "jobs_finished")
# Columns added since version 1 (CREATE TABLE IF NOT EXISTS leaves an existing table as it is):
# each is added to a file that lacks it, NULL in its rows (SQLite rewrites no row for that).
_ADDED_COLUMNS: Final = (
    ("scheduled_for", "REAL"),  # version 3
    ("key", "TEXT"),  # version 5
    ("deferrals", "INTEGER NOT NULL DEFAULT 0"),  # version 5
)

# A job's fixed columns, then the ones that change as it runs (see _state).
_FIXED: Final = (
    "job_id", "name", "args", "priority", "timeout", "retry", "submitted_at", "key",
)  # fmt: skip
_STATE: Final = (
    "status", "attempts", "crashes", "interrupted", "progress", "progress_message", "result",
    "error_type", "error_message", "error_traceback", "started_at", "finished_at", "exec_time",
    "retry_at", "scheduled_for", "deferrals",
)  # fmt: skip
COLUMNS: Final = ", ".join(_FIXED + _STATE)
# A new job: its fixed columns, its status (queued, or scheduled) and its due time (NULL for a
# queued one); the rest take their defaults, as for a job never started.
_NEW: Final = (*_FIXED, "status", "scheduled_for")
INSERT: Final = (
    f"INSERT INTO jobs (seq, {', '.join(_NEW)}) VALUES ({', '.join('?' * (1 + len(_NEW)))})"
)
# Updates find their row by seq and never touch an ended one (finished_at set): a write of a
# failed commit that is retried after a later write ended the job cannot bring it back.
_LIVE_ROW: Final = "WHERE seq = ? AND finished_at IS NULL"
START: Final = (
    f"UPDATE jobs SET status = 'running', attempts = ?, started_at = ?, retry_at = NULL {_LIVE_ROW}"
)
PROGRESS: Final = f"UPDATE jobs SET progress = ?, progress_message = ? {_LIVE_ROW}"
CHANGE: Final = f"UPDATE jobs SET {', '.join(f'{column} = ?' for column in _STATE)} {_LIVE_ROW}"
# The most common change: a job completed. Its start and progress are written already.
COMPLETE: Final = (
    f"UPDATE jobs SET status = 'completed', result = ?, finished_at = ?, exec_time = ? {_LIVE_ROW}"
)
LIVE_SQL: Final = "('queued', 'retrying', 'running', 'scheduled')"
# A schedule's columns, in the order of ScheduleRecord's fields; PUT_SCHEDULE writes a whole
# row (a declaration, or a tick's step), replacing the one of that name.
_SCHEDULE_FIELDS: Final = (
    "name", "job_name", "args", "cron", "every", "tz", "anchor", "priority", "timeout", "retry",
    "overlap", "misfire", "paused", "handled_until", "next_run", "last_run", "last_job_id",
    "runs", "skipped",
)  # fmt: skip
SCHEDULE_COLUMNS: Final = ", ".join(_SCHEDULE_FIELDS)
PUT_SCHEDULE: Final = (
    f"INSERT OR REPLACE INTO schedules ({SCHEDULE_COLUMNS}) "
    f"VALUES ({', '.join('?' * len(_SCHEDULE_FIELDS))})"
)
LIVE_ROWS: Final = f"finished_at IS NULL AND status IN {LIVE_SQL}"
PUT_LIMIT: Final = (
    "INSERT OR REPLACE INTO limits (key, max_running, rate_count, rate_per) VALUES (?, ?, ?, ?)"
)
DELETE_LIMIT: Final = "DELETE FROM limits WHERE key = ?"
LIMIT_ROWS: Final = "SELECT key, max_running, rate_count, rate_per FROM limits ORDER BY key"

# A queued write: its statement (one of the above) and its values.
Write = tuple[str, tuple[Any, ...]]

_NO_TIMEOUT: Final = -1.0  # a job's timeout=math.inf; NULL means "the pool's default"


def create_schema(db: sqlite3.Connection) -> None:
    """Create the table and indexes, or bring a file of an earlier version up to date, in one
    transaction: on an error (raised as is) it is rolled back and the file is unchanged."""
    if db.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        for index in _OLD_INDEXES:
            db.execute(f"DROP INDEX IF EXISTS {index}")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        present = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
        for column, kind in _ADDED_COLUMNS:
            if column not in present:
                db.execute(f"ALTER TABLE jobs ADD COLUMN {column} {kind}")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _timeout_in(value: float | None) -> float | None:
    return _NO_TIMEOUT if value is not None and math.isinf(value) else value


def _timeout_out(value: float | None) -> float | None:
    return math.inf if value == _NO_TIMEOUT else value


def _result(record: JobRecord) -> str:
    return "null" if record.result is None else json.dumps(record.result)


def _state(record: JobRecord) -> tuple[Any, ...]:
    return (
        record.status,
        record.attempts,
        record.crashes,
        record.interrupted,
        record.progress,
        record.progress_message,
        _result(record),
        record.error_type,
        record.error_message,
        record.error_traceback,
        record.started_at,
        record.finished_at,
        record.exec_time,
        record.retry_at,
        record.scheduled_for,
        record.deferrals,
    )


def insert_values(record: JobRecord) -> tuple[Any, ...]:
    """The values of :data:`INSERT` for a new job (``queued``, or ``scheduled`` with its due
    time)."""
    return (
        record.seq,
        record.job_id,
        record.name,
        json.dumps(record.args) if record.args else "[]",
        record.priority,
        _timeout_in(record.timeout),
        None if record.retry is None else json.dumps(record.retry),
        record.submitted_at,
        record.key,
        record.status,
        record.scheduled_for,
    )


def change_values(record: JobRecord) -> tuple[Any, ...]:
    """The values of :data:`CHANGE`: every field that changes as a job runs."""
    return (*_state(record), record.seq)


def complete_values(record: JobRecord) -> tuple[Any, ...]:
    """The values of :data:`COMPLETE` for a job that completed."""
    return (_result(record), record.finished_at, record.exec_time, record.seq)


def to_record(row: tuple[Any, ...]) -> JobRecord:
    """The job a row holds: its :data:`COLUMNS`, then its ``seq``."""
    (job_id, name, args, priority, timeout, retry, submitted_at, key, status, attempts,
     crashes, interrupted, progress, progress_message, result, error_type, error_message,
     error_traceback, started_at, finished_at, exec_time, retry_at, scheduled_for, deferrals,
     seq) = row  # fmt: skip
    return JobRecord(
        job_id=job_id,
        name=name,
        args=json.loads(args),
        priority=priority,
        status=status,
        timeout=_timeout_out(timeout),
        retry=None if retry is None else json.loads(retry),
        attempts=attempts,
        crashes=crashes,
        interrupted=interrupted,
        progress=progress,
        progress_message=progress_message,
        result=None if result is None else json.loads(result),
        error_type=error_type,
        error_message=error_message,
        error_traceback=error_traceback,
        submitted_at=submitted_at,
        started_at=started_at,
        finished_at=finished_at,
        exec_time=exec_time,
        retry_at=retry_at,
        scheduled_for=scheduled_for,
        key=key,
        deferrals=deferrals,
        seq=seq,
    )


def limit_values(key: str, limit: dict[str, Any]) -> tuple[Any, ...]:
    """The values of :data:`PUT_LIMIT` for a limit in its JSON form."""
    rate = limit.get("rate")
    return (
        key,
        limit.get("max_running"),
        None if rate is None else rate["count"],
        None if rate is None else rate["per"],
    )


def to_limit(row: tuple[Any, ...]) -> tuple[str, dict[str, Any]]:
    """A key and its limit (JSON form) from a row of :data:`LIMIT_ROWS`."""
    key, max_running, count, per = row
    rate = None if count is None else {"count": count, "per": per}
    return key, {"max_running": max_running, "rate": rate}


def schedule_values(record: ScheduleRecord) -> tuple[Any, ...]:
    """The values of :data:`PUT_SCHEDULE` (and of a row's :data:`SCHEDULE_COLUMNS`)."""
    return (
        record.name,
        record.job_name,
        json.dumps(record.args),
        record.cron,
        record.every,
        record.tz,
        record.anchor,
        record.priority,
        _timeout_in(record.timeout),
        None if record.retry is None else json.dumps(record.retry),
        record.overlap,
        record.misfire,
        int(record.paused),
        record.handled_until,
        record.next_run,
        record.last_run,
        record.last_job_id,
        record.runs,
        record.skipped,
    )


def to_schedule(row: tuple[Any, ...]) -> ScheduleRecord:
    """The schedule a row holds (its :data:`SCHEDULE_COLUMNS`). A record written and read back
    equals the one written, but for what JSON changes in ``args`` and ``retry`` (a tuple comes
    back as a list)."""
    (name, job_name, args, cron, every, tz, anchor, priority, timeout, retry, overlap, misfire,
     paused, handled_until, next_run, last_run, last_job_id, runs, skipped) = row  # fmt: skip
    return ScheduleRecord(
        name=name,
        job_name=job_name,
        args=json.loads(args),
        cron=cron,
        every=every,
        tz=tz,
        anchor=anchor,
        priority=priority,
        timeout=_timeout_out(timeout),
        retry=None if retry is None else json.loads(retry),
        overlap=overlap,
        misfire=misfire,
        paused=bool(paused),
        handled_until=handled_until,
        next_run=next_run,
        last_run=last_run,
        last_job_id=last_job_id,
        runs=runs,
        skipped=skipped,
    )


assert LIVE_STATUSES == ("queued", "retrying", "running", "scheduled")  # as LIVE_SQL does
