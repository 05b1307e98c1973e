"""Property-based tests: random programs of submit (now or later)/cancel/fail/timeout/defer/resize
keep every promise, on every store: in memory, SQLite (a file per example) and Redis (the
module's server, a queue per example, so that examples are independent).

The in-memory pool runs in virtual time (``run_virtual``); the stores run on the real clock
(their threads and sockets are not on the event loop's clock, and the jobs' timeouts, backoffs
and delays are about a millisecond). Where a promise takes another form on a distributed pool
by contract (docs/distributed.md), the test says so and checks that form.
"""

from __future__ import annotations

import contextlib
import functools
import time
import uuid
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trio_jobpool import (
    Defer,
    JobNotFound,
    JobPool,
    JobRegistry,
    JobStatus,
    PoolStats,
    QueueFull,
    RetryPolicy,
    current_job,
    open_job_pool,
)

from ._helpers import invariant_holds, run_virtual

BACKENDS = ["trio", "asyncio"]
# examples per backend: the stores' pools open a file or a Redis connection per example
EXAMPLES = {"memory": 60, "sqlite": 20, "redis": 20}
# the stores whose pools take delay= and Defer in these programs
SCHEDULING = {"memory", "sqlite", "redis"}

registry = JobRegistry()


class State:
    """What the registered jobs of one example share with it (reset per example)."""

    def __init__(self) -> None:
        self.events: list[anyio.Event] = []
        self.flaky_calls: dict[int, int] = {}
        self.defer_calls: dict[int, int] = {}
        self.started: list[int] = []
        self.gate: anyio.Event | None = None
        self.blocking: anyio.Event | None = None
        # later_job: (index, attempt, wall time, the job's due time) of every start, and
        # the index of every run that returned
        self.starts: list[tuple[int, int, float, float | None]] = []
        self.ends: list[int] = []


state = State()


@registry.job(name="program_job")
async def program_job(index: int, behaviour: str) -> str:
    await anyio.lowlevel.checkpoint()
    if behaviour == "fail":
        raise ValueError(index)
    if behaviour == "block":
        await state.events[index].wait()
    if behaviour == "timeout":
        await anyio.sleep_forever()
    if behaviour == "flaky":
        state.flaky_calls[index] = state.flaky_calls.get(index, 0) + 1
        if state.flaky_calls[index] == 1:
            raise ValueError(index)
    if behaviour == "defer":
        state.defer_calls[index] = state.defer_calls.get(index, 0) + 1
        if state.defer_calls[index] <= 2:
            raise Defer(0.002)
    return behaviour


@registry.job(name="later_job")
async def later_job(index: int, behaviour: str) -> str:
    """A job of the restart programs: records its start (with its due time) and its end;
    ``defer`` defers its first attempt by 0 to 15 ms."""
    job = current_job()
    state.starts.append((index, job.attempts, time.time(), job.scheduled_for))
    await anyio.lowlevel.checkpoint()
    if behaviour == "fail":
        raise ValueError(index)
    if behaviour == "block":
        await state.events[index].wait()
    if behaviour == "defer" and job.attempts == 1:
        raise Defer(0.005 * (index % 4))
    state.ends.append(index)
    return behaviour


@registry.job(name="blocker")
async def blocker() -> None:
    assert state.gate is not None
    assert state.blocking is not None
    state.blocking.set()
    await state.gate.wait()


@registry.job(name="record")
async def record(index: int) -> None:
    state.started.append(index)
    await anyio.lowlevel.checkpoint()


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Where each store keeps its examples: a directory for SQLite files; Redis's URL is taken
    from the session's server only when a Redis test asks (see ``store_of``)."""
    return {"sqlite": tmp_path_factory.mktemp("properties")}


def store_of(store: str, request: pytest.FixtureRequest, stores: dict[str, Any]) -> str | None:
    """A fresh store URL for one example (``None``: in memory)."""
    if store == "sqlite":
        return f"sqlite:///{stores['sqlite'] / uuid.uuid4().hex}.db"
    if store == "redis":
        redis_url = request.getfixturevalue("redis_url")
        return f"{redis_url}/0?queue=p{uuid.uuid4().hex[:12]}&lease_timeout=5"
    return None


async def view(pool: JobPool) -> PoolStats:
    """The counters the invariant is promised on: a distributed pool's ``stats()`` is this
    process's view, whose invariant does not hold by contract; its ``cluster_stats()`` does.
    On a pool of one process ``cluster_stats()`` is ``stats()``."""
    return await pool.cluster_stats()


behaviours = st.sampled_from(["ok", "fail", "block", "timeout", "flaky", "defer"])
delays = st.sampled_from([None, None, 0.0, 0.001, 0.004])
operations = st.lists(
    st.one_of(
        st.tuples(st.just("submit"), st.integers(-2, 5), behaviours, delays),
        st.tuples(st.just("sleep")),
        st.tuples(st.just("cancel"), st.integers(0, 60)),
        st.tuples(st.just("release"), st.integers(0, 60)),
        st.tuples(st.just("resize"), st.integers(1, 5)),
        st.tuples(st.just("settle")),
    ),
    max_size=60,
)


def _run(backend: str, store: str | None, main: Any) -> None:
    state.__init__()  # type: ignore[misc]
    if store is None:
        run_virtual(backend, main)
    else:
        anyio.run(main, backend=backend)


async def _program(
    store: str | None,
    ops: list[tuple[Any, ...]],
    max_workers: int,
    queue_size: int,
    max_pending: int | None,
) -> None:
    events = state.events
    distributed = store is not None and store.startswith("redis")
    if store is not None and max_pending is not None and queue_size + max_pending < 1:
        queue_size = 1  # a store needs room for one job: it is written before it is taken
    handles = []
    policy = RetryPolicy(max_attempts=2, backoff=0.0005, jitter=False)
    async with open_job_pool(
        max_workers=max_workers,
        queue_size=queue_size,
        max_pending=max_pending,
        job_timeout=None,
        store=store,
        registry=registry,
    ) as pool:
        for op in ops:
            kind = op[0]
            if kind == "submit":
                _, priority, behaviour, delay = op
                if kind_of(store) not in SCHEDULING:
                    delay = None
                    if behaviour == "defer":
                        behaviour = "ok"
                index = len(events)
                events.append(anyio.Event())
                try:
                    handle = pool.submit_nowait(
                        program_job,
                        index,
                        behaviour,
                        priority=priority,
                        timeout=0.001 if behaviour == "timeout" else None,
                        retry=policy if behaviour == "flaky" else RetryPolicy(max_attempts=1),
                        delay=delay,
                    )
                except QueueFull:
                    assert delay is None  # a job due later is never refused for want of room
                    events.pop()
                    continue
                handles.append((handle, behaviour))
            elif kind == "cancel" and handles:
                handle = handles[op[1] % len(handles)][0]
                handle.cancel()
                # a distributed pool ends the handle of a job waiting in Redis once Redis has
                # removed it (with the next round trip): it may still read queued meanwhile
                assert (
                    distributed
                    or handle.status in (JobStatus.CANCELLED, JobStatus.RUNNING)
                    or (handle.status.ended)
                )
            elif kind == "release" and events:
                events[op[1] % len(events)].set()
            elif kind == "resize":
                pool.resize(op[1])
                assert pool.stats().max_workers == op[1]
            elif kind == "sleep":
                await anyio.sleep(0.002)
            elif kind == "settle":
                await anyio.wait_all_tasks_blocked()
                assert pool.stats().active_workers <= max(pool.max_workers, max_workers, 5)
            assert invariant_holds(await view(pool))
        for event in events:
            event.set()
        with anyio.fail_after(30):  # each job is due within 0.01 s (a deferral: 0.002 s)
            while True:
                await pool.join()
                now = await view(pool)
                if not (now.scheduled_tasks or now.queued_tasks or now.active_workers):
                    break  # nothing is live: nothing can change
                await anyio.sleep(0.001)
        stats = await view(pool)
        if distributed:
            # Counted are the jobs Redis had: submit_nowait sends with the next round trip,
            # and a job cancelled before it, or refused by Redis (QueueFull by Redis's newer
            # count), never reached it (docs/distributed.md).
            reached = []
            for handle, behaviour in handles:
                try:
                    await pool.aget(handle.job_id)
                except JobNotFound:
                    assert handle.status in (JobStatus.CANCELLED, JobStatus.FAILED), handle
                    continue
                reached.append((handle, behaviour))
            handles = reached
    assert invariant_holds(stats)
    assert stats.total_submitted == len(handles)
    assert stats.queued_tasks == 0
    assert stats.scheduled_tasks == 0
    assert stats.active_workers == 0
    by_status: dict[JobStatus, int] = {}
    for handle, behaviour in handles:
        assert handle.status.ended, handle
        by_status[handle.status] = by_status.get(handle.status, 0) + 1
        if handle.status is JobStatus.COMPLETED:
            assert await handle.result() == behaviour
            assert handle.attempts == {"flaky": 2, "defer": 3}.get(behaviour, 1)
        if handle.status is JobStatus.TIMED_OUT:
            assert behaviour == "timeout"
        if handle.status is JobStatus.FAILED:
            assert behaviour == "fail"
    assert stats.total_completed == by_status.get(JobStatus.COMPLETED, 0)
    assert stats.total_failed == by_status.get(JobStatus.FAILED, 0)
    assert stats.total_cancelled == by_status.get(JobStatus.CANCELLED, 0)
    assert stats.total_timed_out == by_status.get(JobStatus.TIMED_OUT, 0)


def kind_of(store: str | None) -> str:
    """``memory``, ``sqlite`` or ``redis``: the kind of store of a URL."""
    if store is None:
        return "memory"
    scheme = store.split(":", 1)[0]
    return "redis" if scheme.startswith("redis") else scheme


def _examples(store: str) -> settings:
    return settings(
        max_examples=EXAMPLES[store],
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


programs = given(
    ops=operations,
    max_workers=st.integers(1, 4),
    queue_size=st.integers(0, 6),
    max_pending=st.one_of(st.none(), st.integers(0, 3)),
)
orders = given(
    priorities=st.lists(st.integers(-5, 12), min_size=1, max_size=120),
    cancels=st.sets(st.integers(0, 119)),
)


def _check_program(
    backend: str, store: str, request: pytest.FixtureRequest, stores: dict[str, Any], **kw: Any
) -> None:
    url = store_of(store, request, stores)
    _run(backend, url, functools.partial(_program, url, **kw))


def _check_order(
    backend: str,
    store: str,
    request: pytest.FixtureRequest,
    stores: dict[str, Any],
    priorities: list[int],
    cancels: set[int],
) -> None:
    url = store_of(store, request, stores)

    async def main() -> None:
        state.gate = anyio.Event()
        state.blocking = anyio.Event()
        async with open_job_pool(1, max_pending=None, store=url, registry=registry) as pool:
            await pool.submit(blocker)
            # on Redis a worker claims a job with the link's next trip, not at the submit
            await state.blocking.wait()
            handles = [await pool.submit(record, i, priority=p) for i, p in enumerate(priorities)]
            for i in cancels:
                if i < len(handles):
                    handles[i].cancel()
                    await handles[i].wait()  # on Redis: once Redis has removed it
            state.gate.set()
            # a distributed pool leaves its waiting jobs in Redis when it stops, to the other
            # processes (docs/distributed.md); join() waits for every job it submitted
            await pool.join()

    _run(backend, url, main)
    expected = sorted(
        (i for i in range(len(priorities)) if i not in cancels),
        key=lambda i: (priorities[i], i),
    )
    assert state.started == expected


class Leave(Exception):
    """Leaves a pool's block by an exception (its live jobs stay in the store)."""


restart_steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("submit"),
            st.integers(0, 3),
            st.sampled_from(["ok", "ok", "defer", "fail", "block"]),
            st.sampled_from([None, 0, 0.001, 0.005, 0.02]),
        ),
        st.tuples(st.just("cancel"), st.integers(0, 40)),
        st.tuples(st.just("release"), st.integers(0, 40)),
        st.tuples(st.just("settle")),
        st.tuples(st.just("restart"), st.sampled_from(["drain", "exception", "stop"])),
    ),
    max_size=30,
)


async def _restart_program(url: str, steps: list[tuple[Any, ...]]) -> None:
    """Run ``steps`` on pools on the store ``url``, one pool after another (a ``restart``
    step ends a pool: by a drain cut short, by an exception, or by ``stop(drain=False)``),
    then a last pool until every job has ended. Jobs for later and deferred ones that a
    pool's end cut off are resumed by the next pool, due at their time."""
    ids: list[str] = []
    behaviours: list[str] = []
    cancelled: dict[int, int] = {}  # index: starts recorded when it was cancelled
    step = 0
    options: dict[str, Any] = {"shutdown_timeout": 0.01, "store": url, "registry": registry}
    while step < len(steps):
        with contextlib.suppress(Leave):
            async with open_job_pool(2, 10, max_pending=None, **options) as pool:
                assert invariant_holds(pool.stats())
                while step < len(steps):
                    op = steps[step]
                    step += 1
                    kind = op[0]
                    if kind == "restart":
                        if op[1] == "exception":
                            raise Leave
                        if op[1] == "stop":
                            await pool.stop(drain=False)
                        break
                    if kind == "submit":
                        _, priority, behaviour, delay = op
                        index = len(ids)
                        state.events.append(anyio.Event())
                        ids.append(f"job-{index}")
                        behaviours.append(behaviour)
                        await pool.submit(
                            later_job,
                            index,
                            behaviour,
                            job_id=ids[index],
                            priority=priority,
                            delay=delay,
                        )
                    elif kind == "cancel" and ids:
                        index = op[1] % len(ids)
                        handle = await pool.aget(ids[index])
                        if not handle.status.ended:
                            handle.cancel()
                            cancelled[index] = len(state.starts)
                    elif kind == "release" and ids:
                        state.events[op[1] % len(ids)].set()
                    elif kind == "settle":
                        await anyio.wait_all_tasks_blocked()
                    assert invariant_holds(pool.stats())
    for event in state.events:
        event.set()
    async with open_job_pool(2, 10, max_pending=None, **options) as pool:
        with anyio.fail_after(30):
            for job_id in ids:
                await (await pool.aget(job_id)).wait()
        await pool.join()
        stats = pool.stats()
        assert invariant_holds(stats)
        assert (stats.scheduled_tasks, stats.queued_tasks, stats.active_workers) == (0, 0, 0)
        final = [(await pool.aget(job_id)).status for job_id in ids]
    for index, behaviour in enumerate(behaviours):
        if index in cancelled:
            expected = JobStatus.CANCELLED
        elif behaviour == "fail":
            expected = JobStatus.FAILED
        else:
            expected = JobStatus.COMPLETED
        assert final[index] is expected, (index, behaviour, final[index])
        # a job that completed returned once: it never runs again once its end is on record
        assert state.ends.count(index) == (expected is JobStatus.COMPLETED)
    for position, (index, _, at, due) in enumerate(state.starts):
        if due is not None:
            assert at >= due - 0.002, (index, at, due)  # no job starts before its due time
        assert position < cancelled.get(index, len(state.starts))  # none after its cancel


# One test per store, so that each has its own number of examples.


@pytest.mark.parametrize("backend", BACKENDS)
@_examples("memory")
@programs
def test_random_programs_keep_the_invariant_and_end_every_job_in_memory(
    backend: str, request: pytest.FixtureRequest, stores: dict[str, Any], **kw: Any
) -> None:
    _check_program(backend, "memory", request, stores, **kw)


@pytest.mark.parametrize("backend", BACKENDS)
@_examples("sqlite")
@programs
def test_random_programs_keep_the_invariant_and_end_every_job_on_sqlite(
    backend: str, request: pytest.FixtureRequest, stores: dict[str, Any], **kw: Any
) -> None:
    _check_program(backend, "sqlite", request, stores, **kw)


@pytest.mark.parametrize("backend", BACKENDS)
@_examples("redis")
@programs
def test_random_programs_keep_the_invariant_and_end_every_job_on_redis(
    backend: str, request: pytest.FixtureRequest, stores: dict[str, Any], **kw: Any
) -> None:
    _check_program(backend, "redis", request, stores, **kw)


@pytest.mark.parametrize("backend", BACKENDS)
@_examples("memory")
@orders
def test_start_order_is_priority_then_fifo_in_memory(
    backend: str, request: pytest.FixtureRequest, stores: dict[str, Any], **kw: Any
) -> None:
    _check_order(backend, "memory", request, stores, **kw)


@pytest.mark.parametrize("backend", BACKENDS)
@_examples("sqlite")
@orders
def test_start_order_is_priority_then_fifo_on_sqlite(
    backend: str, request: pytest.FixtureRequest, stores: dict[str, Any], **kw: Any
) -> None:
    _check_order(backend, "sqlite", request, stores, **kw)


@pytest.mark.parametrize("backend", BACKENDS)
@_examples("redis")
@orders
def test_start_order_is_priority_then_fifo_on_redis(
    backend: str, request: pytest.FixtureRequest, stores: dict[str, Any], **kw: Any
) -> None:
    _check_order(backend, "redis", request, stores, **kw)


@pytest.mark.parametrize("backend", BACKENDS)
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(steps=restart_steps)
def test_random_programs_with_restarts_run_jobs_for_later_at_their_time_on_sqlite(
    backend: str, stores: dict[str, Any], steps: list[tuple[Any, ...]]
) -> None:
    url = f"sqlite:///{stores['sqlite'] / uuid.uuid4().hex}.db"
    _run(backend, url, functools.partial(_restart_program, url, steps))
