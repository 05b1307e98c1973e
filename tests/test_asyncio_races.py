"""asyncio only: a hand-off and a plain ``task.cancel()`` arriving in the same loop iteration."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from trio_jobpool import open_job_pool

from ._helpers import Gate, invariant_holds


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_a_task_cancel_in_the_instant_of_acceptance_takes_the_job_back() -> None:
    """asyncio.wait_for, asyncio.timeout and TaskGroup cancel with a plain task.cancel(): if
    that lands in the same loop iteration as the acceptance, the cancellation wins and the job
    is taken back, so that 'submit was cancelled' still means 'the job was not accepted'."""
    gate = Gate()
    ran: list[str] = []

    async def record(name: str) -> None:
        ran.append(name)
        await gate.opened.wait()

    async with open_job_pool(max_workers=1, queue_size=1) as pool:
        await pool.submit(gate.job, "running")
        queued = await pool.submit(gate.job, "queued")

        async def blocked_submitter() -> None:
            await pool.submit(record, "late", job_id="late")

        task = asyncio.get_running_loop().create_task(blocked_submitter())
        await anyio.wait_all_tasks_blocked()
        pool.cancel(queued.job_id)  # frees room: "late" is accepted, its submitter woken...
        task.cancel()  # ...and cancelled in the same instant
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(LookupError):
            pool.get("late")
        stats = pool.stats()
        assert stats.total_submitted == 2
        assert stats.queued_tasks == 0
        assert invariant_holds(stats)
        gate.open()
        await pool.join()
    assert ran == []


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_asyncio_timeout_sees_the_cancellation_it_caused() -> None:
    gate = Gate()
    async with open_job_pool(max_workers=1, queue_size=1) as pool:
        await pool.submit(gate.job, "running")
        queued = await pool.submit(gate.job, "queued")
        outcome: list[str] = []

        async def submitter() -> None:
            try:
                async with asyncio.timeout(None) as timeout:
                    timeouts.append(timeout)
                    await pool.submit(gate.job, "late")
            except TimeoutError:
                outcome.append("timed out")

        timeouts: list[asyncio.Timeout] = []
        task = asyncio.get_running_loop().create_task(submitter())
        await anyio.wait_all_tasks_blocked()
        # The timeout expires (its callback runs first in the next iteration) and, before
        # that, room frees: the submitter is handed the acceptance and cancelled together.
        timeouts[0].reschedule(asyncio.get_running_loop().time() - 1)
        pool.cancel(queued.job_id)
        await task
        assert outcome == ["timed out"]
        assert pool.stats().total_submitted == 2
        gate.open()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_a_task_cancel_before_acceptance_accepts_nothing() -> None:
    gate = Gate()
    async with open_job_pool(max_workers=1, queue_size=0) as pool:
        await pool.submit(gate.job, "running")

        async def blocked_submitter() -> None:
            await pool.submit(gate.job, "never", job_id="never")

        task = asyncio.get_running_loop().create_task(blocked_submitter())
        await anyio.wait_all_tasks_blocked()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gate.open()
        await pool.join()
        with pytest.raises(LookupError):
            pool.get("never")
        assert pool.stats().total_submitted == 1
