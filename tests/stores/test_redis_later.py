"""Later jobs on the distributed pool (docs/distributed.md, "Later jobs"): ``delay=``/``at=``
and ``Defer`` keep the job in Redis, scheduled, until it is due; then exactly one claim lets it
into the queue, behind the jobs of its priority already waiting. Several pools on one queue in
one event loop stand for several processes; the tests at the end run real worker processes
(tests/stores/_redis_worker.py) and count the scripts Redis runs (``INFO commandstats``).

Due times are on Redis's clock, which no test can fake: these tests wait for them, as briefly
as they can, and check what happened by events, handles and Redis's own counters.
"""

from __future__ import annotations

import collections
import datetime
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import coredis
import pytest

from tests.durable_app import board, defer_once, hold, logged, note, registry
from tests.stores._suite import invariant_holds, status
from trio_jobpool import (
    Defer,
    JobCancelled,
    JobNotFound,
    JobStatus,
    QueueFull,
    RetryPolicy,
    open_job_pool,
)

from .test_redis_processes import read_log, worker_processes
from .test_redis_wakeups import _script_calls

pytestmark = pytest.mark.anyio

SCHEDULED = JobStatus.SCHEDULED


@registry.job(name="defer_twice_then_flaky")
async def defer_twice_then_flaky(name: str) -> str:
    """Defer itself (0.05 s) on its first two attempts, fail on the third, then succeed."""
    board.start(name)
    board.calls[name] += 1
    call = board.calls[name]
    await anyio.lowlevel.checkpoint()
    if call <= 2:
        raise Defer(0.05)
    if call == 3:
        raise ValueError(f"{name} failure")
    return f"{name} ok after {call}"


@pytest.fixture
def kw(redis_url: str) -> dict[str, Any]:
    """A queue of this test's own on the session's server."""
    return {
        "store": f"{redis_url}/0?queue=l{uuid.uuid4().hex[:12]}&lease_timeout=5",
        "registry": registry,
    }


async def until(predicate: Callable[[], bool]) -> None:
    """Let other tasks (and Redis round trips) run until ``predicate()`` holds; bounded."""
    with anyio.fail_after(10):
        while not predicate():
            await anyio.sleep(0.001)


# -- in one event loop --------------------------------------------------------------------------


async def test_a_job_due_later_waits_in_redis_beyond_the_bound_and_runs_when_due(
    kw: dict[str, Any],
) -> None:
    async with open_job_pool(0, 1, **kw) as front, open_job_pool(0, 1, **kw) as other:
        await front.submit(note, "first")  # the queue is full now
        with pytest.raises(QueueFull):
            front.submit_nowait(note, "refused")
        at = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=0.4)
        later = front.submit_nowait(note, "later", at=at)  # never refused for want of room
        soon = await front.submit(note, "soon", delay=0.2, priority=1)  # nor waits for it
        assert (status(later), status(soon)) == (SCHEDULED, SCHEDULED)
        assert later.scheduled_for == pytest.approx(at.timestamp(), abs=1e-3)
        assert front.scheduled_jobs() == [soon, later]  # earliest due first
        assert front.scheduled_jobs(1) == [soon]
        stats = await front.cluster_stats()
        assert (stats.queued_tasks, stats.scheduled_tasks, stats.total_submitted) == (1, 2, 3)
        assert invariant_holds(stats), stats
        assert front.stats().scheduled_tasks == 0  # no process holds a scheduled job
        seen = await other.aget(later.job_id)  # any process reads it from Redis
        assert (seen.status, seen.attempts) == (SCHEDULED, 0)
        assert seen.scheduled_for is not None
        # Redis counts the delay from when it has the job (its clock): never earlier
        assert 0 <= seen.scheduled_for - at.timestamp() < 0.5
        async with open_job_pool(1, 10, **kw) as worker:
            assert await later.result() == "later"
            assert await soon.result() == "soon"
            assert worker.stats().total_completed == 3
        assert later.started_at is not None
        assert soon.started_at is not None
        assert later.started_at >= at.timestamp()
        assert soon.started_at >= soon.submitted_at + 0.2
        assert front.scheduled_jobs() == []
        stats = await front.cluster_stats()
    assert board.started == ["first", "soon", "later"]
    assert (stats.total_completed, stats.scheduled_tasks, stats.queued_tasks) == (3, 0, 0)


async def test_defer_schedules_the_job_again_keeping_its_attempts_not_its_failures(
    kw: dict[str, Any],
) -> None:
    """Two deferrals, then a failure: the policy (two attempts) still has its retry."""
    policy = RetryPolicy(max_attempts=2, backoff=0.001, jitter=False)
    async with open_job_pool(1, 10, **kw) as pool:
        handle = await pool.submit(defer_twice_then_flaky, "d", retry=policy)
        await until(lambda: status(handle) is SCHEDULED)  # its first attempt deferred it
        assert handle.attempts == 1
        assert handle.scheduled_for is not None
        assert pool.scheduled_jobs() == [handle]
        stats = await pool.cluster_stats()
        assert (stats.scheduled_tasks, stats.active_workers, stats.total_retried) == (1, 0, 0)
        assert invariant_holds(stats), stats
        assert await handle.result() == "d ok after 4"
        assert handle.attempts == 4
        stats = await pool.cluster_stats()
    assert (stats.total_completed, stats.total_failed, stats.total_retried) == (1, 0, 1)
    assert stats.total_submitted == 1
    assert invariant_holds(stats)


async def test_a_job_deferred_in_another_process_is_followed_by_its_submitter(
    kw: dict[str, Any],
) -> None:
    async with open_job_pool(0, 10, **kw) as front, open_job_pool(1, 10, **kw) as worker:
        handle = await front.submit(defer_once, "x", 60.0)
        await until(lambda: status(handle) is SCHEDULED)  # announced to its submitter
        assert handle.attempts == 1
        assert handle.scheduled_for is not None
        assert handle.scheduled_for > time.time() + 50
        assert front.scheduled_jobs() == [handle]
        with anyio.fail_after(10):
            await front.join()  # a scheduled job is not waited for
        await worker.acancel(handle.job_id)  # from any process: it ends, and its handle here
        with pytest.raises(JobCancelled):
            await handle.result()
        with pytest.raises(JobNotFound):
            await worker.acancel(handle.job_id)
        stats = await front.cluster_stats()
    assert (stats.total_cancelled, stats.scheduled_tasks, stats.total_submitted) == (1, 0, 1)


async def test_a_scheduled_job_is_cancelled_by_its_process_or_any_other(
    kw: dict[str, Any],
) -> None:
    async with open_job_pool(0, 10, **kw) as front, open_job_pool(0, 10, **kw) as other:
        a = await front.submit(note, "a", delay=60)
        b = await front.submit(note, "b", delay=60)
        a.cancel()
        with pytest.raises(JobCancelled):
            await a.result()
        await other.acancel(b.job_id)
        with pytest.raises(JobCancelled):
            await b.result()
        assert front.scheduled_jobs() == []
        assert (await other.aget(a.job_id)).status is JobStatus.CANCELLED
        stats = await front.cluster_stats()
    assert (stats.total_cancelled, stats.scheduled_tasks, stats.total_submitted) == (2, 0, 2)
    assert invariant_holds(stats)
    assert board.started == []


async def test_join_waits_for_a_scheduled_job_only_once_it_is_due_and_redis_keeps_the_rest(
    kw: dict[str, Any],
) -> None:
    joined = anyio.Event()
    async with open_job_pool(0, 10, **kw) as front, open_job_pool(2, 10, **kw):
        x = await front.submit(hold, "x", "x")
        y = await front.submit(hold, "y", "y", delay=0.1)
        far = await front.submit(note, "far", delay=60)
        async with anyio.create_task_group() as tg:

            async def join() -> None:
                await front.join()
                joined.set()

            tg.start_soon(join)
            await board.wait_started("y")  # due, and running in the other pool
            board.open("x")
            assert await x.result() == "x"
            await front.cluster_stats()  # a round trip: join has looked again meanwhile
            assert not joined.is_set()  # y fell due while join waited: it waits for y
            board.open("y")
        assert await y.result() == "y"
        assert status(far) is SCHEDULED
        with anyio.fail_after(10):
            await front.join()  # only far is left: scheduled, not waited for
    # the block's end leaves far in Redis, for the next pool
    assert status(far) is SCHEDULED
    async with open_job_pool(0, 10, **kw) as again:
        seen = await again.aget(far.job_id)
        assert seen.status is SCHEDULED
        assert seen.scheduled_for == pytest.approx(far.scheduled_for, abs=0.5)
        stats = await again.cluster_stats()
        assert (stats.scheduled_tasks, stats.total_completed) == (1, 2)
        assert invariant_holds(stats)
        await again.acancel(far.job_id)


# -- real processes -----------------------------------------------------------------------------


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "jobs.log"
    monkeypatch.setenv("JOBPOOL_TEST_LOG", str(path))  # inherited by the worker processes
    return path


async def test_jobs_due_at_one_time_run_once_each_across_processes_racing_for_them(
    redis_url: str, log: Path, anyio_backend: str
) -> None:
    """Every worker process's timer fires at the due time (each has free workers): whichever
    claims first lets the jobs in, the others find them in the queue (or nothing)."""
    url = f"{redis_url}/0?queue=r{uuid.uuid4().hex[:12]}&lease_timeout=5"
    count = 30
    with worker_processes(url, 3, max_workers=2, backend=anyio_backend) as workers:
        async with open_job_pool(0, 10, store=url, registry=registry) as front:
            at = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=1.5)
            handles = [
                front.submit_nowait(logged, f"job-{i:02d}", 0.05, job_id=f"job-{i:02d}", at=at)
                for i in range(count)
            ]
            with anyio.fail_after(30):
                for handle in handles:
                    assert await handle.result() == handle.job_id
            stats = await front.cluster_stats()
    assert (stats.total_completed, stats.scheduled_tasks, stats.total_submitted) == (
        count,
        0,
        count,
    )
    assert invariant_holds(stats)
    starts = [(pid, item, when) for pid, event, item, when in read_log(log) if event == "start"]
    assert collections.Counter(item for _, item, _ in starts) == {h.job_id: 1 for h in handles}
    assert min(when for _, _, when in starts) >= at.timestamp()  # none before its due time
    assert {pid for pid, _, _ in starts} <= {w.pid for w in workers}
    assert len({pid for pid, _, _ in starts}) > 1  # not one process alone: they raced


async def test_an_idle_cluster_sleeps_until_the_next_due_time_and_a_nearer_one_wakes_it(
    redis_url: str, log: Path, anyio_backend: str
) -> None:
    """Counted with Redis's own command counters: between a submit and the job's due time no
    process calls Redis (no polling, no fixed interval; leases of two minutes, so that no
    renewal falls in the test); a job scheduled earlier than the one the workers sleep for is
    announced and runs at its own time."""
    url = f"{redis_url}/0?queue=i{uuid.uuid4().hex[:12]}&lease_timeout=120"
    async with coredis.Redis.from_url(redis_url, decode_responses=True) as client:
        with worker_processes(url, 2, max_workers=2, backend=anyio_backend):
            async with open_job_pool(0, 10, store=url, registry=registry) as front:
                with anyio.fail_after(20):  # both processes are there, and idle
                    while (await front.cluster_stats()).max_workers < 4:
                        await anyio.sleep(0.01)
                before = await _script_calls(client)
                far = await front.submit(logged, "far", job_id="far", delay=60)
                near = await front.submit(logged, "near", job_id="near", delay=1.5)
                submitted = await _script_calls(client)
                assert submitted - before == 2  # the two submits, and nothing else
                await anyio.sleep(1.0)
                assert await _script_calls(client) == submitted  # everyone sleeps
                with anyio.fail_after(10):
                    assert await near.result() == "near"
                assert near.started_at is not None
                # at its own time, not at the time the workers slept for before it came
                assert 1.5 <= near.started_at - near.submitted_at < 5
                ran = await _script_calls(client)
                # each idle worker process's timer fired once (two claims: one let near in and
                # took it), near's end (with a claim), and the front end's read of its end
                assert ran - submitted == 4
                await anyio.sleep(1.0)
                assert await _script_calls(client) == ran  # asleep again, until far is due
                assert status(far) is SCHEDULED
                await front.acancel("far")
    assert [event for _, event, _, _ in read_log(log)] == ["start", "end"]
