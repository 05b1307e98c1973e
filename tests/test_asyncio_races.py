"""asyncio only: a hand-off and a plain ``task.cancel()`` arriving in the same loop iteration."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from trio_jobpool import JobStatus, open_job_pool

from ._helpers import Gate


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.anyio
async def test_acceptance_wins_over_a_simultaneous_task_cancel() -> None:
    gate = Gate()
    outcome: dict[str, object] = {}
    async with open_job_pool(max_workers=1, queue_size=1) as pool:
        await pool.submit(gate.job, "running")
        queued = await pool.submit(gate.job, "queued")

        async def blocked_submitter() -> None:
            handle = await pool.submit(gate.job, "late", job_id="late")
            outcome["handle"] = handle  # accepted: submit returned it
            try:
                await asyncio.sleep(0)
            except asyncio.CancelledError:
                outcome["cancelled_after"] = True
                raise

        task = asyncio.get_running_loop().create_task(blocked_submitter())
        await anyio.wait_all_tasks_blocked()
        pool.cancel(queued.job_id)  # frees room: "late" is accepted, its submitter woken...
        task.cancel()  # ...and cancelled in the same instant
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pool.get("late").status is JobStatus.QUEUED
        assert outcome["handle"] is pool.get("late")
        assert outcome["cancelled_after"] is True
        assert task.cancelling() == 1
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
