"""The processes of ``distributed.py``: producers and workers of each job queue measured.

    python benchmarks/distributed_impls.py produce IMPL URL QUEUE N TASKS DEADLINE [--body B]
    python benchmarks/distributed_impls.py work IMPL URL QUEUE CONCURRENCY DEADLINE [--body B]
    python benchmarks/distributed_impls.py front IMPL URL QUEUE N TASKS DEADLINE [--body B]
        [--keys K] [--limit M]

The harness (``distributed.py``) starts these; they talk to it by lines on stdin and stdout
(stdout lines of the protocol start with ``@@`` and carry JSON):

* ``produce`` enqueues N jobs of body B through the implementation's own client, from TASKS
  concurrent tasks, prints ``@@{"enqueued": N, "seconds": ...}`` and closes its client. It then
  waits for a ``check`` line, opens a client again and polls the implementation's own store
  (every 5 ms) until it says that all N jobs are done: ``@@{"confirmed": ..., "at": ...}``
  (``at`` on the system-wide monotonic clock).
* ``work`` imports everything (and, for trio_jobpool and the coredis loops with ``--body
  redis``, creates the process's coredis client), prints ``@@{"ready": ...}`` and waits for a
  ``go`` line; then it runs the implementation's own worker (CONCURRENCY jobs at a time) until
  SIGTERM, and prints ``@@{"final": ...}``. Meanwhile a thread prints the tally of the jobs run
  in this process every 20 ms when it changed: ``@@{"count", "first", "last", "cpu"}``, the
  monotonic times of the first job's start and the last job's end, and the CPU seconds the
  process used since its first job ended. Another thread answers each further stdin line
  ``cpu`` with ``@@{"cpu_at": <the process's CPU seconds so far>, "seq": <1, 2, ...>}``. A
  trio_jobpool worker also prints ``@@{"open": ...}`` once its pool is open.
* ``front`` (trio_jobpool only: the scaling mode's front end) opens a pool with
  ``max_workers=0`` and ``max_pending=None``, prints ``@@{"ready": ...}`` and waits for a
  ``go`` line; then it submits N jobs from TASKS concurrent tasks and prints
  ``@@{"submitted": N, "seconds": ...}``; on a ``check`` line it polls ``cluster_stats()``
  (every 5 ms) until all N jobs are done and prints ``@@{"confirmed": ..., "at": ...,
  "cpu": ...}``, ``cpu`` being the CPU seconds it used from "go" to the confirmation. It leaves
  its pool on SIGTERM. With ``--keys K`` (``distributed.py --keys``, issue #17) job ``i`` is
  submitted with ``key=key_name(i % K)`` (``"k0"`` .. ``"k<K-1>"``), and with ``--limit M`` it
  first calls ``set_limit(key, max_running=M)`` on each of the K keys, before it says "ready"
  (so those calls are outside every count the harness takes).

The job bodies (``--body``, the same name in every process of a measurement):

* ``noop``: the tally only (in memory: no Redis command).
* ``hold`` (trio_jobpool only: ``--keys`` mode): ``await anyio.sleep(HOLD_S)`` (``work
  --hold-ms``, default 5 ms) between two stamps of the monotonic clock; the process keeps
  ``(i, start, end)`` of every job and sends them in its final report (``"spans"``), so that the
  harness can check that no key ran more jobs at once than its limit (the job's body runs
  inside its claim: from the claim script to the end script, so a body overlapping another of
  its key means Redis let the key run both).
* ``redis``: ``INCR bench:<QUEUE>:count`` through the worker process's own Redis client, then
  the tally: arq's ``ctx["redis"]``; saq's ``ctx["worker"].queue.redis`` (saq 0.26 puts
  ``worker`` and ``job`` in a job's context, not ``queue``); streaq's ``worker.redis`` (the
  task's closure over its ``Worker``); trio_jobpool: a coredis client created once per worker
  process before "go", entered before the pool opens, reached by the job as the module-level
  ``JOB_REDIS`` (the package has no API that lends a job the pool's own client); the coredis
  loops: their one client, as ``JOB_REDIS`` too. INCR of one key: the same cost for every
  implementation, memory that does not grow with N, and a final count that tells how many
  bodies ran (a job run twice shows as a count above N).

The tally stamps a job's start as the monotonic time the body began (taken before the
command) and its end when the tally is updated, after the command.

Each process exits on its own after DEADLINE seconds whatever happens (a watchdog thread), so
that nothing outlives a harness that died.

Implementations (the peers are run as their docs run them, with their defaults, except where
``PEER_SETTINGS`` says otherwise):

* ``jobpool-trio`` / ``jobpool-asyncio``: ``open_job_pool(CONCURRENCY, 100, store=redis://...,
  registry=...)`` under ``trio.run`` / ``anyio.run(backend="asyncio")``; JSON payloads.
* ``saq``: ``saq.Worker(queue, functions=[noop, incr], concurrency=CONCURRENCY).start()`` on a
  fresh asyncio loop, as ``saq.worker.start`` (the ``saq`` command) does.
* ``arq``: ``arq.worker.run_worker(settings)`` (what the ``arq`` command calls), ``max_jobs``
  = CONCURRENCY.
* ``streaq``: ``Worker(redis_url, queue_name, concurrency=CONCURRENCY).run_sync()`` (what the
  ``streaq run`` command calls).
* ``coredis-loop-1`` / ``coredis-loop-10``: CONCURRENCY tasks on one coredis client (asyncio),
  each popping 1 (resp. up to 10) JSON jobs per round trip (``LPOP key [count]``) from a Redis
  list and running them one after the other (a ``redis`` body's INCR on the same client). No
  acknowledgement, no lease, no result: the limit of what one client does per round trip, not a
  job queue.

Logging is left unconfigured (Python's default, WARNING) in every process: the peers' command
line tools would configure INFO, where arq and streaq log a line per job.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
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

__all__ = [
    "BODIES",
    "IMPLS",
    "JOBPOOLS",
    "JOBPOOL_BODIES",
    "LIMITS",
    "PEERS",
    "PEER_SETTINGS",
    "count_key",
    "key_name",
]

CHECK_INTERVAL = 0.005  # seconds between two polls of a store for "all done"
CHECK_TIMEOUT = 30.0  # seconds the check waits for the store to confirm
REPORT_INTERVAL = 0.02  # seconds between two tally lines of a worker
JOBPOOL_QUEUE_SIZE = 100  # the worker pools' queue_size (they claim for idle workers only)
LIST_KEY = "coredis-loop:{queue}"  # the coredis loops' list
COUNT_KEY = "bench:{queue}:count"  # the redis body's counter
BODIES = {"noop": "noop", "redis": "incr", "stamp": "stamp", "hold": "hold"}  # registered names
JOBPOOL_BODIES = ("hold",)  # bodies only trio_jobpool's processes have (the --keys mode's)
# --lag (``produce --lead L``): every job is due at DUE_AT (wall clock, epoch seconds), set to
# L seconds after the producer starts submitting; None: the jobs are due at once.
DUE_AT: float | None = None
STARTS: list[float] = []  # the stamp body's start times (wall clock), in this process
HOLD_S = 0.005  # the hold body's sleep (``work --hold-ms``)
SPANS: list[tuple[int, float, float]] = []  # the hold body's (i, start, end), monotonic clock

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


# -- the jobs' tally and bodies ----------------------------------------------------------------


class Tally:
    """Jobs run in this process: how many, and when the first started and the last ended."""

    count = 0
    first = 0.0
    last = 0.0
    cpu_first = 0.0  # the process's CPU seconds when its first job ended

    @classmethod
    def tick(cls, started: float | None = None) -> None:
        """A job ends now; it started at ``started`` (default: now, a job without a wait)."""
        now = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process of the machine
        begun = now if started is None else started
        if cls.count == 0:
            cls.first = begun
            cls.cpu_first = time.process_time()
        elif begun < cls.first:  # (a job that started earlier may end later)
            cls.first = begun
        cls.count += 1
        cls.last = now

    @classmethod
    def line(cls) -> dict[str, float | int]:
        count = cls.count  # (read first: ``last`` and ``cpu`` are then at least as recent)
        cpu = time.process_time() - cls.cpu_first if count else 0.0  # every thread's
        return {"count": count, "first": cls.first, "last": cls.last, "cpu": cpu}


_EMIT_LOCK = threading.Lock()  # lines from several threads never interleave


def emit(record: dict[str, Any]) -> None:
    line = "@@" + json.dumps(record) + "\n"
    with _EMIT_LOCK:
        sys.stdout.write(line)
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


def _cpu_answers() -> None:
    """Answer each ``cpu`` line of stdin with the process's CPU seconds (until EOF)."""
    seq = 0
    for line in iter(sys.stdin.readline, ""):  # ends with the process (daemon) or at EOF
        if line.strip() == "cpu":
            seq += 1
            emit({"cpu_at": time.process_time(), "seq": seq})


# The redis body's client (trio_jobpool, the coredis loops) and key, set once per process.
JOB_REDIS: Any = None
JOB_KEY = ""


def count_key(queue: str) -> str:
    """The key that the redis body increments."""
    return COUNT_KEY.format(queue=queue)


async def noop(i: int) -> None:
    """The no-op body: nothing but the tally (``i`` travels as its argument)."""
    Tally.tick()


async def incr(i: int) -> None:
    """The redis body: one INCR through the process's client, then the tally."""
    started = time.monotonic()
    await JOB_REDIS.incr(JOB_KEY)
    Tally.tick(started)


async def stamp(i: int) -> None:
    """The lag body: its start on the wall clock (the due time's clock), then the tally."""
    STARTS.append(time.time())
    Tally.tick()


async def hold(i: int) -> None:
    """The --keys mode's body: HOLD_S seconds of sleep between two stamps, kept in SPANS."""
    started = time.monotonic()
    await anyio.sleep(HOLD_S)
    SPANS.append((i, started, time.monotonic()))
    Tally.tick(started)


def key_name(k: int) -> str:
    """The flow-control key number ``k`` (``front --keys``: job ``i`` has ``key_name(i % K)``)."""
    return f"k{k}"


def _due_datetime() -> datetime.datetime | None:
    """DUE_AT as an aware datetime (None: not a --lag run)."""
    if DUE_AT is None:
        return None
    return datetime.datetime.fromtimestamp(DUE_AT, tz=datetime.UTC)


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
    registry.register(incr, name="incr")
    registry.register(stamp, name="stamp")
    registry.register(hold, name="hold")
    return registry


def _jobpool_runner(backend: str) -> Callable[[Callable[[], Awaitable[Any]]], Any]:
    def run(fn: Callable[[], Awaitable[Any]]) -> Any:
        if backend == "trio":
            import trio

            return trio.run(fn)
        return anyio.run(fn, backend="asyncio")

    return run


async def _jobpool_enqueue(url: str, queue: str, n: int, tasks: int, job: str) -> float:
    from trio_jobpool import open_job_pool

    store = _jobpool_store(url, queue)
    async with open_job_pool(
        0, JOBPOOL_QUEUE_SIZE, store=store, registry=_registry(), max_pending=None
    ) as producer:
        at = _due_datetime()

        async def submit(i: int) -> None:
            await producer.submit(job, i, at=at)

        return await _fan_out(submit, n, tasks)


def _jobpool_reader(pool: Any, n: int) -> Callable[[], Awaitable[dict[str, Any]]]:
    """``_poll``'s view of a trio_jobpool queue: all done once N completed and nothing waits
    or runs."""

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

    return read


async def _jobpool_check(url: str, queue: str, n: int) -> dict[str, Any]:
    from trio_jobpool import open_job_pool

    store = _jobpool_store(url, queue)
    async with open_job_pool(
        0, JOBPOOL_QUEUE_SIZE, store=store, registry=_registry(), max_pending=None
    ) as pool:
        return await _poll(_jobpool_reader(pool, n))


async def _jobpool_front(
    url: str, queue: str, n: int, tasks: int, job: str, keys: int = 0, limit: int = 0
) -> None:
    """The scaling mode's front end (see the module's docstring, ``front``); with ``keys``,
    job i has the key ``key_name(i % keys)``, each limited to ``limit`` running jobs (0: no
    limit set)."""
    from trio_jobpool import open_job_pool

    store = _jobpool_store(url, queue)
    async with open_job_pool(
        0, JOBPOOL_QUEUE_SIZE, store=store, registry=_registry(), max_pending=None
    ) as pool:
        if keys and limit:
            for k in range(keys):
                await pool.set_limit(key_name(k), max_running=limit)
        emit({"ready": os.getpid()})
        if (await anyio.to_thread.run_sync(sys.stdin.readline)).strip() != "go":
            return
        cpu = time.process_time()

        async def submit(i: int) -> None:
            if keys:
                await pool.submit(job, i, key=key_name(i % keys))
            else:
                await pool.submit(job, i)

        emit({"submitted": n, "seconds": await _fan_out(submit, n, tasks)})
        if (await anyio.to_thread.run_sync(sys.stdin.readline)).strip() != "check":
            return
        # The handler goes in before the confirmation: the harness's SIGTERM follows it. The
        # pool is left after SIGTERM, since leaving it costs Redis commands.
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            state = await _poll(_jobpool_reader(pool, n))
            emit({**state, "cpu": time.process_time() - cpu})
            async for _ in signals:
                break


def _jobpool_worker(backend: str) -> Callable[[argparse.Namespace], dict[str, Any]]:
    def work(args: argparse.Namespace) -> dict[str, Any]:
        import trio_jobpool
        from trio_jobpool import open_job_pool

        async def main() -> dict[str, Any]:
            store = _jobpool_store(args.url, args.queue)
            registry = _registry()
            async with contextlib.AsyncExitStack() as stack:
                if JOB_REDIS is not None:  # the redis body's client: connected before the pool
                    await stack.enter_async_context(JOB_REDIS)
                pool = await stack.enter_async_context(
                    open_job_pool(
                        args.concurrency, JOBPOOL_QUEUE_SIZE, store=store, registry=registry
                    )
                )
                emit({"open": os.getpid()})
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


async def _saq_incr(ctx: Any, *, i: int) -> None:
    started = time.monotonic()
    await ctx["worker"].queue.redis.incr(JOB_KEY)
    Tally.tick(started)


async def _saq_stamp(ctx: Any, *, i: int) -> None:
    STARTS.append(time.time())
    Tally.tick()


async def _saq_enqueue(url: str, queue: str, n: int, tasks: int, job: str) -> float:
    from saq import Queue

    q = Queue.from_url(url, name=queue)
    await q.connect()
    try:

        async def submit(i: int) -> None:
            if DUE_AT is None:
                await q.enqueue(job, i=i)
            else:  # (saq's scheduled: epoch seconds)
                await q.enqueue(job, i=i, scheduled=DUE_AT)

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
            queue,
            functions=[("noop", _saq_noop), ("incr", _saq_incr), ("stamp", _saq_stamp)],
            concurrency=args.concurrency,
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


async def _arq_incr(ctx: dict[str, Any], i: int) -> None:
    started = time.monotonic()
    await ctx["redis"].incr(JOB_KEY)
    Tally.tick(started)


async def _arq_stamp(ctx: dict[str, Any], i: int) -> None:
    STARTS.append(time.time())
    Tally.tick()


async def _arq_enqueue(url: str, queue: str, n: int, tasks: int, job: str) -> float:
    from arq import create_pool
    from arq.connections import RedisSettings

    pool = await create_pool(RedisSettings.from_dsn(url), default_queue_name=queue)
    try:

        async def submit(i: int) -> None:
            await pool.enqueue_job(job, i, _defer_until=_due_datetime())

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
        "functions": [
            func(_arq_noop, name="noop"),
            func(_arq_incr, name="incr"),
            func(_arq_stamp, name="stamp"),
        ],
        "redis_settings": RedisSettings.from_dsn(args.url),
        "queue_name": args.queue,
        "max_jobs": args.concurrency,
        "poll_delay": ARQ_POLL_DELAY if args.arq_poll_delay is None else args.arq_poll_delay,
    }
    worker = run_worker(settings)  # until SIGTERM / SIGINT (its own handlers)
    return {"completed": worker.jobs_complete, "failed": worker.jobs_failed}


# -- streaq --------------------------------------------------------------------------------------


def _streaq_worker_object(url: str, queue: str, concurrency: int) -> tuple[Any, dict[str, Any]]:
    """A streaq ``Worker`` and its tasks by name."""
    from streaq import Worker

    worker: Any = Worker(redis_url=url, queue_name=queue, concurrency=concurrency)

    async def streaq_noop(i: int) -> None:
        Tally.tick()

    async def streaq_incr(i: int) -> None:
        started = time.monotonic()
        await worker.redis.incr(JOB_KEY)
        Tally.tick(started)

    async def streaq_stamp(i: int) -> None:
        STARTS.append(time.time())
        Tally.tick()

    tasks = {
        "noop": worker.task(name="noop")(streaq_noop),
        "incr": worker.task(name="incr")(streaq_incr),
        "stamp": worker.task(name="stamp")(streaq_stamp),
    }
    return worker, tasks


async def _streaq_enqueue(url: str, queue: str, n: int, tasks: int, job: str) -> float:
    worker, by_name = _streaq_worker_object(url, queue, 10)
    task = by_name[job]
    async with worker:

        async def submit(i: int) -> None:
            if DUE_AT is None:
                await task.enqueue(i)
            else:
                await task.enqueue(i).start(schedule=_due_datetime())

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


async def _coredis_enqueue(url: str, queue: str, n: int, tasks: int, job: str) -> float:
    key = LIST_KEY.format(queue=queue)
    async with _coredis_client(url) as client:

        async def submit(i: int) -> None:
            await client.rpush(key, [json.dumps({"f": job, "a": [i]})])

        return await _fan_out(submit, n, tasks)


async def _coredis_check(url: str, queue: str, n: int) -> dict[str, Any]:
    key = LIST_KEY.format(queue=queue)
    async with _coredis_client(url) as client:

        async def read() -> dict[str, Any]:
            waiting = await client.llen(key)
            return {"done": waiting == 0, "waiting": waiting}

        return await _poll(read)


FUNCTIONS: dict[str, Callable[..., Awaitable[None]]] = {
    "noop": noop,
    "incr": incr,
    "stamp": stamp,
}


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
            client = JOB_REDIS if JOB_REDIS is not None else _coredis_client(args.url)
            async with client, anyio.create_task_group() as tg:
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
    enqueue: Callable[[str, str, int, int, str], Awaitable[float]]
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
    global DUE_AT
    impl = IMPLS[args.impl]
    job = BODIES[args.body]
    if args.lead is not None:
        DUE_AT = time.time() + args.lead
    seconds = impl.run(lambda: impl.enqueue(args.url, args.queue, args.n, args.tasks, job))
    emit({"enqueued": args.n, "seconds": seconds, "due": DUE_AT, "submitted_at": time.time()})
    command = sys.stdin.readline().strip()  # the harness: "check" once the workers are done
    if command != "check":
        return 0
    emit(impl.run(lambda: impl.check(args.url, args.queue, args.n)))
    return 0


def work(args: argparse.Namespace) -> int:
    global JOB_REDIS, JOB_KEY, HOLD_S
    impl = IMPLS[args.impl]
    if args.body in JOBPOOL_BODIES and impl.kind != "jobpool":
        raise ValueError(f"body {args.body}: trio_jobpool only, not {args.impl}")
    HOLD_S = args.hold_ms / 1000
    for module in impl.imports:
        importlib.import_module(module)
    JOB_KEY = count_key(args.queue)
    if args.body == "redis" and impl.kind in ("jobpool", "limit"):
        JOB_REDIS = _coredis_client(args.url)  # (connects when the worker enters it)
    emit({"ready": os.getpid()})
    if sys.stdin.readline().strip() != "go":
        return 0
    threading.Thread(target=_cpu_answers, daemon=True).start()
    stop = threading.Event()
    reporter = threading.Thread(target=_reporter, args=(stop,), daemon=True)
    reporter.start()
    final: dict[str, Any] = {}
    try:
        final = impl.work(args)
    finally:  # (also when the worker's stop fails: arq's can raise CancelledError on SIGTERM)
        stop.set()
        reporter.join(timeout=1.0)
        extra: dict[str, Any] = {}
        if args.body == "stamp":
            extra["starts"] = STARTS
        elif args.body == "hold":
            extra["spans"] = SPANS
        emit({"final": True, **Tally.line(), **final, **extra})
    return 0


def front(args: argparse.Namespace) -> int:
    impl = IMPLS[args.impl]
    if impl.kind != "jobpool":
        raise ValueError(f"front: trio_jobpool only, not {args.impl}")
    job = BODIES[args.body]
    impl.run(
        lambda: _jobpool_front(args.url, args.queue, args.n, args.tasks, job, args.keys, args.limit)
    )
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "produce": produce,
    "work": work,
    "front": front,
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("produce")
    w = commands.add_parser("work")
    f = commands.add_parser("front")
    for sub in (p, w, f):
        sub.add_argument("impl", choices=list(IMPLS))
        sub.add_argument("url")
        sub.add_argument("queue")
    for sub in (p, f):
        sub.add_argument("n", type=int)
        sub.add_argument("tasks", type=int)
    w.add_argument("concurrency", type=int)
    w.add_argument(
        "--arq-poll-delay", type=float, help=f"arq's poll_delay (default {ARQ_POLL_DELAY} s)"
    )
    w.add_argument(
        "--hold-ms", type=float, default=HOLD_S * 1000, help="the hold body's sleep (ms)"
    )
    p.add_argument(
        "--lead", type=float, help="--lag: every job is due this many seconds after the start"
    )
    f.add_argument("--keys", type=int, default=0, help="job i gets key k<i %% KEYS> (0: no key)")
    f.add_argument("--limit", type=int, default=0, help="max_running of each key (0: no limit)")
    for sub in (p, w, f):
        sub.add_argument("deadline", type=float)
        sub.add_argument("--body", choices=list(BODIES), default="noop")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    _watchdog(args.deadline)
    try:
        return COMMANDS[args.command](args)
    except Exception as exc:
        emit({"error": "".join(traceback.format_exception(exc))})
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
