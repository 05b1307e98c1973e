"""``Retry-After`` of a 429 (queue full): the queue ahead of the client over the rate the pool
has ended jobs in the last minute, from 1 to 300 s (trio_jobpool/http/_retry_after.py), with a
clock the test sets: the estimator alone, then through the app."""

from __future__ import annotations

import functools

import pytest

from trio_jobpool import PoolStats
from trio_jobpool.http._retry_after import MAX_SECONDS, MIN_SECONDS, WINDOW, RetryAfter

from .test_app import error_of, served


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def stats(ended: int = 0, queued: int = 0, workers: int = 4, average: float = 0.0) -> PoolStats:
    """Stats with ``ended`` jobs ended (as many completed, failed, cancelled and timed out
    as ``ended`` splits into), ``queued`` waiting, ``workers`` busy."""
    quarter, rest = divmod(ended, 4)
    return PoolStats(
        total_submitted=ended + queued + workers,
        total_completed=quarter + rest,
        total_failed=quarter,
        total_cancelled=quarter,
        total_timed_out=quarter,
        total_retried=0,
        active_workers=workers,
        max_workers=workers,
        queued_tasks=queued,
        scheduled_tasks=0,
        average_exec_time=average,
        average_wait_time=0.0,
        exec_time_p50=average,
        exec_time_p95=average,
        exec_time_p99=average,
    )


def started(clock: Clock, ended: int = 0) -> RetryAfter:
    """An estimator whose first sample (``ended`` jobs ended) is taken now."""
    estimator = RetryAfter(clock)
    estimator.observe(lambda: stats(ended))
    return estimator


def test_long_jobs_nothing_ended_gives_the_longest_wait() -> None:
    """The issue's case: 100 jobs of 900 s waiting behind 32 busy workers, none ended in the
    last minute; the old estimate (average run time) said 3 s."""
    clock = Clock()
    estimator = started(clock)
    for _ in range(10):  # ten minutes of submits, one sample each
        clock.now += 60
        estimator.observe(lambda: stats(0, 100, 32))
    assert estimator.seconds(stats(0, 100, 32)) == MAX_SECONDS == 300


def test_queue_over_the_rate_of_the_last_minute() -> None:
    clock = Clock()
    estimator = started(clock)
    for second in range(1, 121):  # 10 jobs end a second, sampled every second
        clock.now += 1
        estimator.observe(functools.partial(stats, 10 * second))
    # 50 waiting at 10 a second: 5 s.
    assert estimator.seconds(stats(1200, 50)) == 5
    # 500 waiting: 50 s; 10,000 waiting: clamped to 300 s.
    assert estimator.seconds(stats(1200, 500)) == 50
    assert estimator.seconds(stats(1200, 10_000)) == 300


def test_a_young_app_measures_since_it_started() -> None:
    clock = Clock()
    estimator = started(clock)
    clock.now += 10
    # 20 ended in the 10 s since: 2 a second; 40 waiting: 20 s (rounded up).
    assert estimator.seconds(stats(20, 40)) == 20
    clock.now += 0.5
    assert estimator.seconds(stats(20, 41)) == 22  # 41 * 10.5 / 20 = 21.5, rounded up


def test_ends_older_than_the_window_do_not_count() -> None:
    """A burst of ends long ago: the last minute, with none, is what counts."""
    clock = Clock()
    estimator = started(clock)
    clock.now += 30
    estimator.observe(lambda: stats(1000))  # 1,000 ended in the first 30 s
    clock.now += 170
    estimator.observe(lambda: stats(1000))
    clock.now += WINDOW
    # Nothing ended in the last 60 s: as if one had (an upper bound of the rate): 10 * 60.
    assert estimator.seconds(stats(1000, 10)) == 300
    assert estimator.seconds(stats(1001, 1)) == 60


def test_the_bounds_and_the_fallback_before_any_span() -> None:
    clock = Clock()
    estimator = started(clock)
    clock.now += 5
    assert estimator.seconds(stats(100, 0)) == MIN_SECONDS == 1  # nothing waits
    # A distributed pool's first refusal: no sample a second old; the workers' capacity.
    fresh = RetryAfter(clock)
    assert fresh.seconds(stats(0, 10, workers=4, average=2.0)) == 5  # 10 * 2 s / 4
    fresh = RetryAfter(clock)
    assert fresh.seconds(stats(0, 10, workers=4)) == 3  # 1 s a job while none ended


def test_a_sample_at_most_once_a_second() -> None:
    clock = Clock()
    calls: list[float] = []

    def counted() -> PoolStats:
        calls.append(clock.now)
        return stats()

    estimator = RetryAfter(clock)
    for _ in range(5):
        estimator.observe(counted)
        clock.now += 0.25
    assert calls == [1000.0, 1001.0]  # (submits call it every time: stats() is not read)


# -- through the app --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_app_advises_the_queue_over_the_measured_rate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    monkeypatch.setattr("trio_jobpool.http._retry_after._monotonic", clock)
    async with served(max_workers=1, queue_size=2, submit_wait=0.01) as (pool, jobs, client):
        for n in range(6):  # six jobs end; the clock stands still
            response = await client.post("/api/v1/jobs", json={"name": "add", "args": [n, 1]})
            await client.get(response.headers["location"], params={"wait": 5})
        for label in ("running", "waiting-1", "waiting-2"):
            body = {"name": "block", "args": [label]}
            assert (await client.post("/api/v1/jobs", json=body)).status_code == 202
        await jobs.started.wait()
        assert pool.stats().queued_tasks == 2
        clock.now += 30
        response = await client.post("/api/v1/jobs", json={"name": "block"})
        error_of(response, 429, "queue_full")
        # 2 waiting; 6 ended in the 30 s since the app was made: 2 * 30 / 6 = 10 s.
        assert response.headers["retry-after"] == "10"
        clock.now += WINDOW + 1
        response = await client.post("/api/v1/jobs", json={"name": "block"})
        # None ended in the last minute (61 s since the last sample): 2 * 61 = 122 s.
        assert response.headers["retry-after"] == "122"
        jobs.release.set()
