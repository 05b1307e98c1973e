"""Stats: exact counters, the invariant, averages and percentiles, bounded history."""

from __future__ import annotations

import gc
import tracemalloc

import anyio
import pytest
import trio
import trio.testing

from trio_jobpool import JobNotFound, RetryPolicy, open_job_pool

from ._helpers import Gate, fail, invariant_holds, noop, settle, sleep_forever


async def takes(seconds: float) -> None:
    """A job that runs ``seconds`` of the (virtual) clock."""
    await trio.sleep(seconds)


pytestmark = pytest.mark.anyio


async def test_counters_follow_every_kind_of_end() -> None:
    gate = Gate()
    async with open_job_pool(max_workers=2, max_pending=None) as pool:
        stats = pool.stats()
        assert stats.total_submitted == 0
        assert stats.max_workers == 2
        assert stats.average_exec_time == 0.0
        assert stats.exec_time_p99 == 0.0
        done = [await pool.submit(noop) for _ in range(3)]
        failed = await pool.submit(fail)
        timed = await pool.submit(sleep_forever, timeout=0.001)
        for handle in [*done, failed, timed]:
            await handle.wait()
        running = [await pool.submit(gate.job) for _ in range(2)]
        queued = await pool.submit(gate.job)
        cancelled = await pool.submit(gate.job)
        cancelled.cancel()
        retrying = await pool.submit(fail, retry=RetryPolicy(max_attempts=2, backoff=3600))
        await settle()
        stats = pool.stats()
        assert stats.total_submitted == 10
        assert stats.total_completed == 3
        assert stats.total_failed == 1
        assert stats.total_timed_out == 1
        assert stats.total_cancelled == 1
        assert stats.active_workers == 2
        assert stats.queued_tasks == 2  # one waiting, one retrying
        assert stats.total_retried == 0  # the retrying job has not started its first attempt yet
        assert invariant_holds(stats)
        gate.open()
        for handle in [*running, queued]:
            await handle.wait()
        await settle()
        assert retrying.status == "retrying"
        stats = pool.stats()
        assert stats.total_retried == 1
        assert invariant_holds(stats)
        retrying.cancel()
    stats = pool.stats()
    assert invariant_holds(stats)
    assert stats.queued_tasks == 0
    assert stats.active_workers == 0
    assert stats.as_dict()["total_cancelled"] == 2


@pytest.mark.trio
async def test_averages_and_percentiles_are_exact(autojump_clock: trio.abc.Clock) -> None:
    async with open_job_pool(max_workers=1, max_pending=None) as pool:
        for seconds in range(1, 101):  # 1 s … 100 s, one after another
            pool.submit_nowait(takes, float(seconds))
        await pool.join()
        stats = pool.stats()
    assert stats.average_exec_time == pytest.approx(50.5)
    # job k waited for jobs 1..k-1: sum over k of (k-1)k/2 seconds, averaged
    assert stats.average_wait_time == pytest.approx(
        sum(k * (k - 1) / 2 for k in range(1, 101)) / 100
    )
    assert stats.exec_time_p50 == pytest.approx(50.0)
    assert stats.exec_time_p95 == pytest.approx(95.0)
    assert stats.exec_time_p99 == pytest.approx(99.0)


@pytest.mark.trio
async def test_percentiles_cover_a_recent_window(autojump_clock: trio.abc.Clock) -> None:
    async with open_job_pool(max_workers=4, max_pending=None) as pool:
        for _ in range(2000):
            pool.submit_nowait(takes, 100.0)
        await pool.join()
        for _ in range(1100):
            pool.submit_nowait(takes, 1.0)
        await pool.join()
        stats = pool.stats()
    assert stats.exec_time_p99 == pytest.approx(1.0)  # the slow jobs left the window
    assert stats.average_exec_time == pytest.approx((2000 * 100 + 1100) / 3100)


async def test_history_is_bounded() -> None:
    async with open_job_pool(max_workers=1, history=50, max_pending=None) as pool:
        handles = [pool.submit_nowait(noop) for _ in range(500)]
        await pool.join()
        for old in handles[:450]:
            with pytest.raises(JobNotFound):
                pool.get(old.job_id)
        for recent in handles[450:]:
            assert pool.get(recent.job_id) is recent


async def test_no_history() -> None:
    async with open_job_pool(history=0) as pool:
        handle = await pool.submit(noop)
        assert pool.get(handle.job_id) is handle  # live
        await handle.wait()
        with pytest.raises(JobNotFound):
            pool.get(handle.job_id)


async def test_stats_is_a_snapshot() -> None:
    async with open_job_pool() as pool:
        before = pool.stats()
        await (await pool.submit(noop)).wait()
        assert before.total_submitted == 0
        assert pool.stats().total_submitted == 1
        assert "open" in repr(pool)
    assert "stopped" in repr(pool)


async def test_memory_per_job_stays_flat() -> None:
    """Ended jobs beyond ``history`` are released: the pool keeps exactly the last ``history``
    jobs to end, and 16,000 more jobs leave its memory (as tracemalloc counts it)
    where 2,000 left it. A job kept beyond the history would hold a few hundred bytes."""
    async with open_job_pool(max_workers=8, history=100) as pool:

        async def run(first: int, last: int) -> None:
            for i in range(first, last):
                await pool.submit(noop, job_id=f"job-{i}")
            await pool.join()

        await run(0, 2_000)  # the history is full, every structure at its working size
        gc.collect()
        tracemalloc.start()
        try:
            await run(2_000, 4_000)
            gc.collect()
            before = tracemalloc.get_traced_memory()[0]
            await run(4_000, 20_000)
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        assert after - before < 16_000 * 16  # under 16 bytes per job: noise, not jobs
        stats = pool.stats()
        assert (stats.queued_tasks, stats.active_workers, stats.total_completed) == (0, 0, 20_000)
        kept = []
        for i in range(20_000):
            try:
                pool.get(f"job-{i}")
            except JobNotFound:
                continue
            kept.append(i)
        # exactly `history` of them, the last to end: eight workers may end the last few jobs
        # out of their submission order, never by hundreds
        assert len(kept) == 100
        assert min(kept) >= 20_000 - 200


@pytest.mark.trio
async def test_percentiles_cover_exactly_the_last_1024_attempts(
    autojump_clock: trio.abc.Clock,
) -> None:
    """The percentiles' window is the last 1,024 attempts that ended (docs/api.md): after
    1,100 attempts of 1000 s, 1,013 of 1 s leave 11 slow ones in the window and p99 (nearest
    rank 1014 of 1024) is slow; one more fast attempt makes it fast. A window of 1,023 would
    read fast after 1,013, one of 1,025 slow after 1,014."""

    async with open_job_pool(max_workers=64, max_pending=None) as pool:
        for _ in range(1_100):
            pool.submit_nowait(takes, 1000.0)
        await pool.join()
        for _ in range(1_013):
            pool.submit_nowait(takes, 1.0)
        await pool.join()
        assert pool.stats().exec_time_p99 == pytest.approx(1000.0)
        assert pool.stats().exec_time_p95 == pytest.approx(1.0)
        pool.submit_nowait(takes, 1.0)
        await pool.join()
        assert pool.stats().exec_time_p99 == pytest.approx(1.0)


async def test_invariant_holds_between_every_step_of_a_busy_pool() -> None:
    async def short(i: int) -> None:
        for _ in range(i % 4):
            await anyio.lowlevel.checkpoint()
        if i % 7 == 0:
            raise ValueError(i)

    async with open_job_pool(max_workers=3, queue_size=4) as pool:
        for i in range(300):
            await pool.submit(short, i, priority=i % 3)
            assert invariant_holds(pool.stats())
            if i % 50 == 0:
                pool.resize(1 + i % 5)
        await pool.join()
        stats = pool.stats()
        assert invariant_holds(stats)
        assert stats.total_failed == len(range(0, 300, 7))


async def test_history_with_reused_ids() -> None:
    async with open_job_pool(max_workers=1, history=3) as pool:

        async def run(job_id: str) -> object:
            handle = await pool.submit(noop, job_id=job_id)
            await handle.wait()
            return handle

        await run("x")
        second = await run("x")
        assert pool.get("x") is second
        await run("a")
        await run("b")  # the first "x" leaves the history; the second stays findable
        assert pool.get("x") is second
        await run("c")
        with pytest.raises(JobNotFound):
            pool.get("x")
        assert pool.get("a").job_id == "a"
