"""Small tools shared by the tests: jobs that block on events and record what happened."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import looptime
import trio.testing


class Gate:
    """Jobs that record their start and wait until the gate opens. Create inside the loop."""

    def __init__(self) -> None:
        self.opened = anyio.Event()
        self.started: list[Any] = []

    async def job(self, name: Any = None) -> Any:
        self.started.append(name)
        await self.opened.wait()
        return name

    def open(self) -> None:
        self.opened.set()


class Recorder:
    """Jobs that record their start order and return at once (after one checkpoint)."""

    def __init__(self) -> None:
        self.started: list[Any] = []

    async def job(self, name: Any = None) -> Any:
        self.started.append(name)
        await anyio.lowlevel.checkpoint()
        return name


async def settle() -> None:
    """Let every task run until all are blocked."""
    await anyio.wait_all_tasks_blocked()


async def sleep_forever() -> None:
    await anyio.sleep_forever()


async def noop() -> None:
    await anyio.lowlevel.checkpoint()


class Boom(Exception):
    pass


async def fail(message: str = "boom") -> None:
    await anyio.lowlevel.checkpoint()
    raise Boom(message)


def invariant_holds(stats: Any) -> bool:
    return bool(
        stats.total_submitted
        == stats.total_completed
        + stats.total_failed
        + stats.total_cancelled
        + stats.total_timed_out
        + stats.queued_tasks
        + stats.scheduled_tasks
        + stats.active_workers
    )


def run_virtual(backend: str, main: Callable[[], Awaitable[None]], *, long: bool = False) -> None:
    """Run ``main`` on ``backend`` in virtual time: on Trio with
    ``MockClock(autojump_threshold=0)``, on asyncio with a ``looptime`` event loop. Time
    starts at 0 and jumps to the next timer whenever every task is blocked, so a day of
    timers runs in milliseconds and every due time is met exactly.

    ``long``: the test spans more than 190 days. asyncio runs a timer once ``time() + 1e-9``
    passes it, which stops working where the clock's float has no nanoseconds (from 2**24
    seconds on): such a test starts at -16,000,000 on asyncio, to fit a year."""
    if backend == "trio":
        options: dict[str, Any] = {"clock": trio.testing.MockClock(autojump_threshold=0)}
    else:
        start = -16_000_000.0 if long else 0.0
        options = {"loop_factory": lambda: looptime.new_event_loop(start=start, _enabled=True)}
    anyio.run(main, backend=backend, backend_options=options)
