"""What the store suites share (tests/stores/test_conformance.py, test_redis_pool.py)."""

from __future__ import annotations

from typing import Any

from trio_jobpool import JobHandle, JobStatus, PoolStats, RetryPolicy

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
        + stats.active_workers
    )


def counters(stats: PoolStats) -> dict[str, int]:
    return {k: v for k, v in stats.as_dict().items() if isinstance(v, int)}


def status(handle: JobHandle[Any]) -> JobStatus:
    """``handle.status`` (through a call, so that type checkers do not narrow it for good)."""
    return handle.status
