"""Running jobs: isolation of failures, timeouts, current_job, progress, outcomes."""

from __future__ import annotations

import gc
import math
import subprocess
import sys
import traceback
import weakref

import anyio
import outcome
import pytest
import trio
import trio.testing

from trio_jobpool import (
    JobCancelled,
    JobStatus,
    JobTimeout,
    current_job,
    open_job_pool,
)

from ._helpers import Boom, Gate, fail, invariant_holds, noop, settle, sleep_forever

pytestmark = pytest.mark.anyio


async def test_a_failing_job_touches_nothing_else() -> None:
    gate = Gate()
    async with open_job_pool(max_workers=2) as pool:
        survivor = await pool.submit(gate.job, "survivor")
        failing = await pool.submit(fail, "kaput")
        outcome_ = await failing.wait()
        assert isinstance(outcome_, outcome.Error)
        assert isinstance(outcome_.error, Boom)
        assert failing.status is JobStatus.FAILED
        assert isinstance(failing.error, Boom)
        with pytest.raises(Boom, match="kaput"):
            await failing.result()
        assert survivor.status is JobStatus.RUNNING
        after = await pool.submit(noop)  # the worker that ran the failure still works
        await after.wait()
        assert after.status is JobStatus.COMPLETED
        gate.open()
        assert await survivor.result() == "survivor"
        assert pool.stats().total_failed == 1


async def test_wait_returns_a_fresh_outcome_each_time() -> None:
    async def value() -> int:
        await anyio.lowlevel.checkpoint()
        return 42

    async with open_job_pool() as pool:
        handle = await pool.submit(value)
        first = await handle.wait()
        second = await handle.wait()
        assert first is not second
        assert first.unwrap() == 42
        assert second.unwrap() == 42
        assert handle.error is None
        bad = await pool.submit(fail)
        ended = await bad.wait()
        assert isinstance(ended, outcome.Error)
        assert ended.error is bad.error
        assert isinstance(bad.error, Boom)


async def test_timeout_ends_timed_out() -> None:
    async with open_job_pool() as pool:
        handle = await pool.submit(sleep_forever, timeout=0.01)
        result = await handle.wait()
        assert handle.status is JobStatus.TIMED_OUT
        assert isinstance(result, outcome.Error)
        assert isinstance(result.error, JobTimeout)
        assert isinstance(result.error, TimeoutError)
        assert handle.job_id in str(result.error)
        with pytest.raises(JobTimeout):
            await handle.result()
        stats = pool.stats()
        assert stats.total_timed_out == 1
        assert stats.total_failed == 0


async def test_pool_job_timeout_is_the_default() -> None:
    async with open_job_pool(job_timeout=0.01) as pool:
        timed = await pool.submit(sleep_forever)
        await timed.wait()
        assert timed.status is JobStatus.TIMED_OUT
        ok = await pool.submit(noop, timeout=math.inf)
        await ok.wait()
        assert ok.status is JobStatus.COMPLETED


async def test_no_timeout_with_none_pool_timeout() -> None:
    async with open_job_pool(job_timeout=None) as pool:
        handle = await pool.submit(noop)
        await handle.wait()
        assert handle.status is JobStatus.COMPLETED


async def test_current_job_inside_jobs_and_their_tasks() -> None:
    seen: list[str] = []

    async def child() -> None:
        seen.append(current_job().job_id)

    async def parent() -> str:
        me = current_job()
        me.set_progress(0.5, "halfway")
        async with anyio.create_task_group() as tg:
            tg.start_soon(child)
        return me.job_id

    async with open_job_pool() as pool:
        handle = await pool.submit(parent, job_id="parent-job")
        assert await handle.result() == "parent-job"
        assert handle.progress == 0.5
        assert handle.progress_message == "halfway"
    assert seen == ["parent-job"]
    with pytest.raises(RuntimeError, match="outside"):
        current_job()


async def test_set_progress_checks_its_arguments() -> None:
    async def job() -> None:
        me = current_job()
        for bad in (-0.1, 1.01, math.nan):
            with pytest.raises(ValueError, match="progress"):
                me.set_progress(bad)
        with pytest.raises(TypeError):
            me.set_progress("half")  # type: ignore[arg-type]
        me.set_progress(1)
        await anyio.lowlevel.checkpoint()

    async with open_job_pool() as pool:
        handle = await pool.submit(job)
        await handle.result()
        assert handle.progress == 1.0
        assert handle.progress_message is None


async def test_handle_timings() -> None:
    async with open_job_pool() as pool:
        handle = await pool.submit(noop)
        assert handle.submitted_at > 0
        await handle.wait()
        assert handle.started_at is not None
        assert handle.finished_at is not None
        assert handle.submitted_at <= handle.started_at <= handle.finished_at
        assert handle.exec_time is not None
        assert handle.exec_time >= 0
        assert handle.attempts == 1
        assert "completed" in repr(handle)


async def test_handle_fields_are_read_only_and_deadline_is_visible() -> None:
    """A handle's fields cannot be assigned; ``current_job().deadline`` is the running
    attempt's deadline (``None`` with an infinite timeout), and ``None`` once the job ended."""
    seen: list[float | None] = []

    async def look() -> None:
        seen.append(current_job().deadline)
        await anyio.lowlevel.checkpoint()

    async with open_job_pool(job_timeout=30.0) as pool:
        handle = await pool.submit(look)
        with pytest.raises(AttributeError):
            handle.priority = 1  # type: ignore[misc]
        await handle.wait()
        assert handle.deadline is None  # not running any more
        endless = await pool.submit(look, timeout=math.inf)
        await endless.wait()
    assert seen[0] is not None
    assert handle.started_at is not None
    assert seen[1] is None


class Payload:
    """An argument object that a weak reference can follow (bytes and bytearray cannot)."""

    def __init__(self, size: int) -> None:
        self.data = bytearray(size)


async def test_an_ended_job_lets_go_of_its_arguments() -> None:
    """Once a job has ended, its handle (still referenced, and in the pool's history) holds no
    reference to the job's arguments: they are collected."""

    async def takes(payload: Payload) -> int:
        await anyio.lowlevel.checkpoint()
        return len(payload.data)

    async with open_job_pool() as pool:
        big = Payload(1024)
        argument = weakref.ref(big)
        handle = await pool.submit(takes, big, job_id="takes")
        del big
        assert await handle.result() == 1024
        gc.collect()
        assert argument() is None
        assert pool.get("takes") is handle  # the handle itself is kept


async def test_result_does_not_grow_the_traceback() -> None:
    """Each ``result()`` of a failed job raises its error with the same traceback: awaiting it
    again does not add frames; a cancelled job's ``JobCancelled`` stays short too."""
    async with open_job_pool() as pool:
        handle = await pool.submit(fail)
        await handle.wait()
        sizes = []
        for _ in range(50):
            try:
                await handle.result()
            except Boom as exc:
                sizes.append(len(traceback.extract_tb(exc.__traceback__)))
        assert len(set(sizes)) == 1
        cancelled = await pool.submit(sleep_forever)
        cancelled.cancel()
        for _ in range(3):
            with pytest.raises(JobCancelled) as info:
                await cancelled.result()
        assert len(traceback.extract_tb(info.value.__traceback__)) < 5


_INTERRUPT_SCRIPT = """
import sys, anyio
from trio_jobpool import open_job_pool

async def interrupt():
    await anyio.lowlevel.checkpoint()
    raise KeyboardInterrupt

async def main():
    async with open_job_pool() as pool:
        await pool.submit(interrupt)
        await anyio.sleep_forever()

try:
    anyio.run(main, backend=sys.argv[1])
except KeyboardInterrupt:
    print("KeyboardInterrupt propagated")
"""


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_keyboard_interrupt_is_not_swallowed(backend: str) -> None:
    # In a subprocess: asyncio lets a KeyboardInterrupt raised in a task escape the event loop
    # itself, which pytest would take as the user interrupting the test run.
    done = subprocess.run(
        [sys.executable, "-c", _INTERRUPT_SCRIPT, backend],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stdout.strip() == "KeyboardInterrupt propagated", done.stderr


@pytest.mark.trio
async def test_keyboard_interrupt_cancels_the_other_jobs() -> None:
    async def interrupt() -> None:
        await trio.lowlevel.checkpoint()
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # noqa: PT012 - the block is the subject
        async with open_job_pool(max_workers=2) as pool:
            bystander = pool.submit_nowait(sleep_forever)
            culprit = pool.submit_nowait(interrupt)
            waiting = pool.submit_nowait(sleep_forever, priority=9)
            await trio.sleep_forever()
    assert culprit.status is JobStatus.CANCELLED
    assert bystander.status is JobStatus.CANCELLED
    assert waiting.status is JobStatus.CANCELLED
    assert invariant_holds(pool.stats())


async def test_a_job_that_swallows_cancellation_and_returns_completes() -> None:
    async def stubborn() -> str:
        with anyio.CancelScope(shield=True):
            await anyio.sleep(0.01)
        return "done anyway"

    async with open_job_pool() as pool:
        handle = await pool.submit(stubborn, timeout=0.001)
        assert await handle.result() == "done anyway"
        assert handle.status is JobStatus.COMPLETED


async def test_exception_while_being_cancelled_counts_as_the_cancel() -> None:
    async def cleanup_fails() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            raise Boom("cleanup failed")

    async with open_job_pool() as pool:
        handle = await pool.submit(cleanup_fails, timeout=0.01)
        await handle.wait()
        assert handle.status is JobStatus.TIMED_OUT
        assert isinstance(handle.error, JobTimeout)
        assert isinstance(handle.error.__cause__, Boom)
        cancelled = await pool.submit(cleanup_fails)
        await anyio.wait_all_tasks_blocked()
        cancelled.cancel()
        await cancelled.wait()
        assert isinstance(cancelled.error, JobCancelled)


# -- exact timing on Trio's virtual clock ---------------------------------------------------


@pytest.mark.trio
async def test_deadline_on_the_pool_clock(autojump_clock: trio.abc.Clock) -> None:
    """``current_job().deadline`` is on the event loop's clock: the job's start plus its
    timeout."""

    async def look() -> float | None:
        await trio.sleep(1)
        return current_job().deadline

    async with open_job_pool(job_timeout=10.0) as pool:
        await trio.sleep(5)
        handle = await pool.submit(look)
        assert await handle.result() == pytest.approx(15.0)
        await settle()


@pytest.mark.trio
async def test_timeout_is_measured_from_the_start_exactly(autojump_clock: trio.abc.Clock) -> None:
    gate = Gate()
    async with open_job_pool(max_workers=1) as pool:
        await pool.submit(gate.job)
        timed = await pool.submit(sleep_forever, timeout=5.0)
        await trio.sleep(100)  # waiting time does not count
        assert timed.status is JobStatus.QUEUED
        gate.open()
        await timed.wait()
        timed = timed  # rebound: mypy keeps the status narrowed above across calls
        assert timed.status is JobStatus.TIMED_OUT
        assert timed.exec_time == pytest.approx(5.0)
        assert timed.started_at is not None
        assert timed.started_at - timed.submitted_at == pytest.approx(100.0)


@pytest.mark.trio
async def test_job_longer_than_timeout_by_a_hair(autojump_clock: trio.abc.Clock) -> None:
    async def takes(seconds: float) -> float:
        await trio.sleep(seconds)
        return seconds

    async with open_job_pool(job_timeout=10.0) as pool:
        fits = await pool.submit(takes, 9.999)
        too_long = await pool.submit(takes, 10.001)
        assert await fits.result() == 9.999
        await too_long.wait()
        assert too_long.status is JobStatus.TIMED_OUT
        assert pool.stats().average_exec_time == pytest.approx((9.999 + 10.0) / 2)


@pytest.mark.trio
async def test_mixed_timeouts_each_fire_on_time(autojump_clock: trio.abc.Clock) -> None:
    """Deadlines earlier and later than the pool's next wake-up, and ones that never fire."""

    async def takes(seconds: float) -> float:
        await trio.sleep(seconds)
        return seconds

    async with open_job_pool(max_workers=8, job_timeout=100.0) as pool:
        long_ok = await pool.submit(takes, 50.0)
        long_timeout = await pool.submit(takes, 500.0)  # the pool's default: 100 s
        await trio.sleep(10.0)
        short = await pool.submit(takes, 500.0, timeout=5.0)  # earlier than anything armed
        zero = await pool.submit(takes, 1.0, timeout=0.0)
        none = await pool.submit(takes, 1000.0, timeout=math.inf)
        for handle in (long_ok, long_timeout, short, zero, none):
            await handle.wait()
    assert long_ok.status is JobStatus.COMPLETED
    assert long_timeout.status is JobStatus.TIMED_OUT
    assert long_timeout.exec_time == pytest.approx(100.0)
    assert short.status is JobStatus.TIMED_OUT
    assert short.exec_time == pytest.approx(5.0)
    assert zero.status is JobStatus.TIMED_OUT
    assert zero.exec_time == pytest.approx(0.0)
    assert none.status is JobStatus.COMPLETED
    assert none.exec_time == pytest.approx(1000.0)


@pytest.mark.trio
async def test_a_worker_whose_job_timed_out_runs_the_next_job_normally(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def takes(seconds: float) -> float:
        await trio.sleep(seconds)
        return seconds

    async with open_job_pool(max_workers=1, job_timeout=10.0) as pool:
        first = await pool.submit(takes, 20.0)
        second = await pool.submit(takes, 9.0)
        third = await pool.submit(takes, 9.5)
        assert await second.result() == 9.0
        assert await third.result() == 9.5
    assert first.status is JobStatus.TIMED_OUT
    assert trio.current_time() == pytest.approx(10.0 + 9.0 + 9.5)


@pytest.mark.trio
async def test_cancel_wins_over_a_later_timeout_and_vice_versa(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_job_pool(job_timeout=10.0) as pool:
        cancelled = await pool.submit(sleep_forever)
        timed = await pool.submit(sleep_forever)
        await trio.sleep(5.0)
        cancelled.cancel()
        await trio.sleep(10.0)
        assert timed.status is JobStatus.TIMED_OUT
        timed.cancel()  # already ended: nothing happens
    assert cancelled.status is JobStatus.CANCELLED
    assert cancelled.exec_time == pytest.approx(5.0)
    assert timed.exec_time == pytest.approx(10.0)
