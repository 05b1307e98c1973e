"""Jobs that wait on jobs of their own pool: a wait that no worker could ever end raises
``RuntimeError`` instead of hanging; the waits that other workers can end go on."""

from __future__ import annotations

import anyio
import pytest
from outcome import Error, Value

from trio_jobpool import JobPool, JobStatus, current_job, open_job_pool

from ._helpers import Gate, invariant_holds, noop

pytestmark = pytest.mark.anyio


async def child(value: int) -> int:
    await anyio.lowlevel.checkpoint()
    return value * 2


async def parent(pool: JobPool, value: int) -> int:
    """Submit ``child(value)`` to ``pool`` (the pool running this job) and await its result."""
    handle = await pool.submit(child, value)
    return await handle.result()


async def test_a_job_awaiting_its_child_in_a_pool_of_one_worker_raises() -> None:
    async with open_job_pool(max_workers=1) as pool:
        handle = await pool.submit(parent, pool, 21, job_id="parent")
        outcome = await handle.wait()
        await pool.join()
        stats = pool.stats()
    assert handle.status is JobStatus.FAILED
    error = handle.error
    assert isinstance(error, RuntimeError)
    message = str(error)
    assert "job 'parent' would wait forever for job " in message
    assert "max_workers=1" in message
    assert "separate pool" in message
    with pytest.raises(RuntimeError):
        outcome.unwrap()
    # The child was accepted and ran once the parent's worker was free.
    assert (stats.total_submitted, stats.total_completed, stats.total_failed) == (2, 1, 1)
    assert invariant_holds(stats)


async def test_a_job_awaiting_its_child_runs_it_on_another_worker() -> None:
    async with open_job_pool(max_workers=2) as pool:
        handle = await pool.submit(parent, pool, 21)
        assert await handle.result() == 42


async def test_the_last_job_to_wait_raises_and_the_others_go_on() -> None:
    gate = Gate()

    async def waits_on_child(name: str) -> str:
        kid = await pool.submit(gate.job, f"{name}-child")
        await gate.job(name)  # both parents run before either waits
        return str(await kid.result())

    async with open_job_pool(max_workers=2) as pool:
        parents = [pool.submit_nowait(waits_on_child, name) for name in ("first", "second")]
        await anyio.wait_all_tasks_blocked()
        # Both workers run a parent; both children wait in the queue.
        assert sorted(gate.started) == ["first", "second"]
        gate.open()
        # The first parent to wait does so while the other still runs: fine. The other then
        # waits too, and every worker would wait: it raises, and its worker runs the children.
        outcomes = [await handle.wait() for handle in parents]
    errors = [o.error for o in outcomes if isinstance(o, Error)]
    values = [o.value for o in outcomes if isinstance(o, Value)]
    assert len(errors) == 1
    assert isinstance(errors[0], RuntimeError)
    assert "would wait forever" in str(errors[0])
    assert values in (["first-child"], ["second-child"])


async def test_a_submit_from_a_job_into_its_own_full_pool_raises() -> None:
    async def floods() -> None:
        await pool.submit(noop)  # fills the queue (queue_size=1)
        await pool.submit(noop)  # no room, and no worker would ever make room

    async with open_job_pool(max_workers=1, queue_size=1) as pool:
        handle = await pool.submit(floods, job_id="flood")
        await handle.wait()
        await pool.join()
        stats = pool.stats()
    assert isinstance(handle.error, RuntimeError)
    assert "job 'flood' would wait forever for room in the pool" in str(handle.error)
    assert (stats.total_submitted, stats.total_completed, stats.total_failed) == (2, 1, 1)


async def test_a_submit_from_a_job_waits_for_room_another_worker_makes() -> None:
    gate = Gate()

    async def submits_two() -> str:
        await pool.submit(noop)
        await pool.submit(noop)  # waits until the other worker's job ends
        return "both accepted"

    async with open_job_pool(max_workers=2, queue_size=1) as pool:
        await pool.submit(gate.job, "other")
        handle = await pool.submit(submits_two)
        await anyio.wait_all_tasks_blocked()
        assert handle.status is JobStatus.RUNNING
        gate.open()
        assert await handle.result() == "both accepted"


async def test_a_task_the_job_started_may_wait_on_the_pool() -> None:
    """Only the job's own task counts as the job waiting: a task it starts may wait while
    the job goes on (here the job ends, its worker is free, and the child runs)."""
    results: list[int] = []

    async def spawns_a_waiter() -> None:
        kid = await pool.submit(child, 5)

        async def collect() -> None:
            results.append(await kid.result())

        async with anyio.create_task_group() as tg:
            tg.start_soon(collect)
            await anyio.wait_all_tasks_blocked()
            assert results == []
            pool.resize(2)  # the job itself frees the way: the child runs on a new worker

    async with open_job_pool(max_workers=1) as pool:
        await (await pool.submit(spawns_a_waiter)).result()
    assert results == [10]


async def test_a_job_waiting_for_itself_raises() -> None:
    async def waits_for_itself() -> None:
        await current_job().wait()

    async with open_job_pool(max_workers=4) as pool:
        handle = await pool.submit(waits_for_itself, job_id="narcissus")
        with pytest.raises(RuntimeError, match="'narcissus' waits for itself"):
            await handle.result()
