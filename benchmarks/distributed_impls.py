"""The processes of ``distributed.py``: producers and workers of each job queue measured.

    python benchmarks/distributed_impls.py produce IMPL URL QUEUE N TASKS DEADLINE
    python benchmarks/distributed_impls.py work IMPL URL QUEUE CONCURRENCY DEADLINE

The harness (``distributed.py``) starts these; they talk to it by lines on stdin and stdout
(stdout lines of the protocol start with ``@@`` and carry JSON):

* ``produce`` enqueues N no-op jobs through the implementation's own client, from TASKS
  concurrent tasks, prints ``@@{"enqueued": N, "seconds": ...}`` and closes its client. It then
  waits for a ``check`` line, opens a client again and polls the implementation's own store
  (every 5 ms) until it says that all N jobs are done: ``@@{"confirmed": ..., "at": ...}``
  (``at`` on the system-wide monotonic clock).
* ``work`` imports everything, prints ``@@{"ready": ...}`` and waits for a ``go`` line; then it
  runs the implementation's own worker (CONCURRENCY jobs at a time) until SIGTERM, and prints
  ``@@{"final": ...}``. Meanwhile a thread prints the tally of the no-op jobs run in this
  process every 20 ms when it changed: ``@@{"count", "first", "last", "cpu"}``, the monotonic
  times of the first job's start and the last job's end, and the CPU seconds the process used
  since its first job started. The no-op job updates that tally in memory
  only: it costs no Redis command, the same for every implementation.

Each process exits on its own after DEADLINE seconds whatever happens (a watchdog thread), so
that nothing outlives a harness that died.

Implementations (the peers are run as their docs run them, with their defaults, except where
``PEER_SETTINGS`` says otherwise):

* ``jobpool-trio`` / ``jobpool-asyncio``: ``open_job_pool(CONCURRENCY, 100, store=redis://...,
  registry=...)`` under ``trio.run`` / ``anyio.run(backend="asyncio")``; JSON payloads.
* ``saq``: ``saq.Worker(queue, functions=[noop], concurrency=CONCURRENCY).start()`` on a fresh
  asyncio loop, as ``saq.worker.start`` (the ``saq`` command) does.
* ``arq``: ``arq.worker.run_worker(settings)`` (what the ``arq`` command calls), ``max_jobs``
  = CONCURRENCY.
* ``streaq``: ``Worker(redis_url, queue_name, concurrency=CONCURRENCY).run_sync()`` (what the
  ``streaq run`` command calls).
* ``coredis-loop-1`` / ``coredis-loop-10``: CONCURRENCY tasks on one coredis client (asyncio),
  each popping 1 (resp. up to 10) JSON jobs per round trip (``LPOP key [count]``) from a Redis
  list and running them one after the other. No acknowledgement, no lease, no result: the
  limit of what one client does per round trip, not a job queue.

Logging is left unconfigured (Python's default, WARNING) in every process: the peers' command
line tools would configure INFO, where arq and streaq log a line per job.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

__all__ = ["IMPLS", "PEER_SETTINGS", "PEERS", "LIMITS", "JOBPOOLS"]

CHECK_INTERVAL = 0.005  # seconds between two polls of a store for "all done"
CHECK_TIMEOUT = 30.0  # seconds the check waits for the store to confirm
REPORT_INTERVAL = 0.02  # seconds between two tally lines of a worker
JOBPOOL_QUEUE_SIZE = 100  # the worker pools' queue_size (they claim for idle workers only)
LIST_KEY = "coredis-loop:{queue}"  # the coredis loops' list

# Settings of the peers that differ from their defaults, and why (reported with the results).
ARQ_POLL_DELAY = 0.01
PEER_SETTINGS: dict[str, dict[str, object]] = {
    "arq": {
        "poll_delay": ARQ_POLL_DELAY,
        "why": (
            "default 0.5 s: each poll reads up to 100 job ids and the worker sleeps out the "
            "rest of the 0.5 s after starting them, so no-op jobs ran at about 210 jobs/s "
            "here (100 per poll, two polls a second); 0, 0.01 and 0.05 s all gave about "
            "1,900 jobs/s in a --quick run"
        ),
    },
}


# -- the no-op job's tally ---------------------------------------------------------------------


class Tally:
    """Jobs run in this process: how many, and when the first started and the last ended."""

    count = 0
    first = 0.0
    last = 0.0
    cpu_first = 0.0  # the process's CPU seconds when its first job started

    @classmethod
    def tick(cls) -> None:
        now = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process of the machine
        if cls.count == 0:
            cls.first = now
            cls.cpu_first = time.process_time()
        cls.count += 1
        cls.last = now

    @classmethod
    def line(cls) -> dict[str, float | int]:
        count = cls.count  # (read first: ``last`` and ``cpu`` are then at least as recent)
        cpu = time.process_time() - cls.cpu_first if count else 0.0  # every thread's
        return {"count": count, "first": cls.first, "last": cls.last, "cpu": cpu}


def emit(record: dict[str, Any]) -> None:
    sys.stdout.write("@@" + json.dumps(record) + "\n")
    sys.stdout.flush()


def _reporter(stop: threading.Event) -> None:
    sent = -1
    while not stop.wait(REPORT_INTERVAL):  # ends with the process (daemon), or on stop
        line = Tally.line()
        if line["count"] != sent:
            sent = int(line["count"])
            emit(line)


def _watchdog(seconds: float) -> None:
    """Exit the process after ``seconds`` whatever it is doing."""
    timer = threading.Timer(seconds, os._exit, args=(3,))
    timer.daemon = True
    timer.start()


async def noop(i: int) -> None:
    """The job: nothing but the tally (``i`` travels as its argument)."""
    Tally.tick()


async def _until_signal() -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            return


async def _fan_out(submit: Callable[[int], Awaitable[object]], n: int, tasks: int) -> float:
    """Submit jobs 0..n-1 from ``tasks`` concurrent tasks; the seconds it took."""
    started = time.perf_counter()

    async def one(k: int) -> None:
        for i in range(k, n, tasks):
            await submit(i)

    async with anyio.create_task_group() as tg:
        for k in range(tasks):
            tg.start_soon(one, k)
    return time.perf_counter() - started


async def _poll(read: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """Poll ``read`` (the store's view: ``done`` and details) until it says done, or time out."""
    deadline = time.monotonic() + CHECK_TIMEOUT
    polls = 0
    while True:  # bounded by the deadline
        state = await read()
        polls += 1
        done = bool(state.pop("done"))
        if done or time.monotonic() > deadline:
            break
        await anyio.sleep(CHECK_INTERVAL)
    return {"confirmed": done, "at": time.monotonic(), "polls": polls, "store": state}


# -- trio_jobpool --------------------------------------------------------------------------------


def _jobpool_store(url: str, queue: str) -> str:
    return f"{url}/0?queue={queue}"


def _registry() -> Any:
    from trio_jobpool import JobRegistry

    registry = JobRegistry()
    registry.register(noop, name="noop")
    return registry


def _jobpool_runner(backend: str) -> Callable[[Callable[[], Awaitable[Any]]], Any]:
    def run(fn: Callable[[], Awaitable[Any]]) -> Any:
        if backend == "trio":
            import trio

            return trio.run(fn)
        return anyio.run(fn, backend="asyncio")

    return run


async def _jobpool_enqueue(url: str, queue: str, n: int, tasks: int) -> float:
    from trio_jobpool import open_job_pool

    store = _jobpool_store(url, queue)
    async with open_job_pool(
        0, JOBPOOL_QUEUE_SIZE, store=store, registry=_registry(), max_pending=None
    ) as producer:

        async def submit(i: int) -> None:
            await producer.submit("noop", i)

        return await _fan_out(submit, n, tasks)


async def _jobpool_check(url: str, queue: str, n: int) -> dict[str, Any]:
    from trio_jobpool import open_job_pool

    store = _jobpool_store(url, queue)
    async with open_job_pool(
        0, JOBPOOL_QUEUE_SIZE, store=store, registry=_registry(), max_pending=None
    ) as pool:

        async def read() -> dict[str, Any]:
            s = await pool.cluster_stats()
            done = s.total_completed >= n and s.queued_tasks == 0 and s.active_workers == 0
            return {
                "done": done,
                "completed": s.total_completed,
                "failed": s.total_failed,
                "queued": s.queued_tasks,
                "active": s.active_workers,
            }

        return await _poll(read)


def _jobpool_worker(backend: str) -> Callable[[argparse.Namespace], dict[str, Any]]:
    def work(args: argparse.Namespace) -> dict[str, Any]:
        import trio_jobpool
        from trio_jobpool import open_job_pool

        async def main() -> dict[str, Any]:
            store = _jobpool_store(args.url, args.queue)
            registry = _registry()
            async with open_job_pool(
                args.concurrency, JOBPOOL_QUEUE_SIZE, store=store, registry=registry
            ) as pool:
                await _until_signal()
            stats = pool.stats()
            return {
                "completed": stats.total_completed,
                "failed": stats.total_failed,
                "trio_jobpool_file": trio_jobpool.__file__,
            }

        result: dict[str, Any] = _jobpool_runner(backend)(main)
        return result

    return work


# -- saq -----------------------------------------------------------------------------------------


async def _saq_noop(ctx: Any, *, i: int) -> None:
    Tally.tick()


async def _saq_enqueue(url: str, queue: str, n: int, tasks: int) -> float:
    from saq import Queue

    q = Queue.from_url(url, name=queue)
    await q.connect()
    try:

        async def submit(i: int) -> None:
            await q.enqueue("noop", i=i)

        return await _fan_out(submit, n, tasks)
    finally:
        await q.disconnect()


async def _saq_check(url: str, queue: str, n: int) -> dict[str, Any]:
    from saq import Queue

    q = Queue.from_url(url, name=queue)
    await q.connect()
    try:

        async def read() -> dict[str, Any]:
            incomplete = await q.count("incomplete")
            queued = await q.count("queued")
            active = await q.count("active")
            done = incomplete == 0 and queued == 0 and active == 0
            return {"done": done, "incomplete": incomplete, "queued": queued, "active": active}

        return await _poll(read)
    finally:
        await q.disconnect()


def _saq_worker(args: argparse.Namespace) -> dict[str, Any]:
    from saq import Queue, Worker

    async def main() -> dict[str, Any]:
        # as saq.worker.start (the `saq` command) does, without its logging set-up
        queue = Queue.from_url(args.url, name=args.queue)
        worker: Worker[Any] = Worker(
            queue, functions=[("noop", _saq_noop)], concurrency=args.concurrency
        )
        await queue.connect()
        try:
            await worker.start()  # until SIGTERM / SIGINT (its own handlers)
        finally:
            await queue.disconnect()
        return {"completed": queue.complete, "failed": queue.failed}

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


# -- arq -----------------------------------------------------------------------------------------


async def _arq_noop(ctx: dict[str, Any], i: int) -> None:
    Tally.tick()


async def _arq_enqueue(url: str, queue: str, n: int, tasks: int) -> float:
    from arq import create_pool
    from arq.connections import RedisSettings

    pool = await create_pool(RedisSettings.from_dsn(url), default_queue_name=queue)
    try:

        async def submit(i: int) -> None:
            await pool.enqueue_job("noop", i)

        return await _fan_out(submit, n, tasks)
    finally:
        await pool.close(close_connection_pool=True)


async def _arq_check(url: str, queue: str, n: int) -> dict[str, Any]:
    from arq import create_pool
    from arq.connections import RedisSettings

    pool = await create_pool(RedisSettings.from_dsn(url), default_queue_name=queue)
    try:

        async def read() -> dict[str, Any]:
            waiting = await pool.zcard(queue)  # a job leaves the queue when it ends
            return {"done": waiting == 0, "queued_or_running": waiting}

        state = await _poll(read)
        results = await pool.all_job_results()
        state["store"]["results"] = len(results)
        state["store"]["failed"] = sum(1 for r in results if not r.success)
        return state
    finally:
        await pool.close(close_connection_pool=True)


def _arq_worker(args: argparse.Namespace) -> dict[str, Any]:
    from arq.connections import RedisSettings
    from arq.worker import func, run_worker

    settings: dict[str, Any] = {
        "functions": [func(_arq_noop, name="noop")],
        "redis_settings": RedisSettings.from_dsn(args.url),
        "queue_name": args.queue,
        "max_jobs": args.concurrency,
        "poll_delay": ARQ_POLL_DELAY,
    }
    worker = run_worker(settings)  # until SIGTERM / SIGINT (its own handlers)
    return {"completed": worker.jobs_complete, "failed": worker.jobs_failed}


# -- streaq --------------------------------------------------------------------------------------


def _streaq_worker_object(url: str, queue: str, concurrency: int) -> tuple[Any, Any]:
    from streaq import Worker

    worker: Any = Worker(redis_url=url, queue_name=queue, concurrency=concurrency)

    async def streaq_noop(i: int) -> None:
        Tally.tick()

    task = worker.task(name="noop")(streaq_noop)
    return worker, task


async def _streaq_enqueue(url: str, queue: str, n: int, tasks: int) -> float:
    worker, task = _streaq_worker_object(url, queue, 10)
    async with worker:

        async def submit(i: int) -> None:
            await task.enqueue(i)

        return await _fan_out(submit, n, tasks)


async def _streaq_check(url: str, queue: str, n: int) -> dict[str, Any]:
    worker, _ = _streaq_worker_object(url, queue, 10)
    async with worker:
        redis = worker.redis

        async def read() -> dict[str, Any]:
            queued = await worker.queue_size()
            running = await redis.scard(worker._running_set)
            results = await redis.zcard(worker._results_set)
            done = queued == 0 and running == 0 and results >= n
            return {"done": done, "queued": queued, "running": running, "results": results}

        return await _poll(read)


def _streaq_worker(args: argparse.Namespace) -> dict[str, Any]:
    worker, _ = _streaq_worker_object(args.url, args.queue, args.concurrency)
    worker.run_sync()  # until SIGTERM / SIGINT (its own handlers)
    return {"counters": dict(worker.counters)}


# -- the coredis loops ---------------------------------------------------------------------------


def _coredis_client(url: str) -> Any:
    import coredis

    return coredis.Redis.from_url(url, decode_responses=True)


async def _coredis_enqueue(url: str, queue: str, n: int, tasks: int) -> float:
    key = LIST_KEY.format(queue=queue)
    async with _coredis_client(url) as client:

        async def submit(i: int) -> None:
            await client.rpush(key, [json.dumps({"f": "noop", "a": [i]})])

        return await _fan_out(submit, n, tasks)


async def _coredis_check(url: str, queue: str, n: int) -> dict[str, Any]:
    key = LIST_KEY.format(queue=queue)
    async with _coredis_client(url) as client:

        async def read() -> dict[str, Any]:
            waiting = await client.llen(key)
            return {"done": waiting == 0, "waiting": waiting}

        return await _poll(read)


FUNCTIONS: dict[str, Callable[..., Awaitable[None]]] = {"noop": noop}


def _coredis_worker(batch: int) -> Callable[[argparse.Namespace], dict[str, Any]]:
    def work(args: argparse.Namespace) -> dict[str, Any]:
        key = LIST_KEY.format(queue=args.queue)
        empty = [0]

        async def consume(client: Any) -> None:
            while True:  # until cancelled (SIGTERM); the process has a watchdog
                if batch == 1:
                    one = await client.lpop(key)
                    items = [] if one is None else [one]
                else:
                    items = await client.lpop(key, batch) or []
                if not items:  # (only once the list is empty: the run is over)
                    empty[0] += 1
                    await anyio.sleep(0.005)
                    continue
                for raw in items:
                    job = json.loads(raw)
                    await FUNCTIONS[job["f"]](*job["a"])

        async def main() -> None:
            async with _coredis_client(args.url) as client, anyio.create_task_group() as tg:
                for _ in range(args.concurrency):
                    tg.start_soon(consume, client)
                await _until_signal()
                tg.cancel_scope.cancel()

        anyio.run(main, backend="asyncio")
        return {"empty_polls": empty[0]}

    return work


# -- the table of implementations ------------------------------------------------------------


@dataclass(frozen=True)
class Impl:
    name: str
    kind: str  # "jobpool", "peer" or "limit"
    run: Callable[[Callable[[], Awaitable[Any]]], Any]  # runs the producer's coroutines
    enqueue: Callable[[str, str, int, int], Awaitable[float]]
    check: Callable[[str, str, int], Awaitable[dict[str, Any]]]
    work: Callable[[argparse.Namespace], dict[str, Any]]
    imports: tuple[str, ...]  # imported before the worker says it is ready
    settings: dict[str, object] = field(default_factory=dict)


def _asyncio_run(fn: Callable[[], Awaitable[Any]]) -> Any:
    return anyio.run(fn, backend="asyncio")


_JOBPOOL_IMPORTS = ("trio", "coredis", "trio_jobpool", "trio_jobpool.stores._redis_queue")
IMPLS: dict[str, Impl] = {
    impl.name: impl
    for impl in (
        Impl(
            "jobpool-trio",
            "jobpool",
            _jobpool_runner("trio"),
            _jobpool_enqueue,
            _jobpool_check,
            _jobpool_worker("trio"),
            _JOBPOOL_IMPORTS,
        ),
        Impl(
            "jobpool-asyncio",
            "jobpool",
            _jobpool_runner("asyncio"),
            _jobpool_enqueue,
            _jobpool_check,
            _jobpool_worker("asyncio"),
            _JOBPOOL_IMPORTS,
        ),
        Impl("saq", "peer", _asyncio_run, _saq_enqueue, _saq_check, _saq_worker, ("saq",)),
        Impl(
            "arq",
            "peer",
            _asyncio_run,
            _arq_enqueue,
            _arq_check,
            _arq_worker,
            ("arq", "arq.worker"),
            PEER_SETTINGS["arq"],
        ),
        Impl(
            "streaq",
            "peer",
            _asyncio_run,
            _streaq_enqueue,
            _streaq_check,
            _streaq_worker,
            ("streaq",),
        ),
        Impl(
            "coredis-loop-1",
            "limit",
            _asyncio_run,
            _coredis_enqueue,
            _coredis_check,
            _coredis_worker(1),
            ("coredis",),
        ),
        Impl(
            "coredis-loop-10",
            "limit",
            _asyncio_run,
            _coredis_enqueue,
            _coredis_check,
            _coredis_worker(10),
            ("coredis",),
        ),
    )
}
JOBPOOLS = [name for name, impl in IMPLS.items() if impl.kind == "jobpool"]
PEERS = [name for name, impl in IMPLS.items() if impl.kind == "peer"]
LIMITS = [name for name, impl in IMPLS.items() if impl.kind == "limit"]


# -- the two commands ----------------------------------------------------------------------------


def produce(args: argparse.Namespace) -> int:
    impl = IMPLS[args.impl]
    seconds = impl.run(lambda: impl.enqueue(args.url, args.queue, args.n, args.tasks))
    emit({"enqueued": args.n, "seconds": seconds})
    command = sys.stdin.readline().strip()  # the harness: "check" once the workers are done
    if command != "check":
        return 0
    emit(impl.run(lambda: impl.check(args.url, args.queue, args.n)))
    return 0


def work(args: argparse.Namespace) -> int:
    impl = IMPLS[args.impl]
    for module in impl.imports:
        importlib.import_module(module)
    emit({"ready": os.getpid()})
    if sys.stdin.readline().strip() != "go":
        return 0
    stop = threading.Event()
    reporter = threading.Thread(target=_reporter, args=(stop,), daemon=True)
    reporter.start()
    try:
        final = impl.work(args)
    finally:
        stop.set()
        reporter.join(timeout=1.0)
    emit({"final": True, **Tally.line(), **final})
    return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("produce")
    w = commands.add_parser("work")
    for sub in (p, w):
        sub.add_argument("impl", choices=list(IMPLS))
        sub.add_argument("url")
        sub.add_argument("queue")
    p.add_argument("n", type=int)
    p.add_argument("tasks", type=int)
    w.add_argument("concurrency", type=int)
    for sub in (p, w):
        sub.add_argument("deadline", type=float)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    _watchdog(args.deadline)
    try:
        return produce(args) if args.command == "produce" else work(args)
    except Exception as exc:
        emit({"error": "".join(traceback.format_exception(exc))})
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
