"""The store conformance suite: the pool's contract, through the public API, on every store.

Each test runs ten ways ({trio, asyncio} x {memory, fake, sqlite, sqlite-full, redis}), except those
whose contract a distributed pool keeps differently (docs/distributed.md: the bound counts the
jobs waiting in Redis by its latest count; leaving the block hands jobs back to the queue): they
take ``local_pool_kwargs`` and run six ways, and tests/stores/test_redis_pool.py has Redis's
version. Counters are read with ``cluster_stats()``: on a pool of one process it is ``stats()``;
on Redis it is the whole queue's exact view. A job cancelled in Redis ends its handle once Redis
has done it, so those tests wait for the handle there. Jobs are registered ones
(tests/durable_app.py), since durable pools run nothing else, and they synchronise with the test
through ``durable_app.board``: exact events, no sleeps. The tests at the end are for stores that
outlive their pool (sqlite): what is on disk after each kind of end, and what the next pool on
the same store does with it.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import math
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.durable_app import (
    board,
    defer_once,
    fail,
    flaky,
    hang,
    hang_once_then_flaky,
    hold,
    note,
    registry,
    report_progress,
)
from tests.stores._suite import (
    SHORT,
    SHUTDOWN,
    Leave,
    check_priority_then_fifo,
    counters,
    invariant_holds,
    status,
)
from trio_jobpool import (
    JobCancelled,
    JobFailed,
    JobHandle,
    JobNotFound,
    JobPool,
    JobPoolError,
    JobStatus,
    JobTimeout,
    PoolClosed,
    QueueFull,
    RetryPolicy,
    SqliteStore,
    current_job,
    open_job_pool,
)
from trio_jobpool.stores import JobRecord, Store

from .fake_store import MemoryStore

pytestmark = pytest.mark.anyio


def db_path(pool_kwargs: dict[str, Any]) -> Path | None:
    """The database file of a sqlite pool's keyword arguments; ``None`` for other stores."""
    store = pool_kwargs.get("store")
    if store is None or not str(store).startswith("sqlite:///"):
        return None
    return Path(str(store).removeprefix("sqlite:///").partition("?")[0])


def distributed(pool_kwargs: dict[str, Any]) -> bool:
    """Whether the keyword arguments open a distributed pool (its queue in Redis)."""
    return str(pool_kwargs.get("store", "")).startswith("redis")


def stored(db: Path) -> dict[str, dict[str, Any]]:
    """The newest row of every job id in a store's database (read when no pool has it open)."""
    connection = sqlite3.connect(db)
    try:
        connection.row_factory = sqlite3.Row
        rows = connection.execute("SELECT * FROM jobs ORDER BY seq").fetchall()
    finally:
        connection.close()
    return {row["job_id"]: dict(row) for row in rows}


async def until(predicate: Callable[[], bool]) -> None:
    """Let the other tasks run until ``predicate()`` holds (bounded: a hang fails the test)."""
    with anyio.fail_after(10):
        while not predicate():
            await anyio.wait_all_tasks_blocked()


# -- ordering ----------------------------------------------------------------------------------


async def test_waiting_jobs_start_by_priority_then_fifo(pool_kwargs: dict[str, Any]) -> None:
    async with open_job_pool(1, 100, **pool_kwargs) as pool:
        await check_priority_then_fifo(pool, nowait=True)


async def test_an_urgent_job_overtakes_fifty_waiting_jobs(pool_kwargs: dict[str, Any]) -> None:
    async with open_job_pool(1, 100, **pool_kwargs) as pool:
        await pool.submit(hold, "blocker")
        await board.wait_started("blocker")
        for i in range(50):
            await pool.submit(note, f"p5-{i}", priority=5)
        urgent = await pool.submit(note, "p1", priority=1)
        assert urgent.status is JobStatus.QUEUED
        stats = await pool.cluster_stats()
        assert (stats.queued_tasks, stats.active_workers) == (51, 1)
        board.open()
        await pool.join()
    assert board.started == ["blocker", "p1", *(f"p5-{i}" for i in range(50))]


# -- cancelling --------------------------------------------------------------------------------


async def test_a_cancelled_waiting_job_never_runs(pool_kwargs: dict[str, Any]) -> None:
    async with open_job_pool(1, 10, **pool_kwargs) as pool:
        await pool.submit(hold, "blocker")
        await board.wait_started("blocker")
        waiting = await pool.submit(note, "waiting", job_id="waiting")
        after = await pool.submit(note, "after")
        pool.cancel("waiting")
        if distributed(pool_kwargs):
            await waiting.wait()  # its handle ends once Redis has removed it
        assert waiting.status is JobStatus.CANCELLED
        stats = await pool.cluster_stats()
        assert (stats.total_cancelled, stats.queued_tasks) == (1, 1)
        with pytest.raises(JobCancelled, match="'waiting' was cancelled"):
            await waiting.result()
        with pytest.raises(JobNotFound, match="waiting"):
            pool.cancel("waiting")  # ended: no longer live
        with pytest.raises(JobNotFound, match="waiting"):
            await pool.acancel("waiting")
        waiting.cancel()  # the handle's cancel of an ended job does nothing
        board.open()
        assert await after.result() == "after"
        await pool.join()
        assert waiting.attempts == 0
        assert waiting.started_at is None
        stats = await pool.cluster_stats()
        assert (stats.total_cancelled, stats.total_completed) == (1, 2)
    assert board.started == ["blocker", "after"]


async def test_a_cancelled_running_job_ends_and_its_worker_moves_on(
    pool_kwargs: dict[str, Any],
) -> None:
    async with open_job_pool(1, 10, **pool_kwargs) as pool:
        running = await pool.submit(hang, "running", job_id="running")
        await board.wait_started("running")
        assert status(running) is JobStatus.RUNNING
        assert (await pool.cluster_stats()).active_workers == 1
        pool.cancel("running")
        outcome = await running.wait()
        assert running.status is JobStatus.CANCELLED
        with pytest.raises(JobCancelled, match="'running' was cancelled") as info:
            outcome.unwrap()
        assert running.error is info.value
        assert running.attempts == 1
        assert running.exec_time is not None
        assert await (await pool.submit(note, "next")).result() == "next"
        stats = await pool.cluster_stats()
    assert stats.total_cancelled == 1
    assert stats.total_completed == 1
    assert board.started == ["running", "next"]


async def test_a_cancelled_retrying_job_never_runs_again(pool_kwargs: dict[str, Any]) -> None:
    long_wait = RetryPolicy(max_attempts=5, backoff=3600, jitter=False)
    async with open_job_pool(1, 10, **pool_kwargs) as pool:
        retrying = await pool.submit(flaky, "r", 10, job_id="r", retry=long_wait)
        await board.event("failed:r:1").wait()
        assert status(retrying) is JobStatus.RETRYING
        assert isinstance(retrying.error, ValueError)  # the failed attempt's, while retrying
        stats = await pool.cluster_stats()
        assert (stats.queued_tasks, stats.active_workers, stats.total_retried) == (1, 0, 1)
        assert invariant_holds(stats)
        pool.cancel("r")
        if distributed(pool_kwargs):
            await retrying.wait()  # its handle ends once Redis has removed it
        assert retrying.status is JobStatus.CANCELLED
        with pytest.raises(JobCancelled):
            await retrying.result()
        stats = await pool.cluster_stats()
        # the pool ends at once (a 3600 s backoff would keep a draining pool waiting)
    assert retrying.attempts == 1
    assert board.calls["r"] == 1
    assert (stats.queued_tasks, stats.total_cancelled, stats.total_failed) == (0, 1, 0)


async def test_unknown_and_ended_ids_are_not_found(pool_kwargs: dict[str, Any]) -> None:
    async with open_job_pool(1, 10, **pool_kwargs) as pool:
        with pytest.raises(JobNotFound, match="nobody") as info:
            pool.cancel("nobody")
        assert isinstance(info.value, LookupError)
        assert isinstance(info.value, JobPoolError)
        with pytest.raises(JobNotFound, match="nobody"):
            pool.get("nobody")
        done = await pool.submit(note, "done", job_id="done")
        await done.wait()
        with pytest.raises(JobNotFound, match="done"):
            pool.cancel("done")
        assert pool.get("done").status is JobStatus.COMPLETED  # within the history
        if distributed(pool_kwargs):
            # the id stays taken until Redis has the end, which goes with the link's next
            # trip after the handle ended; join() returns once Redis has been told everything
            await pool.join()
        again = await pool.submit(note, "again", job_id="done")  # an ended id may be reused
        assert await again.result() == "again"
        assert pool.get("done") is again


async def test_acancel_and_aget_are_the_async_forms_of_cancel_and_get(
    pool_kwargs: dict[str, Any],
) -> None:
    async with open_job_pool(1, 10, **pool_kwargs) as pool:
        running = await pool.submit(hang, "running", job_id="running")
        await board.wait_started("running")
        assert await pool.aget("running") is running
        await pool.acancel("running")
        assert status(running) in (JobStatus.RUNNING, JobStatus.CANCELLED)
        await running.wait()
        assert (await pool.aget("running")).status is JobStatus.CANCELLED
        with pytest.raises(JobNotFound):
            await pool.acancel("running")
        with pytest.raises(JobNotFound):
            await pool.aget("nobody")
        if not distributed(pool_kwargs):
            assert await pool.cluster_stats() == pool.stats()  # one process: the whole cluster


# -- timeouts and retries ----------------------------------------------------------------------


async def test_a_job_past_its_timeout_ends_timed_out_and_is_never_retried(
    pool_kwargs: dict[str, Any],
) -> None:
    async with open_job_pool(1, 10, retry=SHORT, **pool_kwargs) as pool:
        late = await pool.submit(hang, "late", timeout=0.05)
        outcome = await late.wait()
        assert late.status is JobStatus.TIMED_OUT
        error = outcome.error  # type: ignore[attr-defined]
        assert isinstance(error, JobTimeout)
        assert isinstance(error, TimeoutError)
        assert error.timeout == 0.05
        assert late.job_id in str(error)
        with pytest.raises(JobTimeout):
            await late.result()
        assert late.attempts == 1  # the pool's retry policy does not apply to timeouts
        assert late.exec_time is not None
        assert late.exec_time >= 0.05
        unlimited = await pool.submit(note, "unlimited", timeout=math.inf)
        assert await unlimited.result() == "unlimited"
        stats = await pool.cluster_stats()
    assert (stats.total_timed_out, stats.total_retried, stats.total_completed) == (1, 0, 1)
    assert board.started == ["late", "unlimited"]


async def test_retries_with_backoff_until_success(pool_kwargs: dict[str, Any]) -> None:
    backoff = RetryPolicy(max_attempts=3, backoff=0.02, max_backoff=0.03, jitter=False)
    async with open_job_pool(2, 10, **pool_kwargs) as pool:
        start = time.monotonic()
        handle = await pool.submit(flaky, "f", 2, retry=backoff)
        assert await handle.result() == "f ok after 3"
        assert time.monotonic() - start >= 0.02 + 0.03  # min(max_backoff, backoff * 2**(k-1))
        assert handle.attempts == 3
        assert handle.error is None
        stats = await pool.cluster_stats()
    assert (stats.total_retried, stats.total_completed, stats.total_failed) == (2, 1, 0)
    assert board.started == ["f", "f", "f"]


async def test_a_job_waiting_out_its_backoff_holds_no_worker(pool_kwargs: dict[str, Any]) -> None:
    async with open_job_pool(1, 10, **pool_kwargs) as pool:
        later = await pool.submit(flaky, "later", 1, retry=RetryPolicy(backoff=3600))
        await board.event("failed:later:1").wait()
        assert later.status is JobStatus.RETRYING
        assert await (await pool.submit(note, "meanwhile")).result() == "meanwhile"
        assert later.status is JobStatus.RETRYING
        later.cancel()
        await later.wait()
    assert board.started == ["later", "meanwhile"]


async def test_retries_until_giving_up(pool_kwargs: dict[str, Any]) -> None:
    only_key_errors = RetryPolicy(max_attempts=3, backoff=0.001, retry_on=(KeyError,))
    async with open_job_pool(2, 10, retry=SHORT, **pool_kwargs) as pool:
        hopeless = await pool.submit(flaky, "hopeless", 10)  # the pool's policy
        with pytest.raises(ValueError, match="hopeless failure 3"):
            await hopeless.result()
        assert hopeless.status is JobStatus.FAILED
        assert hopeless.attempts == 3
        other = await pool.submit(flaky, "other", 10, retry=only_key_errors)
        with pytest.raises(ValueError, match="other failure 1"):
            await other.result()
        assert other.attempts == 1  # a ValueError is not retried by this policy
        once = await pool.submit(flaky, "once", 10, retry=RetryPolicy(max_attempts=1))
        await once.wait()
        assert once.attempts == 1
        stats = await pool.cluster_stats()
    assert (stats.total_retried, stats.total_failed, stats.total_completed) == (2, 3, 0)
    assert board.calls == {"hopeless": 3, "other": 1, "once": 1}


# -- stats -------------------------------------------------------------------------------------


async def test_exact_counters_and_the_invariant_after_a_mixed_workload(
    pool_kwargs: dict[str, Any],
) -> None:
    async def check(**expected: int) -> None:
        stats = await pool.cluster_stats()
        assert invariant_holds(stats), stats
        got = counters(stats)
        assert {k: got[k] for k in expected} == expected

    give_up = RetryPolicy(max_attempts=2, backoff=0.001, jitter=False)
    async with open_job_pool(2, 10, **pool_kwargs) as pool:
        await check(total_submitted=0, max_workers=2, active_workers=0, queued_tasks=0)
        for i in range(3):
            await (await pool.submit(note, f"ok-{i}")).wait()
        await (await pool.submit(fail, "broken")).wait()
        await (await pool.submit(flaky, "comeback", 1, retry=SHORT)).wait()
        await (await pool.submit(flaky, "quitter", 5, retry=give_up)).wait()
        await (await pool.submit(hang, "slow", timeout=0.02)).wait()
        await check(
            total_submitted=7,
            total_completed=4,
            total_failed=2,
            total_timed_out=1,
            total_retried=2,
            total_cancelled=0,
        )
        running = await pool.submit(hold, "running")
        await board.wait_started("running")
        other = await pool.submit(hold, "other")
        await board.wait_started("other")
        waiting = await pool.submit(hold, "waiting")
        await check(total_submitted=10, active_workers=2, queued_tasks=1)
        waiting.cancel()
        await waiting.wait()
        await check(total_cancelled=1, queued_tasks=0, active_workers=2)
        running.cancel()
        await running.wait()
        await check(total_cancelled=2, active_workers=1)
        board.open()
        await other.wait()
        await pool.join()
        await check(
            total_submitted=10,
            total_completed=5,
            total_failed=2,
            total_cancelled=2,
            total_timed_out=1,
            total_retried=2,
            active_workers=0,
            queued_tasks=0,
        )
        local = pool.stats()  # this process ran every job: its own view agrees
        assert (local.total_submitted, local.total_completed, local.total_failed) == (10, 5, 2)
        stats = await pool.cluster_stats()
        assert stats.average_exec_time > 0
        assert stats.exec_time_p50 <= stats.exec_time_p95 <= stats.exec_time_p99
    assert invariant_holds(stats)
    if not distributed(pool_kwargs):
        assert invariant_holds(pool.stats())  # and after the pool stopped


async def test_history_bound(pool_kwargs: dict[str, Any]) -> None:
    async with open_job_pool(1, 10, history=2, **pool_kwargs) as pool:
        for name in ["first", "second", "third"]:
            await (await pool.submit(note, name, job_id=name)).wait()
        await pool.submit(hold, "live", job_id="live")
        await board.wait_started("live")
        assert pool.get("second").status is JobStatus.COMPLETED
        assert await pool.get("third").result() == "third"
        assert pool.get("live").status is JobStatus.RUNNING  # live jobs are always found
        if distributed(pool_kwargs):
            with pytest.raises(JobNotFound, match="first"):
                pool.get("first")  # beyond this process's history...
            old = await pool.aget("first")  # ... but Redis keeps it (for keep_ended)
            assert (old.status, old.attempts) == (JobStatus.COMPLETED, 1)
            assert await old.result() == "first"
        elif pool_kwargs.get("store") is None:
            with pytest.raises(JobNotFound, match="first"):
                pool.get("first")  # beyond the history: gone
        else:
            old = pool.get("first")  # beyond the history, but read back from the store
            assert old.status is JobStatus.COMPLETED
            assert await old.result() == "first"
            assert old.attempts == 1
        with pytest.raises(JobNotFound):
            pool.get("never")
        board.open()


# -- inside jobs -------------------------------------------------------------------------------


async def test_current_job_and_progress(pool_kwargs: dict[str, Any]) -> None:
    with pytest.raises(RuntimeError, match="outside"):
        current_job()
    async with open_job_pool(2, 10, **pool_kwargs) as pool:
        await pool.submit(hold, "blocker")
        await board.wait_started("blocker")
        # submit_nowait never yields, so the job cannot have reported progress yet (a submit
        # may yield, and an idle worker may run the job meanwhile).
        handle = pool.submit_nowait(report_progress, "p", job_id="p")
        assert (handle.progress, handle.progress_message) == (0.0, None)
        await board.wait_started("p")
        await until(lambda: "p:child" in board.seen)
        assert board.seen["p"] is handle
        assert board.seen["p:child"] is handle  # a task the job started sees its job
        assert isinstance(board.seen["p:bad_progress"], ValueError)
        assert (handle.progress, handle.progress_message) == (0.5, "half")
        assert pool.get("p").progress == 0.5
        board.open("p")
        board.open()
        assert await handle.result() == "p"
        assert (handle.progress, handle.progress_message) == (1.0, "done")
    with pytest.raises(RuntimeError):
        current_job()
    db = db_path(pool_kwargs)
    if db is not None:
        row = stored(db)["p"]
        assert (row["progress"], row["progress_message"]) == (1.0, "done")
    if distributed(pool_kwargs):
        async with open_job_pool(0, 10, **pool_kwargs) as other:  # any process reads it
            read = await other.aget("p")
        assert (read.progress, read.progress_message) == (1.0, "done")


async def test_a_failing_job_harms_no_other_job(pool_kwargs: dict[str, Any]) -> None:
    async with open_job_pool(2, 10, **pool_kwargs) as pool:
        neighbour = await pool.submit(hold, "neighbour")
        await board.wait_started("neighbour")
        broken = await pool.submit(fail, "bad input")
        outcome = await broken.wait()
        assert broken.status is JobStatus.FAILED
        assert isinstance(outcome.error, ValueError)  # type: ignore[attr-defined]
        assert str(broken.error) == "bad input"
        assert neighbour.status is JobStatus.RUNNING
        # the failed job's worker is still there: two more jobs run side by side
        second = await pool.submit(hold, "second")
        await board.wait_started("second")
        assert (await pool.cluster_stats()).active_workers == 2
        board.open()
        assert await neighbour.result() == "neighbour"
        assert await second.result() == "second"
        stats = await pool.cluster_stats()
    assert (stats.total_failed, stats.total_completed) == (1, 2)


# -- the bound, closing and shutting down ------------------------------------------------------


async def test_the_bound_queue_full_and_backpressure(local_pool_kwargs: dict[str, Any]) -> None:
    async with open_job_pool(2, 1, max_pending=1, **local_pool_kwargs) as pool:
        for i in range(2):
            pool.submit_nowait(hold, f"busy-{i}")  # taken by the idle workers at once
        for i in range(2):
            await board.wait_started(f"busy-{i}")
        first = pool.submit_nowait(note, "w1", job_id="w1")
        await pool.submit(note, "w2", job_id="w2")
        before = pool.stats()
        assert before.queued_tasks == 2
        with pytest.raises(QueueFull, match="refused"):
            pool.submit_nowait(note, "refused", job_id="refused")
        with pytest.raises(JobNotFound):
            pool.get("refused")
        assert pool.stats() == before

        accepted: list[JobHandle[Any]] = []

        async def submit_blocked() -> None:
            accepted.append(await pool.submit(note, "w3", job_id="w3"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(submit_blocked)
            await anyio.wait_all_tasks_blocked()
            assert accepted == []  # backpressure: the submit waits for room
            assert pool.stats().total_submitted == before.total_submitted
            first.cancel()  # makes room
        assert [h.job_id for h in accepted] == ["w3"]
        board.open()
        await pool.join()
    assert sorted(board.started[:2]) == ["busy-0", "busy-1"]
    assert sorted(board.started[2:]) == ["w2", "w3"]  # and never "w1" or "refused"


async def test_pool_closed_after_close_and_after_the_block(pool_kwargs: dict[str, Any]) -> None:
    async with open_job_pool(1, 10, **pool_kwargs) as pool:
        accepted = await pool.submit(hold, "accepted")
        pool.close()
        assert pool.closed
        with pytest.raises(PoolClosed):
            await pool.submit(note, "late")
        with pytest.raises(PoolClosed):
            pool.submit_nowait(note, "late")
        board.open()
        assert await accepted.result() == "accepted"  # accepted jobs are not affected
    with pytest.raises(PoolClosed):
        await pool.submit(note, "after")
    assert pool.stats().total_submitted == 1
    assert board.started == ["accepted"]


async def test_leaving_the_block_by_an_exception_cancels_every_job(
    local_pool_kwargs: dict[str, Any],
) -> None:
    handles: dict[str, JobHandle[Any]] = {}
    with pytest.raises(Leave):  # noqa: PT012 - the block is the subject
        async with open_job_pool(1, 10, **local_pool_kwargs) as pool:
            handles["running"] = await pool.submit(hold, "running", job_id="running")
            await board.wait_started("running")
            handles["waiting"] = await pool.submit(note, "waiting", job_id="waiting")
            raise Leave
    for handle in handles.values():
        assert handle.status is JobStatus.CANCELLED
        with pytest.raises(JobCancelled, match=SHUTDOWN):
            await handle.result()
    stats = pool.stats()
    assert (stats.total_cancelled, stats.queued_tasks, stats.active_workers) == (2, 0, 0)
    assert board.started == ["running"]


# -- stores that outlive their pool ------------------------------------------------------------


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "jobs.db"


def sqlite(db: Path) -> dict[str, Any]:
    return {"store": f"sqlite:///{db}", "registry": registry}


async def test_the_stored_row_after_each_kind_of_end(db: Path) -> None:
    async with open_job_pool(2, 10, **sqlite(db)) as pool:
        await (await pool.submit(note, "done", job_id="completed")).wait()
        await (await pool.submit(fail, "bad input", job_id="failed")).wait()
        await (await pool.submit(flaky, "fr", 10, job_id="failed-retried", retry=SHORT)).wait()
        await (await pool.submit(flaky, "ok", 1, job_id="completed-retried", retry=SHORT)).wait()
        await (await pool.submit(hang, "slow", job_id="timed-out", timeout=0.02)).wait()
        running = await pool.submit(hang, "running", job_id="cancelled-running")
        await board.wait_started("running")
        blocker = await pool.submit(hold, "blocker", job_id="blocker")
        await board.wait_started("blocker")
        await pool.submit(note, "waiting", job_id="cancelled-waiting")
        pool.cancel("cancelled-waiting")
        running.cancel()
        board.open()
        await blocker.wait()
    rows = stored(db)
    assert {job: row["status"] for job, row in rows.items()} == {
        "completed": "completed",
        "failed": "failed",
        "failed-retried": "failed",
        "completed-retried": "completed",
        "timed-out": "timed_out",
        "cancelled-running": "cancelled",
        "blocker": "completed",
        "cancelled-waiting": "cancelled",
    }
    attempts = {job: row["attempts"] for job, row in rows.items()}
    assert attempts == {
        "completed": 1,
        "failed": 1,
        "failed-retried": 3,
        "completed-retried": 2,
        "timed-out": 1,
        "cancelled-running": 1,
        "blocker": 1,
        "cancelled-waiting": 0,
    }
    assert rows["completed"]["result"] == '"done"'
    assert rows["completed-retried"]["result"] == '"ok ok after 2"'
    assert rows["failed"]["error_type"] == "ValueError"
    assert rows["failed"]["error_message"] == "bad input"
    assert "Traceback" in rows["failed"]["error_traceback"]
    assert rows["failed-retried"]["error_message"] == "fr failure 3"
    assert rows["timed-out"]["error_type"] == "trio_jobpool.JobTimeout"
    assert rows["cancelled-running"]["error_type"] == "trio_jobpool.JobCancelled"
    for job, row in rows.items():
        assert row["finished_at"] is not None, job
        assert (row["exec_time"] is None) == (job == "cancelled-waiting"), job

    async with open_job_pool(1, 10, history=0, **sqlite(db)) as pool:  # read back
        assert pool.stats().total_submitted == 0  # nothing live to resume
        assert await pool.get("completed").result() == "done"
        with pytest.raises(JobFailed, match="bad input") as info:
            await pool.get("failed").result()
        assert info.value.type_name == "ValueError"
        with pytest.raises(JobTimeout):
            await pool.get("timed-out").result()
        for job in ["cancelled-running", "cancelled-waiting"]:
            assert pool.get(job).status is JobStatus.CANCELLED
            with pytest.raises(JobCancelled):
                await pool.get(job).result()
        assert pool.get("failed-retried").attempts == 3
    assert board.started.count("running") == 1  # ended jobs never run again


@pytest.mark.parametrize("how", ["exception", "stop-without-drain", "drain-timeout"])
async def test_jobs_cut_short_by_the_shutdown_stay_queued_and_run_on_the_next_pool(
    db: Path, how: str
) -> None:
    first: dict[str, JobHandle[Any]] = {}
    with pytest.raises(Leave) if how == "exception" else contextlib.nullcontext():
        async with open_job_pool(2, 10, shutdown_timeout=0.05, **sqlite(db)) as pool:
            first["running"] = await pool.submit(hold, "running", job_id="running")
            await board.wait_started("running")
            by_id = await pool.submit(hold, "by-id", "other-gate", job_id="running-by-id")
            await board.wait_started("by-id")
            by_id.cancel()
            await by_id.wait()
            first["running-2"] = await pool.submit(hold, "running-2", job_id="running-2")
            await board.wait_started("running-2")
            first["waiting"] = await pool.submit(note, "waiting", job_id="waiting")
            await pool.submit(note, "waiting-by-id", job_id="waiting-by-id")
            pool.cancel("waiting-by-id")
            if how == "exception":
                raise Leave
            if how == "stop-without-drain":
                await pool.stop(drain=False)
            # else: leaving normally drains for shutdown_timeout, then cancels the rest
    for handle in first.values():  # in this pool, they ended by its shutdown...
        assert handle.status is JobStatus.CANCELLED
        assert str(handle.error).endswith(SHUTDOWN)
    rows = stored(db)  # ... but on disk they are not over
    assert {job: (row["status"], row["attempts"]) for job, row in rows.items()} == {
        "running": ("queued", 1),
        "running-by-id": ("cancelled", 1),
        "running-2": ("queued", 1),
        "waiting": ("queued", 0),
        "waiting-by-id": ("cancelled", 0),
    }
    assert board.started == ["running", "by-id", "running-2"]

    board.reset()
    board.open()
    board.open("other-gate")
    async with open_job_pool(2, 10, **sqlite(db)) as pool:
        assert pool.stats().total_submitted == 3  # resumed: the jobs that had not ended
        await pool.join()
        for job, attempts in [("running", 2), ("running-2", 2), ("waiting", 1)]:
            assert await pool.get(job).result() == job
            assert pool.get(job).attempts == attempts
        assert pool.get("running-by-id").status is JobStatus.CANCELLED
        assert pool.get("waiting-by-id").status is JobStatus.CANCELLED
    assert sorted(board.started) == ["running", "running-2", "waiting"]  # never the cancelled
    assert {job: row["status"] for job, row in stored(db).items()} == {
        "running": "completed",
        "running-by-id": "cancelled",
        "running-2": "completed",
        "waiting": "completed",
        "waiting-by-id": "cancelled",
    }


async def test_each_restart_logs_a_job_that_starts_over(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A job the shutdown cuts off at every stop starts over at every start: the pool logs it
    with its attempt, at INFO the first time, as a warning from the second on (docs/service.md);
    a job that never started is not logged."""
    caplog.set_level(logging.INFO, logger="trio_jobpool")
    for attempt in (1, 2, 3):
        caplog.clear()
        board.reset()
        async with open_job_pool(1, 10, shutdown_timeout=0.01, **sqlite(db)) as pool:
            if attempt == 1:
                await pool.submit(hold, "long", job_id="long")
                await pool.submit(note, "after", job_id="after")
            await board.wait_started("long")
            assert pool.get("long").attempts == attempt
        logged = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "trio_jobpool"]
        if attempt == 1:
            assert logged == []
            continue
        level = logging.INFO if attempt == 2 else logging.WARNING
        assert logged == [
            (
                level,
                f"job 'long' (hold) starts again from the beginning, attempt {attempt}: "
                f"earlier attempts were cut short ({attempt - 1} by a pool's shutdown); a job "
                "that runs longer than the shutdown_timeout starts over at every restart",
            )
        ]
    assert {job: row["status"] for job, row in stored(db).items()} == {
        "long": "queued",
        "after": "queued",
    }


async def test_a_retrying_job_is_resumed_by_the_next_pool(db: Path) -> None:
    hour = RetryPolicy(max_attempts=3, backoff=3600, max_backoff=3600, jitter=False)
    with pytest.raises(Leave):  # noqa: PT012 - the block is the subject
        async with open_job_pool(1, 10, **sqlite(db)) as pool:
            handle = await pool.submit(flaky, "r", 1, job_id="r", retry=hour)
            await board.event("failed:r:1").wait()
            assert handle.status is JobStatus.RETRYING
            # Let the worker's write of the retry get under way: leaving at once loses it on
            # asyncio (see test_writes_queued_just_before_the_block_fails_are_not_lost).
            await anyio.wait_all_tasks_blocked()
            raise Leave
    row = stored(db)["r"]
    assert (row["status"], row["attempts"], row["error_message"]) == ("retrying", 1, "r failure 1")
    retry_at = row["retry_at"]
    assert 3500 < retry_at - time.time() <= 3600

    async with open_job_pool(1, 10, **sqlite(db)) as pool:
        resumed = pool.get("r")
        assert resumed.status is JobStatus.RETRYING
        assert resumed.attempts == 1
        stats = pool.stats()
        assert (stats.total_submitted, stats.queued_tasks, stats.active_workers) == (1, 1, 0)
        await pool.stop(drain=False)
    row = stored(db)["r"]
    assert (row["status"], row["attempts"], row["retry_at"]) == ("retrying", 1, retry_at)

    with sqlite3.connect(db) as connection:  # the hour has passed
        connection.execute("UPDATE jobs SET retry_at = ? WHERE job_id = 'r'", (time.time(),))
    connection.close()
    async with open_job_pool(1, 10, **sqlite(db)) as pool:
        resumed = pool.get("r")
        assert await resumed.result() == "r ok after 2"
        assert resumed.attempts == 2
        assert pool.stats().total_retried == 0  # the retry was scheduled by the first pool
    assert board.calls["r"] == 2
    assert (stored(db)["r"]["status"], stored(db)["r"]["attempts"]) == ("completed", 2)


# -- found in review (each failed before its fix) -------------------------------------------------


async def test_get_finds_a_just_ended_job_beyond_the_history(db: Path) -> None:
    async with open_job_pool(1, 10, history=1, **sqlite(db)) as pool:
        await pool.submit(hold, "blocker")
        await board.wait_started("blocker")
        await pool.submit(note, "a", job_id="a")
        await pool.submit(note, "b", job_id="b")
        pool.cancel("a")
        pool.cancel("b")  # pushes "a" out of the in-memory history
        try:
            assert pool.get("a").status is JobStatus.CANCELLED
        finally:
            board.open()


async def test_an_attempt_cut_short_by_the_shutdown_does_not_use_up_a_retry(db: Path) -> None:
    twice = RetryPolicy(max_attempts=2, backoff=0, jitter=False)
    with pytest.raises(Leave):  # noqa: PT012 - the block is the subject
        async with open_job_pool(1, 10, **sqlite(db)) as pool:
            await pool.submit(hang_once_then_flaky, "j", 1, job_id="j", retry=twice)
            await board.wait_started("j")
            raise Leave
    async with open_job_pool(1, 10, **sqlite(db)) as pool:
        await pool.join()
        job = pool.get("j")
        # attempt 1: cut short by the shutdown; attempt 2: fails (its first failure);
        # attempt 3: the one retry of max_attempts=2, succeeds.
        assert job.status is JobStatus.COMPLETED, (job.status, job.error)
        assert job.attempts == 3


async def test_writes_queued_just_before_the_block_fails_are_not_lost(
    db: Path,
) -> None:
    with pytest.raises(Leave):  # noqa: PT012 - the block is the subject
        async with open_job_pool(1, 10, **sqlite(db)) as pool:
            handle = await pool.submit(note, "once", job_id="once")
            assert await handle.result() == "once"
            raise Leave  # right after the job ended
    assert stored(db)["once"]["status"] == "completed"
    async with open_job_pool(1, 10, **sqlite(db)) as pool:
        await pool.join()
        assert pool.get("once").attempts == 1
    assert board.started == ["once"]  # an ended job never runs again


# -- scheduled jobs (delay=, at=, Defer) -------------------------------------------------------
#
# Distributed pools do not take delay= yet: these run on the stores of one process.


async def stored_record(pool: JobPool, job_id: str) -> JobRecord | None:
    """The record of ``job_id`` as its pool's store has it durably (``None``: no store)."""
    store = pool.store
    if store is None:
        return None
    assert isinstance(store, Store)
    await store.flush()
    return store.load(job_id)


async def test_a_scheduled_job_is_live_holds_no_room_and_runs_when_due(
    local_pool_kwargs: dict[str, Any],
) -> None:
    async with open_job_pool(1, 1, max_pending=0, **local_pool_kwargs) as pool:
        await pool.submit(hold, "blocker")
        await board.wait_started("blocker")
        await pool.submit(note, "waiting")  # the bound (1) is reached
        with pytest.raises(QueueFull):
            pool.submit_nowait(note, "refused")
        before = time.time()
        # beyond the bound; due late enough that a loaded machine gets through the checks first
        soon = pool.submit_nowait(note, "soon", job_id="soon", delay=0.5)
        hour = await pool.submit(note, "hour", job_id="hour", priority=0, delay=3600)
        at = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=2)
        later = await pool.submit(note, "at", job_id="at", at=at)
        assert (soon.status, hour.status, later.status) == (JobStatus.SCHEDULED,) * 3
        assert soon.scheduled_for is not None
        assert before + 0.5 <= soon.scheduled_for <= time.time() + 0.5
        assert later.scheduled_for == pytest.approx(at.timestamp(), abs=1e-3)
        assert pool.get("hour") is hour
        stats = pool.stats()
        assert invariant_holds(stats)
        assert (stats.total_submitted, stats.scheduled_tasks) == (5, 3)
        assert (stats.queued_tasks, stats.active_workers) == (1, 1)
        record = await stored_record(pool, "soon")
        if record is not None:
            assert (record.status, record.scheduled_for) == ("scheduled", soon.scheduled_for)
            assert record.attempts == 0
        board.open()
        assert await soon.result() == "soon"
        assert soon.started_at is not None
        assert soon.started_at >= soon.scheduled_for  # not before its time
        assert soon.attempts == 1
        pool.cancel("hour")
        assert hour.status is JobStatus.CANCELLED
        record = await stored_record(pool, "hour")
        if record is not None:
            assert (record.status, record.attempts) == ("cancelled", 0)
        await pool.join()  # the scheduled job "at" is not waited for
        stats = pool.stats()
        assert invariant_holds(stats)
        assert (stats.scheduled_tasks, stats.total_completed, stats.total_cancelled) == (1, 3, 1)
    assert later.status is JobStatus.CANCELLED  # by the shutdown (a store keeps it: below)
    assert board.started == ["blocker", "waiting", "soon"]


async def test_a_deferred_job_is_scheduled_again_and_runs_again(
    local_pool_kwargs: dict[str, Any],
) -> None:
    async with open_job_pool(1, 10, **local_pool_kwargs) as pool:
        job = await pool.submit(defer_once, "d", 0.05, job_id="d")
        await board.event("deferred:d").wait()
        assert job.status is JobStatus.SCHEDULED
        assert job.attempts == 1
        due = job.scheduled_for
        assert due is not None
        assert job.started_at is not None
        assert due >= job.started_at + 0.05
        stats = pool.stats()
        assert invariant_holds(stats)
        assert (stats.scheduled_tasks, stats.active_workers, stats.queued_tasks) == (1, 0, 0)
        record = await stored_record(pool, "d")
        if record is not None:
            assert (record.status, record.scheduled_for, record.attempts) == ("scheduled", due, 1)
            assert record.exec_time is not None
        assert await job.result() == "d"
        assert job.attempts == 2
        assert job.started_at >= due
        stats = pool.stats()
        assert (stats.total_failed, stats.total_retried, stats.total_completed) == (0, 0, 1)
        record = await stored_record(pool, "d")
        if record is not None:
            assert (record.status, record.attempts) == ("completed", 2)
    assert board.started == ["d", "d"]


class Durable:
    """A store that outlives its pools (``kind``: fake, sqlite, sqlite-full): a new store
    object on it for each pool, and what it holds between pools."""

    def __init__(self, kind: str, db: Path) -> None:
        self.kind = kind
        self.db = db
        self.fake_rows: dict[str, JobRecord] = {}

    def store(self) -> Store:
        if self.kind == "fake":
            return MemoryStore(self.fake_rows)
        return SqliteStore(self.db, synchronous="FULL" if self.kind == "sqlite-full" else "NORMAL")

    def kwargs(self) -> dict[str, Any]:
        return {"store": self.store(), "registry": registry}

    def rows(self) -> dict[str, tuple[str, float | None, int]]:
        """``job_id: (status, scheduled_for, attempts)`` of each job, with no pool open."""
        if self.kind == "fake":
            return {
                job: (r.status, r.scheduled_for, r.attempts) for job, r in self.fake_rows.items()
            }
        return {
            job: (row["status"], row["scheduled_for"], row["attempts"])
            for job, row in stored(self.db).items()
        }

    def set_due(self, job_id: str, wall: float) -> None:
        """Move a stored job's due time (as if the clock had moved), with no pool open."""
        if self.kind == "fake":
            self.fake_rows[job_id].scheduled_for = wall
            return
        connection = sqlite3.connect(self.db)
        try:
            with connection:
                connection.execute(
                    "UPDATE jobs SET scheduled_for = ? WHERE job_id = ?", (wall, job_id)
                )
        finally:
            connection.close()


@pytest.fixture(params=["fake", "sqlite", "sqlite-full"])
def durable(request: pytest.FixtureRequest, db: Path) -> Durable:
    return Durable(request.param, db)


async def test_a_store_keeps_scheduled_records_and_their_deferral(durable: Durable) -> None:
    store = durable.store()
    assert await store.open() == []
    now = time.time()

    def new(job_id: str, priority: int = 5, due: float | None = None) -> JobRecord:
        status = "queued" if due is None else "scheduled"
        record = JobRecord(job_id, "note", [job_id], priority, status=status, scheduled_for=due)
        record.submitted_at = now
        return record

    queued, urgent, later, deferred = (
        new("q"),
        new("u", 1, now + 120),
        new("s", 5, now + 60),
        new("d"),
    )
    for record in (queued, urgent, later, deferred):
        ticket = store.add(record)
    await store.wait(ticket)
    store.add_now(new("n", 5, now + 90))  # submit_nowait's path
    loaded = store.load("s")
    assert loaded is not None
    assert (loaded.status, loaded.scheduled_for, loaded.seq) == ("scheduled", now + 60, later.seq)
    # "d" runs, and its attempt ends with Defer: scheduled again (what Journal.deferred writes)
    deferred.status, deferred.attempts, deferred.started_at = "running", 1, now
    await store.wait(store.started(deferred))
    deferred.status, deferred.scheduled_for, deferred.exec_time = "scheduled", now + 300, 0.5
    store.changed(deferred)
    await store.flush()
    loaded = store.load("d")
    assert loaded is not None
    assert (loaded.status, loaded.scheduled_for) == ("scheduled", now + 300)
    assert (loaded.attempts, loaded.started_at, loaded.exec_time) == (1, now, 0.5)
    await store.aclose()

    again = durable.store()
    live = await again.open()  # live jobs in (priority, submission) order, scheduled included
    try:
        assert [(r.job_id, r.status, r.scheduled_for) for r in live] == [
            ("u", "scheduled", now + 120),
            ("q", "queued", None),
            ("s", "scheduled", now + 60),
            ("d", "scheduled", now + 300),
            ("n", "scheduled", now + 90),
        ]
        assert [(r.attempts, r.crashes) for r in live] == [(0, 0)] * 3 + [(1, 0), (0, 0)]
    finally:
        await again.aclose()


async def test_scheduled_jobs_are_kept_across_restarts_and_due_at_their_time(
    durable: Durable,
) -> None:
    # Pool 1: three jobs for later (delay=, at=, a deferral), and one that fell due while the
    # only worker was busy; the pool's shutdown (a drain that times out) cancels them here.
    at = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=2)
    first: dict[str, JobHandle[Any]] = {}
    async with open_job_pool(1, 10, shutdown_timeout=0.05, **durable.kwargs()) as pool:
        first["hour"] = await pool.submit(note, "hour", job_id="hour", delay=3600)
        first["at"] = await pool.submit(note, "at", job_id="at", at=at)
        first["defer"] = await pool.submit(defer_once, "defer", 3600, job_id="defer")
        await board.event("deferred:defer").wait()
        first["fallen"] = await pool.submit(note, "fallen", job_id="fallen", delay=0.05)
        first["blocker"] = await pool.submit(hold, "blocker", job_id="blocker")
        await board.wait_started("blocker")
        fallen_due = first["fallen"].scheduled_for
        assert fallen_due is not None
        await anyio.sleep(fallen_due - time.time() + 0.02)  # until it is due, and a little
        await anyio.wait_all_tasks_blocked()
        assert first["fallen"].status is JobStatus.QUEUED  # due, waiting for the worker
        stats = pool.stats()
        assert invariant_holds(stats)
        assert (stats.scheduled_tasks, stats.queued_tasks, stats.active_workers) == (3, 1, 1)
        due = {job: handle.scheduled_for for job, handle in first.items()}
    for handle in first.values():
        assert handle.status is JobStatus.CANCELLED
        assert str(handle.error).endswith(SHUTDOWN)
    # On record, the scheduled jobs are still scheduled, the one that fell due too (falling due
    # writes nothing), and the cut-short blocker is queued.
    assert durable.rows() == {
        "hour": ("scheduled", due["hour"], 0),
        "at": ("scheduled", due["at"], 0),
        "defer": ("scheduled", due["defer"], 1),
        "fallen": ("scheduled", fallen_due, 0),
        "blocker": ("queued", None, 1),
    }
    assert board.started == ["defer", "blocker"]

    # Pool 2: the scheduled jobs are scheduled again, at their time; the one whose time has
    # passed is due at once, behind the recovered queue (the blocker was submitted after it).
    board.reset()
    board.open()
    async with open_job_pool(1, 10, **durable.kwargs()) as pool:
        stats = pool.stats()
        assert invariant_holds(stats)
        assert (stats.total_submitted, stats.scheduled_tasks) == (5, 3)
        for job in ("hour", "at", "defer"):
            handle = pool.get(job)
            assert handle.status is JobStatus.SCHEDULED
            assert handle.scheduled_for == pytest.approx(due[job], abs=1e-3)
        assert pool.get("defer").attempts == 1
        assert pool.get("fallen").status is not JobStatus.SCHEDULED
        await pool.join()  # not waiting for the scheduled ones
        assert board.started == ["blocker", "fallen"]
        assert pool.get("fallen").attempts == 1
        assert pool.stats().scheduled_tasks == 3
    rows = durable.rows()
    assert {job: status for job, (status, _, _) in rows.items()} == {
        "hour": "scheduled",
        "at": "scheduled",
        "defer": "scheduled",
        "fallen": "completed",
        "blocker": "completed",
    }

    # Pool 3: every due time passed while no pool ran: each runs at once, earliest due first.
    now = time.time()
    for offset, job in enumerate(["at", "defer", "hour"]):
        durable.set_due(job, now - 3 + offset)
    board.reset()
    async with open_job_pool(1, 10, **durable.kwargs()) as pool:
        stats = pool.stats()
        assert invariant_holds(stats)
        assert (stats.total_submitted, stats.scheduled_tasks) == (3, 0)
        await pool.join()
        assert board.started == ["at", "defer", "hour"]
        assert pool.get("defer").attempts == 2
    assert {job: status for job, (status, _, _) in durable.rows().items()} == dict.fromkeys(
        ["hour", "at", "defer", "fallen", "blocker"], "completed"
    )

    board.reset()
    async with open_job_pool(1, 10, **durable.kwargs()) as pool:  # nothing is left to run
        assert pool.stats().total_submitted == 0
    assert board.started == []


async def test_a_cancelled_scheduled_job_never_runs_in_a_later_pool(durable: Durable) -> None:
    async with open_job_pool(1, 10, **durable.kwargs()) as pool:
        await pool.submit(note, "kept", job_id="kept", delay=3600)
        await pool.submit(note, "dropped", job_id="dropped", delay=3600)
        pool.cancel("dropped")
    now = time.time()
    for job in ("kept", "dropped"):
        durable.set_due(job, now - 1)
    assert {job: status for job, (status, _, _) in durable.rows().items()} == {
        "kept": "scheduled",
        "dropped": "cancelled",
    }
    async with open_job_pool(1, 10, **durable.kwargs()) as pool:
        await pool.join()
        assert pool.get("dropped").status is JobStatus.CANCELLED
    assert board.started == ["kept"]
