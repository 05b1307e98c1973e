"""What the store suites share (tests/stores/test_conformance.py, test_redis_pool.py)."""

from __future__ import annotations

import random
from typing import Any

from tests.durable_app import board, hold, note
from trio_jobpool import JobHandle, JobPool, JobStatus, PoolStats, RetryPolicy

SHORT = RetryPolicy(max_attempts=3, backoff=0.001, max_backoff=0.001, jitter=False)
SHUTDOWN = "cancelled by the pool's shutdown"


class Leave(Exception):
    """Raised to leave a pool's block by an exception (the pool cancels every job)."""


def invariant_holds(stats: PoolStats) -> bool:
    return stats.total_submitted == (
        stats.total_completed
        + stats.total_failed
        + stats.total_cancelled
        + stats.total_timed_out
        + stats.queued_tasks
        + stats.scheduled_tasks
        + stats.active_workers
    )


def counters(stats: PoolStats) -> dict[str, int]:
    return {k: v for k, v in stats.as_dict().items() if isinstance(v, int)}


def status(handle: JobHandle[Any]) -> JobStatus:
    """``handle.status`` (through a call, so that type checkers do not narrow it for good)."""
    return handle.status


async def check_priority_then_fifo(pool: JobPool, *, nowait: bool) -> None:
    """Forty jobs of random priorities submitted behind a blocker (with ``nowait``, every other
    one by ``submit_nowait``) start by priority, then in the order submitted. ``pool`` has one
    worker."""
    rng = random.Random(5)
    priorities = [rng.choice([-3, 0, 1, 5, 5, 10]) for _ in range(40)]
    await pool.submit(hold, "blocker", priority=100)
    await board.wait_started("blocker")
    for i, priority in enumerate(priorities):
        if nowait and not i % 2:
            pool.submit_nowait(note, f"{i}", priority=priority)
        else:
            await pool.submit(note, f"{i}", priority=priority)
    assert board.started == ["blocker"]
    board.open()
    await pool.join()
    expected = sorted(range(len(priorities)), key=lambda i: (priorities[i], i))
    assert board.started == ["blocker", *map(str, expected)]
