"""Jobs for later on the SQLite store: what a file keeps of them across a `kill -9`, and the
upgrade of a file of an earlier schema (which had no ``scheduled_for``). The pool-level
contract of scheduled jobs on every store is in test_conformance.py."""

from __future__ import annotations

import collections
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.durable_app import double, registry
from tests.stores._kill import kill_when_ready
from tests.stores._later_child import DEFER, DELAYS
from trio_jobpool import JobStatus, open_job_pool
from trio_jobpool.stores._sqlite_schema import SCHEMA_VERSION

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


def rows(db: Path) -> dict[str, dict[str, Any]]:
    """The newest row of every job id (read with no pool open)."""
    connection = sqlite3.connect(db)
    try:
        connection.row_factory = sqlite3.Row
        return {
            row["job_id"]: dict(row)
            for row in connection.execute("SELECT * FROM jobs ORDER BY seq")
        }
    finally:
        connection.close()


def log_lines(log: Path) -> list[tuple[int, str, str, float]]:
    """``(pid, event, item, wall time)`` of each line the ``logged`` jobs wrote."""
    lines = []
    for line in log.read_text().splitlines():
        pid, event, item, at = line.split()
        lines.append((int(pid), event, item, float(at)))
    return lines


@pytest.mark.parametrize("synchronous", ["NORMAL", "FULL"])
async def test_scheduled_jobs_survive_a_kill_and_each_runs_once_at_its_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, anyio_backend: str, synchronous: str
) -> None:
    db, log = tmp_path / "jobs.db", tmp_path / "log.txt"
    monkeypatch.setenv("JOBPOOL_TEST_LOG", str(log))
    killed_at = kill_when_ready(
        "tests.stores._later_child", db, log, anyio_backend, synchronous
    )  # the child: same backend

    at_kill = rows(db)
    assert {job: (row["status"], row["attempts"]) for job, row in at_kill.items()} == {
        "passed": ("scheduled", 0),
        "soon": ("scheduled", 0),
        "later": ("scheduled", 0),
        "deferred": ("scheduled", 1),
    }
    due = {job: row["scheduled_for"] for job, row in at_kill.items()}
    submitted = {job: row["submitted_at"] for job, row in at_kill.items()}
    for job, delay in DELAYS.items():
        assert due[job] == pytest.approx(submitted[job] + delay, abs=0.05)
    assert due["deferred"] >= at_kill["deferred"]["started_at"] + DEFER
    assert killed_at < due["passed"], "killed after 'passed' was due: the test proves nothing"
    child_pid = log_lines(log)[0][0]
    assert [(pid, event, item) for pid, event, item, _ in log_lines(log)] == [
        (child_pid, "start", "deferred"),
        (child_pid, "deferred", "deferred"),
    ]

    # The time of "passed" passes while no pool runs; then a new pool opens on the file.
    await anyio.sleep(due["passed"] - time.time() + 0.05)
    opened_at = time.time()
    store = f"sqlite:///{db}?synchronous={synchronous}"
    async with open_job_pool(2, 10, store=store, registry=registry) as pool:
        now = time.time()  # after the recovery: a job due later than this is scheduled
        scheduled = {job for job in due if pool.get(job).status is JobStatus.SCHEDULED}
        assert {job for job in due if due[job] > now} <= scheduled <= {"soon", "later", "deferred"}
        assert "later" in scheduled, "the new pool opened too late: the test proves little"
        stats = pool.stats()
        assert (stats.total_submitted, stats.scheduled_tasks) == (4, len(scheduled))
        for job in due:
            assert pool.get(job).scheduled_for == pytest.approx(due[job], abs=1e-3)
        with anyio.fail_after(10):
            for job in due:
                assert await pool.get(job).result() == job
        assert pool.get("deferred").attempts == 2

    ours = [(event, item, at) for pid, event, item, at in log_lines(log) if pid == os.getpid()]
    starts = {item: at for event, item, at in ours if event == "start"}
    # each ran exactly once in the new pool (and "deferred" once before, in the child)
    runs = collections.Counter(item for event, item, _ in ours if event == "start")
    assert runs == dict.fromkeys(due, 1)
    assert starts["passed"] - opened_at < 0.5  # its time had passed: at once
    for job in ("soon", "later", "deferred"):
        assert starts[job] >= due[job] - 0.002, job  # not before its time
        assert starts[job] < due[job] + 1.0, job
    assert {job: (row["status"], row["attempts"]) for job, row in rows(db).items()} == {
        "passed": ("completed", 1),
        "soon": ("completed", 1),
        "later": ("completed", 1),
        "deferred": ("completed", 2),
    }


# The schema of version 2 (before jobs for later): kept to test the upgrade to version 3.
_SCHEMA_V2 = """
CREATE TABLE jobs (
    seq INTEGER PRIMARY KEY, job_id TEXT NOT NULL, name TEXT NOT NULL, args TEXT NOT NULL,
    priority INTEGER NOT NULL, status TEXT NOT NULL, timeout REAL, retry TEXT,
    attempts INTEGER NOT NULL DEFAULT 0, crashes INTEGER NOT NULL DEFAULT 0,
    interrupted INTEGER NOT NULL DEFAULT 0, progress REAL NOT NULL DEFAULT 0,
    progress_message TEXT, result TEXT, error_type TEXT, error_message TEXT,
    error_traceback TEXT, submitted_at REAL NOT NULL, started_at REAL, finished_at REAL,
    exec_time REAL, retry_at REAL
);
CREATE INDEX jobs_by_id ON jobs (job_id, seq);
CREATE INDEX jobs_by_end ON jobs (finished_at, priority, seq);
PRAGMA user_version = 2;
"""


async def test_a_file_of_schema_2_is_upgraded_keeping_its_jobs(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    now = time.time()
    connection = sqlite3.connect(db)
    try:
        connection.executescript(_SCHEMA_V2)
        with connection:
            for seq, job_id, status, attempts, result, finished, retry_at in [
                (1, "done", "completed", 1, "2", now, None),
                (2, "waiting", "queued", 0, None, None, None),
                (3, "retrying", "retrying", 1, None, None, now - 1),
                (4, "crashed", "running", 1, None, None, None),
            ]:
                connection.execute(
                    "INSERT INTO jobs (seq, job_id, name, args, priority, status, attempts, "
                    "result, submitted_at, finished_at, retry_at) "
                    "VALUES (?, ?, 'double', ?, 5, ?, ?, ?, ?, ?, ?)",
                    (seq, job_id, f"[{seq}]", status, attempts, result, now, finished, retry_at),
                )
    finally:
        connection.close()

    url = f"sqlite:///{db}"
    async with open_job_pool(1, 10, store=url, registry=registry) as pool:
        assert pool.stats().total_submitted == 3  # every live job is kept
        await pool.join()
        assert [await pool.get(job).result() for job in ("waiting", "retrying", "crashed")] == [
            4,
            6,
            8,
        ]
        assert pool.get("done").status is JobStatus.COMPLETED  # read back
        assert await pool.get("done").result() == 2
        later = await pool.submit(double, 5, job_id="later", delay=3600)
        await pool.set_limit("k", max_running=1)  # version 5's table of limits
    upgraded = rows(db)
    assert {job: row["status"] for job, row in upgraded.items()} == {
        "done": "completed",
        "waiting": "completed",
        "retrying": "completed",
        "crashed": "completed",
        "later": "scheduled",
    }
    assert [row["scheduled_for"] for row in upgraded.values()] == [None] * 4 + [later.scheduled_for]
    connection = sqlite3.connect(db)
    try:
        (version,) = connection.execute("PRAGMA user_version").fetchone()
        indexes = {name for (name,) in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        )}  # fmt: skip
    finally:
        connection.close()
    assert version == SCHEMA_VERSION == 5  # and 3 to 4: test_sqlite_schedules.py
    # version 5's columns, in the rows already there: no key, no deferral
    assert {(row["key"], row["deferrals"]) for row in upgraded.values()} == {(None, 0)}
    assert indexes == {"jobs_by_id", "jobs_by_end"}
    async with open_job_pool(1, 10, store=url, registry=registry) as pool:  # kept, for later
        kept = pool.get("later")
        assert kept.status is JobStatus.SCHEDULED
        assert kept.scheduled_for == pytest.approx(later.scheduled_for, abs=1e-3)
