"""Hand-written Trio pools: the reference points, "the limit".

Each is the smallest correct pool for its workload, built from Trio's own primitives:

* :class:`TrioLoop` - a memory channel (the queue, ``queue`` deep) feeding N worker tasks in a
  nursery; each job runs under ``outcome.acapture``.
* :class:`TrioCancelLoop` - the same, plus a dict of live jobs: cancel deletes the job from the
  dict, and a worker skips a job that is no longer in it when it surfaces (lazy deletion).
* :class:`TrioPriorityLoop` - a ``heapq`` of waiting jobs and a dispatcher task that pops the
  best one only once a worker waits for it, and hands it over through an unbuffered channel (a
  job popped early would sit in the hand-off and could be overtaken: a priority inversion).

``fast=False``: every send and receive is a checkpoint (``await send`` / ``await receive``).
``fast=True``: ``send_nowait`` / ``receive_nowait`` first, blocking only on ``WouldBlock``.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import outcome
import trio
from impls import Env, NotSupported
from jobs import trio_jobs

__all__ = ["make_env"]


class TrioLoop:
    """Memory channel + N workers + ``outcome.acapture``."""

    def __init__(self, nursery: trio.Nursery, workers: int, queue: int | None, fast: bool):
        self._nursery = nursery
        self._send, receive = trio.open_memory_channel[Any](math.inf if queue is None else queue)
        self.completed = 0
        self.cancelled = 0
        self.submit = self._submit_fast if fast else self._submit
        worker = self._worker_fast if fast else self._worker
        for _ in range(workers):
            nursery.start_soon(worker, receive)

    async def _submit(self, fn: Callable[..., Any], *args: Any, priority: int = 5) -> None:
        await self._send.send((fn, args))

    async def _submit_fast(self, fn: Callable[..., Any], *args: Any, priority: int = 5) -> None:
        item = (fn, args)
        try:
            self._send.send_nowait(item)
        except trio.WouldBlock:
            await self._send.send(item)

    async def _worker(self, receive: trio.MemoryReceiveChannel[Any]) -> None:
        acapture = outcome.acapture
        while True:
            try:
                fn, args = await receive.receive()
            except trio.EndOfChannel:
                return
            await acapture(fn, *args)
            self.completed += 1

    async def _worker_fast(self, receive: trio.MemoryReceiveChannel[Any]) -> None:
        acapture = outcome.acapture
        receive_nowait = receive.receive_nowait
        while True:
            try:
                fn, args = receive_nowait()
            except trio.WouldBlock:
                try:
                    fn, args = await receive.receive()
                except trio.EndOfChannel:
                    return
            except trio.EndOfChannel:
                return
            await acapture(fn, *args)
            self.completed += 1

    @staticmethod
    def job_id(handle: Any) -> Any:
        return handle

    async def cancel_many(self, ids: list[Any]) -> None:
        raise NotSupported("this pool has no cancel by id")

    async def close(self) -> None:
        """No more jobs: the workers finish what is queued, then exit."""
        await self._send.aclose()

    async def abort(self) -> None:
        self._nursery.cancel_scope.cancel()

    def counts(self) -> dict[str, int]:
        return {"completed": self.completed, "cancelled": self.cancelled}


class TrioCancelLoop(TrioLoop):
    """:class:`TrioLoop` with integer job ids, a dict of live jobs and lazy deletion."""

    def __init__(self, nursery: trio.Nursery, workers: int, queue: int | None, fast: bool):
        self._live: dict[int, tuple[Callable[..., Any], tuple[Any, ...]]] = {}
        self._ids = itertools.count()
        super().__init__(nursery, workers, queue, fast)

    async def _submit(self, fn: Callable[..., Any], *args: Any, priority: int = 5) -> int:
        job_id = next(self._ids)
        self._live[job_id] = (fn, args)
        await self._send.send(job_id)
        return job_id

    async def _submit_fast(self, fn: Callable[..., Any], *args: Any, priority: int = 5) -> int:
        job_id = next(self._ids)
        self._live[job_id] = (fn, args)
        try:
            self._send.send_nowait(job_id)
        except trio.WouldBlock:
            await self._send.send(job_id)
        return job_id

    def cancel(self, job_id: int) -> None:
        del self._live[job_id]  # KeyError (a LookupError) for an id that is not waiting
        self.cancelled += 1

    async def cancel_many(self, ids: list[Any]) -> None:
        cancel = self.cancel
        for job_id in ids:
            cancel(job_id)

    async def _worker(self, receive: trio.MemoryReceiveChannel[Any]) -> None:
        acapture = outcome.acapture
        live = self._live
        while True:
            try:
                job_id = await receive.receive()
            except trio.EndOfChannel:
                return
            job = live.pop(job_id, None)
            if job is None:  # cancelled while it waited
                continue
            await acapture(job[0], *job[1])
            self.completed += 1

    async def _worker_fast(self, receive: trio.MemoryReceiveChannel[Any]) -> None:
        acapture = outcome.acapture
        live = self._live
        receive_nowait = receive.receive_nowait
        while True:
            try:
                job_id = receive_nowait()
            except trio.WouldBlock:
                try:
                    job_id = await receive.receive()
                except trio.EndOfChannel:
                    return
            except trio.EndOfChannel:
                return
            job = live.pop(job_id, None)
            if job is None:
                continue
            await acapture(job[0], *job[1])
            self.completed += 1


class TrioPriorityLoop:
    """heapq + a dispatcher + an unbuffered hand-off to N workers (unbounded queue only)."""

    def __init__(self, nursery: trio.Nursery, workers: int, queue: int | None, fast: bool):
        if queue is not None:
            raise NotSupported("the hand-written priority loop has no queue bound")
        self._nursery = nursery
        self._fast = fast
        self._heap: list[tuple[int, int, Callable[..., Any], tuple[Any, ...]]] = []
        self._seq = itertools.count()
        self._idle = 0  # workers waiting in receive
        self._wake: trio.Event | None = None  # the dispatcher waits on it
        self._closed = False
        self.completed = 0
        self.submit = self._submit_fast if fast else self._submit
        self._send, receive = trio.open_memory_channel[Any](0)
        nursery.start_soon(self._dispatch)
        worker = self._worker_fast if fast else self._worker
        for _ in range(workers):
            nursery.start_soon(worker, receive)

    def _notify(self) -> None:
        if self._wake is not None:
            self._wake.set()
            self._wake = None

    async def _submit(self, fn: Callable[..., Any], *args: Any, priority: int = 5) -> None:
        heapq.heappush(self._heap, (priority, next(self._seq), fn, args))
        self._notify()
        await trio.lowlevel.checkpoint()

    async def _submit_fast(self, fn: Callable[..., Any], *args: Any, priority: int = 5) -> None:
        heapq.heappush(self._heap, (priority, next(self._seq), fn, args))
        self._notify()

    async def _dispatch(self) -> None:
        heap = self._heap
        heappop = heapq.heappop
        send = self._send
        while True:
            while not (heap and self._idle):
                if self._closed and not heap:
                    await send.aclose()
                    return
                self._wake = trio.Event()
                await self._wake.wait()
            _, _, fn, args = heappop(heap)
            self._idle -= 1
            if self._fast:
                send.send_nowait((fn, args))  # a worker is waiting in receive: never blocks
            else:
                await send.send((fn, args))

    async def _worker(self, receive: trio.MemoryReceiveChannel[Any]) -> None:
        acapture = outcome.acapture
        while True:
            self._idle += 1
            self._notify()
            try:
                fn, args = await receive.receive()
            except trio.EndOfChannel:
                return
            await acapture(fn, *args)
            self.completed += 1

    async def _worker_fast(self, receive: trio.MemoryReceiveChannel[Any]) -> None:
        acapture = outcome.acapture
        receive_nowait = receive.receive_nowait
        while True:
            self._idle += 1
            self._notify()
            try:
                fn, args = receive_nowait()
            except trio.WouldBlock:
                try:
                    fn, args = await receive.receive()
                except trio.EndOfChannel:
                    return
            except trio.EndOfChannel:
                return
            await acapture(fn, *args)
            self.completed += 1

    job_id = TrioLoop.job_id
    cancel_many = TrioLoop.cancel_many
    abort = TrioLoop.abort

    async def close(self) -> None:
        self._closed = True
        self._notify()
        await trio.lowlevel.checkpoint()

    def counts(self) -> dict[str, int]:
        return {"completed": self.completed, "cancelled": 0}


_KINDS: dict[str, Any] = {
    "plain": TrioLoop,
    "cancel": TrioCancelLoop,
    "priority": TrioPriorityLoop,
}


def make_env(variant: str) -> Env:
    """``variant``: ``"loop"`` (every send/receive a checkpoint) or ``"fast"`` (nowait paths)."""
    fast = {"loop": False, "fast": True}[variant]

    @asynccontextmanager
    async def open_pool(kind: str, workers: int, queue: int | None) -> AsyncIterator[Any]:
        async with trio.open_nursery() as nursery:
            pool = _KINDS[kind](nursery, workers, queue, fast)
            yield pool
            await pool.close()

    return Env(jobs=trio_jobs(), run=trio.run, open_pool=open_pool)
