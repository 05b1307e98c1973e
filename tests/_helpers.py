"""Small tools shared by the tests: jobs that block on events and record what happened."""

from __future__ import annotations

from typing import Any

import anyio


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
