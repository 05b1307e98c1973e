"""The pool never starves the rest of the program, even with jobs that never checkpoint."""

from __future__ import annotations

import anyio
import pytest

from trio_jobpool import open_job_pool

pytestmark = pytest.mark.anyio


async def never_checkpoints(i: int) -> int:
    return i


class Ticker:
    """A task that counts how often it gets to run."""

    def __init__(self) -> None:
        self.ticks = 0

    async def run(self) -> None:
        while True:
            self.ticks += 1
            await anyio.lowlevel.checkpoint()


async def test_workers_yield_between_jobs_that_never_checkpoint() -> None:
    ticker = Ticker()
    async with anyio.create_task_group() as tg:
        async with open_job_pool(max_workers=1, max_pending=None) as pool:
            for i in range(2000):
                pool.submit_nowait(never_checkpoints, i)
            tg.start_soon(ticker.run)
            await pool.join()
        # 2000 jobs ran back to back in one worker, which yielded every 64 of them
        assert ticker.ticks >= 2000 // 64 - 1
        tg.cancel_scope.cancel()


async def test_a_submit_loop_lets_other_tasks_run() -> None:
    ticker = Ticker()
    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker.run)
        async with open_job_pool(max_workers=2, max_pending=None) as pool:
            before = ticker.ticks
            for i in range(20_000):  # well over 0.5 ms of submitting
                await pool.submit(never_checkpoints, i)
            assert ticker.ticks > before
        tg.cancel_scope.cancel()
