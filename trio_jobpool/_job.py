"""Job handles, job states, cancel reasons and :func:`current_job`.

A handle talks to the pool that owns it only through :class:`JobOwner`, so this module knows no
pool: the pools (``_pool.py``, ``_distributed.py``) implement that protocol.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from enum import Enum, StrEnum
from typing import Any, Final, Generic, NamedTuple, Protocol, TypeVar

import outcome

from ._errors import JobCancelled, JobTimeout
from ._retry import RetryPolicy
from ._runtime import CancelScopeLike, EventLike
from .stores._base import JobRecord

__all__ = [
    "CancelKind",
    "CancelReason",
    "JobHandle",
    "JobOwner",
    "JobStatus",
    "RecordedJob",
    "current_job",
]

T = TypeVar("T")


class JobStatus(StrEnum):
    """Where a job is in its life. A ``str``: each member compares equal to its value
    (``JobStatus.TIMED_OUT == "timed_out"``)."""

    SCHEDULED = "scheduled"
    """Accepted, due later (``delay=``/``at=``, a :class:`Defer`): it holds no worker and
    does not count against the queue bound; when due it becomes ``QUEUED``."""
    QUEUED = "queued"
    """Accepted, waiting for a worker."""
    RETRYING = "retrying"
    """An attempt failed and a retry is scheduled; waiting out the backoff (holding no worker)."""
    RUNNING = "running"
    """A worker is running it (or has just been handed it)."""
    COMPLETED = "completed"
    """Returned a value."""
    FAILED = "failed"
    """Raised an exception (after its last attempt)."""
    CANCELLED = "cancelled"
    """Cancelled by id, by its handle or by the pool's shutdown; also a job that raised a
    cancellation of its own accord, or was interrupted by ``KeyboardInterrupt`` or the like
    (see :class:`JobCancelled`)."""
    TIMED_OUT = "timed_out"
    """Ran past its timeout and was cancelled."""

    @property
    def ended(self) -> bool:
        """``True`` for the four final states: ``COMPLETED``, ``FAILED``, ``CANCELLED`` and
        ``TIMED_OUT``."""
        return self in _ENDED


_ENDED = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.TIMED_OUT}
)


class CancelKind(Enum):
    """Why a job's attempt was cancelled; it decides how the attempt ends.

    ``status`` is the job's final status in this process; ``ends_job`` says whether that is the
    job's end everywhere (``False``: only this pool's run of it ends, and a store keeps the job
    live for another run).
    """

    REQUEST = ("request", JobStatus.CANCELLED, True)
    """Cancelled by id or by its handle."""
    TIMEOUT = ("timeout", JobStatus.TIMED_OUT, True)
    """Ran past its timeout (the deadline watcher cancelled it)."""
    OWN_CODE = ("own code", JobStatus.CANCELLED, True)
    """The job raised a cancellation that nothing around it asked for."""
    INTERRUPTED = ("interrupted", JobStatus.CANCELLED, True)
    """A ``KeyboardInterrupt``, ``SystemExit`` or the like went through it."""
    SUBMIT_CANCELLED = ("submit cancelled", JobStatus.CANCELLED, True)
    """Its ``submit`` was cancelled in the instant it was accepted (asyncio only)."""
    SHUTDOWN = ("shutdown", JobStatus.CANCELLED, False)
    """The pool's shutdown cancelled it; with a store, the next pool runs it again."""
    ABANDONED = ("abandoned", JobStatus.CANCELLED, False)
    """The shutdown stopped waiting for it (it ignored its cancellation); nothing is written."""
    FENCED = ("fenced", JobStatus.CANCELLED, False)
    """Distributed: its lease could not be renewed; it runs again elsewhere."""
    STALLED = ("stalled", JobStatus.CANCELLED, False)
    """Distributed: this process stalled past the lease; it runs again elsewhere."""
    LOST = ("lost", JobStatus.CANCELLED, False)
    """Distributed: Redis lost the job (its handle ends with ``StoreError``)."""

    def __init__(self, label: str, status: JobStatus, ends_job: bool) -> None:
        self.label = label
        self.status = status
        self.ends_job = ends_job


class CancelReason(NamedTuple):
    """A cancel reason: its kind (which decides the outcome) and the message a
    ``JobCancelled`` (or the store) shows."""

    kind: CancelKind
    message: str


CANCELLED: Final = CancelReason(CancelKind.REQUEST, "cancelled")
TIMED_OUT: Final = CancelReason(CancelKind.TIMEOUT, "timed out")
OWN_CODE: Final = CancelReason(CancelKind.OWN_CODE, "cancelled by its own code")
SUBMIT_CANCELLED: Final = CancelReason(
    CancelKind.SUBMIT_CANCELLED, "cancelled: its submit was cancelled"
)
SHUTDOWN: Final = CancelReason(CancelKind.SHUTDOWN, "cancelled by the pool's shutdown")
ABANDONED: Final = CancelReason(
    CancelKind.ABANDONED, "abandoned by the pool's shutdown: it did not end when cancelled"
)


def interrupted(exc: BaseException) -> CancelReason:
    """The reason of a job that ``exc`` (a ``KeyboardInterrupt``, say) went through."""
    return CancelReason(CancelKind.INTERRUPTED, f"interrupted by {type(exc).__name__}")


class JobOwner(Protocol):
    """What a handle needs of the pool that owns it (implemented by ``JobPool``)."""

    def _job_id(self, key: str | int) -> str:
        """The id of the job kept under ``key`` (see ``JobPool._key``)."""
        ...

    def _name_of(self, fn: Callable[..., Awaitable[Any]]) -> str | None:
        """The name ``fn`` is registered under in the pool's registry, if any."""
        ...

    def _wall(self, monotonic: float) -> float:
        """A time of the pool's clock as wall-clock seconds."""
        ...

    def _new_event(self) -> EventLike:
        """An event of the pool's backend."""
        ...

    async def _checkpoint(self) -> None:
        """A checkpoint of the pool's backend."""
        ...

    def _begin_wait(self, target: JobHandle[Any]) -> bool:
        """Before the current task waits for ``target`` to end; ``True``: the caller calls
        ``_end_wait`` once the wait is over (see ``JobPool._begin_wait``).

        Raises:
            RuntimeError: the wait could never end.
        """
        ...

    def _end_wait(self) -> None:
        """A wait that ``_begin_wait`` counted is over."""
        ...

    def _cancel_job(self, job: JobHandle[Any], reason: CancelReason) -> None:
        """Cancel the live ``job`` for ``reason``."""
        ...

    def _progressed(self, job: RecordedJob[Any]) -> None:
        """The live ``job`` reported progress, for its record."""
        ...


_current_job: ContextVar[JobHandle[Any] | None] = ContextVar(
    "trio_jobpool.current_job", default=None
)


def current_job() -> JobHandle[Any]:
    """The handle of the job whose code is running: in the job itself and in tasks it starts
    (they inherit its context; there it still returns the job's handle after the job has
    ended).

    Raises:
        RuntimeError: called outside any job.
    """
    job = _current_job.get()
    if job is None:
        raise RuntimeError("current_job() called outside of a trio_jobpool job")
    return job


class JobHandle(Generic[T]):
    """One submitted job: its state, timings, progress and outcome.

    Handles are created by :meth:`JobPool.submit` / :meth:`JobPool.submit_nowait`; every
    attribute is a read-only property. Times ending in ``_at`` are wall-clock seconds
    (``time.time()`` scale, derived from the pool's monotonic clock so they never run
    backwards); ``exec_time`` is in seconds. Timings are those of the latest attempt.

    A ``JobCancelled`` or ``JobTimeout`` is created the first time it is asked for
    (:attr:`error`, :meth:`wait`, :meth:`result`); from then on every access gives the same
    object.
    """

    __slots__ = (
        "_args",
        "_attempts",
        "_cancel_reason",
        "_due_m",
        "_exec_time",
        "_finished_m",
        "_flow_key",
        "_fn",
        "_key",
        "_owner",
        "_extra",
        "_ready_m",
        "_result",
        "_retry",
        "_scope",
        "_seq",
        "_started_m",
        "_status",
        "_submitted_m",
        "_timeout",
        "_priority",
    )
    _seq: int
    """Set when the job is scheduled (see ``DueJobs.push``): its place among the jobs due at
    the same time; ``-1`` while its record is being written (``Later._reserve_later``). Also,
    in a pool with flow control, its place in the waiting room while it waits there, and which
    part of the room it is in (set by ``FlowRoom``): a waiting job is in no heap of due jobs (a
    due job leaves the heap before it enters the waiting room, and a job that is scheduled
    again gets a new ``_seq``)."""

    def __init__(
        self,
        owner: JobOwner,
        key: str | int,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        priority: int,
        timeout: float,
        retry: RetryPolicy | None,
    ) -> None:
        self._owner = owner
        self._key = key  # the id, or the counter of a generated id (see JobPool._key)
        self._fn = fn
        self._args = args
        self._priority = priority
        self._timeout = timeout
        self._retry = retry
        self._status = JobStatus.QUEUED
        self._attempts = 0
        self._extra: _Extra | None = None  # progress and waiters: most jobs have neither
        self._submitted_m = 0.0  # set when the pool accepts the job
        self._ready_m = 0.0
        self._started_m: float | None = None
        self._finished_m: float | None = None
        self._exec_time: float | None = None
        # The value (COMPLETED) or the exception (any other end, and while RETRYING the
        # exception of the failed attempt).
        self._result: Any = None
        self._scope: CancelScopeLike | None = None
        self._cancel_reason: CancelReason | None = None
        self._due_m: float | None = None  # the latest due time (pool clock), once scheduled
        self._flow_key: str | None = None  # its flow-control key (see _set_key)

    def __lt__(self, other: JobHandle[Any]) -> bool:
        """The order of scheduled jobs in their pool's timer heap: by due time, then by the
        order they were scheduled in. Only scheduled jobs of one pool are ever compared."""
        due, other_due = self._due_m, other._due_m
        if due == other_due:
            return self._seq < other._seq
        return due < other_due  # type: ignore[operator]

    def __repr__(self) -> str:
        return (
            f"<JobHandle {self.job_id!r} {self._status.value} priority={self._priority} "
            f"attempts={self._attempts}>"
        )

    # -- read-only state -------------------------------------------------------------------

    @property
    def job_id(self) -> str:
        """The id given at submit, or the generated one (32 lowercase hex characters)."""
        key = self._key
        return key if isinstance(key, str) else self._owner._job_id(key)

    @property
    def name(self) -> str:
        """The name the job's function is registered under in the pool's registry (the first,
        if several), else the function's ``__qualname__`` (or ``repr``, for a callable that
        has none). A job of a store (SQLite, Redis) has the name it was submitted by."""
        fn = self._fn
        name = self._owner._name_of(fn)
        if name is not None:
            return name
        name = getattr(fn, "__qualname__", None)
        return name if isinstance(name, str) else repr(fn)

    @property
    def priority(self) -> int:
        """The priority given at submit; lower runs first."""
        return self._priority

    @property
    def deadline(self) -> float | None:
        """When the running attempt times out, on the pool's clock (``trio.current_time()``,
        or the asyncio loop's ``time()``); ``None`` unless running with a finite timeout.

        Timeouts are enforced by the pool's deadline watcher, not by a deadline on the job's
        cancel scope, so ``trio.current_effective_deadline()`` inside a job does not show the
        job's timeout; ``current_job().deadline`` does. The watcher cancels a job within one
        scheduling step of its deadline.
        """
        if self._status is not JobStatus.RUNNING or self._started_m is None:
            return None
        deadline = self._started_m + self._timeout
        return None if math.isinf(deadline) else deadline

    @property
    def scheduled_for(self) -> float | None:
        """The time the job is (or was last) due, in wall-clock seconds, set by ``delay=`` or
        ``at=`` at submit or by the latest :class:`Defer`; ``None`` for a job that was never
        scheduled."""
        due = self._due_m
        return None if due is None else self._owner._wall(due)

    @property
    def key(self) -> str | None:
        """The job's flow-control key, given at submit (``key=``); ``None`` for none."""
        return self._flow_key

    @property
    def status(self) -> JobStatus:
        """The job's current :class:`JobStatus`."""
        return self._status

    @property
    def attempts(self) -> int:
        """How many attempts have started (0 while it has never run)."""
        return self._attempts

    @property
    def progress(self) -> float:
        """The last fraction given to :meth:`set_progress` (``0.0`` until then)."""
        return 0.0 if self._extra is None else self._extra.progress

    @property
    def progress_message(self) -> str | None:
        """The last message given to :meth:`set_progress`; ``None`` until then."""
        return None if self._extra is None else self._extra.message

    @property
    def submitted_at(self) -> float:
        """When the job was accepted (wall-clock seconds)."""
        return self._owner._wall(self._submitted_m)

    @property
    def started_at(self) -> float | None:
        """When the latest attempt started, or ``None`` if none has."""
        return None if self._started_m is None else self._owner._wall(self._started_m)

    @property
    def finished_at(self) -> float | None:
        """When the job ended, or ``None`` while it is live."""
        return None if self._finished_m is None else self._owner._wall(self._finished_m)

    @property
    def exec_time(self) -> float | None:
        """How long the latest attempt ran, once that attempt ended; ``None`` before and while
        it runs."""
        return self._exec_time

    @property
    def error(self) -> BaseException | None:
        """The job's exception once it ended in any way but ``COMPLETED`` (what it raised,
        :class:`JobCancelled` or :class:`JobTimeout`); while a retry is under way
        (``RETRYING``, and during the next attempt), the latest failed attempt's exception;
        otherwise ``None``."""
        if self._status is JobStatus.COMPLETED:
            return None
        result = self._result
        if type(result) is Unbuilt:
            return self._build_error(result)
        if type(result) is tuple:  # FAILED: (exception, its traceback)
            error: BaseException = result[0]
            return error
        return result if isinstance(result, BaseException) else None

    # -- waiting for the outcome -----------------------------------------------------------

    async def wait(self) -> outcome.Outcome[T]:
        """Wait until the job has ended and return its outcome; never raises for the job.

        Each call returns a fresh ``outcome.Value(result)`` or ``outcome.Error(exc)``, where
        ``exc`` is what the job raised, a :class:`JobCancelled` or a :class:`JobTimeout` (the
        same object as :attr:`error`, on every call). Each call first resets
        ``exc.__traceback__`` to the traceback the job's exception had when the job ended
        (``None`` for ``JobCancelled`` and ``JobTimeout``), so raising it again and again
        (:meth:`result`) does not make its traceback grow.

        A checkpoint (also when the job has already ended); cancelling the wait does not
        affect the job.

        Raises:
            RuntimeError: called from a job of the same pool (in its own task, not one it
                started) while every other running job of the pool waits on jobs of the pool
                (or for room in it) and every worker is busy: nothing would ever run the job
                waited for (see docs/guide.md, "Jobs that wait on jobs"). Also when a job
                waits for itself. The waits already under way go on. Never on a distributed
                pool.
        """
        if not self._status.ended:
            extra = self._extra
            if extra is None:
                extra = self._extra = _Extra()
            if extra.done is None:
                extra.done = self._owner._new_event()
            owner = self._owner
            counted = owner._begin_wait(self)
            try:
                await extra.done.wait()
            finally:
                if counted:
                    owner._end_wait()
        else:
            await self._owner._checkpoint()
        if self._status is JobStatus.COMPLETED:
            return outcome.Value(self._result)
        result = self._result
        if type(result) is tuple:  # FAILED
            error, traceback = result
        else:
            error = self._build_error(result) if type(result) is Unbuilt else result
            traceback = None  # a JobCancelled/JobTimeout has no traceback of its own
        # The same exception object is raised by every result() call: start each time from
        # its own traceback, or the frames of every earlier raise would pile up on it.
        error.__traceback__ = traceback
        return outcome.Error(error)

    async def result(self) -> T:
        """Wait until the job has ended; return its value or raise its exception.

        Cancellation: as :meth:`wait`.

        Raises:
            Exception: what the job raised (``FAILED``).
            JobCancelled: the job was cancelled (``CANCELLED``).
            JobTimeout: the job timed out (``TIMED_OUT``; also a ``TimeoutError``).
            RuntimeError: as :meth:`wait`.
        """
        return (await self.wait()).unwrap()

    # -- acting on the job -----------------------------------------------------------------

    def cancel(self) -> None:
        """Cancel the job if it is still live, exactly as ``pool.cancel(handle.job_id)`` (see
        :meth:`JobPool.cancel`); do nothing if it has ended."""
        if not self._status.ended:
            self._owner._cancel_job(self, CANCELLED)

    def set_progress(self, fraction: float, message: str | None = None) -> None:
        """Record how far the job has got, for :attr:`progress` and :attr:`progress_message`.

        Normally called by the job itself through :func:`current_job`; it does not check who
        calls it.

        Raises:
            ValueError: ``fraction`` is not within ``0.0 … 1.0`` (NaN included).
            TypeError: ``fraction`` is not an ``int`` or ``float`` (a ``bool`` is refused), or
                ``message`` is neither a ``str`` nor ``None``.
        """
        if isinstance(fraction, bool) or not isinstance(fraction, int | float):
            raise TypeError(f"progress must be a number from 0.0 to 1.0, got {fraction!r}")
        if not 0.0 <= fraction <= 1.0:  # also rejects NaN
            raise ValueError(f"progress must be within 0.0 … 1.0, got {fraction!r}")
        if message is not None and not isinstance(message, str):
            raise TypeError(f"progress message must be a str or None, got {message!r}")
        extra = self._extra
        if extra is None:
            extra = self._extra = _Extra()
        extra.progress = float(fraction)
        extra.message = message

    # -- for the pool ----------------------------------------------------------------------

    @property
    def _deferrals(self) -> int:
        """How many attempts ended with ``Defer`` (they are not failures for the retry policy)."""
        extra = self._extra
        return 0 if extra is None else extra.deferrals

    def _count_deferral(self) -> None:
        extra = self._extra
        if extra is None:
            extra = self._extra = _Extra()
        extra.deferrals += 1

    def _set_key(self, key: str) -> None:
        """Give the job (not yet accepted) its flow-control key."""
        self._flow_key = key

    def _build_error(self, unbuilt: Unbuilt) -> BaseException:
        error: BaseException
        if self._status is JobStatus.TIMED_OUT:
            error = JobTimeout(self.job_id, self._timeout)
        else:
            reason = self._cancel_reason
            error = JobCancelled(self.job_id, "cancelled" if reason is None else reason.message)
        error.__cause__ = unbuilt.cause
        self._result = error
        return error


class _Extra:
    """What few jobs need: reported progress, an event for tasks waiting on the job, and how
    many of its attempts ended with ``Defer``."""

    __slots__ = ("deferrals", "done", "message", "progress")

    def __init__(self) -> None:
        self.progress = 0.0
        self.message: str | None = None
        self.done: EventLike | None = None
        self.deferrals = 0


class Unbuilt:
    """The outcome of a cancelled or timed-out job before anyone has asked for it.

    Building a ``JobCancelled`` (a formatted message, an exception object for the garbage
    collector to track) costs more than the rest of a cancel, and most are never looked at:
    the handle builds it on first access and keeps it, so every later access gets the same one.
    """

    __slots__ = ("cause",)

    def __init__(self, cause: BaseException | None) -> None:
        self.cause = cause


NO_CAUSE: Final = Unbuilt(None)


class RecordedJob(JobHandle[T]):
    """A job of a pool that keeps a record of it (SQLite, Redis): the handle plus that record.

    Its owner writes the record's progress (``JobOwner._progressed``) while the job is live.
    """

    __slots__ = ("_record", "_ticket")

    def __init__(
        self,
        owner: JobOwner,
        key: str | int,
        fn: Callable[..., Awaitable[T]],
        args: tuple[Any, ...],
        priority: int,
        timeout: float,
        retry: RetryPolicy | None,
        record: JobRecord,
    ) -> None:
        super().__init__(owner, key, fn, args, priority, timeout, retry)
        self._record = record
        self._ticket = 0  # the store's ticket for the write of its latest start

    @property
    def name(self) -> str:
        return self._record.name

    @property
    def _deferrals(self) -> int:
        return self._record.deferrals  # kept in the record: it survives a restart

    def _count_deferral(self) -> None:
        self._record.deferrals += 1

    def _set_key(self, key: str) -> None:
        super()._set_key(key)
        self._record.key = key

    def set_progress(self, fraction: float, message: str | None = None) -> None:
        super().set_progress(fraction, message)
        record = self._record
        record.progress = float(fraction)
        record.progress_message = message
        if not self._status.ended:
            self._owner._progressed(self)
