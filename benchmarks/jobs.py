"""The job bodies, one set per backend.

Every implementation on a backend runs exactly these bodies, so a difference in the numbers is
a difference between the pools, not between the jobs. The no-op job is one checkpoint of the
cheapest native kind: ``trio.lowlevel.checkpoint()`` on Trio, ``asyncio.sleep(0)`` on asyncio.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Jobs", "asyncio_jobs", "trio_jobs"]


@dataclass(frozen=True)
class Jobs:
    """The job bodies of one backend, and the little the workload drivers need besides."""

    backend: str
    checkpoint: Callable[[], Awaitable[None]]
    Event: Callable[[], Any]
    noop: Callable[[], Awaitable[None]]
    """One checkpoint (W1, W4, W5, FLAT)."""
    sleep_1ms: Callable[[], Awaitable[None]]
    """Sleeps 1 ms (W2)."""
    stamped: Callable[[list[float], int], Awaitable[None]]
    """One checkpoint, then ``done[i] = perf_counter()`` (W1-latency)."""
    record: Callable[[list[int], int], Awaitable[None]]
    """``order.append(i)`` (its start), then one checkpoint (W3)."""
    blocker: Callable[[Any, list[int]], Awaitable[None]]
    """Notes that it started, then holds its worker until ``event`` is set."""
    wall_stamped: Callable[[list[float], int], Awaitable[None]]
    """``started[i] = time.time()`` (its start, on the wall clock that due times are given
    in), then one checkpoint (S3)."""
    keyed: Callable[[list[int], int], Awaitable[None]]
    """``events.append(k)`` (its start), one checkpoint, then ``events.append(~k)`` (its end):
    the order of starts and ends of the jobs of keys ``k`` (W6)."""


def _make(backend: str, checkpoint: Any, sleep: Any, event: Any) -> Jobs:
    clock = time.perf_counter
    wall = time.time

    async def noop() -> None:
        await checkpoint()

    async def sleep_1ms() -> None:
        await sleep(0.001)

    async def stamped(done: list[float], i: int) -> None:
        await checkpoint()
        done[i] = clock()

    async def record(order: list[int], i: int) -> None:
        order.append(i)
        await checkpoint()

    async def blocker(release: Any, started: list[int]) -> None:
        started.append(1)
        await release.wait()

    async def wall_stamped(started: list[float], i: int) -> None:
        started[i] = wall()
        await checkpoint()

    async def keyed(events: list[int], k: int) -> None:
        events.append(k)
        await checkpoint()
        events.append(~k)

    return Jobs(
        backend, checkpoint, event, noop, sleep_1ms, stamped, record, blocker, wall_stamped, keyed
    )


def trio_jobs() -> Jobs:
    import trio

    return _make("trio", trio.lowlevel.checkpoint, trio.sleep, trio.Event)


def asyncio_jobs() -> Jobs:
    import asyncio

    # partial(sleep, 0) is a C-level call: the body still awaits asyncio.sleep(0) directly.
    return _make("asyncio", functools.partial(asyncio.sleep, 0), asyncio.sleep, asyncio.Event)
