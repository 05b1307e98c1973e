"""Cancellation at the edges: absorbed cancels, job-owned task groups, jobs not yet started."""

from __future__ import annotations

import asyncio

import anyio
import pytest
import trio

from trio_jobpool import JobCancelled, JobStatus, JobTimeout, open_job_pool

from ._helpers import Boom, Gate, invariant_holds, noop, settle, sleep_forever

pytestmark = pytest.mark.anyio


async def _one_worker_still_works(pool: object) -> None:
    from trio_jobpool import JobPool

    assert isinstance(pool, JobPool)
    after = await pool.submit(noop)
    await after.wait()
    assert after.status is JobStatus.COMPLETED
    assert invariant_holds(pool.stats())


async def child_fails_on_cancel() -> None:
    try:
        await anyio.sleep_forever()
    finally:
        raise Boom("child cleanup")


async def job_with_children() -> None:
    """A job whose own task group fails while the job is being cancelled."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(child_fails_on_cancel)
        await anyio.sleep_forever()


async def test_a_cancel_that_lands_as_the_job_finishes() -> None:
    async with open_job_pool(max_workers=1) as pool:
        event = anyio.Event()
        handle = await pool.submit(event.wait)
        await settle()
        event.set()  # the job is woken...
        handle.cancel()  # ...and cancelled in the same step: it returns normally all the same
        await handle.wait()
        assert handle.status is JobStatus.COMPLETED
        await _one_worker_still_works(pool)


async def test_a_job_that_shields_itself_and_returns() -> None:
    async def stubborn() -> str:
        with anyio.CancelScope(shield=True):
            await anyio.sleep(0.01)
        return "done"

    async with open_job_pool(max_workers=1) as pool:
        handle = await pool.submit(stubborn)
        await settle()
        handle.cancel()
        assert await handle.result() == "done"
        await _one_worker_still_works(pool)


async def test_a_job_that_raises_while_being_cancelled() -> None:
    async def cleanup_fails() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            raise Boom("cleanup")

    async with open_job_pool(max_workers=1) as pool:
        handle = await pool.submit(cleanup_fails)
        await settle()
        handle.cancel()
        await handle.wait()
        assert isinstance(handle.error, JobCancelled)
        assert isinstance(handle.error.__cause__, Boom)
        await _one_worker_still_works(pool)


async def test_a_child_task_failing_while_the_job_times_out() -> None:
    """The job's own task group raises Cancelled and an error together: the job timed out,
    and the pool is unharmed."""

    async with open_job_pool(max_workers=1) as pool:
        handle = await pool.submit(job_with_children, timeout=0.01)
        await handle.wait()
        assert handle.status is JobStatus.TIMED_OUT
        assert isinstance(handle.error, JobTimeout)
        cause = handle.error.__cause__
        assert isinstance(cause, ExceptionGroup)
        assert cause.subgroup(Boom) is not None
        await _one_worker_still_works(pool)


async def test_a_child_task_failing_when_the_pool_is_cancelled() -> None:
    with anyio.CancelScope() as outer:
        async with open_job_pool(max_workers=1) as pool:
            handle = await pool.submit(job_with_children)
            await settle()
            outer.cancel()
            await anyio.sleep_forever()
    assert outer.cancelled_caught
    assert handle.status is JobStatus.CANCELLED
    assert isinstance(handle.error, JobCancelled)
    assert isinstance(handle.error.__cause__, ExceptionGroup)
    assert invariant_holds(pool.stats())


async def test_a_job_failing_with_an_exception_group_is_failed() -> None:
    async def two_children_fail() -> None:
        async def fail_soon() -> None:
            await anyio.lowlevel.checkpoint()
            raise Boom("child")

        async with anyio.create_task_group() as tg:
            tg.start_soon(fail_soon)
            tg.start_soon(fail_soon)

    async with open_job_pool(max_workers=1) as pool:
        handle = await pool.submit(two_children_fail)
        await handle.wait()
        assert handle.status is JobStatus.FAILED
        assert isinstance(handle.error, ExceptionGroup)
        await _one_worker_still_works(pool)


async def test_a_job_cancelled_right_after_hand_off_never_runs() -> None:
    ran: list[str] = []

    async def record() -> None:
        ran.append("ran")
        await anyio.lowlevel.checkpoint()

    async with open_job_pool(max_workers=1) as pool:
        await settle()
        handle = pool.submit_nowait(record)  # handed to the idle worker, which has not run
        assert handle.status is JobStatus.RUNNING
        handle.cancel()
        await handle.wait()
        handle = handle  # rebound: mypy keeps the status narrowed above across calls
        assert handle.status is JobStatus.CANCELLED
        await _one_worker_still_works(pool)
    assert ran == []


async def test_timeout_zero_never_runs_the_job() -> None:
    ran: list[str] = []

    async def record() -> None:
        ran.append("ran")
        await anyio.lowlevel.checkpoint()

    async with open_job_pool(max_workers=2) as pool:
        for _ in range(20):
            handle = await pool.submit(record, timeout=0)
            await handle.wait()
            assert handle.status is JobStatus.TIMED_OUT
            assert isinstance(handle.error, JobTimeout)
    assert ran == []


async def test_join_from_inside_a_job_is_refused() -> None:
    async with open_job_pool() as pool:

        async def joiner() -> None:
            await pool.join()

        handle = await pool.submit(joiner)
        await handle.wait()
        assert isinstance(handle.error, RuntimeError)
        assert "would wait for itself" in str(handle.error)


async def test_cancel_storm_with_one_worker_keeps_the_worker() -> None:
    gate = Gate()
    async with open_job_pool(max_workers=1, max_pending=None) as pool:
        handles = [pool.submit_nowait(gate.job, i) for i in range(50)]
        await settle()
        for handle in handles[::3]:
            handle.cancel()
        gate.open()
        for handle in handles:
            await handle.wait()
        await _one_worker_still_works(pool)
        assert pool.stats().total_cancelled == len(handles[::3])
        job = await pool.submit(sleep_forever)
        await settle()
        job.cancel()
        await job.wait()
        await _one_worker_still_works(pool)


# -- cancellations the job's own code makes ----------------------------------------------------


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_stray_cancellation_from_a_job_harms_nothing_else() -> None:
    """A job awaiting a task that someone else cancelled gets CancelledError although nothing
    cancelled the job: it ends cancelled, and the pool, other jobs and the block go on."""

    async def awaits_a_cancelled_task() -> None:
        task = asyncio.get_running_loop().create_task(asyncio.sleep(10))
        await asyncio.sleep(0)
        task.cancel()
        await task

    reached = []
    async with open_job_pool(max_workers=2) as pool:
        innocent = await pool.submit(anyio.sleep, 0.05)
        stray = await pool.submit(awaits_a_cancelled_task)
        await stray.wait()
        await anyio.sleep(0.01)
        reached.append("body went on")
    assert reached == ["body went on"]
    assert stray.status is JobStatus.CANCELLED
    assert isinstance(stray.error, JobCancelled)
    assert "its own code" in str(stray.error)
    assert isinstance(stray.error.__cause__, asyncio.CancelledError)
    assert innocent.status is JobStatus.COMPLETED
    assert invariant_holds(pool.stats())


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_job_cancelling_its_own_task_does_not_kill_its_worker() -> None:
    """asyncio: a job that cancels its own task ends cancelled; its worker runs the next job."""

    async def cancels_its_task() -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        await asyncio.sleep(0)

    async with open_job_pool(max_workers=1) as pool:
        handle = await pool.submit(cancels_its_task)
        await handle.wait()
        assert handle.status is JobStatus.CANCELLED
        after = await pool.submit(noop)
        await after.wait()
        assert after.status is JobStatus.COMPLETED


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_job_cancelling_its_task_and_returning_at_once_harms_nothing() -> None:
    """asyncio: a job that cancels its own task and returns before the request is delivered
    completes with its value; the pending request neither kills its worker nor the block."""

    async def cancels_then_returns() -> str:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()  # no await afterwards: the request is still pending when it returns
        return "done"

    reached = []
    async with open_job_pool(max_workers=1) as pool:
        handle = await pool.submit(cancels_then_returns)
        assert await handle.result() == "done"
        after = await pool.submit(noop)
        await after.wait()
        assert after.status is JobStatus.COMPLETED
        reached.append("end of block")
    assert reached == ["end of block"]


@pytest.mark.trio
async def test_a_stray_trio_cancelled_harms_nothing_else() -> None:
    """Trio: a job that re-raises a ``trio.Cancelled`` of a scope it had already left ends
    cancelled, and its worker runs the next job."""

    async def reraises_an_old_cancelled() -> None:
        saved = None
        with trio.CancelScope() as scope:
            scope.cancel()
            try:
                await trio.sleep(1)
            except trio.Cancelled as exc:
                saved = exc
        assert saved is not None
        raise saved

    async with open_job_pool(max_workers=1) as pool:
        stray = await pool.submit(reraises_an_old_cancelled)
        await stray.wait()
        assert stray.status is JobStatus.CANCELLED
        after = await pool.submit(noop)
        await after.wait()
        assert after.status is JobStatus.COMPLETED
