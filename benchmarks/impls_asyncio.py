"""asyncio reference points: a hand-written asyncio loop, and aiojobs (on asyncio and uvloop).

* :class:`AsyncioLoop` - ``asyncio.Queue`` (``queue`` deep) feeding N worker tasks in an
  ``asyncio.TaskGroup``; each job runs under ``outcome.acapture``. ``put``/``get`` only yield when
  they must wait, so this loop has the "fast paths" built in.
* :class:`AsyncioCancelLoop` - the same plus a dict of live jobs and lazy deletion.
* :class:`AsyncioPriorityLoop` - ``asyncio.PriorityQueue``: a worker takes the best job at the
  moment it asks, so it never holds an early pick.
* :class:`Aiojobs` - ``aiojobs.Scheduler(limit=workers, pending_limit=queue)`` (0 = unbounded,
  and no close or wait timeout), a task per job.
  Cancel is ``await job.close()``; it has no priorities (W3 is n/a).
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import outcome
from impls import Env, NotSupported
from jobs import asyncio_jobs

__all__ = ["make_env"]


class AsyncioLoop:
    """asyncio.Queue + N worker tasks + ``outcome.acapture``."""

    def __init__(self, group: asyncio.TaskGroup, workers: int, queue: int | None):
        self._queue = self._make_queue(queue)
        self._tasks = [group.create_task(self._worker()) for _ in range(workers)]
        self.completed = 0
        self.cancelled = 0

    @staticmethod
    def _make_queue(queue: int | None) -> asyncio.Queue[Any]:
        return asyncio.Queue(0 if queue is None else queue)  # maxsize 0: unbounded

    async def submit(self, fn: Callable[..., Any], *args: Any, priority: int = 5) -> None:
        await self._queue.put((fn, args))

    async def _worker(self) -> None:
        acapture = outcome.acapture
        get = self._queue.get
        while True:
            item = await get()
            if item is None:
                return
            await acapture(item[0], *item[1])
            self.completed += 1

    @staticmethod
    def job_id(handle: Any) -> Any:
        return handle

    async def cancel_many(self, ids: list[Any]) -> None:
        raise NotSupported("this pool has no cancel by id")

    async def close(self) -> None:
        for _ in self._tasks:
            await self._queue.put(None)

    async def abort(self) -> None:
        for task in self._tasks:
            task.cancel()

    def counts(self) -> dict[str, int]:
        return {"completed": self.completed, "cancelled": self.cancelled}


class AsyncioCancelLoop(AsyncioLoop):
    """:class:`AsyncioLoop` with integer job ids, a dict of live jobs and lazy deletion."""

    def __init__(self, group: asyncio.TaskGroup, workers: int, queue: int | None):
        self._live: dict[int, tuple[Callable[..., Any], tuple[Any, ...]]] = {}
        self._ids = itertools.count()
        super().__init__(group, workers, queue)

    async def submit(self, fn: Callable[..., Any], *args: Any, priority: int = 5) -> int:
        job_id = next(self._ids)
        self._live[job_id] = (fn, args)
        await self._queue.put(job_id)
        return job_id

    def cancel(self, job_id: int) -> None:
        del self._live[job_id]  # KeyError (a LookupError) for an id that is not waiting
        self.cancelled += 1

    async def cancel_many(self, ids: list[Any]) -> None:
        cancel = self.cancel
        for job_id in ids:
            cancel(job_id)

    async def _worker(self) -> None:
        acapture = outcome.acapture
        get = self._queue.get
        live = self._live
        while True:
            job_id = await get()
            if job_id is None:
                return
            job = live.pop(job_id, None)
            if job is None:  # cancelled while it waited
                continue
            await acapture(job[0], *job[1])
            self.completed += 1


class AsyncioPriorityLoop(AsyncioLoop):
    """asyncio.PriorityQueue of ``(priority, sequence, fn, args)`` + N workers."""

    def __init__(self, group: asyncio.TaskGroup, workers: int, queue: int | None):
        self._seq = itertools.count()
        super().__init__(group, workers, queue)

    @staticmethod
    def _make_queue(queue: int | None) -> asyncio.Queue[Any]:
        return asyncio.PriorityQueue(0 if queue is None else queue)

    async def submit(self, fn: Callable[..., Any], *args: Any, priority: int = 5) -> None:
        await self._queue.put((priority, next(self._seq), fn, args))

    async def _worker(self) -> None:
        acapture = outcome.acapture
        get = self._queue.get
        while True:
            _, _, fn, args = await get()
            if fn is None:
                return
            await acapture(fn, *args)
            self.completed += 1

    async def close(self) -> None:
        for _ in self._tasks:  # after every real job: infinite priority
            await self._queue.put((math.inf, next(self._seq), None, ()))


class Aiojobs:
    """aiojobs.Scheduler behind the common interface; handles are ``aiojobs.Job`` objects."""

    def __init__(self, workers: int, queue: int | None):
        import aiojobs

        # close_timeout=None: closing (a cancel, or the teardown of 200k queued jobs) never gives
        # up on a job; the default 0.1 s would time out and log while 200k jobs are closed.
        self._scheduler = aiojobs.Scheduler(
            limit=workers,
            pending_limit=0 if queue is None else queue,
            close_timeout=None,
            wait_timeout=None,
        )
        spawn = self._scheduler.spawn

        def submit(fn: Callable[..., Any], *args: Any, priority: int = 5) -> Any:
            return spawn(fn(*args))  # the coroutine of spawn(): awaiting it submits

        self.submit = submit

    @staticmethod
    def job_id(handle: Any) -> Any:
        return handle

    async def cancel_many(self, ids: list[Any]) -> None:
        for job in ids:
            await job.close()

    async def close(self) -> None:
        await self._scheduler.wait_and_close()

    async def abort(self) -> None:
        """Get rid of the queued jobs, the fastest way aiojobs allows (teardown of W4 only).

        ``scheduler.close()`` and ``wait_and_close()`` each gather every job at once: ~50 us per
        queued job, 10 s for W4's 200,000. Running the no-op jobs out (the driver released the
        blockers) takes ~6 us per job.
        """
        scheduler = self._scheduler
        for _ in range(1_000_000):
            if not scheduler.pending_count:
                return
            await asyncio.sleep(0.001)

    def counts(self) -> None:
        return None


_KINDS: dict[str, Any] = {
    "plain": AsyncioLoop,
    "cancel": AsyncioCancelLoop,
    "priority": AsyncioPriorityLoop,
}


def _runner(loop: str) -> Callable[[Callable[[], Any]], Any]:
    if loop == "uvloop":
        import uvloop

        def run_uvloop(fn: Callable[[], Any]) -> Any:
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                return runner.run(fn())

        return run_uvloop

    def run_asyncio(fn: Callable[[], Any]) -> Any:
        return asyncio.run(fn())

    return run_asyncio


def make_env(variant: str) -> Env:
    """``variant``: ``"loop"``, ``"aiojobs"`` or ``"aiojobs-uvloop"``."""

    @asynccontextmanager
    async def open_loop(kind: str, workers: int, queue: int | None) -> AsyncIterator[Any]:
        async with asyncio.TaskGroup() as group:
            pool = _KINDS[kind](group, workers, queue)
            yield pool
            await pool.close()

    @asynccontextmanager
    async def open_aiojobs(kind: str, workers: int, queue: int | None) -> AsyncIterator[Any]:
        if kind == "priority":
            raise NotSupported("aiojobs has no priorities")
        pool = Aiojobs(workers, queue)
        try:
            yield pool
        finally:
            await pool.close()

    if variant == "loop":
        return Env(jobs=asyncio_jobs(), run=_runner("asyncio"), open_pool=open_loop)
    loop = "uvloop" if variant == "aiojobs-uvloop" else "asyncio"
    return Env(jobs=asyncio_jobs(), run=_runner(loop), open_pool=open_aiojobs)
