"""The checkpoint claims of ``submit`` and ``submit_nowait`` (their docstrings, docs/design.md
"submit is a schedule point at least every 0.5 ms"), pinned with Trio's checkpoint counters.

Trio only: ``trio.testing.assert_checkpoints`` and ``assert_no_checkpoints`` read Trio's own
count of a task's cancel and schedule points; asyncio keeps none. Each test runs on an
in-memory pool and on a SQLite pool (a file of the test's own).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from tests.durable_app import board, hold, note, registry
from trio_jobpool import JobHandle, JobNotFound, open_job_pool


def let_the_interval_pass() -> None:
    """Block for 1 ms, twice the 0.5 ms after which a submit yields, without yielding.

    The pacing of submits that do not wait reads ``time.perf_counter()``, not the event loop's
    clock, so a MockClock cannot make a yield due; real time passing without a yield can.
    """
    time.sleep(0.001)


@pytest.fixture(params=["memory", "sqlite"])
def pool_kwargs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The keyword arguments of ``open_job_pool`` for each store, and a clean job board."""
    board.reset()
    if request.param == "memory":
        yield {"registry": registry}
    else:
        yield {"store": f"sqlite:///{tmp_path / 'jobs.db'}", "registry": registry}
    board.reset()


@pytest.mark.trio
async def test_submit_nowait_never_checkpoints(pool_kwargs: dict[str, Any]) -> None:
    """Trio: ``submit_nowait`` neither yields nor is a cancel point: not when the pool is idle,
    not long after the last yield, not when it refuses the job (QueueFull), not in a cancelled
    scope (where it accepts the job). It returns the handle itself, not an awaitable."""
    async with open_job_pool(1, 1, max_pending=0, **pool_kwargs) as pool:
        with trio.testing.assert_no_checkpoints():
            handle = pool.submit_nowait(hold, "running")
        assert isinstance(handle, JobHandle)  # the handle itself, no awaitable
        await board.wait_started("running")
        let_the_interval_pass()
        with trio.testing.assert_no_checkpoints():
            pool.submit_nowait(note, "waiting")
        with trio.testing.assert_no_checkpoints(), pytest.raises(Exception, match="cannot accept"):
            pool.submit_nowait(note, "refused")
        board.open()
        await pool.join()
        with trio.CancelScope() as scope:  # noqa: ASYNC100 - the subject has no checkpoint
            scope.cancel()
            with trio.testing.assert_no_checkpoints():
                accepted = pool.submit_nowait(note, "in a cancelled scope")
        assert await accepted.result() == "in a cancelled scope"
    assert board.started == ["running", "waiting", "in a cancelled scope"]


@pytest.mark.trio
async def test_a_submit_that_waits_for_room_is_a_full_checkpoint(
    pool_kwargs: dict[str, Any],
) -> None:
    """Trio: a ``submit`` that has to wait for room is a cancel point and a schedule point."""
    async with open_job_pool(1, 1, max_pending=0, **pool_kwargs) as pool:
        await pool.submit(hold, "running")
        await board.wait_started("running")
        await pool.submit(note, "queued")  # the pool is full now
        accepted = []

        async def submit_waiting() -> None:
            with trio.testing.assert_checkpoints():
                accepted.append(await pool.submit(note, "waited"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(submit_waiting)
            await trio.testing.wait_all_tasks_blocked()
            assert accepted == []  # it waits for room
            board.open()
        assert await accepted[0].result() == "waited"
    assert board.started == ["running", "queued", "waited"]


@pytest.mark.trio
async def test_a_submit_long_after_the_last_yield_is_a_full_checkpoint(
    pool_kwargs: dict[str, Any],
) -> None:
    """Trio: a ``submit`` that has room, made more than 0.5 ms after the last submit to the pool
    yielded, is a cancel point and a schedule point: a submit loop never starves other
    tasks. (The first submit of a pool has never yielded before: due as well.)"""
    async with open_job_pool(1, 100, **pool_kwargs) as pool:
        with trio.testing.assert_checkpoints():
            await pool.submit(hold, "first")
        for i in range(3):
            let_the_interval_pass()
            with trio.testing.assert_checkpoints():
                await pool.submit(note, f"later-{i}")
        board.open()
        await pool.join()
    assert board.started == ["first", "later-0", "later-1", "later-2"]


@pytest.mark.trio
async def test_a_submit_in_a_cancelled_scope_raises_cancelled_and_accepts_nothing(
    pool_kwargs: dict[str, Any],
) -> None:
    """Trio: a ``submit`` in a cancelled scope raises ``trio.Cancelled`` (whether or not it would
    have waited for room, and whether or not a yield was due), and the pool accepts nothing:
    its stats are unchanged and no job has the id."""
    async with open_job_pool(1, 1, max_pending=0, **pool_kwargs) as pool:
        for job_id in ["has-room", "would-yield"]:
            before = pool.stats()
            if job_id == "would-yield":
                let_the_interval_pass()
            with trio.CancelScope() as scope:
                scope.cancel()
                with pytest.raises(trio.Cancelled):
                    await pool.submit(note, job_id, job_id=job_id)
            assert pool.stats() == before
            with pytest.raises(JobNotFound):
                pool.get(job_id)
        await pool.submit(hold, "running")
        await board.wait_started("running")
        await pool.submit(note, "waiting")  # the pool is full now
        before = pool.stats()
        with trio.CancelScope() as scope:
            scope.cancel()
            with pytest.raises(trio.Cancelled):
                await pool.submit(note, "no-room", job_id="no-room")
        assert pool.stats() == before
        with pytest.raises(JobNotFound):
            pool.get("no-room")
        board.open()
        await pool.join()
    assert board.started == ["running", "waiting"]
