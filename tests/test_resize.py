"""Live resizing: grow at once, shrink without cancelling anything."""

from __future__ import annotations

import anyio
import pytest

from trio_jobpool import PoolClosed, open_job_pool

from ._helpers import Gate, settle

pytestmark = pytest.mark.anyio


class Concurrency:
    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self.release = anyio.Event()

    async def job(self) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)
        try:
            await self.release.wait()
        finally:
            self.now -= 1


async def test_grow_starts_workers_at_once() -> None:
    c = Concurrency()
    async with open_job_pool(max_workers=2, max_pending=None) as pool:
        for _ in range(10):
            pool.submit_nowait(c.job)
        await settle()
        assert c.now == 2
        pool.resize(5)
        assert pool.max_workers == 5
        await settle()
        assert c.now == 5
        assert pool.stats().active_workers == 5
        assert pool.stats().max_workers == 5
        c.release.set()


async def test_shrink_never_cancels_and_then_caps_concurrency() -> None:
    c = Concurrency()
    async with open_job_pool(max_workers=4, max_pending=None) as pool:
        handles = [pool.submit_nowait(c.job) for _ in range(12)]
        await settle()
        assert c.now == 4
        pool.resize(2)
        await settle()
        assert c.now == 4  # running jobs are not cancelled
        c.peak = 0
        c.release.set()
        await pool.join()
    assert all(h.status == "completed" for h in handles)


async def test_shrink_then_at_most_n_run_at_once() -> None:
    gate = Gate()
    c = Concurrency()
    async with open_job_pool(max_workers=4, max_pending=None) as pool:
        blockers = [await pool.submit(gate.job, i) for i in range(4)]
        for _ in range(20):
            pool.submit_nowait(c.job)
        pool.resize(2)
        gate.open()
        for blocker in blockers:
            await blocker.wait()
        await settle()
        assert c.now == 2
        assert c.peak == 2
        c.release.set()


async def test_shrink_idle_workers_then_grow_again() -> None:
    c = Concurrency()
    async with open_job_pool(max_workers=6) as pool:
        await settle()
        pool.resize(1)
        pool.resize(3)
        for _ in range(10):
            await pool.submit(c.job)
        await settle()
        assert c.now == 3
        c.release.set()


async def test_resize_arguments() -> None:
    async with open_job_pool() as pool:
        with pytest.raises(ValueError, match="max_workers must be >= 1"):
            pool.resize(0)
        with pytest.raises(TypeError):
            pool.resize(2.5)  # type: ignore[arg-type]
    with pytest.raises(PoolClosed):
        pool.resize(3)
