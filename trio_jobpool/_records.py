"""The record codec: a job's :class:`JobRecord` to and from its handle, its retry policy and
its error, and a Redis hash to a record. Used by every pool that keeps records (SQLite, Redis)."""

from __future__ import annotations

import builtins
import importlib
import json
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ._errors import JobFailed, JobNotRegistered
from ._job import CancelKind, CancelReason, JobHandle, JobOwner, JobStatus, RecordedJob, Unbuilt
from ._retry import RetryPolicy
from .stores._base import JobRecord

__all__ = [
    "apply_end",
    "apply_run",
    "error_fields",
    "ended_outcome",
    "job_from_record",
    "policy_from_json",
    "policy_to_json",
    "record_from_fields",
    "unregistered",
    "wall_clock_converter",
]

T = TypeVar("T")


def policy_to_json(policy: RetryPolicy | None) -> dict[str, Any] | None:
    if policy is None:
        return None
    return {
        "max_attempts": policy.max_attempts,
        "backoff": policy.backoff,
        "max_backoff": policy.max_backoff,
        "jitter": policy.jitter,
        "retry_on": [f"{cls.__module__}.{cls.__qualname__}" for cls in policy.retry_on],
    }


def policy_from_json(
    data: dict[str, Any] | None, default: RetryPolicy | None
) -> RetryPolicy | None:
    """The policy a record names; exception classes that no longer import become
    ``Exception`` (retrying too much beats losing the retry)."""
    if data is None:
        return default
    retry_on = tuple(
        _exception_class(name) for name in data.get("retry_on", ["builtins.Exception"])
    )
    return RetryPolicy(
        max_attempts=data["max_attempts"],
        backoff=data["backoff"],
        max_backoff=data["max_backoff"],
        jitter=data["jitter"],
        retry_on=retry_on or (Exception,),
    )


def _exception_class(qualified: str) -> type[BaseException]:
    module_name, _, qualname = qualified.rpartition(".")
    try:
        value: Any = importlib.import_module(module_name or "builtins")
        for part in qualname.split("."):
            value = getattr(value, part)
    except (ImportError, AttributeError, ValueError):
        return Exception
    if isinstance(value, type) and issubclass(value, Exception):
        return value
    return Exception


def error_fields(error: BaseException) -> tuple[str, str, str]:
    """(qualified type name, message, formatted traceback) of an exception."""
    kind = type(error)
    module = kind.__module__
    if module == builtins.__name__:
        module = ""
    elif module.startswith("trio_jobpool."):  # our errors by their public name
        module = "trio_jobpool."
    else:
        module = f"{module}."
    text = "".join(traceback.format_exception(error))
    return f"{module}{kind.__qualname__}", str(error), text


def job_from_record(
    owner: JobOwner,
    record: JobRecord,
    fn: Callable[..., Awaitable[Any]] | None,
    key: str | int,
    default_timeout: float,
    default_retry: RetryPolicy | None,
    wall_to_monotonic: Callable[[float], float],
) -> RecordedJob[Any]:
    """A handle for a stored job (live: to resume; ended: read back by ``get``)."""
    timeout = default_timeout if record.timeout is None else record.timeout
    job: RecordedJob[Any] = RecordedJob(
        owner,
        key,
        fn if fn is not None else unregistered(record.name),
        tuple(record.args),
        record.priority,
        timeout,
        policy_from_json(record.retry, default_retry),
        record,
    )
    job._attempts = record.attempts
    if record.key is not None:
        job._set_key(record.key)
    job._submitted_m = job._ready_m = wall_to_monotonic(record.submitted_at)
    if record.scheduled_for is not None:  # handle.scheduled_for: when it is (was last) due
        job._due_m = wall_to_monotonic(record.scheduled_for)
    if JobStatus(record.status).ended:
        apply_end(job, record, wall_to_monotonic)
    else:
        apply_run(job, record, wall_to_monotonic)
    return job


def apply_run(
    job: JobHandle[Any], record: JobRecord, wall_to_monotonic: Callable[[float], float]
) -> None:
    """Give ``job`` the timings and progress of the latest attempt ``record`` stores."""
    if record.started_at is not None:
        job._started_m = wall_to_monotonic(record.started_at)
    if record.finished_at is not None:
        job._finished_m = wall_to_monotonic(record.finished_at)
    job._exec_time = record.exec_time
    if record.progress or record.progress_message is not None:
        JobHandle.set_progress(job, min(1.0, max(0.0, record.progress)), record.progress_message)


def apply_end(
    job: JobHandle[Any], record: JobRecord, wall_to_monotonic: Callable[[float], float]
) -> None:
    """Give ``job`` the end ``record`` stores: status, outcome, and the latest timings."""
    apply_run(job, record, wall_to_monotonic)
    job._status, job._result = ended_outcome(job, record)
    job._args = ()


def ended_outcome(job: JobHandle[Any], record: JobRecord) -> tuple[JobStatus, Any]:
    """The final status and result (as a handle keeps them) of the ended job ``record``
    stores; a cancelled or timed-out one also gets its cancel reason."""
    status = JobStatus(record.status)
    if status is JobStatus.COMPLETED:
        return status, record.result
    if status is JobStatus.FAILED:
        error = JobFailed(
            record.job_id,
            record.error_type or "Exception",
            record.error_message or "",
            record.error_traceback or "",
        )
        return status, (error, None)
    if status is JobStatus.TIMED_OUT:
        job._cancel_reason = CancelReason(CancelKind.TIMEOUT, "timed out")
    else:
        job._cancel_reason = CancelReason(CancelKind.REQUEST, record.error_message or "cancelled")
    return status, Unbuilt(None)


def record_from_fields(job_id: str, fields: dict[str, str]) -> JobRecord:
    """A job as a Redis hash holds it (``stores/_redis_queue.py``) as a :class:`JobRecord`."""

    def number(name: str) -> float | None:
        value = fields.get(name)
        return None if value in (None, "") else float(value)

    options = json.loads(fields.get("options") or "{}")
    result = fields.get("result")
    return JobRecord(
        job_id=job_id,
        name=fields.get("name", ""),
        args=json.loads(fields.get("args") or "[]"),
        priority=int(fields.get("priority") or 0),
        status=fields.get("status", "queued"),
        timeout=options.get("timeout"),
        retry=options.get("retry"),
        attempts=int(fields.get("attempts") or 0),
        crashes=int(fields.get("crashes") or 0),
        interrupted=int(fields.get("interrupted") or 0),
        deferrals=int(fields.get("deferrals") or 0),
        progress=number("progress") or 0.0,
        progress_message=fields.get("progress_message"),
        result=None if result is None else json.loads(result),
        error_type=fields.get("error_type"),
        error_message=fields.get("error_message"),
        error_traceback=fields.get("error_traceback"),
        submitted_at=number("submitted_at") or 0.0,
        started_at=number("started_at"),
        finished_at=number("finished_at"),
        exec_time=number("exec_time"),
        retry_at=number("retry_at"),
        scheduled_for=number("scheduled_for"),
        key=fields.get("key") or None,  # "" or absent: no key
        seq=int(fields.get("seq") or 0),
    )


def unregistered(name: str) -> Callable[..., Awaitable[Any]]:
    async def unregistered(*args: Any) -> Any:
        raise JobNotRegistered(f"no job is registered as {name!r}")

    return unregistered


def wall_clock_converter(now_monotonic: float) -> Callable[[float], float]:
    """Map wall-clock times (as stored) onto a pool's monotonic clock."""
    offset = time.time() - now_monotonic
    return lambda wall: wall - offset
