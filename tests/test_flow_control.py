"""Flow control on a pool in memory: keys, limits, rates, fairness, aging, ``Defer``.

Everything with time in it runs in virtual time (``run_virtual``), so rate windows and aging
are checked to the exact instant.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from trio_jobpool import (
    Defer,
    JobStatus,
    KeyStats,
    Limit,
    Rate,
    RetryPolicy,
    current_job,
    open_job_pool,
)

from ._helpers import Gate, invariant_holds, run_virtual, settle

BACKENDS = ["trio", "asyncio"]


def now() -> float:
    return anyio.current_time()


class Log:
    """Jobs that record (name, key, virtual time) when they start, then run ``seconds``."""

    def __init__(self) -> None:
        self.starts: list[tuple[str, str | None, float]] = []

    def job(self, name: str, seconds: float = 0.0) -> Callable[[], Awaitable[str]]:
        async def run() -> str:
            job = current_job()
            self.starts.append((name, None if job is None else job.key, now()))
            if seconds:
                await anyio.sleep(seconds)
            else:
                await anyio.lowlevel.checkpoint()
            return name

        return run

    @property
    def names(self) -> list[str]:
        return [name for name, _, _ in self.starts]

    def times(self, key: str) -> list[float]:
        return [at for _, job_key, at in self.starts if job_key == key]


# -- values --------------------------------------------------------------------------------


def test_limit_and_rate_check_their_values() -> None:
    assert Rate(10, 60) == Rate(10, 60.0)
    assert Rate(1, 1).per == 1.0
    assert isinstance(Rate(1, 1).per, float)
    assert Limit().limits_anything is False
    assert Limit(max_running=0).limits_anything is True
    for bad in [0, -1]:
        with pytest.raises(ValueError, match="count"):
            Rate(bad, 1)
    for bad_per in [0, -1.0, math.inf, math.nan]:
        with pytest.raises(ValueError, match="per"):
            Rate(1, bad_per)
    with pytest.raises(TypeError, match="count"):
        Rate(True, 1)
    with pytest.raises(TypeError, match="count"):
        Rate(1.5, 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="per"):
        Rate(1, "1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_running"):
        Limit(max_running=-1)
    with pytest.raises(TypeError, match="max_running"):
        Limit(max_running=1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="rate"):
        Limit(rate=(1, 2))  # type: ignore[arg-type]
    assert Limit(2, Rate(3, 4)).to_json() == {
        "max_running": 2,
        "rate": {"count": 3, "per": 4.0},
    }


@pytest.mark.anyio
async def test_bad_arguments_are_refused_before_anything_runs() -> None:
    with pytest.raises(ValueError, match="aging"):
        open_job_pool(aging=0)
    with pytest.raises(ValueError, match="aging"):
        open_job_pool(aging=math.inf)
    with pytest.raises(TypeError, match="aging"):
        open_job_pool(aging="1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="fair"):
        open_job_pool(fair=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key_limit"):
        open_job_pool(key_limit=2)  # type: ignore[arg-type]
    async with open_job_pool(max_workers=1) as pool:
        for bad_key in ["", "x" * 201]:
            with pytest.raises(ValueError, match="key"):
                pool.submit_nowait(anyio.lowlevel.checkpoint, key=bad_key)
            with pytest.raises(ValueError, match="key"):
                await pool.set_limit(bad_key, max_running=1)
        with pytest.raises(TypeError, match="key"):
            await pool.submit(anyio.lowlevel.checkpoint, key=42)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="key"):
            pool.key_stats(None)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="max_running"):
            await pool.set_limit("a", max_running=-1)
        with pytest.raises(TypeError, match="rate"):
            await pool.set_limit("a", rate=5)  # type: ignore[arg-type]
        assert pool.stats().total_submitted == 0
        assert await pool.limits() == {}


# -- max_running, no head-of-line blocking --------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_running_holds_a_key_and_its_backlog_blocks_no_other_job(backend: str) -> None:
    async def main() -> None:
        log = Log()
        async with open_job_pool(max_workers=3, queue_size=2000) as pool:
            await pool.set_limit("big", max_running=1)
            for index in range(1000):
                await pool.submit(log.job(f"big{index}", 10), key="big")
            await settle()
            # one worker runs the big tenant's first job; its 999 others wait, holding none
            assert pool.key_stats("big") == KeyStats("big", 1, 999, Limit(max_running=1))
            assert pool.stats().active_workers == 1
            free = await pool.submit(log.job("free", 1))
            other = await pool.submit(log.job("other", 1), key="small", priority=9)
            await settle()
            assert free.status is JobStatus.RUNNING
            assert other.status is JobStatus.RUNNING
            assert sorted(log.names[-2:]) == ["free", "other"]
            assert all(at == 0.0 for _, _, at in log.starts)
            # the big tenant's jobs start one at a time, each as the one before ends
            await anyio.sleep(35)
            assert log.times("big") == [0.0, 10.0, 20.0, 30.0]
            assert invariant_holds(pool.stats())
            await pool.stop(drain=False)

    run_virtual(backend, main)


@pytest.mark.parametrize("backend", BACKENDS)
def test_strict_priority_holds_among_eligible_jobs(backend: str) -> None:
    async def main() -> None:
        log = Log()
        gate = Gate()
        async with open_job_pool(max_workers=1, queue_size=100) as pool:
            await pool.set_limit("held", max_running=0)
            await pool.submit(gate.job, "blocker")
            await settle()
            await pool.submit(log.job("held-urgent"), key="held", priority=1)
            await pool.submit(log.job("b5"), key="b", priority=5)
            await pool.submit(log.job("plain3"), priority=3)
            await pool.submit(log.job("c2"), key="c", priority=2)
            await pool.submit(log.job("b2"), key="b", priority=2)
            await pool.submit(log.job("plain2"), priority=2)
            gate.open()
            await settle()
            assert log.names == ["c2", "b2", "plain2", "plain3", "b5"]
            assert pool.key_stats("held").waiting == 1
            await pool.set_limit("held")  # removed: it runs at once
            await settle()
            assert log.names[-1] == "held-urgent"
            assert pool.key_stats("held") == KeyStats("held", 0, 0, None)

    run_virtual(backend, main)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_key_keeps_its_order_when_its_jobs_wait_behind_its_limit(backend: str) -> None:
    # k2 comes up while k is at its limit (it waits aside, and x goes first); k3 arrives
    # while k2 is still behind x, k4 once k2 has been passed over: k's jobs still start in
    # their order of entry, one at a time.
    async def main() -> None:
        log = Log()
        first, second = Gate(), Gate()
        async with open_job_pool(max_workers=2, queue_size=100) as pool:
            await pool.set_limit("k", max_running=1)
            await pool.submit(first.job)
            await pool.submit(second.job)
            await settle()
            for name in ("k1", "k2"):
                await pool.submit(log.job(name, 10), key="k")
            await pool.submit(log.job("x"))
            first.open()
            await settle()
            await pool.submit(log.job("k3", 10), key="k")
            second.open()
            await settle()
            await pool.submit(log.job("k4", 10), key="k")
            assert pool.key_stats("k") == KeyStats("k", 1, 3, Limit(max_running=1))
            await anyio.sleep(45)
            assert [(name, at) for name, _, at in log.starts] == [
                ("k1", 0.0),
                ("x", 0.0),
                ("k2", 10.0),
                ("k3", 20.0),
                ("k4", 30.0),
            ]
            assert pool.delayed_starts == 3
            assert invariant_holds(pool.stats())

    run_virtual(backend, main)


@pytest.mark.anyio
async def test_key_limit_applies_to_every_key_without_its_own() -> None:
    gate = Gate()
    async with open_job_pool(
        max_workers=10, queue_size=100, key_limit=Limit(max_running=2)
    ) as pool:
        await pool.set_limit("vip", max_running=5)
        for index in range(6):
            await pool.submit(gate.job, f"t{index}", key="tenant")
            await pool.submit(gate.job, f"v{index}", key="vip")
            await pool.submit(gate.job, f"n{index}")  # no key: never limited
        await settle()
        assert pool.key_stats("tenant") == KeyStats("tenant", 2, 4, Limit(max_running=2))
        # the first ten eligible jobs, in submission order: tenant's third one waits
        assert pool.key_stats("vip") == KeyStats("vip", 4, 2, Limit(max_running=5))
        assert pool.stats().active_workers == 10
        assert pool.key_stats("unseen") == KeyStats("unseen", 0, 0, Limit(max_running=2))
        assert await pool.limits() == {"vip": Limit(max_running=5)}
        assert [stats.key for stats in pool.limited_keys()] == ["tenant", "vip"]
        gate.open()
        await pool.join()
        assert pool.stats().total_completed == 18
        # tenant's last four; vip's fifth and sixth waited for a worker, not for vip's limit,
        # unless four of its jobs were still running when its fifth started
        assert pool.delayed_starts in (4, 5)
        assert pool.key_stats("tenant") == KeyStats("tenant", 0, 0, Limit(max_running=2))


@pytest.mark.anyio
async def test_raising_a_limit_starts_waiting_jobs_at_once_and_lowering_cancels_nothing() -> None:
    gate = Gate()
    async with open_job_pool(max_workers=5, queue_size=100) as pool:
        await pool.set_limit("k", max_running=1)
        handles = [await pool.submit(gate.job, index, key="k") for index in range(6)]
        await settle()
        assert gate.started == [0]
        await pool.set_limit("k", max_running=3)
        await settle()
        assert sorted(gate.started) == [0, 1, 2]
        await pool.set_limit("k", max_running=1)
        await settle()
        assert pool.key_stats("k").running == 3  # nothing was cancelled
        assert all(handle.status is JobStatus.RUNNING for handle in handles[:3])
        gate.open()
        await settle()
        # every start after the change kept the new limit: one at a time
        assert sorted(gate.started) == [0, 1, 2, 3, 4, 5]
        await pool.join()
        assert pool.stats().total_completed == 6


@pytest.mark.anyio
async def test_a_retrying_or_deferred_job_holds_no_slot_of_its_key() -> None:
    calls: Counter[str] = Counter()
    go = anyio.Event()

    async def flaky(name: str) -> str:
        calls[name] += 1
        if name == "flaky" and calls[name] == 1:
            raise ValueError("first attempt")
        if name == "deferring" and calls[name] == 1:
            raise Defer(3600)
        await go.wait()
        return name

    async with open_job_pool(max_workers=4, queue_size=100) as pool:
        await pool.set_limit("k", max_running=1)
        retrying = await pool.submit(
            flaky, "flaky", key="k", retry=RetryPolicy(max_attempts=2, backoff=3600)
        )
        await settle()
        assert retrying.status is JobStatus.RETRYING
        assert pool.key_stats("k").running == 0
        deferred = await pool.submit(flaky, "deferring", key="k")
        await settle()
        assert deferred.status is JobStatus.SCHEDULED
        third = await pool.submit(flaky, "third", key="k")
        await settle()
        assert third.status is JobStatus.RUNNING
        assert pool.key_stats("k") == KeyStats("k", 1, 0, Limit(max_running=1))
        go.set()
        assert await third.result() == "third"
        await pool.stop(drain=False)


@pytest.mark.parametrize("backend", BACKENDS)
def test_defer_does_not_use_up_retries_and_keeps_the_key(backend: str) -> None:
    async def main() -> None:
        calls = 0

        async def job() -> int:
            nonlocal calls
            calls += 1
            if calls <= 3:
                raise Defer(10)
            if calls == 4:
                raise ValueError("a real failure")
            return calls

        async with open_job_pool(max_workers=1) as pool:
            await pool.set_limit("api", rate=Rate(1, 5))
            handle = await pool.submit(job, key="api", retry=RetryPolicy(max_attempts=2, backoff=1))
            assert await handle.result() == 5
            assert handle.attempts == 5
            assert handle.key == "api"

    run_virtual(backend, main)


async def _return_one() -> int:
    await anyio.lowlevel.checkpoint()
    return 1


@pytest.mark.anyio
async def test_max_running_zero_holds_a_key_until_raised() -> None:
    async with open_job_pool(max_workers=2) as pool:
        await pool.set_limit("paused", max_running=0)
        handle = await pool.submit(_return_one, key="paused")
        await settle()
        assert handle.status is JobStatus.QUEUED
        assert pool.stats().active_workers == 0
        await pool.set_limit("paused", max_running=None)
        assert await handle.result() == 1


@pytest.mark.anyio
async def test_cancelling_waiting_jobs_of_a_parked_key_keeps_counts_exact() -> None:
    gate = Gate()
    async with open_job_pool(max_workers=2, queue_size=100) as pool:
        await pool.set_limit("k", max_running=1)
        handles = [await pool.submit(gate.job, index, key="k") for index in range(5)]
        await settle()
        for handle in handles[1:4]:
            handle.cancel()
        assert pool.key_stats("k") == KeyStats("k", 1, 1, Limit(max_running=1))
        handles[0].cancel()
        await settle()
        assert gate.started == [0, 4]
        assert pool.key_stats("k").waiting == 0
        gate.open()
        await pool.join()
        assert invariant_holds(pool.stats())
        assert pool.key_stats("k") == KeyStats("k", 0, 0, Limit(max_running=1))


@pytest.mark.anyio
async def test_resize_and_timeouts_keep_their_meaning_with_keys() -> None:
    gate = Gate()
    async with open_job_pool(max_workers=1, queue_size=100) as pool:
        await pool.set_limit("k", max_running=2)
        slow = await pool.submit(anyio.sleep_forever, key="k", timeout=5)
        for index in range(3):
            await pool.submit(gate.job, index, key="k")
        await settle()
        pool.resize(4)
        await settle()
        assert gate.started == [0]  # the key's second slot; the third job waits for a slot
        assert pool.stats().active_workers == 2
        await slow.wait()
        assert slow.status is JobStatus.TIMED_OUT
        await settle()
        assert gate.started == [0, 1]
        gate.open()
        await pool.join()


# -- rates ---------------------------------------------------------------------------------


def _max_in_window(times: list[float], per: float) -> int:
    """The most starts in any window ``[t, t + per)``."""
    ordered = sorted(times)
    best = 0
    for index, start in enumerate(ordered):
        best = max(best, sum(1 for at in ordered[index:] if at < start + per))
    return best


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_rate_of_10_per_60_s_is_exact_in_virtual_time(backend: str) -> None:
    async def main() -> None:
        log = Log()
        async with open_job_pool(max_workers=5, queue_size=100) as pool:
            await pool.set_limit("api", rate=Rate(10, 60))
            for index in range(25):
                await pool.submit(log.job(f"j{index}", 1), key="api")
            await pool.join()
            # 10 at once (5 workers, each job 1 s), then no start until 60 s after the first
            assert log.times("api") == [0.0] * 5 + [1.0] * 5 + [60.0] * 5 + [61.0] * 5 + [120.0] * 5
            assert _max_in_window(log.times("api"), 60) == 10
            # the window slides: the last ten starts were at 61 (5) and 120 (5), so at 121
            # five more may start, and the sixth waits until 60 s after the first at 120
            assert now() == 121.0
            later = Log()
            for index in range(6):
                await pool.submit(later.job(f"late{index}"), key="api")
            await pool.join()
            assert later.times("api") == [121.0] * 5 + [180.0]
            assert _max_in_window(log.times("api") + later.times("api"), 60) == 10

    run_virtual(backend, main)


@pytest.mark.parametrize("backend", BACKENDS)
def test_rate_and_max_running_together(backend: str) -> None:
    async def main() -> None:
        log = Log()
        async with open_job_pool(max_workers=10, queue_size=100) as pool:
            await pool.set_limit("k", max_running=2, rate=Rate(3, 10))
            for index in range(7):
                await pool.submit(log.job(f"j{index}", 4), key="k")
            await pool.join()
            # two at a time, and never a fourth start within 10 s of three
            assert log.times("k") == [0.0, 0.0, 4.0, 10.0, 10.0, 14.0, 20.0]
            assert _max_in_window(log.times("k"), 10) == 3
            assert pool.delayed_starts == 5

    run_virtual(backend, main)


# -- fairness ------------------------------------------------------------------------------


def _most_between(keys: list[str | None]) -> int:
    """The most starts of other keys between two consecutive starts of one key."""
    last: dict[str | None, int] = {}
    most = 0
    for index, key in enumerate(keys):
        if key in last:
            most = max(most, index - last[key] - 1)
        last[key] = index
    return most


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fair", [True, False])
def test_fair_takes_keys_round_robin_within_a_priority(backend: str, fair: bool) -> None:
    async def main() -> None:
        log = Log()
        gate = Gate()
        async with open_job_pool(max_workers=1, queue_size=1000, fair=fair) as pool:
            await pool.submit(gate.job, "blocker")
            await settle()
            for index in range(50):
                await pool.submit(log.job(f"a{index}"), key="a")
            for index in range(20):
                await pool.submit(log.job(f"b{index}"), key="b")
            for index in range(20):
                await pool.submit(log.job(f"none{index}"))
            for index in range(5):
                await pool.submit(log.job(f"c{index}"), key="c")
            await pool.submit(log.job("urgent"), key="a", priority=1)
            gate.open()
            await pool.join()
            keys = [key for _, key, _ in log.starts]
            assert log.names[0] == "urgent"  # strict priority first
            if not fair:
                assert keys[1:] == ["a"] * 50 + ["b"] * 20 + [None] * 20 + ["c"] * 5
                return
            # round robin: with k keys eligible, a key's next job starts within k starts;
            # key a took a new turn (behind b, None and c) when its urgent job started
            assert keys[1:17] == ["b", None, "c", "a"] * 4
            assert _most_between(keys[1:]) <= 3
            # each key FIFO
            for key in ("a", "b", "c"):
                names = [name for name, job_key, _ in log.starts[1:] if job_key == key]
                assert names == [f"{key}{index}" for index in range(len(names))]

    run_virtual(backend, main)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fair_with_limits_a_parked_key_takes_a_new_turn(backend: str) -> None:
    async def main() -> None:
        log = Log()
        async with open_job_pool(
            max_workers=3, queue_size=10_000, fair=True, key_limit=Limit(max_running=1)
        ) as pool:
            for index in range(30):
                for key in ("a", "b", "c", "d", "e"):
                    await pool.submit(log.job(f"{key}{index}", 1), key=key)
            await pool.join()
            keys = [key for _, key, _ in log.starts]
            assert Counter(keys) == dict.fromkeys("abcde", 30)
            # 3 workers, 5 keys of one job at a time: every second 3 keys start, and each
            # key starts again within 2 s (its turn comes behind the 4 others at most)
            for key in "abcde":
                times = log.times(key)
                assert max(b - a for a, b in itertools.pairwise(times)) <= 2
            by_second = Counter(at for _, _, at in log.starts)
            assert all(by_second[float(second)] == 3 for second in range(45))
            assert pool.stats().total_completed == 150

    run_virtual(backend, main)


# -- aging ---------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fair", [False, True])
def test_aging_improves_a_waiting_job_by_one_level_per_period(backend: str, fair: bool) -> None:
    async def main() -> None:
        log = Log()
        async with open_job_pool(max_workers=1, queue_size=100, aging=10, fair=fair) as pool:
            await pool.submit(log.job("blocker", 30))
            await anyio.lowlevel.checkpoint()
            await pool.submit(log.job("p5-at-0"), priority=5, key="x")  # ranks 50
            await anyio.sleep(15)
            await pool.submit(log.job("p4-at-15"), priority=4, key="y")  # ranks 55
            await anyio.sleep(10)
            await pool.submit(log.job("p3-at-25"), priority=3, key="z")  # ranks 55, after
            await anyio.sleep(4)
            await pool.submit(log.job("p1-at-29"), priority=1, key="w")  # ranks 39
            await pool.join()
            assert log.names == ["blocker", "p1-at-29", "p5-at-0", "p4-at-15", "p3-at-25"]

    run_virtual(backend, main)


@pytest.mark.parametrize("backend", BACKENDS)
def test_without_aging_priorities_are_strict_however_long_a_job_waits(backend: str) -> None:
    async def main() -> None:
        log = Log()
        async with open_job_pool(max_workers=1, queue_size=100, job_timeout=None) as pool:
            await pool.submit(log.job("blocker", 3600))
            await anyio.lowlevel.checkpoint()
            await pool.submit(log.job("old-p5"), priority=5, key="x")
            await anyio.sleep(3000)
            await pool.submit(log.job("new-p4"), priority=4, key="y")
            await pool.join()
            assert log.names == ["blocker", "new-p4", "old-p5"]

    run_virtual(backend, main)


@pytest.mark.parametrize("backend", BACKENDS)
def test_aging_lets_a_low_priority_job_through_a_stream_of_urgent_ones(backend: str) -> None:
    async def main() -> None:
        log = Log()
        async with open_job_pool(max_workers=1, queue_size=1000, aging=5) as pool:
            await pool.submit(log.job("urgent", 1), priority=1)
            await pool.submit(log.job("background"), priority=10)
            for second in range(100):  # an urgent job every second, each taking a second
                await anyio.sleep(0.5)
                await pool.submit(log.job(f"urgent{second}", 1), priority=1)
                await anyio.sleep(0.5)
            await pool.join()
            # priority 10 against 1: nine levels, 45 s. At each whole second k the urgent job
            # that entered at k - 0.5 ranks 1·5 + k - 0.5 against the background's 10·5 + 0:
            # the background job goes first from k = 46 on.
            background = next(at for name, _, at in log.starts if name == "background")
            assert background == 46.0

    run_virtual(backend, main)


# -- views ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_keys_with_nothing_left_are_forgotten_but_keep_their_limits() -> None:
    async with open_job_pool(max_workers=2, queue_size=10_000) as pool:
        await pool.set_limit("kept", max_running=1)
        for index in range(10_000):
            await pool.submit(anyio.lowlevel.checkpoint, key=f"tenant-{index}")
        await pool.join()
        flow: Any = pool._flow
        # idle keys are kept up to a bound (a tenant's next job finds its state), no more
        assert len(flow._keys) <= 4096 + 1
        assert pool.key_stats("kept").limit == Limit(max_running=1)
        assert [stats.key for stats in pool.limited_keys()] == ["kept"]
