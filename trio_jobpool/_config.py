"""A pool's settings, checked once by ``open_job_pool`` (``_open.py``)."""

from __future__ import annotations

from dataclasses import dataclass

from ._limits import Limit
from ._registry import JobRegistry
from ._retry import RetryPolicy

__all__ = ["PoolConfig"]


@dataclass(frozen=True, slots=True)
class PoolConfig:
    """What ``open_job_pool`` was given, checked; times in seconds, ``math.inf`` for none.

    The store is not part of it: ``_open.py`` hands a pool its journal (a local store) or
    its Redis queue (a distributed pool).
    """

    max_workers: int
    queue_size: int
    job_timeout: float
    shutdown_timeout: float
    shutdown_grace: float  # after the shutdown cancelled the jobs; inf: never abandon any
    max_pending: int | None
    retry: RetryPolicy | None
    history: int
    registry: JobRegistry | None
    key_limit: Limit | None = None  # the limit of every key without its own
    fair: bool = False  # round-robin across keys within one priority
    aging: float | None = None  # seconds per level a waiting job's priority improves
