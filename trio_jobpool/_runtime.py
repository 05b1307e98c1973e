"""The few async primitives the pool needs, bound once per pool to the running backend.

Under Trio the pool uses Trio's own nursery, cancel scopes and low-level parking, which cost less
than AnyIO's wrappers around them. Under asyncio it uses AnyIO for what needs structured
semantics (the task group and cancel scopes) and plain futures for parking. Everything else in the
package is written once, against the abstract :class:`Runtime`; :func:`current_runtime` selects
the implementation once per pool (when it opens), and the pool hands that one object to
whatever needs the backend (its store included).

Parking is the pool's only hand-off mechanism: a task that must wait (an idle worker, a submitter
facing a full queue) parks on a :class:`Slot`; whoever has something for it calls
:meth:`Runtime.unpark`. Under Trio, a task is either woken with the value or cancelled, never
both. If the cancellation comes first, the slot is marked ``abandoned`` and whoever looks at it
next skips it. Under asyncio a plain ``task.cancel()`` can land in the same loop iteration as
the value; then the cancellation wins and the value is left in ``slot.late`` for the parked task
to undo. AnyIO's own cancel scopes never race like this.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Protocol

import anyio
import anyio.lowlevel
import outcome
import sniffio
import trio


def _asyncio_checkpoint_if_cancelled() -> Callable[[], Awaitable[None]]:
    """AnyIO's ``checkpoint_if_cancelled`` for asyncio, bound to its backend.

    The public function looks the backend up (through sniffio) on every call, which costs as
    much again as the check itself; bound once, it is the same check. With any other AnyIO
    layout, the public function.
    """
    try:
        from anyio._core._eventloop import get_async_backend

        check: Callable[[], Awaitable[None]] = get_async_backend("asyncio").checkpoint_if_cancelled
    except (ImportError, AttributeError):  # pragma: no cover - depends on AnyIO's internals
        return anyio.lowlevel.checkpoint_if_cancelled
    return check


__all__ = ["CancelScopeLike", "Runtime", "Slot", "TaskGroupLike", "current_runtime"]


class CancelScopeLike(Protocol):
    """What the pool uses of ``trio.CancelScope`` / ``anyio.CancelScope``."""

    @property
    def deadline(self) -> float: ...
    @deadline.setter
    def deadline(self, value: float) -> None: ...
    @property
    def cancel_called(self) -> bool: ...
    @property
    def cancelled_caught(self) -> bool: ...
    def cancel(self) -> None: ...
    def __enter__(self) -> Any: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool: ...


class TaskGroupLike(Protocol):
    """What the pool uses of a Trio nursery / AnyIO task group."""

    @property
    def cancel_scope(self) -> Any: ...
    def start_soon(self, func: Callable[..., Awaitable[Any]], *args: Any) -> None: ...
    async def start(self, func: Callable[..., Awaitable[Any]], *args: Any) -> Any: ...


class EventLike(Protocol):
    def set(self) -> None: ...
    def is_set(self) -> bool: ...
    async def wait(self) -> Any: ...


_EMPTY: Any = object()


class Slot:
    """A place where one task waits for one value (see the module docstring).

    A value handed over before the task parks is kept, and ``park`` returns it at once.
    """

    __slots__ = ("_abandoned", "_value", "_waiter", "late")

    def __init__(self) -> None:
        self._waiter: Any = None
        self._value: Any = _EMPTY
        self._abandoned = False
        # On asyncio only: a value handed over in the same instant as a cancellation that won.
        self.late: Any = None

    @property
    def abandoned(self) -> bool:
        """Whether the parked task has given up (was cancelled): hand it nothing."""
        if self._abandoned:
            return True
        # On asyncio a cancellation cancels the future at once, but the task notices it, and
        # sets _abandoned, only when it next runs.
        waiter = self._waiter
        return isinstance(waiter, asyncio.Future) and waiter.done()

    def _take_early(self) -> Any:
        value, self._value = self._value, _EMPTY
        return value

    def _abort(self, _raise_cancel: object) -> trio.lowlevel.Abort:
        self._abandoned = True
        return trio.lowlevel.Abort.SUCCEEDED


def _refuse_abort(_raise_cancel: object) -> trio.lowlevel.Abort:
    return trio.lowlevel.Abort.FAILED


SCHEDULE_INTERVAL = 0.0005
"""Seconds of consecutive non-blocking submits after which ``submit`` yields to the scheduler.

Trio's rule is that an async operation is both a cancel point and a schedule point. ``submit``
is always a cancel point (a submit in a cancelled scope raises and accepts nothing), but a
schedule point on *every* call would cost a full trip through the scheduler per job, more than
all the rest of the pool's work. So a submit that does not have to wait yields only if no submit
to the same pool has yielded in the last half millisecond: a task looping over ``submit`` still
lets every other task run at least every 0.5 ms. This is the "skip schedule points if we've done
one recently enough" optimisation Trio's maintainers proposed for Trio itself
(python-trio/trio#1757). A submit that waits for room always yields.
"""


class Runtime(ABC):
    """Backend primitives, and the pacing of ``submit``'s schedule points; one per pool.

    Made inside the running event loop (by :func:`current_runtime`), and bound to it.
    """

    name: str
    call_soon: Callable[..., object]
    """``call_soon(fn, *args)``, from the loop's own thread: run ``fn(*args)`` in the loop
    after the tasks that are ready now."""
    call_soon_threadsafe: Callable[..., object]
    """As ``call_soon``, from any other thread."""
    open_task_group: Callable[[], AbstractAsyncContextManager[Any]]
    CancelScope: Callable[..., CancelScopeLike]
    Event: Callable[[], EventLike]
    checkpoint: Callable[[], Awaitable[None]]
    cancelled_exc: type[BaseException]
    checkpoint_before: Callable[[], Awaitable[None]]
    """The first half of a checkpoint that may end without blocking (see ``submit``)."""
    schedule_point: Callable[[], Awaitable[None]]
    """Yield to the scheduler without being a cancel point (the operation is done)."""
    sleep: Callable[[float], Awaitable[None]]
    """Sleep for a number of seconds (``math.inf``: until cancelled)."""

    @abstractmethod
    def clock(self) -> Callable[[], float]:
        """The fastest way to read the current run's clock (Trio's may be a MockClock)."""
        raise NotImplementedError

    @abstractmethod
    def yield_due(self) -> bool:
        """Whether an operation that did not block must still yield now (and then it will:
        the pacing clock restarts). See :data:`SCHEDULE_INTERVAL`."""
        raise NotImplementedError

    @abstractmethod
    async def park(self, slot: Slot) -> Any:
        """Wait until :meth:`unpark` hands this slot a value, and return it."""
        raise NotImplementedError

    @abstractmethod
    def unpark(self, slot: Slot, value: object) -> None:
        """Hand ``value`` to the task parked on ``slot`` (which must not be abandoned)."""
        raise NotImplementedError

    @abstractmethod
    async def park_shielded(self, slot: Slot) -> Any:
        """As :meth:`park`, but a cancellation does not end the wait: the task waits for its
        value all the same, and the cancellation is delivered at its next checkpoint. For
        waits that must not be abandoned half-way (a write to a store that may already be
        on disk), and that are short. The value comes with :meth:`unpark_shielded`."""
        raise NotImplementedError

    def unpark_shielded(self, slot: Slot, value: object) -> None:
        """Hand ``value`` to the task in :meth:`park_shielded` on ``slot``."""
        self.unpark(slot, value)

    @abstractmethod
    def outer_cancelled(self) -> bool:
        """Whether a cancel scope around the current point is cancelled."""
        raise NotImplementedError

    def forget_stray_cancel(self) -> None:  # noqa: B027 - a no-op where there are none (Trio)
        """Undo a native cancel request on the current task that no cancel scope made."""

    def stray_cancel_check(self) -> Callable[[], int] | None:
        """For a worker: a cheap test whether its task has a pending native cancel request
        (on asyncio, ``task.cancelling``); ``None`` where there is no such thing (Trio)."""
        return None

    async def absorb_stray_cancel(self) -> None:  # noqa: B027 - a no-op where there are none
        """Take delivery of a pending cancel request that no cancel scope made (see
        ``_AsyncioRuntime``); do nothing if a cancel scope around is cancelled."""

    @abstractmethod
    def current_task(self) -> object:
        """The running task (Trio's ``Task``, or the ``asyncio.Task``)."""
        raise NotImplementedError

    @abstractmethod
    def spawn_detached(self, fn: Callable[[], Awaitable[None]], name: str) -> None:
        """Run ``fn()`` in a task that no task group of the caller waits for, in a copy of
        the caller's context. ``fn`` must not raise anything but a cancellation of its own
        task (under Trio an exception there would crash the whole run).

        Under Trio it is a system task (cancelled when the main task exits, and waited for
        by ``trio.run``); under asyncio a plain task (cancelled, and waited for, by
        ``asyncio.run`` at its end). The one user: the host of a pool's workers, which the
        pool stops waiting for when a job ignores its cancellation (see docs/design.md).
        """
        raise NotImplementedError


class _TrioRuntime(Runtime):
    name = "trio"

    def __init__(self) -> None:
        self.open_task_group = trio.open_nursery
        self.CancelScope = trio.CancelScope
        self.Event = trio.Event
        self.checkpoint = trio.lowlevel.checkpoint
        self.cancelled_exc = trio.Cancelled
        self.call_soon = self.call_soon_threadsafe = (
            trio.lowlevel.current_trio_token().run_sync_soon
        )
        # Trio's own checkpoint protocol, as in trio.MemorySendChannel.send: a cancel point
        # first (free when not cancelled), a schedule point once the operation is done.
        self.checkpoint_before = trio.lowlevel.checkpoint_if_cancelled
        self.schedule_point = trio.lowlevel.cancel_shielded_checkpoint
        self._last_yield = 0.0
        self.sleep = trio.sleep

    def clock(self) -> Callable[[], float]:
        return trio.lowlevel.current_clock().current_time

    def current_task(self) -> object:
        return trio.lowlevel.current_task()

    def spawn_detached(self, fn: Callable[[], Awaitable[None]], name: str) -> None:
        # Children of a system task are not KeyboardInterrupt-protected, only the system
        # task's own frames are: jobs in the host's nursery stay interruptible.
        trio.lowlevel.spawn_system_task(fn, name=name, context=contextvars.copy_context())

    def outer_cancelled(self) -> bool:
        return trio.current_effective_deadline() == -math.inf

    def yield_due(self) -> bool:
        now = time.perf_counter()
        if now - self._last_yield >= SCHEDULE_INTERVAL:
            self._last_yield = now
            return True
        return False

    async def park(self, slot: Slot) -> Any:
        if slot._value is not _EMPTY:
            return slot._take_early()
        slot._waiter = trio.lowlevel.current_task()
        try:
            return await trio.lowlevel.wait_task_rescheduled(slot._abort)
        finally:
            slot._waiter = None

    def unpark(self, slot: Slot, value: object) -> None:
        if slot._waiter is None:
            slot._value = value
        else:
            trio.lowlevel.reschedule(slot._waiter, outcome.Value(value))

    async def park_shielded(self, slot: Slot) -> Any:
        # Trio's own way to wait uninterruptibly, cheaper than a shielded cancel scope: an
        # abort function that refuses. Trio then leaves the task asleep until rescheduled,
        # and the cancellation stays pending for its next checkpoint.
        if slot._value is not _EMPTY:
            return slot._take_early()
        slot._waiter = trio.lowlevel.current_task()
        try:
            return await trio.lowlevel.wait_task_rescheduled(_refuse_abort)
        finally:
            slot._waiter = None


class _AsyncioRuntime(Runtime):
    name = "asyncio"

    def __init__(self) -> None:
        self.open_task_group = anyio.create_task_group
        self.CancelScope = anyio.CancelScope
        self.Event = anyio.Event
        self.checkpoint = anyio.lowlevel.checkpoint
        self.cancelled_exc = asyncio.CancelledError
        loop = asyncio.get_running_loop()
        self.call_soon = loop.call_soon
        self.call_soon_threadsafe = loop.call_soon_threadsafe
        self._last_yield = 0.0
        self._checkpoint_if_cancelled = _asyncio_checkpoint_if_cancelled()

    def yield_due(self) -> bool:
        return False  # checkpoint_before has yielded whenever a yield was due

    def current_task(self) -> object:
        return asyncio.current_task()

    def spawn_detached(self, fn: Callable[[], Awaitable[None]], name: str) -> None:
        task = asyncio.get_running_loop().create_task(
            _coroutine(fn), name=name, context=contextvars.copy_context()
        )
        _DETACHED.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(_DETACHED.discard)

    def outer_cancelled(self) -> bool:
        return anyio.current_effective_deadline() == -math.inf

    def forget_stray_cancel(self) -> None:
        # e.g. the job called asyncio.current_task().cancel() on its own worker task
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            task.uncancel()

    def stray_cancel_check(self) -> Callable[[], int] | None:
        task = asyncio.current_task()
        return None if task is None else task.cancelling

    async def absorb_stray_cancel(self) -> None:
        # A job called asyncio.current_task().cancel() -- on its worker's task -- and ended
        # before any await delivered it. That request was the job's, not the pool's: take
        # delivery here, where it harms nothing, instead of letting it kill the worker.
        if self.outer_cancelled():
            return
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            if self.outer_cancelled():  # the pool itself was cancelled meanwhile
                raise
        self.forget_stray_cancel()

    async def schedule_point(self) -> None:  # pragma: no cover - never due on asyncio
        await asyncio.sleep(0)

    def clock(self) -> Callable[[], float]:
        return asyncio.get_running_loop().time

    async def checkpoint_before(self) -> None:
        # Everything happens before the operation takes effect, so that a cancellation can
        # never arrive after it did: a yield if one is due (see SCHEDULE_INTERVAL), otherwise
        # AnyIO's cancel point, which yields only if an enclosing cancel scope was cancelled.
        now = time.perf_counter()
        if now - self._last_yield >= SCHEDULE_INTERVAL:
            self._last_yield = now
            await asyncio.sleep(0)
        else:
            await self._checkpoint_if_cancelled()

    async def sleep(self, seconds: float) -> None:
        if math.isinf(seconds):
            await anyio.sleep_forever()
        else:
            await anyio.sleep(seconds)

    async def park(self, slot: Slot) -> Any:
        if slot._value is not _EMPTY:
            return slot._take_early()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        slot._waiter = future
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                # A value was handed over in the same loop iteration as a plain task.cancel().
                # AnyIO never does this: it does not cancel a task whose future has a result.
                # The cancellation wins, as callers such as asyncio.timeout() expect; the
                # caller finds the value in `late` and undoes what it meant.
                slot.late = future.result()
            else:
                slot._abandoned = True
            raise
        finally:
            slot._waiter = None

    def unpark(self, slot: Slot, value: object) -> None:
        if slot._waiter is None:
            slot._value = value
        else:
            slot._waiter.set_result(value)

    def unpark_shielded(self, slot: Slot, value: object) -> None:
        waiter = slot._waiter
        if waiter is None or waiter.done():  # cancelled: park_shielded parks again for it
            slot._value = value
        else:
            waiter.set_result(value)

    async def park_shielded(self, slot: Slot) -> Any:
        # Without an AnyIO shielded scope, which costs more than the rest of a durable submit:
        # the task parks again after a cancellation, until the value comes. A cancellation of
        # an AnyIO scope is left to AnyIO, which counts its own requests (and takes them back
        # when its scope exits) and delivers it again at the next checkpoint. A plain
        # task.cancel() is taken back here and requested again once the value is in, to the
        # same effect.
        task = asyncio.current_task()
        assert task is not None
        loop = task.get_loop()
        deferred = 0
        try:
            while slot._value is _EMPTY:
                future: asyncio.Future[Any] = loop.create_future()
                slot._waiter = future
                try:
                    return await future
                except asyncio.CancelledError:
                    if not self.outer_cancelled():  # not AnyIO's: take it, hand it on later
                        task.uncancel()
                        deferred += 1
                    if future.done() and not future.cancelled():
                        return future.result()  # it came in the same instant: keep it
            return slot._take_early()
        finally:
            slot._waiter = None
            if deferred:
                task.cancel()


_DETACHED: set[asyncio.Task[None]] = set()  # tasks of spawn_detached still running


async def _coroutine(fn: Callable[[], Awaitable[None]]) -> None:
    await fn()


def current_runtime() -> Runtime:
    """A new runtime (one per pool) for the async library running the current task.

    Raises:
        RuntimeError: not inside Trio or asyncio.
    """
    try:
        library = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        raise RuntimeError("trio_jobpool must be used from inside trio or asyncio") from None
    if library == "trio":
        return _TrioRuntime()
    if library == "asyncio":
        return _AsyncioRuntime()
    raise RuntimeError(f"trio_jobpool supports trio and asyncio, not {library!r}")
