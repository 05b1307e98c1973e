"""Flow control on the SQLite store: limits and keys outlive the pool, and a key's limit holds
after a `kill -9` (the recovered jobs keep their key; the new pool counts their slots from what
it runs). The pool-level behaviour of keys is in tests/test_flow_control.py."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import pytest

from tests.durable_app import registry
from tests.stores._kill import kill_when_ready
from tests.stores.test_sqlite_later import log_lines
from trio_jobpool import JobHandle, JobStatus, KeyStats, Limit, Rate, open_job_pool

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


async def test_limits_and_keys_outlive_the_pool(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    async with open_job_pool(2, 10, store=url, registry=registry) as pool:
        await pool.set_limit("api", max_running=1, rate=Rate(2, 30))
        await pool.set_limit("gone", max_running=3)
        await pool.set_limit("gone")  # removed again
        await pool.set_limit("paused", max_running=0)
        later: JobHandle[int] = await pool.submit("double", 1, key="api", delay=3600)
        await pool.submit("double", 2, key="paused", job_id="held")
    connection = sqlite3.connect(tmp_path / "jobs.db")
    try:
        assert connection.execute("SELECT * FROM limits ORDER BY key").fetchall() == [
            ("api", 1, 2, 30.0),
            ("paused", 0, None, None),
        ]
    finally:
        connection.close()
    async with open_job_pool(2, 10, store=url, registry=registry) as pool:
        assert await pool.limits() == {
            "api": Limit(max_running=1, rate=Rate(2, 30)),
            "paused": Limit(max_running=0),
        }
        job = pool.get(later.job_id)
        assert (job.status, job.key) == (JobStatus.SCHEDULED, "api")
        held = pool.get("held")
        assert (held.status, held.key) == (JobStatus.QUEUED, "paused")
        assert pool.key_stats("paused") == KeyStats("paused", 0, 1, Limit(max_running=0))
        await pool.set_limit("paused")
        assert await held.result() == 4
        pool.cancel(later.job_id)


async def test_a_key_limit_holds_across_a_kill(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, anyio_backend: str
) -> None:
    db, log, until = tmp_path / "jobs.db", tmp_path / "log.txt", tmp_path / "until"
    monkeypatch.setenv("JOBPOOL_TEST_LOG", str(log))
    kill_when_ready("tests.stores._flow_child", db, log, anyio_backend, until)
    child_events = [(event, item) for _, event, item, _ in log_lines(log)]
    assert child_events == [("start", "a")]

    until.touch()  # from now on each job ends as soon as it starts
    async with open_job_pool(2, 10, store=f"sqlite:///{db}", registry=registry) as pool:
        assert await pool.limits() == {"k": Limit(max_running=1)}
        assert [pool.get(item).key for item in "abc"] == ["k"] * 3
        with anyio.fail_after(10):
            assert [await pool.get(item).result() for item in "abc"] == list("abc")
        assert pool.get("a").attempts == 2  # its first attempt was cut short by the kill
        assert pool.delayed_starts == 2  # b and c waited for a's slot
    ours = [(event, item) for _, event, item, _ in log_lines(log)][1:]
    # one at a time, in order: every start follows the end of the job before it
    assert ours == [
        ("start", "a"),
        ("end", "a"),
        ("start", "b"),
        ("end", "b"),
        ("start", "c"),
        ("end", "c"),
    ]
