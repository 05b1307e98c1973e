"""Periodic schedules on the SQLite store across real restarts: a pool killed with SIGKILL
(tests/stores/_schedule_child.py), and the next pool on its file. Each tick fires once across
the kill; a tick job on record runs once; ticks missed while no pool ran follow ``misfire``;
``schedules()`` shows the counters kept. Also the upgrade of a file of schema 3. The book's
own contract, on every book, is in test_schedule_book.py."""

from __future__ import annotations

import collections
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.durable_app import board, note, registry, tick
from tests.stores._kill import kill_when_ready
from trio_jobpool import JobPool, JobStatus, RetryPolicy, Schedule, open_job_pool
from trio_jobpool._ticks import TickRule, tick_id
from trio_jobpool.stores._sqlite_schema import SCHEMA_VERSION

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


def table(db: Path, name: str) -> list[dict[str, Any]]:
    """Every row of table ``name`` (read with no pool open)."""
    connection = sqlite3.connect(db)
    try:
        connection.row_factory = sqlite3.Row
        return [dict(row) for row in connection.execute(f"SELECT * FROM {name}")]
    finally:
        connection.close()


def ticks_logged(log: Path) -> list[tuple[int, str, float]]:
    """``(pid, job id, wall time)`` of each start of a ``tick`` job, in order."""
    found = []
    for line in log.read_text().splitlines() if log.exists() else []:
        pid, event, item, at = line.split()
        if event == "tick":
            found.append((int(pid), item, float(at)))
    return found


def run_and_kill(db: Path, log: Path, backend: str, synchronous: str, mode: str) -> None:
    """Run tests/stores/_schedule_child.py in ``mode`` until it is ready, then ``kill -9`` it."""
    kill_when_ready(
        "tests.stores._schedule_child", db, log, backend, synchronous, mode, ready_timeout=60
    )


@pytest.mark.parametrize("synchronous", ["NORMAL", "FULL"])
async def test_a_tick_fired_before_a_kill_never_fires_again_and_its_job_runs_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, anyio_backend: str, synchronous: str
) -> None:
    """A schedule every second, in real time. The child runs three of its jobs, then its only
    worker is held, so the fourth tick's job is fired (on record with the schedule's state) but
    never starts, and later ticks are skipped; it is killed. After a downtime spanning a few
    ticks a new pool opens on the file: the fourth tick's job runs once, as a recovered job;
    no tick the child handled fires again; no tick job runs twice; and every tick up to the
    schedule's ``handled_until`` is counted once, as a run or a skip."""
    db, log = tmp_path / "jobs.db", tmp_path / "log.txt"
    monkeypatch.setenv("JOBPOOL_TEST_LOG", str(log))
    run_and_kill(db, log, anyio_backend, synchronous, "ticking")

    [at_kill] = table(db, "schedules")
    anchor, handled = at_kill["anchor"], at_kill["handled_until"]
    rule = TickRule.parse(None, 1, "UTC", anchor)

    def handled_ids(until: float) -> set[str]:
        """The job ids of every tick in ``(anchor, until]``."""
        count = rule.count_in(anchor, until, 1_000_000)
        return {tick_id("tick", anchor + k) for k in range(1, count + 1)}

    child_ran = [job for _, job, _ in ticks_logged(log)]
    pending = at_kill["last_job_id"]
    assert len(child_ran) == 3
    assert pending not in child_ran
    jobs = {row["job_id"]: row["status"] for row in table(db, "jobs")}
    assert jobs == {
        **dict.fromkeys(child_ran, "completed"),
        pending: "queued",
        "blocker": "running",
    }
    assert at_kill["runs"] == 4
    assert at_kill["skipped"] >= 1
    assert at_kill["runs"] + at_kill["skipped"] == rule.count_in(anchor, handled, 1_000_000)
    assert {*child_ran, pending} <= handled_ids(handled)

    await anyio.sleep(2.5)  # no pool runs for a few ticks
    board.open()  # the recovered blocker returns at once
    store = f"sqlite:///{db}?synchronous={synchronous}"
    async with open_job_pool(2, 10, store=store, registry=registry) as pool:
        with anyio.fail_after(30):
            await board.event("ticks:3").wait()  # the pending tick's job, and two new ticks
        pool.close()  # no tick fires from here on
        [shown] = await pool.schedules()  # after any tick's step in progress
    assert pool.get("blocker").status is JobStatus.COMPLETED

    ran = collections.Counter(job for _, job, _ in ticks_logged(log))
    assert set(ran.values()) == {1}  # no tick's job ran twice, across the kill
    ours = {job for pid, job, _ in ticks_logged(log) if pid == os.getpid()}
    assert pending in ours  # the fired tick's job ran once, recovered from the file
    assert not (ours - {pending}) & handled_ids(handled)  # no handled tick fired again
    [final] = table(db, "schedules")
    jobs = {row["job_id"]: row["status"] for row in table(db, "jobs")}
    tick_jobs = {job for job in jobs if job.startswith("tick@")}
    assert tick_jobs == set(ran)  # every tick job on record ran, once
    assert {jobs[job] for job in tick_jobs} == {"completed"}
    assert shown.runs == final["runs"] == len(tick_jobs)
    assert shown.skipped == final["skipped"] >= at_kill["skipped"]
    assert final["runs"] + final["skipped"] == rule.count_in(anchor, final["handled_until"], 10**6)
    assert shown.last_job_id == final["last_job_id"] == max(tick_jobs)
    assert shown.last_run is not None
    assert tick_id("tick", shown.last_run) == shown.last_job_id
    assert shown.next_run == final["next_run"] == rule.next_after(final["handled_until"])


@pytest.mark.parametrize("misfire", ["skip", "once"])
async def test_ticks_missed_while_no_pool_ran_follow_misfire(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, anyio_backend: str, misfire: str
) -> None:
    """A schedule every 100 s, declared by a child that is then killed; the next pool opens
    97.5 s after the schedule's third tick, so the three ticks were missed (the latest more
    than the 60 s of grace late) and the fourth comes 2.5 s later.

    How the downtime is made in seconds: a pool's wall clock is ``time.time()`` when it opens
    plus its own clock's time since, and the file holds wall-clock times only (the anchor,
    ``handled_until``). So this process's ``time.time`` is moved forward (monkeypatch) before
    the new pool opens: to the pool and to the store, that is exactly a restart 398 s after
    the declaration (a virtual clock would not do: it can only run ahead of a pool that
    opened at the real time, not make the file's times older). Everything else is real: the
    kill, the file, the recovery, the timers (the fourth tick is waited for in real time).

    ``skip``: none of the missed ticks runs (three skipped), the fourth runs at its time.
    ``once``: one job for the latest missed tick (the third), at once, two skipped, then the
    fourth. A third pool, declaring the schedule again as it starts, runs none of them again."""
    db, log = tmp_path / "jobs.db", tmp_path / "log.txt"
    monkeypatch.setenv("JOBPOOL_TEST_LOG", str(log))
    run_and_kill(db, log, anyio_backend, "NORMAL", f"declare:{misfire}")
    [declared] = table(db, "schedules")
    anchor = declared["anchor"]
    assert (declared["handled_until"], declared["runs"], declared["misfire"]) == (
        anchor,
        0,
        misfire,
    )
    ticks = [anchor + 100.0 * k for k in range(1, 5)]
    ids = [tick_id("far", t) for t in ticks]

    real_time = time.time
    shift = ticks[2] + 97.5 - real_time()
    monkeypatch.setattr(time, "time", lambda: real_time() + shift)
    store = f"sqlite:///{db}"
    async with open_job_pool(2, 10, store=store, registry=registry) as pool:
        opened = time.time()
        with anyio.fail_after(10):
            await board.event(f"ticks:{1 if misfire == 'skip' else 2}").wait()
        pool.close()
        [shown] = await pool.schedules()
    started = {job: at for _, job, at in ticks_logged(log)}
    if misfire == "skip":
        assert list(started) == [ids[3]]
        assert (shown.runs, shown.skipped) == (1, 3)
    else:
        assert list(started) == [ids[2], ids[3]]
        assert started[ids[2]] - opened < 1.0  # at once
        assert (shown.runs, shown.skipped) == (2, 2)
    assert ticks[3] <= started[ids[3]] < ticks[3] + 1.0  # on time
    assert (shown.last_run, shown.last_job_id, shown.next_run) == (
        ticks[3],
        ids[3],
        anchor + 500.0,
    )
    assert {row["job_id"]: row["status"] for row in table(db, "jobs")} == dict.fromkeys(
        started, "completed"
    )

    board.reset()
    async with open_job_pool(2, 10, store=store, registry=registry) as pool:
        assert await pool.schedules() == [shown]
        # declared again as a process does when it starts: identical, so nothing changes
        assert await pool.schedule("far", tick, every=100, misfire=misfire) == shown
        await anyio.sleep(0.2)
    assert {job for _, job, _ in ticks_logged(log)} == set(started)  # none ran again


# The schema of version 3 (jobs for later, before schedules): kept to test the upgrade to 4.
_SCHEMA_V3 = """
CREATE TABLE jobs (
    seq INTEGER PRIMARY KEY, job_id TEXT NOT NULL, name TEXT NOT NULL, args TEXT NOT NULL,
    priority INTEGER NOT NULL, status TEXT NOT NULL, timeout REAL, retry TEXT,
    attempts INTEGER NOT NULL DEFAULT 0, crashes INTEGER NOT NULL DEFAULT 0,
    interrupted INTEGER NOT NULL DEFAULT 0, progress REAL NOT NULL DEFAULT 0,
    progress_message TEXT, result TEXT, error_type TEXT, error_message TEXT,
    error_traceback TEXT, submitted_at REAL NOT NULL, started_at REAL, finished_at REAL,
    exec_time REAL, retry_at REAL, scheduled_for REAL
);
CREATE INDEX jobs_by_id ON jobs (job_id, seq);
CREATE INDEX jobs_by_end ON jobs (finished_at, priority, seq);
PRAGMA user_version = 3;
"""


async def test_a_file_of_schema_3_is_upgraded_and_then_keeps_schedules(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    now = time.time()
    connection = sqlite3.connect(db)
    try:
        connection.executescript(_SCHEMA_V3)
        with connection:
            connection.executemany(
                "INSERT INTO jobs (seq, job_id, name, args, priority, status, submitted_at, "
                "scheduled_for) VALUES (?, ?, 'note', ?, 5, ?, ?, ?)",
                [
                    (1, "waiting", '["waiting"]', "queued", now, None),
                    (2, "later", '["later"]', "scheduled", now, now + 3600),
                ],
            )
    finally:
        connection.close()

    url = f"sqlite:///{db}"
    policy = RetryPolicy(max_attempts=3, backoff=0.5)

    async def declare(pool: JobPool) -> Schedule:
        return await pool.schedule(
            "nightly", note, "n", cron="30 2 * * *", tz="Europe/Berlin", priority=2,
            timeout=30, retry=policy,
        )  # fmt: skip

    async with open_job_pool(1, 10, store=url, registry=registry) as pool:
        assert await pool.schedules() == []
        declared = await declare(pool)
        await pool.join()
        assert pool.get("later").status is JobStatus.SCHEDULED
    assert board.started == ["waiting"]
    connection = sqlite3.connect(db)
    try:
        (version,) = connection.execute("PRAGMA user_version").fetchone()
    finally:
        connection.close()
    assert version == SCHEMA_VERSION == 5
    [row] = table(db, "schedules")
    assert (row["job_name"], row["args"], row["cron"], row["priority"]) == (
        "note",
        '["n"]',
        "30 2 * * *",
        2,
    )

    async with open_job_pool(1, 10, store=url, registry=registry) as pool:
        assert await pool.schedules() == [declared]  # kept
        assert await declare(pool) == declared  # identical (retry policy and all): unchanged
        assert pool.get("later").status is JobStatus.SCHEDULED
    assert table(db, "schedules") == [row]
