"""Property-based tests of flow control: random programs of keyed submits, ends, cancels,
resizes and limit changes never let a key run more jobs than its ``max_running``, never leave
a worker idle while an eligible job waits (no head-of-line blocking), keep ``key_stats`` exact
and keep the stats invariant; in memory (virtual time) and on SQLite (a file per example).

A job checks its key's limit when its code starts: the jobs of its key whose code is running
must be fewer than the limit in force. While a ``set_limit`` is under way either limit may be
the one in force, so the test takes the higher until the call returns. A lowered limit does not
stop the jobs already running (by contract), so only starts are checked against it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_jobpool import JobPool, JobRegistry, JobStatus, Limit, current_job, open_job_pool

from ._helpers import invariant_holds, run_virtual

BACKENDS = ["trio", "asyncio"]
LIMITED = ["k0", "k1", "k2"]
KEYS: list[str | None] = [*LIMITED, None]

registry = JobRegistry()


class State:
    """What the jobs of one example share with it (reset per example)."""

    def __init__(self) -> None:
        self.events: dict[int, anyio.Event] = {}
        self.running: Counter[str | None] = Counter()
        self.ceiling: dict[str, float] = {}
        self.violations: list[str] = []


state = State()


@registry.job(name="keyed_job")
async def keyed_job(index: int, block: bool) -> int:
    job = current_job()
    assert job is not None
    key = job.key
    if key is not None and state.running[key] >= state.ceiling.get(key, float("inf")):
        state.violations.append(f"job {index} of {key} started with {state.running[key]} running")
    state.running[key] += 1
    try:
        if block:
            await state.events[index].wait()
        else:
            await anyio.lowlevel.checkpoint()
    finally:
        state.running[key] -= 1
    return index


_submit = st.tuples(st.just("submit"), st.sampled_from(KEYS), st.booleans(), st.integers(1, 3))
steps = st.lists(
    st.one_of(
        _submit,
        _submit,
        _submit,
        st.tuples(st.just("end"), st.integers(0, 10_000)),
        st.tuples(st.just("end"), st.integers(0, 10_000)),
        st.tuples(st.just("cancel"), st.integers(0, 10_000)),
        st.tuples(st.just("resize"), st.integers(1, 4)),
        st.tuples(
            st.just("limit"),
            st.sampled_from(LIMITED),
            st.one_of(st.none(), st.integers(0, 3)),
        ),
    ),
    min_size=5,
    max_size=60,
)
# the limits set before the program: every key limited (the program may change them)
first_limits = st.tuples(st.integers(0, 2), st.integers(1, 2), st.integers(1, 2))


async def _settle(pool: JobPool, handles: list[Any]) -> None:
    """Wait until every task is blocked and every job handed to a worker has started its code
    (with a store, a worker waits for the write of the start first: flush it)."""
    flush = getattr(pool.store, "flush", None)
    for _ in range(100):  # bounded: each round commits the starts handed out in the last
        await anyio.wait_all_tasks_blocked()
        handed = sum(1 for handle in handles if handle.status is JobStatus.RUNNING)
        if flush is None or handed == sum(state.running.values()):
            return
        await flush()
    raise AssertionError("the jobs handed to workers never started")


async def _check(pool: JobPool, handles: list[Any]) -> None:
    """After every task settled: the promises hold."""
    await _settle(pool, handles)
    assert not state.violations, state.violations
    stats = pool.stats()
    assert invariant_holds(stats)
    queued: Counter[str | None] = Counter(
        handle.key for handle in handles if handle.status is JobStatus.QUEUED
    )
    running: Counter[str | None] = Counter(
        handle.key for handle in handles if handle.status is JobStatus.RUNNING
    )
    for key in LIMITED:
        key_stats = pool.key_stats(key)
        assert (key_stats.running, key_stats.waiting) == (running[key], queued[key]), key
        assert running[key] == state.running[key]  # every job handed out has started
    if stats.active_workers < stats.max_workers:
        # a worker is idle: nothing that may start is waiting
        assert not queued[None], "a job without a key waits by an idle worker"
        for key in LIMITED:
            if queued[key]:
                limit = pool.key_stats(key).limit
                assert limit is not None
                assert limit.max_running is not None
                assert running[key] >= limit.max_running, (key, running[key], limit)


async def _program(pool: JobPool, limits: tuple[int, ...], program: list[tuple[Any, ...]]) -> None:
    handles: list[Any] = []
    for key, max_running in zip(LIMITED, limits, strict=True):
        state.ceiling[key] = max_running
        await pool.set_limit(key, max_running=max_running)
    for step in program:
        kind = step[0]
        if kind == "submit":
            _, key, block, priority = step
            index = len(handles)
            state.events[index] = anyio.Event()
            handles.append(await pool.submit("keyed_job", index, block, key=key, priority=priority))
        elif kind == "end":  # a running job (of those that block) ends
            running = [
                index
                for index, handle in enumerate(handles)
                if handle.status is JobStatus.RUNNING and not state.events[index].is_set()
            ]
            if running:
                state.events[running[step[1] % len(running)]].set()
        elif kind == "cancel" and handles:
            handle = handles[step[1] % len(handles)]
            if not handle.status.ended:
                await pool.acancel(handle.job_id)
        elif kind == "resize":
            pool.resize(step[1])
        elif kind == "limit":
            _, key, max_running = step
            new = float("inf") if max_running is None else max_running
            old = state.ceiling.get(key, float("inf"))
            state.ceiling[key] = max(old, new)  # either may be in force during the call
            await pool.set_limit(key, max_running=max_running)
            state.ceiling[key] = new
            assert (await pool.limits()).get(key) == (
                None if max_running is None else Limit(max_running=max_running)
            )
        await _check(pool, handles)
    # release everything: every job ends
    for key in LIMITED:
        await pool.set_limit(key)
        state.ceiling.pop(key, None)
    for event in state.events.values():
        event.set()
    with anyio.fail_after(30):
        await pool.join()
    await _check(pool, handles)
    assert all(handle.status.ended for handle in handles)


def _fresh_state() -> None:
    global state
    state = State()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fair", [False, True])
@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(limits=first_limits, program=steps)
def test_random_keyed_programs_keep_every_limit_in_memory(
    backend: str, fair: bool, limits: tuple[int, ...], program: list[tuple[Any, ...]]
) -> None:
    _fresh_state()

    async def main() -> None:
        async with open_job_pool(
            max_workers=4, queue_size=1000, registry=registry, fair=fair
        ) as pool:
            await _program(pool, limits, program)

    run_virtual(backend, main)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(limits=first_limits, program=steps)
def test_random_keyed_programs_keep_every_limit_on_sqlite(
    backend: str,
    limits: tuple[int, ...],
    program: list[tuple[Any, ...]],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    _fresh_state()
    path = Path(tmp_path_factory.mktemp("flow")) / "jobs.db"

    async def main() -> None:
        async with open_job_pool(
            max_workers=4, queue_size=1000, registry=registry, store=f"sqlite:///{path}"
        ) as pool:
            await _program(pool, limits, program)

    anyio.run(main, backend=backend)
