"""trio_jobpool: a job worker pool for Trio and AnyIO (asyncio).

Open a pool with :func:`open_job_pool`, submit async jobs, and get exact priorities, timeouts,
cancellation by id, retries with backoff, live resizing and stats. See ``docs/`` for the guide.
"""

from ._errors import (
    Defer,
    DuplicateJob,
    JobCancelled,
    JobFailed,
    JobNotFound,
    JobNotRegistered,
    JobNotSerializable,
    JobPoolError,
    JobTimeout,
    PoolClosed,
    QueueFull,
    StoreError,
    StoreOutcomeUnknown,
)
from ._job import JobHandle, JobStatus, current_job
from ._limits import KeyStats, Limit, Rate
from ._open import open_job_pool
from ._pool import JobPool
from ._registry import JobRegistry
from ._retry import RetryPolicy
from ._schedules import Schedule
from ._stats import TIME_BUCKETS, PoolStats, TimeHistogram
from ._version import __version__ as __version__
from .stores import RedisStore, SqliteStore

__all__ = [
    "Defer",
    "DuplicateJob",
    "JobCancelled",
    "JobFailed",
    "JobHandle",
    "JobNotFound",
    "JobNotRegistered",
    "JobNotSerializable",
    "JobPool",
    "JobPoolError",
    "JobRegistry",
    "JobStatus",
    "JobTimeout",
    "KeyStats",
    "Limit",
    "PoolClosed",
    "PoolStats",
    "QueueFull",
    "Rate",
    "RedisStore",
    "RetryPolicy",
    "Schedule",
    "SqliteStore",
    "StoreError",
    "StoreOutcomeUnknown",
    "TIME_BUCKETS",
    "TimeHistogram",
    "current_job",
    "open_job_pool",
]
