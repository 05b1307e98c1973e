"""Retries: policy, backoff without holding a worker, what is and is not retried."""

from __future__ import annotations

import itertools
import random

import anyio
import pytest
import trio
import trio.testing

from trio_jobpool import JobStatus, RetryPolicy, open_job_pool

from ._helpers import Boom, Gate, invariant_holds, settle, sleep_forever

pytestmark = pytest.mark.anyio


def test_backoff_formula_without_jitter() -> None:
    policy = RetryPolicy(max_attempts=10, backoff=1.0, max_backoff=60.0, jitter=False)
    assert [policy.delay(k) for k in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert policy.delay(5000) == 60.0  # no overflow


def test_zero_backoff_stays_zero() -> None:
    """A backoff of 0 gives a delay of 0 at every attempt, however late (no 0 * inf = nan)."""
    policy = RetryPolicy(max_attempts=5000, backoff=0.0, max_backoff=60.0, jitter=False)
    assert policy.delay(1) == 0.0
    assert policy.delay(1200) == 0.0


def test_backoff_jitter_stays_within_half_to_full() -> None:
    policy = RetryPolicy(backoff=2.0, max_backoff=100.0, jitter=True)
    rng = random.Random(3)
    for attempt in range(1, 6):
        base = 2.0 * 2 ** (attempt - 1)
        for _ in range(100):
            assert 0.5 * base <= policy.delay(attempt, rng) <= base


def test_retry_policy_validation() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="backoff"):
        RetryPolicy(backoff=-1)
    with pytest.raises(ValueError, match="max_backoff"):
        RetryPolicy(max_backoff=float("nan"))
    with pytest.raises(TypeError):
        RetryPolicy(retry_on=(KeyboardInterrupt,))
    assert RetryPolicy(retry_on=ValueError).retry_on == (ValueError,)  # type: ignore[arg-type]


def test_should_retry() -> None:
    policy = RetryPolicy(max_attempts=3, retry_on=(ValueError,))
    assert policy.should_retry(1, ValueError())
    assert policy.should_retry(2, ValueError())
    assert not policy.should_retry(3, ValueError())
    assert not policy.should_retry(1, KeyError())


class Flaky:
    def __init__(self, failures: int, exc: type[Exception] = Boom) -> None:
        self.failures = failures
        self.calls = 0
        self.exc = exc

    async def __call__(self) -> str:
        self.calls += 1
        await anyio.lowlevel.checkpoint()
        if self.calls <= self.failures:
            raise self.exc(f"failure {self.calls}")
        return f"ok after {self.calls}"


async def test_retries_until_success() -> None:
    flaky = Flaky(failures=2)
    policy = RetryPolicy(max_attempts=3, backoff=0.001, jitter=False)
    async with open_job_pool() as pool:
        handle = await pool.submit(flaky, retry=policy)
        assert await handle.result() == "ok after 3"
        assert handle.attempts == 3
        assert handle.error is None
        stats = pool.stats()
    assert stats.total_retried == 2
    assert stats.total_completed == 1
    assert stats.total_failed == 0
    assert stats.total_submitted == 1


async def test_gives_up_after_max_attempts() -> None:
    flaky = Flaky(failures=10)
    async with open_job_pool(retry=RetryPolicy(max_attempts=2, backoff=0.001)) as pool:
        handle = await pool.submit(flaky)
        with pytest.raises(Boom, match="failure 2"):
            await handle.result()
        assert handle.attempts == 2
        assert handle.status is JobStatus.FAILED
        assert pool.stats().total_retried == 1


async def test_only_matching_exceptions_are_retried() -> None:
    flaky = Flaky(failures=5, exc=KeyError)
    policy = RetryPolicy(max_attempts=5, backoff=0.0, retry_on=(ValueError,))
    async with open_job_pool() as pool:
        handle = await pool.submit(flaky, retry=policy)
        await handle.wait()
        assert handle.attempts == 1
        assert handle.status is JobStatus.FAILED


async def test_timeouts_are_never_retried() -> None:
    policy = RetryPolicy(max_attempts=5, backoff=0.0, retry_on=(Exception,))
    async with open_job_pool(retry=policy) as pool:
        handle = await pool.submit(sleep_forever, timeout=0.001)
        await handle.wait()
        assert handle.status is JobStatus.TIMED_OUT
        assert handle.attempts == 1
        assert pool.stats().total_retried == 0


async def test_max_attempts_one_means_no_retry_even_with_a_pool_policy() -> None:
    flaky = Flaky(failures=1)
    async with open_job_pool(retry=RetryPolicy(max_attempts=5, backoff=0.0)) as pool:
        handle = await pool.submit(flaky, retry=RetryPolicy(max_attempts=1))
        await handle.wait()
        assert handle.status is JobStatus.FAILED


async def test_backoff_does_not_hold_a_worker() -> None:
    flaky = Flaky(failures=1)
    gate = Gate()
    policy = RetryPolicy(max_attempts=2, backoff=3600.0, jitter=False)
    async with open_job_pool(max_workers=1, shutdown_timeout=0) as pool:
        retrying = await pool.submit(flaky, retry=policy)
        await settle()
        assert retrying.status is JobStatus.RETRYING
        assert isinstance(retrying.error, Boom)  # the failed attempt's exception, meanwhile
        assert retrying.exec_time is not None
        other = await pool.submit(gate.job, "other")
        await settle()
        assert other.status is JobStatus.RUNNING  # the only worker is free for others
        stats = pool.stats()
        assert stats.active_workers == 1
        assert stats.queued_tasks == 1
        assert invariant_holds(stats)
        gate.open()
        await other.wait()
    retrying = retrying  # rebound: mypy keeps the status narrowed above across calls
    assert retrying.status is JobStatus.CANCELLED  # shutdown_timeout=0 cut the backoff short


@pytest.mark.trio
async def test_backoff_timing_is_exact(autojump_clock: trio.abc.Clock) -> None:
    starts: list[float] = []

    async def failing() -> None:
        starts.append(trio.current_time())
        await trio.sleep(1.0)
        raise Boom("again")

    policy = RetryPolicy(max_attempts=4, backoff=10.0, max_backoff=25.0, jitter=False)
    async with open_job_pool(retry=policy) as pool:
        handle = await pool.submit(failing)
        await handle.wait()
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    # each gap: 1 s of work, then the backoff: 10, 20, min(25, 40)
    assert gaps == pytest.approx([11.0, 21.0, 26.0])
    assert handle.attempts == 4
    assert handle.exec_time == pytest.approx(1.0)
    assert pool.stats().average_wait_time == pytest.approx(0.0)
