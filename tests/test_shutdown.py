"""join, close, stop, and leaving the block normally or by an exception."""

from __future__ import annotations

import anyio
import outcome
import pytest
import trio
import trio.testing

from trio_jobpool import JobCancelled, JobStatus, PoolClosed, open_job_pool

from ._helpers import Gate, invariant_holds, noop, settle, sleep_forever

pytestmark = pytest.mark.anyio


async def test_join_waits_for_every_job() -> None:
    gate = Gate()
    async with open_job_pool(max_workers=2) as pool:
        handles = [await pool.submit(gate.job, i) for i in range(5)]
        joined = anyio.Event()

        async def joiner() -> None:
            await pool.join()
            joined.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(joiner)
            await settle()
            assert not joined.is_set()
            gate.open()
        assert all(h.status is JobStatus.COMPLETED for h in handles)
        await pool.join()  # nothing live: returns at once


async def test_leaving_the_block_drains_waiting_jobs() -> None:
    gate = Gate()
    async with open_job_pool(max_workers=1) as pool:
        handles = [await pool.submit(gate.job, i) for i in range(5)]
        gate.open()
    assert [h.status for h in handles] == [JobStatus.COMPLETED] * 5
    with pytest.raises(PoolClosed):
        pool.submit_nowait(noop)


async def test_stop_without_drain_cancels_everything_now() -> None:
    async with open_job_pool(max_workers=1) as pool:
        running = await pool.submit(sleep_forever)
        waiting = await pool.submit(sleep_forever)
        await settle()
        await pool.stop(drain=False)
        assert running.status is JobStatus.CANCELLED
        assert waiting.status is JobStatus.CANCELLED
        assert isinstance(running.error, JobCancelled)
        assert "shutdown" in str(running.error)
        stats = pool.stats()
        assert stats.total_cancelled == 2
        assert stats.active_workers == 0
        assert invariant_holds(stats)
        with pytest.raises(PoolClosed):
            await pool.submit(noop)
        await pool.stop()  # again: fine


async def test_close_then_join_finishes_accepted_jobs() -> None:
    gate = Gate()
    async with open_job_pool(max_workers=1) as pool:
        handles = [await pool.submit(gate.job, i) for i in range(3)]
        pool.close()
        gate.open()
        await pool.join()
        assert all(h.status is JobStatus.COMPLETED for h in handles)


async def test_stop_from_inside_a_job_is_refused() -> None:
    async with open_job_pool() as pool:

        async def self_stopper() -> None:
            await pool.stop()

        handle = await pool.submit(self_stopper)
        await handle.wait()
        assert isinstance(handle.error, RuntimeError)
        assert "would wait for itself" in str(handle.error)


async def test_error_in_the_block_cancels_jobs_and_propagates_unwrapped() -> None:
    class Oops(Exception):
        pass

    with pytest.raises(Oops) as info:  # noqa: PT012 - the block is the subject
        async with open_job_pool(max_workers=1) as pool:
            running = await pool.submit(sleep_forever)
            waiting = await pool.submit(sleep_forever)
            await settle()
            raise Oops("in the block")
    assert type(info.value) is Oops  # the exception itself, no ExceptionGroup
    assert running.status is JobStatus.CANCELLED
    assert waiting.status is JobStatus.CANCELLED
    assert invariant_holds(pool.stats())


class MyGroup(ExceptionGroup[ValueError]):
    pass


async def test_an_exception_group_from_the_block_is_re_raised_itself() -> None:
    """An exception group raised in the block (with jobs running) leaves the block as the very
    object raised, not wrapped in another group nor unwrapped to its members."""
    raised = MyGroup("mine", [ValueError("inner")])
    with pytest.raises(MyGroup) as info:  # noqa: PT012 - the block is the subject
        async with open_job_pool() as pool:
            await pool.submit(sleep_forever)
            raise raised
    assert info.value is raised


async def test_stop_from_a_task_a_finished_job_left_behind() -> None:
    """A task that a job started in an outside task group and that calls ``stop()`` after the
    job ended is not "inside" the job: the stop goes ahead instead of being refused."""
    async with anyio.create_task_group() as outside, open_job_pool() as pool:

        async def leaves_a_task() -> None:
            async def later() -> None:
                await anyio.sleep(0.01)
                await pool.stop()  # the job has ended: this is no longer "inside" it

            outside.start_soon(later)

        handle = await pool.submit(leaves_a_task)
        await handle.wait()
        await pool.join()


async def test_outer_cancellation_cancels_every_job() -> None:
    with anyio.CancelScope() as scope:
        async with open_job_pool(max_workers=2) as pool:
            handles = [await pool.submit(sleep_forever) for _ in range(4)]
            await settle()
            scope.cancel()
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert [h.status for h in handles] == [JobStatus.CANCELLED] * 4
    assert pool.stats().active_workers == 0


async def test_waiters_outside_the_pool_are_woken_when_it_fails() -> None:
    results: list[object] = []
    pool_failed = anyio.Event()
    submitted = anyio.Event()
    handles = []

    async def run_pool() -> None:
        try:
            async with open_job_pool(max_workers=1) as pool:
                handles.append(await pool.submit(sleep_forever))
                handles.append(await pool.submit(sleep_forever))
                submitted.set()
                await settle()
                raise RuntimeError("pool owner failed")
        except RuntimeError:
            pool_failed.set()

    async def waiter(index: int) -> None:
        await submitted.wait()
        ended = await handles[index].wait()
        assert isinstance(ended, outcome.Error)
        results.append(type(ended.error))

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_pool)
        tg.start_soon(waiter, 0)
        tg.start_soon(waiter, 1)
    assert pool_failed.is_set()
    assert results == [JobCancelled, JobCancelled]


@pytest.mark.trio
async def test_drain_stops_at_the_shutdown_timeout(autojump_clock: trio.abc.Clock) -> None:
    async def takes(seconds: float) -> None:
        await trio.sleep(seconds)

    start = trio.current_time()
    async with open_job_pool(max_workers=2, shutdown_timeout=10.0) as pool:
        quick = await pool.submit(takes, 5.0)
        slow = await pool.submit(takes, 50.0)
    assert trio.current_time() - start == pytest.approx(10.0)
    assert quick.status is JobStatus.COMPLETED
    assert slow.status is JobStatus.CANCELLED


@pytest.mark.trio
async def test_stop_timeout_argument(autojump_clock: trio.abc.Clock) -> None:
    async with open_job_pool(shutdown_timeout=1000.0) as pool:
        slow = await pool.submit(trio.sleep, 50.0)
        start = trio.current_time()
        await pool.stop(timeout=3.0)
        assert trio.current_time() - start == pytest.approx(3.0)
        assert slow.status is JobStatus.CANCELLED


@pytest.mark.trio
async def test_stop_without_drain_cuts_a_draining_stop_short(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_job_pool(shutdown_timeout=None) as pool:
        slow = await pool.submit(trio.sleep, 50.0)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pool.stop)
            await trio.sleep(1.0)
            await pool.stop(drain=False)
        assert slow.status is JobStatus.CANCELLED
        assert trio.current_time() == pytest.approx(1.0)


@pytest.mark.trio
async def test_cancelling_stop_cancels_the_jobs(autojump_clock: trio.abc.Clock) -> None:
    async with open_job_pool(shutdown_timeout=None) as pool:
        slow = await pool.submit(trio.sleep, 50.0)
        with trio.move_on_after(2.0):
            await pool.stop()
        await slow.wait()  # its scope was cancelled when stop() was; it unwinds at once
        assert slow.status is JobStatus.CANCELLED
        assert trio.current_time() == pytest.approx(2.0)
