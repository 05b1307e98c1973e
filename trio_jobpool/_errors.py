"""The exception hierarchy: every public error derives from :class:`JobPoolError`.

Every message names the job id or the value involved, so a log line is enough to find the job.
"""

from __future__ import annotations

__all__ = [
    "DuplicateJob",
    "JobCancelled",
    "JobFailed",
    "JobNotFound",
    "JobNotRegistered",
    "JobNotSerializable",
    "JobPoolError",
    "JobTimeout",
    "PoolClosed",
    "QueueFull",
    "StoreError",
    "StoreOutcomeUnknown",
]


class JobPoolError(Exception):
    """Base class of every exception this library raises on its own account."""


class PoolClosed(JobPoolError):
    """The pool no longer accepts jobs: ``close()`` or ``stop()`` was called, or its block ended."""


class QueueFull(JobPoolError):
    """``submit_nowait`` found no room: ``queue_size + max_pending`` jobs are already waiting."""


class DuplicateJob(JobPoolError):
    """A job with this id is live (queued, retrying or running); nothing was changed."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} is already live in this pool")
        self.job_id = job_id


class JobNotFound(JobPoolError, LookupError):
    """No live job has this id (and, for ``get``, no ended job in the pool's history)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no such job: {job_id!r}")
        self.job_id = job_id

    def __str__(self) -> str:  # LookupError would repr() the single argument
        return str(self.args[0])


class JobCancelled(JobPoolError):
    """The job ended cancelled; the message says why: ``cancelled`` (by id or handle),
    ``cancelled by the pool's shutdown``, ``cancelled by its own code`` (it raised a
    cancellation nothing had asked for), ``interrupted by KeyboardInterrupt`` (or another
    ``BaseException``), or ``cancelled: its submit was cancelled`` (asyncio only)."""

    def __init__(self, job_id: str, reason: str = "cancelled") -> None:
        super().__init__(f"job {job_id!r} was {reason}")
        self.job_id = job_id


class JobTimeout(JobPoolError, TimeoutError):
    """The job ran longer than its timeout and was cancelled."""

    def __init__(self, job_id: str, timeout: float) -> None:
        super().__init__(f"job {job_id!r} timed out after {timeout:g} s")
        self.job_id = job_id
        self.timeout = timeout


class JobFailed(JobPoolError):
    """A failed job whose original exception object is gone (e.g. read back from a store).

    ``type_name`` and ``message`` describe the original exception and ``traceback_text`` keeps its
    formatted traceback.
    """

    def __init__(self, job_id: str, type_name: str, message: str, traceback_text: str = "") -> None:
        super().__init__(f"job {job_id!r} failed: {type_name}: {message}")
        self.job_id = job_id
        self.type_name = type_name
        self.message = message
        self.traceback_text = traceback_text


class JobNotRegistered(JobPoolError):
    """The function (or name) is not registered in the pool's :class:`JobRegistry`."""


class JobNotSerializable(JobPoolError):
    """A job's arguments (or result) cannot be represented as JSON."""


class StoreError(JobPoolError):
    """A store cannot be opened, read or written: a corrupt or non-SQLite file, a read-only
    path, a full disk, or a file another pool holds. The message names the store's path."""


class StoreOutcomeUnknown(StoreError):
    """A write was sent to the store and no answer came within its timeout (or the connection
    broke before the answer): it may or may not have happened. For a submit, the job may be
    queued, running or done: look it up by ``job_id`` later (``aget``); submitting it again with
    the same id is refused with :class:`DuplicateJob` while the first one, if written, is live."""

    def __init__(self, message: str, job_id: str | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id
