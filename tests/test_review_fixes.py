"""Regression tests for problems found in review (each failed before its fix)."""

from __future__ import annotations

import asyncio
import math
import traceback

import anyio
import pytest
import trio
import trio.testing

from trio_jobpool import JobCancelled, JobStatus, RetryPolicy, current_job, open_job_pool

from ._helpers import Boom, Gate, fail, invariant_holds, noop, settle, sleep_forever


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
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
@pytest.mark.anyio
async def test_a_job_cancelling_its_own_task_does_not_kill_its_worker() -> None:
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


@pytest.mark.trio
async def test_a_stray_trio_cancelled_harms_nothing_else() -> None:
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


@pytest.mark.anyio
async def test_abandoned_blocked_submissions_are_released() -> None:
    gate = Gate()
    async with open_job_pool(max_workers=1, queue_size=0) as pool:
        await pool.submit(gate.job)
        for i in range(5000):
            with anyio.CancelScope() as scope:
                scope.cancel()  # gives up at once, after parking
                await pool.submit(noop, job_id=f"given-up-{i}")
        assert len(pool._offers) < 2100  # compacted as they die, not held until room frees
        assert pool.stats().total_submitted == 1
        gate.open()


class MyGroup(ExceptionGroup):  # type: ignore[type-arg]
    pass


@pytest.mark.anyio
async def test_an_exception_group_from_the_block_is_re_raised_itself() -> None:
    raised = MyGroup("mine", [ValueError("inner")])
    with pytest.raises(MyGroup) as info:  # noqa: PT012 - the block is the subject
        async with open_job_pool() as pool:
            await pool.submit(sleep_forever)
            raise raised
    assert info.value is raised


@pytest.mark.anyio
async def test_ids_in_the_generated_form_never_collide() -> None:
    async with open_job_pool(max_pending=None) as pool:
        first = pool.submit_nowait(noop)
        prefix = first.job_id[:16]
        chosen = pool.submit_nowait(noop, job_id=f"{prefix}{5:016x}")
        generated = [pool.submit_nowait(noop) for _ in range(10)]
        ids = [first.job_id, chosen.job_id, *(h.job_id for h in generated)]
        assert len(set(ids)) == len(ids)
        assert pool.get(chosen.job_id) is chosen
        # ids of other forms that merely look alike are plain ids
        upper = pool.submit_nowait(noop, job_id=f"{prefix}{6:016X}".upper())
        assert pool.get(upper.job_id) is upper


@pytest.mark.anyio
async def test_result_does_not_grow_the_traceback() -> None:
    async with open_job_pool() as pool:
        handle = await pool.submit(fail)
        await handle.wait()
        sizes = []
        for _ in range(50):
            try:
                await handle.result()
            except Boom as exc:
                sizes.append(len(traceback.extract_tb(exc.__traceback__)))
        assert len(set(sizes)) == 1
        cancelled = await pool.submit(sleep_forever)
        cancelled.cancel()
        for _ in range(3):
            with pytest.raises(JobCancelled) as info:
                await cancelled.result()
        assert len(traceback.extract_tb(info.value.__traceback__)) < 5


def test_zero_backoff_stays_zero() -> None:
    policy = RetryPolicy(max_attempts=5000, backoff=0.0, max_backoff=60.0, jitter=False)
    assert policy.delay(1) == 0.0
    assert policy.delay(1200) == 0.0


@pytest.mark.anyio
async def test_stop_from_a_task_a_finished_job_left_behind() -> None:
    async with anyio.create_task_group() as outside, open_job_pool() as pool:

        async def leaves_a_task() -> None:
            async def later() -> None:
                await anyio.sleep(0.01)
                await pool.stop()  # the job has ended: this is no longer "inside" it

            outside.start_soon(later)

        handle = await pool.submit(leaves_a_task)
        await handle.wait()
        await pool.join()


@pytest.mark.anyio
async def test_handle_fields_are_read_only_and_deadline_is_visible() -> None:
    seen: list[float | None] = []

    async def look() -> None:
        seen.append(current_job().deadline)
        await anyio.lowlevel.checkpoint()

    async with open_job_pool(job_timeout=30.0) as pool:
        handle = await pool.submit(look)
        with pytest.raises(AttributeError):
            handle.priority = 1  # type: ignore[misc]
        await handle.wait()
        assert handle.deadline is None  # not running any more
        endless = await pool.submit(look, timeout=math.inf)
        await endless.wait()
    assert seen[0] is not None
    assert handle.started_at is not None
    assert seen[1] is None


@pytest.mark.anyio
async def test_an_ended_job_lets_go_of_its_arguments() -> None:
    big = bytearray(1024)

    async def takes(data: bytearray) -> int:
        await anyio.lowlevel.checkpoint()
        return len(data)

    async with open_job_pool() as pool:
        handle = await pool.submit(takes, big)
        assert await handle.result() == 1024
        assert handle._args == ()


@pytest.mark.trio
async def test_deadline_on_the_pool_clock(autojump_clock: trio.abc.Clock) -> None:
    async def look() -> float | None:
        await trio.sleep(1)
        return current_job().deadline

    async with open_job_pool(job_timeout=10.0) as pool:
        await trio.sleep(5)
        handle = await pool.submit(look)
        assert await handle.result() == pytest.approx(15.0)
        await settle()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_a_job_cancelling_its_task_and_returning_at_once_harms_nothing() -> None:
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
