"""Registered jobs for the durable-store tests, importable by the subprocesses they start."""

from __future__ import annotations

import collections
import os
import time
from typing import Any

import anyio

import trio_jobpool
from trio_jobpool import JobRegistry

registry = JobRegistry()


@registry.job(name="append")
async def append(item: str, seconds: float = 0.0) -> str:
    """Append ``item`` to the file named by $JOBPOOL_TEST_LOG, then take ``seconds``."""
    with open(os.environ["JOBPOOL_TEST_LOG"], "a") as log:
        log.write(f"{item}\n")
    await anyio.sleep(seconds)
    return item


def _log(*words: object) -> None:
    """One line in $JOBPOOL_TEST_LOG: this process's id, the words, the wall-clock time."""
    with open(os.environ["JOBPOOL_TEST_LOG"], "a") as log:
        log.write(" ".join(map(str, (os.getpid(), *words, time.time()))) + "\n")


@registry.job(name="logged")
async def logged(item: str, seconds: float = 0.0) -> str:
    """Log ``<pid> start <item> <time>``, take ``seconds``, log ``<pid> end <item> <time>``;
    a cancellation is logged as ``<pid> cancelled <item> <time>``."""
    _log("start", item)
    try:
        await anyio.sleep(seconds)
    except anyio.get_cancelled_exc_class():
        _log("cancelled", item)
        raise
    _log("end", item)
    return item


@registry.job(name="logged_until")
async def logged_until(item: str, path: str) -> str:
    """As ``logged``, but runs until cancelled unless the file ``path`` exists."""
    _log("start", item)
    try:
        if not os.path.exists(path):
            await anyio.sleep_forever()
        await anyio.lowlevel.checkpoint()
    except anyio.get_cancelled_exc_class():
        _log("cancelled", item)
        raise
    _log("end", item)
    return item


@registry.job(name="logged_defer")
async def logged_defer(item: str, delay: float) -> str:
    """As ``logged`` with no wait, but the job's first attempt raises ``Defer(delay)`` (logged
    as ``<pid> deferred <item> <time>``) instead of ending."""
    _log("start", item)
    await anyio.lowlevel.checkpoint()
    if trio_jobpool.current_job().attempts == 1:
        _log("deferred", item)
        raise trio_jobpool.Defer(delay)
    _log("end", item)
    return item


@registry.job(name="double")
async def double(x: int) -> int:
    await anyio.lowlevel.checkpoint()
    return 2 * x


@registry.job(name="fail")
async def fail(message: str) -> None:
    await anyio.lowlevel.checkpoint()
    raise ValueError(message)


@registry.job(name="block_unless")
async def block_unless(path: str) -> str:
    """Return at once if ``path`` exists, else run until cancelled."""
    if not os.path.exists(path):
        await anyio.sleep_forever()
    await anyio.lowlevel.checkpoint()
    return path


@registry.job(name="crash")
async def crash() -> None:
    """Kill the process running it, as a job with a fatal bug would."""
    await anyio.lowlevel.checkpoint()
    os._exit(3)


# -- in-process jobs for the store conformance tests (tests/stores/test_conformance.py) ------
#
# These coordinate with the test that runs them through `board`, so they only make sense in
# the test's own process (they are registered here so that durable pools accept them).


class Board:
    """What the conformance jobs record, and the events they wait for (reset per test)."""

    def __init__(self) -> None:
        self.started: list[str] = []  # names, in the order their attempts started
        self.calls: collections.Counter[str] = collections.Counter()
        self.seen: dict[str, Any] = {}
        self._events: dict[str, anyio.Event] = {}

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]

    def event(self, name: str) -> anyio.Event:
        """The event named ``name`` (made on first use: call inside the event loop)."""
        event = self._events.get(name)
        if event is None:
            event = self._events[name] = anyio.Event()
        return event

    def open(self, name: str = "gate") -> None:
        self.event(name).set()

    def start(self, name: str) -> None:
        """Record that an attempt of ``name`` started; sets the event ``started:<name>``."""
        self.started.append(name)
        self.event(f"started:{name}").set()

    async def wait_started(self, name: str) -> None:
        """Wait until an attempt of ``name`` has started (at any time since the reset)."""
        await self.event(f"started:{name}").wait()


board = Board()


@registry.job(name="note")
async def note(name: str) -> str:
    """Record the start, return ``name`` after one checkpoint."""
    board.start(name)
    await anyio.lowlevel.checkpoint()
    return name


@registry.job(name="hold")
async def hold(name: str, gate: str = "gate") -> str:
    """Record the start, then wait until ``board.open(gate)``."""
    board.start(name)
    await board.event(gate).wait()
    return name


@registry.job(name="progress_burst")
async def progress_burst(name: str, reports: int) -> str:
    """Report progress ``reports`` times without a checkpoint between, then wait for the
    gate, reporting once more (0.5, "after")."""
    job = trio_jobpool.current_job()
    for i in range(1, reports + 1):
        job.set_progress(i / (2 * reports), f"step {i}")
    board.start(name)
    await board.event("gate").wait()
    job.set_progress(1.0, "after")
    return name


@registry.job(name="hang")
async def hang(name: str) -> None:
    """Record the start, then run until cancelled (or timed out)."""
    board.start(name)
    await anyio.sleep_forever()


@registry.job(name="flaky")
async def flaky(name: str, failures: int) -> str:
    """Fail (``ValueError``) on the first ``failures`` calls under ``name``, then succeed.

    Sets the event ``failed:<name>:<call>`` as it raises: a test waiting for it resumes once
    the pool has dealt with the failure (the raise and its handling take no checkpoint).
    """
    board.start(name)
    board.calls[name] += 1
    call = board.calls[name]
    await anyio.lowlevel.checkpoint()
    if call <= failures:
        board.event(f"failed:{name}:{call}").set()
        raise ValueError(f"{name} failure {call}")
    return f"{name} ok after {call}"


@registry.job(name="defer_once")
async def defer_once(name: str, delay: float) -> str:
    """Record the start; the job's first attempt (``current_job().attempts == 1``, which a
    store keeps across pools) sets the event ``deferred:<name>`` and raises ``Defer(delay)``
    (the test resumes once the pool has dealt with it); a later one returns ``name``."""
    board.start(name)
    await anyio.lowlevel.checkpoint()
    if trio_jobpool.current_job().attempts == 1:
        board.event(f"deferred:{name}").set()
        raise trio_jobpool.Defer(delay)
    return name


@registry.job(name="hang_once_then_flaky")
async def hang_once_then_flaky(name: str, failures: int) -> str:
    """The first call runs until cancelled; later calls behave as ``flaky``."""
    board.start(name)
    board.calls[name] += 1
    if board.calls[name] == 1:
        await anyio.sleep_forever()
    await anyio.lowlevel.checkpoint()
    if board.calls[name] - 1 <= failures:
        raise ValueError(f"{name} failure {board.calls[name] - 1}")
    return f"{name} ok"


@registry.job(name="report_progress")
async def report_progress(name: str) -> str:
    """Record ``current_job()`` (here and in a child task) and progress, around a gate."""
    board.start(name)
    job = trio_jobpool.current_job()
    board.seen[name] = job
    job.set_progress(0.5, "half")
    try:
        job.set_progress(1.5)
    except ValueError as exc:
        board.seen[f"{name}:bad_progress"] = exc

    async def child() -> None:
        board.seen[f"{name}:child"] = trio_jobpool.current_job()
        await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        tg.start_soon(child)
    await board.event(name).wait()
    job.set_progress(1.0, "done")
    return job.job_id


@registry.job(name="returns_object")
async def returns_object() -> object:
    """A job whose result is not JSON."""
    await anyio.lowlevel.checkpoint()
    return object()


@registry.job(name="blob")
async def blob(data: str) -> int:
    """A job with a large argument (the full-disk tests); returns its length."""
    await anyio.lowlevel.checkpoint()
    return len(data)


@registry.job(name="tick")
async def tick() -> str:
    """A schedule's job: logs ``<pid> tick <job id> <time>`` in $JOBPOOL_TEST_LOG if set, and
    sets the board's event ``ticks:<n>`` at its ``n``-th start in this process (since the
    board's reset); returns its job id."""
    job_id = trio_jobpool.current_job().job_id
    if "JOBPOOL_TEST_LOG" in os.environ:
        _log("tick", job_id)
    board.calls["tick"] += 1
    board.event(f"ticks:{board.calls['tick']}").set()
    await anyio.lowlevel.checkpoint()
    return job_id
