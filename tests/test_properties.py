"""Property-based tests: random programs of submit/cancel/fail/timeout/resize keep every promise."""

from __future__ import annotations

import functools
from typing import Any

import anyio
import pytest
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_jobpool import JobStatus, QueueFull, RetryPolicy, open_job_pool

from ._helpers import invariant_holds

BACKENDS = ["trio", "asyncio"]

behaviours = st.sampled_from(["ok", "fail", "block", "timeout", "flaky"])
operations = st.lists(
    st.one_of(
        st.tuples(st.just("submit"), st.integers(-2, 5), behaviours),
        st.tuples(st.just("cancel"), st.integers(0, 60)),
        st.tuples(st.just("release"), st.integers(0, 60)),
        st.tuples(st.just("resize"), st.integers(1, 5)),
        st.tuples(st.just("settle")),
    ),
    max_size=60,
)


def _run(backend: str, main: Any) -> None:
    options = {"clock": trio.testing.MockClock(autojump_threshold=0)} if backend == "trio" else {}
    anyio.run(main, backend=backend, backend_options=options)


async def _program(
    ops: list[tuple[Any, ...]], max_workers: int, queue_size: int, max_pending: int | None
) -> None:
    events: list[anyio.Event] = []
    flaky_calls: dict[int, int] = {}

    async def job(index: int, behaviour: str) -> str:
        await anyio.lowlevel.checkpoint()
        if behaviour == "fail":
            raise ValueError(index)
        if behaviour == "block":
            await events[index].wait()
        if behaviour == "timeout":
            await anyio.sleep_forever()
        if behaviour == "flaky":
            flaky_calls[index] = flaky_calls.get(index, 0) + 1
            if flaky_calls[index] == 1:
                raise ValueError(index)
        return behaviour

    handles = []
    policy = RetryPolicy(max_attempts=2, backoff=0.0005, jitter=False)
    async with open_job_pool(
        max_workers=max_workers,
        queue_size=queue_size,
        max_pending=max_pending,
        job_timeout=None,
    ) as pool:
        for op in ops:
            kind = op[0]
            if kind == "submit":
                _, priority, behaviour = op
                index = len(events)
                events.append(anyio.Event())
                try:
                    handle = pool.submit_nowait(
                        job,
                        index,
                        behaviour,
                        priority=priority,
                        timeout=0.001 if behaviour == "timeout" else None,
                        retry=policy if behaviour == "flaky" else RetryPolicy(max_attempts=1),
                    )
                except QueueFull:
                    events.pop()
                    continue
                handles.append((handle, behaviour))
            elif kind == "cancel" and handles:
                handle = handles[op[1] % len(handles)][0]
                handle.cancel()
                assert handle.status in (JobStatus.CANCELLED, JobStatus.RUNNING) or (
                    handle.status.ended
                )
            elif kind == "release" and events:
                events[op[1] % len(events)].set()
            elif kind == "resize":
                pool.resize(op[1])
                assert pool.stats().max_workers == op[1]
            elif kind == "settle":
                await anyio.wait_all_tasks_blocked()
                assert pool.stats().active_workers <= max(pool.max_workers, max_workers, 5)
            assert invariant_holds(pool.stats())
        for event in events:
            event.set()
        await pool.join()
        stats = pool.stats()
    assert invariant_holds(stats)
    assert stats.total_submitted == len(handles)
    assert stats.queued_tasks == 0
    assert stats.active_workers == 0
    by_status: dict[JobStatus, int] = {}
    for handle, behaviour in handles:
        assert handle.status.ended, handle
        by_status[handle.status] = by_status.get(handle.status, 0) + 1
        if handle.status is JobStatus.COMPLETED:
            assert await handle.result() == behaviour
        if handle.status is JobStatus.TIMED_OUT:
            assert behaviour == "timeout"
        if handle.status is JobStatus.FAILED:
            assert behaviour == "fail"
    assert stats.total_completed == by_status.get(JobStatus.COMPLETED, 0)
    assert stats.total_failed == by_status.get(JobStatus.FAILED, 0)
    assert stats.total_cancelled == by_status.get(JobStatus.CANCELLED, 0)
    assert stats.total_timed_out == by_status.get(JobStatus.TIMED_OUT, 0)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=operations,
    max_workers=st.integers(1, 4),
    queue_size=st.integers(0, 6),
    max_pending=st.one_of(st.none(), st.integers(0, 3)),
)
def test_random_programs_keep_the_invariant_and_end_every_job(
    backend: str,
    ops: list[tuple[Any, ...]],
    max_workers: int,
    queue_size: int,
    max_pending: int | None,
) -> None:
    _run(backend, functools.partial(_program, ops, max_workers, queue_size, max_pending))


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=60, deadline=None)
@given(
    priorities=st.lists(st.integers(-5, 12), min_size=1, max_size=120),
    cancels=st.sets(st.integers(0, 119)),
)
def test_start_order_is_priority_then_fifo(
    backend: str, priorities: list[int], cancels: set[int]
) -> None:
    started: list[int] = []

    async def main() -> None:
        gate = anyio.Event()

        async def blocker() -> None:
            await gate.wait()

        async def record(index: int) -> None:
            started.append(index)
            await anyio.lowlevel.checkpoint()

        async with open_job_pool(max_workers=1, max_pending=None) as pool:
            await pool.submit(blocker)
            handles = [await pool.submit(record, i, priority=p) for i, p in enumerate(priorities)]
            for i in cancels:
                if i < len(handles):
                    handles[i].cancel()
            gate.set()

    _run(backend, main)
    expected = sorted(
        (i for i in range(len(priorities)) if i not in cancels),
        key=lambda i: (priorities[i], i),
    )
    assert started == expected
