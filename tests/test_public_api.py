from __future__ import annotations

import inspect

import pytest

import trio_jobpool
from trio_jobpool import (
    DuplicateJob,
    JobCancelled,
    JobFailed,
    JobNotFound,
    JobNotRegistered,
    JobNotSerializable,
    JobPoolError,
    JobStatus,
    JobTimeout,
    PoolClosed,
    PoolStats,
    QueueFull,
    StoreError,
)

API_NAMES = {
    "open_job_pool",
    "JobPool",
    "JobHandle",
    "JobStatus",
    "PoolStats",
    "RetryPolicy",
    "Schedule",
    "Limit",
    "Rate",
    "KeyStats",
    "JobRegistry",
    "current_job",
    "JobPoolError",
    "Defer",
    "PoolClosed",
    "QueueFull",
    "DuplicateJob",
    "JobNotFound",
    "JobCancelled",
    "JobTimeout",
    "JobNotRegistered",
    "JobNotSerializable",
    "JobFailed",
    "SqliteStore",
    "RedisStore",
    "StoreError",
    "StoreOutcomeUnknown",
    "TIME_BUCKETS",
    "TimeHistogram",
}


def test_all_matches_the_public_names() -> None:
    assert set(trio_jobpool.__all__) == API_NAMES
    public = {
        name
        for name, value in vars(trio_jobpool).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }
    assert public == API_NAMES
    for name in trio_jobpool.__all__:
        assert getattr(trio_jobpool, name) is not None


def test_importing_the_package_needs_no_extra() -> None:
    """coredis (the ``redis`` extra) is imported when a pool on Redis opens, not before."""
    import subprocess
    import sys

    code = (
        "import sys, trio_jobpool; assert trio_jobpool.RedisStore; print('coredis' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_the_package_is_typed() -> None:
    from importlib.resources import files

    assert files("trio_jobpool").joinpath("py.typed").is_file()


@pytest.mark.parametrize(
    "exc",
    [
        PoolClosed,
        QueueFull,
        DuplicateJob,
        JobNotFound,
        JobCancelled,
        JobTimeout,
        JobNotRegistered,
        JobNotSerializable,
        JobFailed,
        StoreError,
    ],
)
def test_every_error_is_a_job_pool_error(exc: type[Exception]) -> None:
    assert issubclass(exc, JobPoolError)
    assert issubclass(JobPoolError, Exception)


def test_special_bases() -> None:
    assert issubclass(JobNotFound, LookupError)
    assert issubclass(JobTimeout, TimeoutError)


def test_messages_name_the_job() -> None:
    assert "abc" in str(JobNotFound("abc"))
    assert "abc" in str(DuplicateJob("abc"))
    assert "abc" in str(JobCancelled("abc"))
    assert "abc" in str(JobTimeout("abc", 1.5))
    assert "1.5" in str(JobTimeout("abc", 1.5))
    failed = JobFailed("abc", "ValueError", "bad input", "Traceback ...")
    assert str(failed) == "job 'abc' failed: ValueError: bad input"
    assert failed.traceback_text == "Traceback ..."


def test_job_status_is_a_str_enum() -> None:
    assert [s.value for s in JobStatus] == [
        "scheduled",
        "queued",
        "retrying",
        "running",
        "completed",
        "failed",
        "cancelled",
        "timed_out",
    ]
    assert JobStatus.QUEUED == "queued"  # type: ignore[comparison-overlap]  # a str enum member equals its value
    assert isinstance(JobStatus.TIMED_OUT, str)
    assert {s for s in JobStatus if s.ended} == {
        JobStatus.COMPLETED,
        JobStatus.FAILED,
        JobStatus.CANCELLED,
        JobStatus.TIMED_OUT,
    }


def test_pool_stats_as_dict_has_exactly_the_fields() -> None:
    stats = PoolStats(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0.1, 0.2, 0.3, 0.4, 0.5)
    assert list(stats.as_dict()) == [
        "total_submitted",
        "total_completed",
        "total_failed",
        "total_cancelled",
        "total_timed_out",
        "total_retried",
        "active_workers",
        "max_workers",
        "queued_tasks",
        "scheduled_tasks",
        "average_exec_time",
        "average_wait_time",
        "exec_time_p50",
        "exec_time_p95",
        "exec_time_p99",
    ]
    with pytest.raises(AttributeError):
        stats.total_submitted = 3  # type: ignore[misc]
