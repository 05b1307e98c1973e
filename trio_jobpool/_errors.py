"""The exception hierarchy: every public error derives from :class:`JobPoolError`.

Every message names the job id or the value involved, so a log line is enough to find the job.
"""

from __future__ import annotations

import math

__all__ = [
    "Defer",
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
    """Base class of every exception this library raises on its own account; not raised
    itself."""


class PoolClosed(JobPoolError):
    """The pool no longer accepts jobs: ``close()`` or ``stop()`` was called, or its block ended.

    Raised by ``submit`` / ``submit_nowait`` on a closed pool (also to submissions waiting for
    room when it closes), and by ``resize`` once the pool is stopping.
    """


class QueueFull(JobPoolError):
    """``submit_nowait`` found no room: ``queue_size + max_pending`` jobs are already waiting
    (the message gives their number and the bound)."""


class DuplicateJob(JobPoolError):
    """A job with this id is live (scheduled, queued, retrying or running); nothing was changed.

    Raised by ``submit`` / ``submit_nowait``. Attribute ``job_id``: the id.
    """

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} is already live in this pool")
        self.job_id = job_id


class JobNotFound(JobPoolError, LookupError):
    """No live job has this id (and, for ``get``, no ended job in the pool's history).

    Raised by ``JobPool.cancel`` / ``acancel`` and ``JobPool.get`` / ``aget``, and by
    ``JobPool.unschedule`` for a schedule that does not exist (``kind="schedule"``: the
    message says "no such schedule"); also a ``LookupError``. Attribute ``job_id``: the id (or
    the schedule's name).
    """

    def __init__(self, job_id: str, *, kind: str = "job") -> None:
        super().__init__(f"no such {kind}: {job_id!r}")
        self.job_id = job_id

    def __str__(self) -> str:  # LookupError would repr() the single argument
        return str(self.args[0])


class JobCancelled(JobPoolError):
    """The outcome of a cancelled job (``wait()``, ``error``), raised by ``result()``.

    Message ``job '<id>' was <reason>``; ``reason`` is ``cancelled`` (by id or handle),
    ``cancelled by the pool's shutdown``, ``abandoned by the pool's shutdown: it did not end
    when cancelled`` (see ``JobPool.stop``), ``cancelled by its own code`` (it raised a
    cancellation nothing had asked for), ``interrupted by KeyboardInterrupt`` (or another
    ``BaseException``'s class name), or, on asyncio only, ``cancelled: its submit was
    cancelled`` (see ``JobPool.submit``). Attribute ``job_id``: the id.

    Its ``__cause__``, when the job raised something on its way out: the exception it raised
    while being cancelled; the ``ExceptionGroup`` of the errors its own task group raised
    together with a cancellation; or, for ``cancelled by its own code``, the cancellation it
    raised. Otherwise ``None``.
    """

    def __init__(self, job_id: str, reason: str = "cancelled") -> None:
        super().__init__(f"job {job_id!r} was {reason}")
        self.job_id = job_id


class JobTimeout(JobPoolError, TimeoutError):
    """The outcome of a job that ran longer than its timeout and was cancelled, raised by
    ``result()``; also a ``TimeoutError``.

    Message ``job '<id>' timed out after <timeout> s``; attributes ``job_id`` and ``timeout``.
    Its ``__cause__`` is what the job raised on its way out, as for :class:`JobCancelled`.
    """

    def __init__(self, job_id: str, timeout: float) -> None:
        super().__init__(f"job {job_id!r} timed out after {timeout:g} s")
        self.job_id = job_id
        self.timeout = timeout


class JobFailed(JobPoolError):
    """The outcome of a failed job whose original exception object is gone: one read back from
    a store (``JobPool.get`` of an ended job of an earlier pool), raised by its ``result()``.

    Message ``job '<id>' failed: <type_name>: <message>``. Attributes: ``job_id``;
    ``type_name`` and ``message``, the original exception's class (``ValueError``,
    ``mymodule.BuildError``, ``trio_jobpool.JobTimeout``) and message; ``traceback_text``,
    its formatted traceback. A job ended as poison has ``type_name``
    ``trio_jobpool.PoisonJob`` (on the Redis store, ``trio_jobpool.LeaseLapsed`` when some of
    its lapsed leases were stalls of its process: see docs/distributed.md).
    """

    def __init__(self, job_id: str, type_name: str, message: str, traceback_text: str = "") -> None:
        super().__init__(f"job {job_id!r} failed: {type_name}: {message}")
        self.job_id = job_id
        self.type_name = type_name
        self.message = message
        self.traceback_text = traceback_text


class JobNotRegistered(JobPoolError):
    """The function (or name) is not registered in the pool's :class:`JobRegistry`.

    Raised by ``submit`` with an unknown name, ``JobRegistry.get`` and ``JobRegistry.name_of``.
    """


class JobNotSerializable(JobPoolError):
    """A job's arguments (or result) cannot be represented as JSON.

    Raised by a durable or distributed pool's ``submit`` / ``submit_nowait`` for arguments
    JSON cannot hold (the message names the value); the outcome of such a job whose result
    JSON cannot hold (it ends failed).
    """


class StoreError(JobPoolError):
    """A store cannot be opened, read or written: a corrupt or non-SQLite file, a read-only
    path, a full disk, a file another pool holds, a Redis that does not answer. The message
    names the store's path (or URL).

    Raised when a pool's store cannot be opened, and by ``submit`` when the job could not be
    written (the job is not accepted); the outcome of a distributed pool's job that Redis lost
    (a restart without persistence, a flush, an eviction: see docs/distributed.md).
    """


class StoreOutcomeUnknown(StoreError):
    """A write was sent to the store and no answer came within its timeout (or the connection
    broke before the answer): it may or may not have happened. For a submit, the job may be
    queued, running or done: look it up by ``job_id`` later (``aget``); submitting it again with
    the same id is refused with :class:`DuplicateJob` while the first one, if written, is live.

    Raised by a distributed pool's ``submit``; ``submit_nowait``'s handle ends failed with it.
    Attribute ``job_id``: the job the write was for, or ``None``.
    """

    def __init__(self, message: str, job_id: str | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id


class Defer(JobPoolError):
    """Raised by a job's own code to run it again later, without counting a failure.

    ``raise Defer(delay)`` ends the running attempt: the job goes back to
    ``JobStatus.SCHEDULED``, due ``delay`` seconds from now, keeping its id, priority,
    arguments and handle. The attempt counts in ``handle.attempts`` but not against the job's
    :class:`RetryPolicy` (which counts failed attempts), and it is not a failure in the stats.
    A job that raises ``Defer`` while it is being cancelled or timed out ends that way instead
    (so does one the pool's shutdown is cancelling: with a store, the next pool runs it again
    at once, as any job the shutdown interrupted). One that raises it while a ``stop()`` drains
    the pool is scheduled: a store keeps it for the next pool, an in-memory pool ends it
    ``CANCELLED`` with the rest of its scheduled jobs.

    Attribute ``delay``: the seconds given, as a ``float``.

    Raises:
        TypeError: ``delay`` is not a number (a ``bool`` is refused).
        ValueError: ``delay`` is negative, NaN or infinite.
    """

    def __init__(self, delay: float) -> None:
        if isinstance(delay, bool) or not isinstance(delay, int | float):
            raise TypeError(f"Defer(delay): delay must be a number of seconds, got {delay!r}")
        if not math.isfinite(delay) or delay < 0:
            raise ValueError(f"Defer(delay): delay must be a finite number >= 0, got {delay!r}")
        super().__init__(f"deferred by {delay:g} s")
        self.delay = float(delay)
