"""Submitting: acceptance, backpressure, QueueFull, ids, argument checks, closing."""

from __future__ import annotations

import functools
import gc
import re
import weakref

import anyio
import anyio.lowlevel
import pytest

from trio_jobpool import (
    DuplicateJob,
    JobNotFound,
    JobStatus,
    PoolClosed,
    QueueFull,
    open_job_pool,
)

from ._helpers import Gate, noop, settle

pytestmark = pytest.mark.anyio


async def test_readme_example_returns_the_result() -> None:
    async def build(repo: str) -> str:
        await anyio.lowlevel.checkpoint()
        return f"built {repo}"

    async with open_job_pool(max_workers=10, queue_size=100) as pool:
        handle = await pool.submit(build, "repo-a", priority=1)
        assert await handle.result() == "built repo-a"
        stats = pool.stats().as_dict()
    assert stats["total_submitted"] == 1
    assert stats["total_completed"] == 1


async def test_keyword_arguments_through_partial() -> None:
    async def greet(name: str, *, greeting: str) -> str:
        await anyio.lowlevel.checkpoint()
        return f"{greeting}, {name}"

    async with open_job_pool() as pool:
        handle = await pool.submit(functools.partial(greet, greeting="hi"), "ann")
        assert await handle.result() == "hi, ann"


async def test_generated_ids_are_unique_32_hex() -> None:
    async with open_job_pool(max_pending=None) as pool:
        handles = [pool.submit_nowait(noop) for _ in range(200)]
        ids = {h.job_id for h in handles}
    assert len(ids) == 200
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


async def test_ids_in_the_generated_form_never_collide() -> None:
    """A chosen id that has the form of a generated one (the pool's prefix and a counter)
    never collides with an id generated before or after it; ids that merely look alike (upper
    case) are plain ids."""
    async with open_job_pool(max_pending=None) as pool:
        first = pool.submit_nowait(noop)
        prefix = first.job_id[:16]
        chosen = pool.submit_nowait(noop, job_id=f"{prefix}{5:016x}")
        generated = [pool.submit_nowait(noop) for _ in range(10)]
        ids = [first.job_id, chosen.job_id, *(h.job_id for h in generated)]
        assert len(set(ids)) == len(ids)
        assert pool.get(chosen.job_id) is chosen
        # ids of other forms that merely look alike are plain ids
        upper = pool.submit_nowait(noop, job_id=f"{prefix}{6:016X}".upper())
        assert pool.get(upper.job_id) is upper


async def test_lookalikes_of_a_generated_id_are_other_ids() -> None:
    """Only the exact generated form names a generated job: a suffix that ``int(..., 16)``
    would also read as the same counter (a sign, an underscore, upper case, a non-ASCII
    digit) is a plain id of its own, for ``get``, ``cancel`` and ``submit`` alike."""
    gate = Gate()
    async with open_job_pool(max_workers=1, max_pending=None) as pool:
        pool.submit_nowait(gate.job)
        target = pool.submit_nowait(noop)
        prefix, counter = target.job_id[:16], int(target.job_id[16:], 16)
        canonical = f"{counter:016x}"
        assert target.job_id == prefix + canonical
        lookalikes = [
            "+" + canonical[1:],
            canonical[:8] + "_" + canonical[9:],
            canonical[:-1] + "\N{ARABIC-INDIC DIGIT ONE}",
        ]
        for suffix in lookalikes:
            with pytest.raises(JobNotFound):
                pool.cancel(prefix + suffix)
            with pytest.raises(JobNotFound):
                pool.get(prefix + suffix)
        assert target.status is JobStatus.QUEUED
        plain = [pool.submit_nowait(noop, job_id=prefix + suffix) for suffix in lookalikes]
        for handle in plain:
            pool.cancel(handle.job_id)
            assert handle.status is JobStatus.CANCELLED
        assert target.status is JobStatus.QUEUED
        pool.cancel(target.job_id)
        target = target  # rebound: mypy keeps the status narrowed above across calls
        assert target.status is JobStatus.CANCELLED
        # a chosen id in the generated form, with letters: its upper case is another id
        lettered = pool.submit_nowait(noop, job_id=f"{prefix}{0xAB:016x}")
        with pytest.raises(JobNotFound):
            pool.cancel(f"{prefix}{0xAB:016X}")
        upper = pool.submit_nowait(noop, job_id=f"{prefix}{0xAB:016X}")
        pool.cancel(upper.job_id)
        assert (upper.status, lettered.status) == (JobStatus.CANCELLED, JobStatus.QUEUED)
        gate.open()


async def test_submit_nowait_raises_queue_full_at_the_bound() -> None:
    gate = Gate()
    async with open_job_pool(max_workers=2, queue_size=3, max_pending=1) as pool:
        for _ in range(2):  # taken by the idle workers at once: not "waiting"
            pool.submit_nowait(gate.job)
        for _ in range(4):  # queue_size + max_pending
            pool.submit_nowait(gate.job)
        with pytest.raises(QueueFull, match="4 jobs are waiting"):
            pool.submit_nowait(gate.job, job_id="extra")
        assert pool.stats().total_submitted == 6
        with pytest.raises(Exception, match="no such job"):
            pool.get("extra")
        gate.open()


async def test_submit_waits_for_room_and_returns_when_accepted() -> None:
    gate = Gate()
    async with open_job_pool(max_workers=1, queue_size=1) as pool:
        await pool.submit(gate.job, "running")
        await pool.submit(gate.job, "waiting")
        accepted = anyio.Event()

        async def blocked_submit() -> None:
            await pool.submit(gate.job, "third")
            accepted.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(blocked_submit)
            await settle()
            assert not accepted.is_set()
            assert pool.stats().total_submitted == 2
            gate.open()
            await accepted.wait()
        await pool.join()
    assert gate.started == ["running", "waiting", "third"]


async def test_rendezvous_pool_waits_until_a_worker_takes_the_job() -> None:
    gate = Gate()
    async with open_job_pool(max_workers=1, queue_size=0, max_pending=0) as pool:
        await pool.submit(gate.job, "a")  # an idle worker takes it
        with pytest.raises(QueueFull):
            pool.submit_nowait(gate.job, "b")
        done = anyio.Event()

        async def submit_b() -> None:
            handle = await pool.submit(gate.job, "b")
            assert handle.attempts == 1  # taken straight by the worker, never queued
            done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(submit_b)
            await settle()
            assert not done.is_set()
            assert pool.stats().queued_tasks == 0
            gate.open()
    assert gate.started == ["a", "b"]


async def test_blocked_submissions_enter_by_priority() -> None:
    gate = Gate()
    async with open_job_pool(max_workers=1, queue_size=0) as pool:
        await pool.submit(gate.job, "first")
        async with anyio.create_task_group() as tg:
            for name, priority in [("low", 9), ("high", 1), ("mid", 5)]:
                tg.start_soon(functools.partial(pool.submit, gate.job, name, priority=priority))
                await settle()
            gate.open()
    assert gate.started == ["first", "high", "mid", "low"]


async def test_max_pending_none_never_blocks() -> None:
    gate = Gate()
    async with open_job_pool(max_workers=1, queue_size=0, max_pending=None) as pool:
        for i in range(1000):
            pool.submit_nowait(gate.job, i)
        assert pool.stats().queued_tasks == 999
        gate.open()


async def test_cancelled_submit_was_not_accepted() -> None:
    gate = Gate()
    async with open_job_pool(max_workers=1, queue_size=0) as pool:
        await pool.submit(gate.job, "busy")
        with anyio.move_on_after(0.01) as scope:
            await pool.submit(gate.job, "never", job_id="never")
        assert scope.cancelled_caught
        assert pool.stats().total_submitted == 1
        with pytest.raises(LookupError):
            pool.get("never")
        gate.open()
    assert gate.started == ["busy"]


class Argument:
    """An argument object that a weak reference can follow."""


async def test_abandoned_blocked_submissions_are_released() -> None:
    """Submits that wait for room and give up (cancelled while parked) are not held until room
    frees: of 5000 such submits, given up 500 at a time, the pool lets go of most (their
    arguments are collected) while the queue is still full, and none was accepted."""
    gate = Gate()

    async def gives_up(scope: anyio.CancelScope, argument: Argument, job_id: str) -> None:
        with scope:
            await pool.submit(gate.job, argument, job_id=job_id)

    arguments: list[weakref.ref[Argument]] = []
    async with open_job_pool(max_workers=1, queue_size=0) as pool:
        await pool.submit(gate.job)
        for batch in range(10):
            scopes = [anyio.CancelScope() for _ in range(500)]
            async with anyio.create_task_group() as tg:
                for i, scope in enumerate(scopes):
                    argument = Argument()
                    arguments.append(weakref.ref(argument))
                    tg.start_soon(gives_up, scope, argument, f"given-up-{batch}-{i}")
                del argument
                await settle()  # every submit of the batch is parked, waiting for room
                assert pool.stats().total_submitted == 1
                for scope in scopes:
                    scope.cancel()
        gc.collect()
        held = sum(ref() is not None for ref in arguments)
        assert held < 2100  # released as they die, not held until room frees
        assert pool.stats().total_submitted == 1
        with pytest.raises(JobNotFound):
            pool.get("given-up-0-0")
        gate.open()
    assert gate.started == [None]


async def test_submit_in_a_cancelled_scope_raises_and_accepts_nothing() -> None:
    async with open_job_pool() as pool:
        with anyio.CancelScope() as scope:
            scope.cancel()
            await pool.submit(noop, job_id="x")
        assert pool.stats().total_submitted == 0
        with pytest.raises(LookupError):
            pool.get("x")


async def test_duplicate_live_id_is_refused_and_changes_nothing() -> None:
    gate = Gate()
    async with open_job_pool() as pool:
        first = await pool.submit(gate.job, job_id="same", priority=3)
        with pytest.raises(DuplicateJob, match="same"):
            await pool.submit(noop, job_id="same")
        with pytest.raises(DuplicateJob):
            pool.submit_nowait(noop, job_id="same")
        assert pool.get("same") is first
        assert pool.stats().total_submitted == 1
        gate.open()
        await first.wait()
        again = await pool.submit(noop, job_id="same")  # ended ids may be reused
        await again.wait()
        assert pool.get("same") is again


async def test_duplicate_id_among_blocked_submissions() -> None:
    gate = Gate()
    async with open_job_pool(max_workers=1, queue_size=1) as pool:
        await pool.submit(gate.job, "busy")
        await pool.submit(gate.job, "filler")
        outcomes: list[str] = []

        async def submit(name: str) -> None:
            try:
                await pool.submit(gate.job, name, job_id="twin")
                outcomes.append(name)
            except DuplicateJob:
                outcomes.append(f"{name}: duplicate")

        async with anyio.create_task_group() as tg:
            tg.start_soon(submit, "one")
            await settle()
            tg.start_soon(submit, "two")
            await settle()
            assert outcomes == []  # both blocked; neither is live, so neither is refused yet
            gate.open()
    # "one" entered first and was still live when "two" got its turn.
    assert outcomes == ["one", "two: duplicate"]
    assert gate.started == ["busy", "filler", "one"]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"job_id": ""}, ValueError),
        ({"job_id": 7}, TypeError),
        ({"priority": 1.5}, TypeError),
        ({"priority": "1"}, TypeError),
        ({"priority": True}, TypeError),
        ({"timeout": -1}, ValueError),
        ({"timeout": float("nan")}, ValueError),
        ({"timeout": "5"}, TypeError),
        ({"retry": 3}, TypeError),
    ],
)
async def test_bad_submit_arguments(kwargs: dict[str, object], error: type[Exception]) -> None:
    async with open_job_pool() as pool:
        with pytest.raises(error):
            await pool.submit(noop, **kwargs)  # type: ignore[arg-type]
        with pytest.raises(error):
            pool.submit_nowait(noop, **kwargs)  # type: ignore[arg-type]
        assert pool.stats().total_submitted == 0


async def test_not_callable_is_a_type_error() -> None:
    async with open_job_pool() as pool:
        with pytest.raises(TypeError):
            await pool.submit(42)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="no registry"):
            await pool.submit("build")


async def test_any_int_priority_is_valid() -> None:
    async with open_job_pool() as pool:
        for priority in (-(10**20), -1, 0, 10**20):
            handle = await pool.submit(noop, priority=priority)
            assert handle.priority == priority
            await handle.wait()


async def test_submit_after_close_raises_pool_closed() -> None:
    async with open_job_pool() as pool:
        pool.close()
        assert pool.closed
        with pytest.raises(PoolClosed):
            await pool.submit(noop)
        with pytest.raises(PoolClosed):
            pool.submit_nowait(noop)
    with pytest.raises(PoolClosed):
        await pool.submit(noop)


async def test_close_rejects_blocked_submissions_but_keeps_accepted_jobs() -> None:
    gate = Gate()
    async with open_job_pool(max_workers=1, queue_size=1) as pool:
        running = await pool.submit(gate.job, "running")
        waiting = await pool.submit(gate.job, "waiting")
        rejected: list[BaseException] = []

        async def blocked() -> None:
            with pytest.raises(PoolClosed) as info:
                await pool.submit(gate.job, "blocked")
            rejected.append(info.value)

        async with anyio.create_task_group() as tg:
            tg.start_soon(blocked)
            await settle()
            pool.close()
        assert len(rejected) == 1
        gate.open()
        assert await running.result() == "running"
        assert await waiting.result() == "waiting"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_workers": 0},
        {"queue_size": -1},
        {"max_pending": -1},
        {"history": -1},
        {"job_timeout": -1.0},
        {"shutdown_timeout": -0.5},
    ],
)
def test_bad_pool_arguments_raise_before_anything_starts(kwargs: dict[str, int]) -> None:
    name = next(iter(kwargs))
    with pytest.raises(ValueError, match=name):  # raised by the call, outside any event loop
        open_job_pool(**kwargs)  # type: ignore[arg-type]


def test_unsupported_store_is_refused() -> None:
    with pytest.raises(ValueError, match="store"):
        open_job_pool(store="sqlite:///x.db")
