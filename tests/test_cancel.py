"""Cancelling by id and by handle: waiting, retrying and running jobs."""

from __future__ import annotations

import anyio
import outcome
import pytest

from trio_jobpool import JobCancelled, JobNotFound, JobStatus, RetryPolicy, open_job_pool

from ._helpers import Gate, Recorder, fail, invariant_holds, noop, settle, sleep_forever

pytestmark = pytest.mark.anyio


async def test_cancel_a_waiting_job_it_never_runs() -> None:
    gate = Gate()
    recorder = Recorder()
    async with open_job_pool(max_workers=1) as pool:
        await pool.submit(gate.job)
        victim = await pool.submit(recorder.job, "victim", job_id="victim")
        other = await pool.submit(recorder.job, "other")
        pool.cancel("victim")
        assert victim.status is JobStatus.CANCELLED  # at once, synchronously
        assert pool.stats().queued_tasks == 1
        assert invariant_holds(pool.stats())
        result = await victim.wait()
        assert isinstance(result, outcome.Error)
        assert isinstance(result.error, JobCancelled)
        assert "victim" in str(result.error)
        with pytest.raises(JobCancelled):
            await victim.result()
        gate.open()
        await other.wait()
    assert recorder.started == ["other"]
    assert victim.attempts == 0
    assert victim.started_at is None
    assert victim.exec_time is None


async def test_cancel_a_running_job_and_the_worker_moves_on() -> None:
    async with open_job_pool(max_workers=1) as pool:
        running = await pool.submit(sleep_forever, job_id="r")
        after = await pool.submit(noop)
        await settle()
        assert running.status is JobStatus.RUNNING
        pool.cancel("r")
        await running.wait()
        running = running  # rebound: mypy keeps the status narrowed above across calls
        assert running.status is JobStatus.CANCELLED
        assert isinstance(running.error, JobCancelled)
        await after.wait()
        assert after.status is JobStatus.COMPLETED
        assert pool.stats().total_cancelled == 1


async def test_cancel_unknown_or_ended_raises_job_not_found() -> None:
    async with open_job_pool() as pool:
        with pytest.raises(JobNotFound, match="nope") as info:
            pool.cancel("nope")
        assert isinstance(info.value, LookupError)
        done = await pool.submit(noop, job_id="done")
        await done.wait()
        with pytest.raises(JobNotFound):
            pool.cancel("done")
        done.cancel()  # no error through the handle
        assert done.status is JobStatus.COMPLETED


async def test_handle_cancel_is_idempotent() -> None:
    async with open_job_pool() as pool:
        handle = await pool.submit(sleep_forever)
        await settle()
        handle.cancel()
        handle.cancel()
        await handle.wait()
        handle.cancel()
        assert handle.status is JobStatus.CANCELLED
        assert pool.stats().total_cancelled == 1


async def test_cancel_before_the_worker_starts_the_job() -> None:
    async with open_job_pool(max_workers=1) as pool:
        handle = await pool.submit(sleep_forever)  # handed to the idle worker...
        handle.cancel()  # ...which has not run yet
        await handle.wait()
        assert handle.status is JobStatus.CANCELLED


async def test_cancel_a_retrying_job() -> None:
    async with open_job_pool() as pool:
        policy = RetryPolicy(max_attempts=5, backoff=3600.0, jitter=False)
        handle = await pool.submit(fail, retry=policy, job_id="flaky")
        await settle()
        assert handle.status is JobStatus.RETRYING
        assert pool.stats().queued_tasks == 1
        pool.cancel("flaky")
        handle = handle  # rebound: mypy keeps the status narrowed above across calls
        assert handle.status is JobStatus.CANCELLED
        assert handle.attempts == 1
        stats = pool.stats()
        assert stats.queued_tasks == 0
        assert stats.total_cancelled == 1
        assert invariant_holds(stats)
        await pool.join()  # the backoff timer does not keep the pool busy


async def test_cancelling_a_waiting_job_admits_a_blocked_submission() -> None:
    gate = Gate()
    async with open_job_pool(max_workers=1, queue_size=1) as pool:
        await pool.submit(gate.job, "running")
        await pool.submit(gate.job, "waiting", job_id="w")
        admitted = anyio.Event()

        async def blocked() -> None:
            await pool.submit(gate.job, "blocked")
            admitted.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(blocked)
            await settle()
            assert not admitted.is_set()
            pool.cancel("w")
            await admitted.wait()
            gate.open()
    assert gate.started == ["running", "blocked"]


async def test_cancel_many_waiting_jobs_stays_exact() -> None:
    gate = Gate()
    recorder = Recorder()
    async with open_job_pool(max_workers=1, max_pending=None) as pool:
        await pool.submit(gate.job)
        handles = [pool.submit_nowait(recorder.job, i, priority=i % 3) for i in range(3000)]
        for handle in handles[::2]:
            pool.cancel(handle.job_id)
        assert pool.stats().queued_tasks == 1500
        gate.open()
    assert sorted(recorder.started) == list(range(1, 3000, 2))
    assert invariant_holds(pool.stats())
    assert pool.stats().total_cancelled == 1500
