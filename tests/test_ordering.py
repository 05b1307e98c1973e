"""Strict priority among jobs that have not started, FIFO within one priority."""

from __future__ import annotations

import random

import anyio
import pytest

from trio_jobpool import RetryPolicy, open_job_pool

from ._helpers import Boom, Gate, Recorder, settle

pytestmark = pytest.mark.anyio


async def test_urgent_job_overtakes_every_waiting_job() -> None:
    gate = Gate()
    recorder = Recorder()
    async with open_job_pool(max_workers=1, queue_size=100) as pool:
        await pool.submit(gate.job, "blocker")
        for i in range(50):
            await pool.submit(recorder.job, f"p5-{i}", priority=5)
        await pool.submit(recorder.job, "urgent", priority=1)
        gate.open()
    assert recorder.started[0] == "urgent"
    assert recorder.started[1:] == [f"p5-{i}" for i in range(50)]


async def test_priority_then_fifo_with_random_priorities() -> None:
    gate = Gate()
    recorder = Recorder()
    rng = random.Random(7)
    submitted = []
    async with open_job_pool(max_workers=1, max_pending=None) as pool:
        await pool.submit(gate.job, "blocker")
        for seq in range(500):
            priority = rng.randint(-3, 10)
            submitted.append((priority, seq))
            await pool.submit(recorder.job, (priority, seq), priority=priority)
        gate.open()
    assert recorder.started == sorted(submitted)


async def test_urgent_job_is_not_overtaken_by_a_job_in_hand_off() -> None:
    """The guide's inversion: jobs already moved to its channel ran before a later urgent one.
    Here a worker that frees up takes the most urgent job waiting *at that moment*."""
    first = Gate()
    recorder = Recorder()
    async with open_job_pool(max_workers=2, queue_size=10) as pool:
        await pool.submit(first.job, "a")
        await pool.submit(first.job, "b")
        for i in range(5):
            await pool.submit(recorder.job, f"low-{i}", priority=10)
        await settle()
        await pool.submit(recorder.job, "urgent", priority=1)
        first.open()
    assert recorder.started[0] == "urgent"


async def test_retried_job_reenters_behind_its_priority() -> None:
    gate = Gate()
    order: list[str] = []
    attempts = 0

    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        order.append(f"flaky#{attempts}")
        await anyio.lowlevel.checkpoint()
        if attempts == 1:
            raise Boom("first attempt fails")
        return "ok"

    async def record(name: str) -> None:
        order.append(name)
        await gate.opened.wait()

    policy = RetryPolicy(max_attempts=2, backoff=0.0, jitter=False)
    async with open_job_pool(max_workers=1, max_pending=None) as pool:
        handle = await pool.submit(flaky, priority=5, retry=policy)
        await pool.submit(record, "blocker", priority=0)
        await pool.submit(record, "same-priority-before", priority=5)
        await settle()  # flaky#1 failed, the blocker runs, the retry re-entered the queue
        await pool.submit(record, "urgent", priority=1)
        gate.open()
        assert await handle.result() == "ok"
    assert order == ["flaky#1", "blocker", "urgent", "same-priority-before", "flaky#2"]
