"""Later jobs on a pool in memory: ``delay=``/``at=``, the scheduled state, ``Defer``.

Everything with time in it runs in virtual time (``run_virtual``: Trio's ``MockClock`` or a
``looptime`` asyncio loop), so due times are met exactly and nothing sleeps for real.
"""

from __future__ import annotations

import datetime
import math
import random
from collections.abc import Awaitable, Callable
from typing import Any, cast

import anyio
import pytest

from trio_jobpool import (
    Defer,
    DuplicateJob,
    JobCancelled,
    JobNotFound,
    JobStatus,
    PoolClosed,
    RetryPolicy,
    current_job,
    open_job_pool,
)
from trio_jobpool import JobPool as Pool
from trio_jobpool._due_jobs import DueJobs
from trio_jobpool._job import JobHandle, JobOwner

from ._helpers import Boom, Gate, invariant_holds, run_virtual, settle

BACKENDS = ["trio", "asyncio"]


def now() -> float:
    return anyio.current_time()


class Log:
    """Jobs that record (name, virtual time) when they start."""

    def __init__(self) -> None:
        self.starts: list[tuple[str, float]] = []

    def job(self, name: str) -> Callable[[], Awaitable[str]]:
        async def run() -> str:
            self.starts.append((name, now()))
            await anyio.lowlevel.checkpoint()
            return name

        return run

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.starts]


def virtual(test: Callable[[], Awaitable[None]]) -> Callable[[str], None]:
    """Run an async test body in virtual time on each backend."""

    @pytest.mark.parametrize("backend", BACKENDS)
    def run(backend: str) -> None:
        run_virtual(backend, test)

    run.__name__ = test.__name__
    run.__doc__ = test.__doc__
    return run


@virtual
async def test_jobs_start_at_their_due_time_in_due_order() -> None:
    log = Log()
    async with open_job_pool(max_workers=2) as pool:
        late = await pool.submit(log.job("late"), delay=30)
        soon = pool.submit_nowait(log.job("soon"), delay=10)
        mid = pool.submit_nowait(log.job("mid"), delay=20.5)
        assert late.status is JobStatus.SCHEDULED
        assert late.scheduled_for == pytest.approx(soon.submitted_at + 30)
        assert soon.started_at is None
        stats = pool.stats()
        assert (stats.scheduled_tasks, stats.queued_tasks, stats.total_submitted) == (3, 0, 3)
        assert invariant_holds(stats)
        assert pool.get(mid.job_id) is mid
        assert await late.result() == "late"
        assert [h.status for h in (soon, mid, late)] == [JobStatus.COMPLETED] * 3
    assert log.starts == [("soon", 10.0), ("mid", 20.5), ("late", 30.0)]
    stats = pool.stats()
    assert (stats.scheduled_tasks, stats.total_completed) == (0, 3)
    assert stats.average_wait_time == 0.0  # each started at its due time


@virtual
async def test_at_is_a_due_time_on_the_pools_wall_clock() -> None:
    log = Log()
    async with open_job_pool() as pool:
        first = pool.submit_nowait(log.job("x"), delay=1)
        wall_now = first.submitted_at
        at = datetime.datetime.fromtimestamp(wall_now + 3600, tz=datetime.UTC)
        berlin = at.astimezone(datetime.timezone(datetime.timedelta(hours=2)))
        handle = await pool.submit(log.job("at"), at=berlin)
        assert handle.status is JobStatus.SCHEDULED
        assert handle.scheduled_for == pytest.approx(at.timestamp())
        await handle.result()
    assert log.starts[-1][0] == "at"
    assert log.starts[-1][1] == pytest.approx(3600, abs=1e-6)


@virtual
async def test_a_due_time_not_in_the_future_is_an_ordinary_submission() -> None:
    log = Log()
    async with open_job_pool(max_workers=1) as pool:
        zero = pool.submit_nowait(log.job("zero"), delay=0)
        wall = zero.submitted_at
        past = await pool.submit(
            log.job("past"), at=datetime.datetime.fromtimestamp(wall - 5, tz=datetime.UTC)
        )
        assert zero.scheduled_for is None
        assert past.scheduled_for is None
        assert zero.status is JobStatus.RUNNING
        assert past.status is JobStatus.QUEUED
        assert pool.stats().scheduled_tasks == 0
    assert log.starts == [("zero", 0.0), ("past", 0.0)]


@pytest.mark.anyio
async def test_bad_delay_and_at_are_refused_before_anything_is_accepted() -> None:
    async with open_job_pool() as pool:
        naive = datetime.datetime(2030, 1, 1, 12, 0)
        aware = naive.replace(tzinfo=datetime.UTC)
        cases: list[tuple[dict[str, Any], type[Exception], str]] = [
            ({"delay": -1}, ValueError, "delay"),
            ({"delay": math.nan}, ValueError, "delay"),
            ({"delay": math.inf}, ValueError, "delay"),
            ({"delay": True}, TypeError, "delay"),
            ({"delay": "5"}, TypeError, "delay"),
            ({"at": naive}, ValueError, "naive"),
            ({"at": "2030-01-01T00:00:00Z"}, TypeError, "at"),
            ({"at": 1893456000.0}, TypeError, "at"),
            ({"delay": 5, "at": aware}, ValueError, "not both"),
        ]
        for kwargs, error, words in cases:
            with pytest.raises(error, match=words):
                await pool.submit(anyio.sleep, 0, job_id="x", **kwargs)
            with pytest.raises(error, match=words):
                pool.submit_nowait(anyio.sleep, 0, job_id="x", **kwargs)
        assert pool.stats().total_submitted == 0
        with pytest.raises(JobNotFound):
            pool.get("x")


@virtual
async def test_a_scheduled_submit_never_waits_for_room_and_enters_beyond_the_bound() -> None:
    gate = Gate()
    log = Log()
    async with open_job_pool(max_workers=1, queue_size=1, max_pending=0) as pool:
        await pool.submit(gate.job)
        await pool.submit(log.job("waiting"))
        with anyio.fail_after(1):  # virtual: it must not wait at all
            scheduled = [await pool.submit(log.job(f"s{i}"), delay=5) for i in range(3)]
            scheduled.append(pool.submit_nowait(log.job("s3"), delay=5))
        assert pool.stats().scheduled_tasks == 4
        await anyio.sleep(6)
        stats = pool.stats()
        assert (stats.queued_tasks, stats.scheduled_tasks) == (5, 0)  # all beyond the bound
        assert invariant_holds(stats)
        gate.open()
        await pool.join()
    assert log.names == ["waiting", "s0", "s1", "s2", "s3"]


@virtual
async def test_due_jobs_take_their_priority_behind_the_jobs_already_waiting() -> None:
    gate = Gate()
    log = Log()
    async with open_job_pool(max_workers=1) as pool:
        await pool.submit(gate.job)
        pool.submit_nowait(log.job("A5"), priority=5)
        pool.submit_nowait(log.job("B1"), priority=1)
        # falling due together: ordered by priority, then by due time, then submit order
        pool.submit_nowait(log.job("C5"), priority=5, delay=10)
        pool.submit_nowait(log.job("D1-late"), priority=1, delay=10.5)
        pool.submit_nowait(log.job("E1"), priority=1, delay=10)
        pool.submit_nowait(log.job("F3"), priority=3, delay=10)
        pool.submit_nowait(log.job("G1"), priority=1, delay=10)
        await anyio.sleep(20)
        gate.open()
        await pool.join()
    assert log.names == ["B1", "E1", "G1", "D1-late", "F3", "A5", "C5"]


@virtual
async def test_wait_time_counts_from_the_due_time() -> None:
    gate = Gate()
    async with open_job_pool(max_workers=1) as pool:
        await pool.submit(gate.job)
        handle = pool.submit_nowait(anyio.lowlevel.checkpoint, delay=10)
        await anyio.sleep(15)
        gate.open()
        await handle.wait()
        assert handle.started_at == pytest.approx(handle.submitted_at + 15)
        # two waits: 0 for the gate's job, 5 for the scheduled one (due at 10, started at 15)
        assert pool.stats().average_wait_time == pytest.approx(2.5)
        lag = pool.histograms()["due_lag"]  # the scheduled one only
        assert lag.count == 1
        assert lag.total == pytest.approx(5.0)


@virtual
async def test_cancel_a_scheduled_job() -> None:
    log = Log()
    async with open_job_pool() as pool:
        by_id = pool.submit_nowait(log.job("by id"), job_id="a", delay=10)
        by_handle = pool.submit_nowait(log.job("by handle"), delay=10)
        kept = pool.submit_nowait(log.job("kept"), delay=10)
        with pytest.raises(DuplicateJob):
            pool.submit_nowait(log.job("again"), job_id="a")
        pool.cancel("a")
        by_handle.cancel()
        assert by_id.status is JobStatus.CANCELLED
        with pytest.raises(JobCancelled):
            await by_handle.result()
        with pytest.raises(JobNotFound):
            pool.cancel("a")
        stats = pool.stats()
        assert (stats.scheduled_tasks, stats.total_cancelled) == (1, 2)
        assert invariant_holds(stats)
        again = pool.submit_nowait(log.job("reused"), job_id="a", delay=5)  # an ended id
        await kept.wait()
        assert again.status is JobStatus.COMPLETED
    assert log.starts == [("reused", 5.0), ("kept", 10.0)]


@virtual
async def test_many_cancelled_scheduled_jobs_leave_the_rest_on_time() -> None:
    log = Log()
    async with open_job_pool(max_workers=1) as pool:
        handles = [pool.submit_nowait(log.job(str(i)), delay=1 + i % 97) for i in range(3000)]
        for handle in handles[:2500]:
            handle.cancel()
        assert pool.stats().scheduled_tasks == 500
        assert len(pool.scheduled_jobs()) == 500
        await anyio.sleep(100)
        assert pool.stats().total_completed == 500
    expected = sorted((1 + i % 97, i) for i in range(2500, 3000))
    assert [(when, int(name)) for name, when in log.starts] == expected


@virtual
async def test_a_burst_falling_due_together_starts_in_submit_order() -> None:
    # Every scheduled job is due at one instant: the timer takes them all in one pass
    # (DueJobs.pop_due sorts them instead of popping each); cancelled ones never start.
    log = Log()
    async with open_job_pool(max_workers=1) as pool:
        handles = [pool.submit_nowait(log.job(str(i)), delay=10) for i in range(300)]
        for handle in handles[::7]:
            handle.cancel()
        await anyio.sleep(11)
        assert pool.stats().scheduled_tasks == 0
        await pool.join()
        assert pool.histograms()["due_lag"].count == 300 - len(handles[::7])
    assert log.starts == [(str(i), 10.0) for i in range(300) if i % 7]


def test_due_jobs_pop_due_matches_a_sorted_reference() -> None:
    # pop_due against the order it promises (due time, then push order), with ties, dead
    # entries (cancelled: discard() was called) and due times that leave some entries or
    # none in the heap, so that both of its ways (a pop each, one sort of all) run.
    owner = cast("JobOwner", object())
    for seed in range(40):
        rng = random.Random(seed)
        due_jobs = DueJobs()
        jobs = []
        for i in range(rng.choice([1, 5, 64, 300])):
            job: JobHandle[Any] = JobHandle(owner, i, anyio.sleep, (), 5, math.inf, None)
            job._status = JobStatus.SCHEDULED
            due_jobs.push(job, float(rng.randrange(20)))
            jobs.append(job)
        for job in rng.sample(jobs, len(jobs) // 3):
            job._status = JobStatus.CANCELLED
            due_jobs.discard()

        def due(job: JobHandle[Any]) -> float:
            assert job._due_m is not None
            return job._due_m

        left = list(jobs)
        for now in [*sorted(rng.sample(range(-1, 21), 4)), 20]:
            expected = sorted(
                (j for j in left if due(j) <= now and j._status is JobStatus.SCHEDULED),
                key=lambda j: (due(j), j._seq),
            )
            assert due_jobs.pop_due(float(now)) == expected
            left = [j for j in left if due(j) > now]
            heap = due_jobs.heap
            assert sorted(heap, key=id) == sorted(left, key=id)
            assert all(not heap[i] < heap[(i - 1) // 2] for i in range(1, len(heap)))
        assert len(due_jobs) == 0
        assert due_jobs.earliest() == math.inf


@virtual
async def test_join_does_not_wait_for_scheduled_jobs_and_stop_cancels_them() -> None:
    log = Log()
    async with open_job_pool() as pool:
        pool.submit_nowait(log.job("soon"))
        later = pool.submit_nowait(log.job("later"), delay=3600)
        await pool.join()
        assert now() == 0.0
        assert pool.scheduled_jobs() == [later]
    assert now() == 0.0
    assert later.status is JobStatus.CANCELLED
    assert "shutdown" in str(later.error)
    assert log.names == ["soon"]
    stats = pool.stats()
    assert (stats.scheduled_tasks, stats.total_cancelled) == (0, 1)
    with pytest.raises(PoolClosed):
        pool.submit_nowait(log.job("closed"), delay=5)


@virtual
async def test_scheduled_jobs_of_a_closed_pool_still_run_when_due() -> None:
    log = Log()
    async with open_job_pool() as pool:
        pool.submit_nowait(log.job("due"), delay=5)
        pool.close()
        await anyio.sleep(6)
        await pool.join()
    assert log.starts == [("due", 5.0)]


class Deferring:
    """A job that defers itself ``times`` times by ``delay`` seconds, then returns."""

    def __init__(self, times: int, delay: float) -> None:
        self.times = times
        self.delay = delay
        self.starts: list[float] = []

    async def __call__(self) -> str:
        self.starts.append(now())
        await anyio.lowlevel.checkpoint()
        if len(self.starts) <= self.times:
            raise Defer(self.delay)
        return "done"


@virtual
async def test_defer_schedules_the_job_again_without_using_its_retries() -> None:
    job = Deferring(times=3, delay=5)
    async with open_job_pool(retry=RetryPolicy(max_attempts=1)) as pool:
        handle = await pool.submit(job, priority=2)
        await settle()
        assert handle.status is JobStatus.SCHEDULED
        assert handle.scheduled_for == pytest.approx(handle.submitted_at + 5)
        assert pool.stats().scheduled_tasks == 1
        assert await handle.result() == "done"
    assert job.starts == [0.0, 5.0, 10.0, 15.0]
    assert handle.attempts == 4
    assert handle.priority == 2
    stats = pool.stats()
    assert (stats.total_completed, stats.total_failed, stats.total_retried) == (1, 0, 0)
    assert invariant_holds(stats)


@virtual
async def test_defer_keeps_the_retry_count_of_real_failures() -> None:
    calls: list[float] = []

    async def flaky() -> str:
        calls.append(now())
        await anyio.lowlevel.checkpoint()
        if len(calls) in (1, 3):
            raise Defer(10)
        if len(calls) == 2:
            raise Boom("once")
        return "ok"

    policy = RetryPolicy(max_attempts=2, backoff=1, jitter=False)
    async with open_job_pool(retry=policy) as pool:
        handle = await pool.submit(flaky)
        assert await handle.result() == "ok"
    assert calls == [0.0, 10.0, 11.0, 21.0]
    assert pool.stats().total_retried == 1


@virtual
async def test_defer_zero_requeues_at_once() -> None:
    job = Deferring(times=2, delay=0)
    async with open_job_pool() as pool:
        handle = await pool.submit(job)
        assert await handle.result() == "done"
    assert job.starts == [0.0, 0.0, 0.0]
    assert handle.scheduled_for == handle.submitted_at


@virtual
async def test_a_cancelled_or_timed_out_job_that_raises_defer_ends_so() -> None:
    async def defer_when_cancelled() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            raise Defer(5)

    async with open_job_pool() as pool:
        cancelled = await pool.submit(defer_when_cancelled)
        timed_out = await pool.submit(defer_when_cancelled, timeout=3)
        await settle()
        cancelled.cancel()
        await pool.join()
    assert cancelled.status is JobStatus.CANCELLED
    assert timed_out.status is JobStatus.TIMED_OUT
    assert pool.stats().scheduled_tasks == 0


@pytest.mark.anyio
async def test_current_job_and_defer_validation() -> None:
    with pytest.raises(ValueError, match="Defer"):
        Defer(-1)
    with pytest.raises(ValueError, match="Defer"):
        Defer(math.inf)
    with pytest.raises(TypeError, match="Defer"):
        Defer(True)
    assert Defer(2).delay == 2.0

    async def check() -> bool:
        return current_job().scheduled_for is not None

    async with open_job_pool() as pool:
        handle = await pool.submit(check, delay=0.01)
        assert await handle.result() is True


@pytest.mark.anyio
async def test_recent_jobs_and_scheduled_jobs_show_scheduled_jobs(anyio_backend: str) -> None:
    async with open_job_pool() as pool:
        jobs = [pool.submit_nowait(anyio.sleep, 0, delay=d) for d in (30, 10, 20)]
        assert pool.scheduled_jobs() == [jobs[1], jobs[2], jobs[0]]
        assert pool.scheduled_jobs(limit=2) == [jobs[1], jobs[2]]
        assert set(pool.recent_jobs()) == set(jobs)
        await pool.stop(drain=False)
    assert isinstance(pool, Pool)
