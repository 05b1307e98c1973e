"""Where one distributed worker process's CPU goes, per job (issue #14 item 3).

    python benchmarks/profile_worker.py --backend trio --body redis --n 5000
    python benchmarks/profile_worker.py --backend asyncio --body noop --n 5000 --profile out.prof
    python benchmarks/profile_worker.py --backend trio --mode scaling --n 2000 --monitor
    python benchmarks/profile_worker.py --incr-only --backend trio --client from_url --n 10000

One worker process (this one) with 10 workers, as ``distributed.py``'s ``jobpool-*`` workers,
on a fresh ``redis-server`` (``tests/servers.py``). Short runs (seconds), measured in CPU time
of this process (``time.process_time()``, every thread), not wall-clock throughput: the figures
hold on a machine that is busy with other work too.

Modes:

* ``enqueued`` (``distributed.py``'s default method): N jobs are submitted first (a pool with
  ``max_workers=0`` in this process, under Trio, closed before the worker opens), then the
  worker's pool runs them. The window runs from the first body's start to the last body's end.
* ``scaling`` (``distributed.py --scaling``): the worker's pool opens and goes idle; 0.3 s later
  a front end (a child process, same backend) submits N jobs from 50 tasks while the worker
  runs them, woken by its submits. The window runs from the front end's "go" to the last
  body's end (the worker's wake-ups count).

Bodies (``--body``): ``redis``, one ``INCR`` through the process's own coredis client (created
as ``--client`` says, entered before the pool opens, as in ``distributed.py``); ``noop``, none.

``--incr-only``: no pool; ``--tasks`` tasks (10) each ``INCR`` N/tasks times on one client:
the cost of the body's command alone, as a function of the client's settings (``--client``,
see :func:`make_client`) and of how many commands are in flight at once.

``--primitives``: no Redis at all; CPU µs per use of each AnyIO primitive that a coredis
command goes through (cancel scopes, a lock, an event, a memory stream, a task switch), in
the backend given: what makes a command dearer on Trio.

Printed (one JSON line): CPU µs per job; the pool's link trips per job; calls per job of each
queue script by this process (and the front end's, in ``scaling`` mode); Redis commands per
job from ``INFO commandstats`` over the window (those run inside scripts included); with
``--monitor``, the inner commands per job of each script (from ``MONITOR``, which slows Redis:
its counts, not its timings). ``--profile FILE`` writes a cProfile of the window (it slows the
process about 3x: use it for where, not how much); ``--pyinstrument FILE`` a pyinstrument text
report (it slows it as much). ``--split FILE`` samples the process from outside with py-spy
(``pip install py-spy``; 1,000 samples a second while it holds the GIL, the raw stacks to FILE)
and splits the window's user CPU time into the job's INCR, the pool and the event loop by who
is on the stack (:func:`classify`); system time (the socket calls, the poll) is reported apart
(``os.times()``). The samples start 1 s before the pool opens (py-spy attaching) and stop at
the last body's end, so the pool's opening is in them (a few ms).

Experiments, not settings a user has: ``--client pool`` gives the body the pool's own client
(its private attribute: the package lends a job none); ``--no-gc`` switches the cyclic GC
off for the window. ``PYTHONPATH=<tree>`` measures the ``trio_jobpool`` of another tree (a
``git archive`` of an older commit, say): this script's own tree comes after it on the path.
``benchmarks/profile_compare.py`` runs variants interleaved and gives medians.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.append(str(ROOT))  # (after $PYTHONPATH: a PYTHONPATH may name another tree to measure)

WORKERS = 10  # as distributed.py's CONCURRENCY
QUEUE_SIZE = 100
TASKS = 50  # submitting tasks, as distributed.py's ENQUEUE_TASKS
SETTLE_S = 0.3  # scaling: from the worker's pool open to the front end's "go"
BODIES = {"redis": "incr", "noop": "noop"}  # --body: the job's registered name


def make_client(url: str, kind: str) -> Any:
    """The body's coredis client, as ``kind`` (a key of :data:`CLIENTS`) says."""
    import coredis
    from coredis.retry import NoRetryPolicy

    host, port = url.removeprefix("redis://").split(":")
    return {
        # distributed.py's (the documented way): defaults but for decode_responses
        "from_url": lambda: coredis.Redis.from_url(url, decode_responses=True),
        "bytes": lambda: coredis.Redis.from_url(url),
        "ctor": lambda: coredis.Redis(host, int(port), decode_responses=True),
        "no_retry": lambda: coredis.Redis.from_url(
            url, decode_responses=True, retry_policy=NoRetryPolicy()
        ),
        # as RedisStore makes the pool's own client
        "as_store": lambda: coredis.Redis.from_url(
            url,
            decode_responses=True,
            connect_timeout=5.0,
            stream_timeout=5.0,
            retry_policy=NoRetryPolicy(),
        ),
        "stream_timeout": lambda: coredis.Redis.from_url(
            url, decode_responses=True, stream_timeout=5.0
        ),
        "max_connections_1": lambda: coredis.Redis.from_url(
            url, decode_responses=True, max_connections=1
        ),
        "pool_timeout": lambda: coredis.Redis.from_url(
            url, decode_responses=True, pool_timeout=5.0
        ),
        "no_verify_version": lambda: coredis.Redis.from_url(
            url, decode_responses=True, verify_version=False
        ),
        "noreply": lambda: coredis.Redis.from_url(url, decode_responses=True, noreply=True),
    }[kind]()


CLIENTS = (
    "pool",  # not a setting: the pool's own client (an experiment, see worker())
    "from_url",
    "bytes",
    "ctor",
    "no_retry",
    "as_store",
    "stream_timeout",
    "max_connections_1",
    "pool_timeout",
    "no_verify_version",
    "noreply",
)


class Window:
    """The measured span: jobs run, CPU and wall time, the profiler switched on and off."""

    n = 0
    count = 0
    cpu0 = 0.0
    cpu1 = 0.0
    times0: Any = None  # os.times() at the start and the end: user and system CPU apart
    times1: Any = None
    wall0 = 0.0
    wall1 = 0.0
    started = False
    profiler: Any = None
    spy: Any = None  # py-spy, stopped (SIGINT) with the window
    done: Any = None  # an anyio.Event, made in the worker's run

    no_gc = False
    gc_collections = 0

    @classmethod
    def start(cls) -> None:
        if not cls.started:
            cls.started = True
            if cls.no_gc:
                gc.disable()
            cls.gc_collections = -sum(s["collections"] for s in gc.get_stats())
            if cls.profiler is not None:
                cls.profiler.start()
            cls.times0 = os.times()
            cls.cpu0, cls.wall0 = time.process_time(), time.perf_counter()

    @classmethod
    def tick(cls) -> None:
        cls.count += 1
        if cls.count == cls.n:
            cls.cpu1, cls.wall1 = time.process_time(), time.perf_counter()
            cls.times1 = os.times()
            cls.gc_collections += sum(s["collections"] for s in gc.get_stats())
            gc.enable()
            if cls.profiler is not None:
                cls.profiler.stop()
            if cls.spy is not None:
                cls.spy.send_signal(signal.SIGINT)
            cls.done.set()


JOB_REDIS: Any = None
JOB_KEY = "bench:count"


async def noop(i: int) -> None:
    Window.start()
    Window.tick()


async def incr(i: int) -> None:
    Window.start()
    await JOB_REDIS.incr(JOB_KEY)
    Window.tick()


def registry() -> Any:
    from trio_jobpool import JobRegistry

    reg = JobRegistry()
    reg.register(noop, name="noop")
    reg.register(incr, name="incr")
    return reg


class Profiler:
    """cProfile, or pyinstrument (``split``), behind one start/stop."""

    def __init__(self, kind: str, path: str | None) -> None:
        self.kind, self.path = kind, path
        if kind == "cprofile":
            import cProfile

            self.p: Any = cProfile.Profile()
        else:
            from pyinstrument import Profiler as Pyinstrument

            self.p = Pyinstrument(interval=0.0002, async_mode="disabled")

    def start(self) -> None:
        if self.kind == "cprofile":
            self.p.enable()
        else:
            self.p.start()

    def stop(self) -> None:
        if self.kind == "cprofile":
            self.p.disable()
        else:
            self.p.stop()

    def save(self) -> None:
        if self.path is None:
            return
        if self.kind == "cprofile":
            self.p.dump_stats(self.path)
        else:
            Path(self.path).write_text(self.p.output_text(unicode=False, show_all=False))


# -- the split: the job's command, the pool, the event loop ---------------------------------------

JOB = "job's INCR"
POOL = "pool"
LOOP = "event loop"
OTHER = "other"


def classify(stack: list[str]) -> str:
    """Whose work a sampled stack (outermost frame first, each ``function (file)``) was: the
    job's INCR (under the body ``incr``, or the reader and writer tasks of the body's own
    connection, :class:`JobConnection`), the pool (under any ``trio_jobpool`` frame, or the
    tasks of the pool's own coredis connections), else the event loop (no task's frame on
    the stack: the scheduler, the poll for I/O, its callbacks)."""
    category = LOOP
    for frame in stack:
        function, _, path = frame.partition(" (")  # (py-spy: "Class.method" for a method)
        if (function == "incr" and "profile_worker.py" in path) or function.endswith(
            (".job_reader_task", ".job_writer_task")
        ):
            return JOB
        if category == LOOP and ("trio_jobpool/" in path or "/coredis/" in path):
            category = POOL  # a pool's frame, or its own client's (the body's: JobConnection)
    return category


PACKAGES = (
    ("trio_jobpool/", "trio_jobpool"),
    ("/coredis/", "coredis"),
    ("/anyio/", "anyio"),
    ("/trio/", "trio"),
    ("/outcome/", "trio"),
    ("/asyncio/", "asyncio"),
    ("selectors.py", "asyncio"),
    ("/json/", "json"),
    ("contextlib.py", "contextlib"),
)


def package(frame: str) -> str:
    """The package of a sampled frame (its file's), coarsely."""
    path = frame.partition(" (")[2]
    return next((name for part, name in PACKAGES if part in path), "other")


def split(raw: str) -> dict[str, int]:
    """Samples by :func:`classify`, from py-spy's raw output (``stack count`` per line)."""
    totals: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            totals[classify(stack.split(";"))] += int(count)
    return dict(totals)


def split_detail(raw: str) -> dict[str, dict[str, int]]:
    """Samples by :func:`classify`, then by the package of the innermost frame (the code
    that was running: trio_jobpool's own, coredis, anyio, the event loop's, json, ...)."""
    totals: dict[str, Counter[str]] = {}
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack:
            frames = stack.split(";")
            where = totals.setdefault(classify(frames), Counter())
            where[package(frames[-1])] += int(count)
    return {k: dict(v.most_common()) for k, v in totals.items()}


def job_connection_class() -> Any:
    """A coredis TCP connection whose reader and writer tasks have names of their own, so
    that a profile tells the body's connection from the pool's."""
    from coredis.connection import TCPConnection

    class JobConnection(TCPConnection):
        async def _reader_task(self) -> None:
            await self.job_reader_task()

        async def _writer_task(self) -> None:
            await self.job_writer_task()

        async def job_reader_task(self) -> None:
            await TCPConnection._reader_task(self)

        async def job_writer_task(self) -> None:
            await TCPConnection._writer_task(self)

    return JobConnection


# -- counting the queue's scripts ---------------------------------------------------------------

SCRIPT_METHODS = ("submit", "end_and_claim", "renew", "reap", "retry", "give_back", "cancel")


def count_scripts() -> Counter[str]:
    """Count this process's calls of each queue script (``RedisQueue`` methods, patched)."""
    from trio_jobpool.stores._redis_queue import RedisQueue

    counts: Counter[str] = Counter()

    def counted(name: str, method: Any) -> Any:
        async def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return await method(self, *args, **kwargs)

        return call

    for name in SCRIPT_METHODS:
        setattr(RedisQueue, name, counted(name, getattr(RedisQueue, name)))
    return counts


def script_names() -> dict[str, str]:
    """The SHA1 of each queue script's source, to its name (for MONITOR's EVALSHA lines)."""
    from trio_jobpool.stores import _redis_scripts as scripts

    return {
        hashlib.sha1(getattr(scripts, name).encode()).hexdigest(): name.lower()
        for name in scripts.__all__
        if name != "LOST_CODE"
    }


class Monitor:
    """Redis's MONITOR in a thread: each script call's inner commands, by script."""

    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url)
        self.lines: list[str] = []
        self.on = False
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait(5)

    def _run(self) -> None:
        import redis

        with contextlib.suppress(redis.ConnectionError), self.client.monitor() as monitor:
            self.ready.set()
            for command in monitor.listen():  # until the server stops
                if self.on:
                    self.lines.append(f"{command['client_type']} {command['command']}")

    def inner(self) -> dict[str, dict[str, int]]:
        names = script_names()
        per: dict[str, Counter[str]] = {}
        current = "client"
        for line in self.lines:
            kind, _, command = line.partition(" ")
            words = command.split(" ")
            if kind == "lua":
                per.setdefault(current, Counter())[words[0].upper()] += 1
                continue
            name = words[0].upper()
            if name == "EVALSHA":
                current = names.get(words[1], words[1][:8])
                per.setdefault(current, Counter())["(calls)"] += 1
            else:
                current = "client"
                per.setdefault("client", Counter())[name] += 1
        return {k: dict(v.most_common()) for k, v in per.items()}


def commandstats(url: str) -> dict[str, int]:
    """Redis's calls per command (``info`` left out), and its CPU in µs (``"(cpu_us)"``)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        stats: dict[str, Any] = client.info("commandstats")  # type: ignore[assignment]
        cpu: dict[str, Any] = client.info("cpu")  # type: ignore[assignment]
    finally:
        client.close()
    calls = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}
    calls.pop("info", None)
    calls["(cpu_us)"] = round((float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])) * 1e6)
    return calls


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    out = {k: v - before.get(k, 0) for k, v in after.items() if v > before.get(k, 0)}
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


# -- the processes -------------------------------------------------------------------------------


def run(backend: str, fn: Any) -> Any:
    if backend == "trio":
        import trio

        return trio.run(fn)
    return anyio.run(fn, backend="asyncio")


async def enqueue(store: str, n: int, body: str) -> None:
    from trio_jobpool import open_job_pool

    async with open_job_pool(
        0, QUEUE_SIZE, store=store, registry=registry(), max_pending=None
    ) as pool:

        async def one(k: int) -> None:
            for i in range(k, n, TASKS):
                await pool.submit(body, i)

        async with anyio.create_task_group() as tg:
            for k in range(TASKS):
                tg.start_soon(one, k)


def front(args: argparse.Namespace) -> int:
    """The scaling mode's front end: submits N jobs on "go", says how many script calls."""
    counts = count_scripts()

    async def main() -> None:
        from trio_jobpool import open_job_pool

        async with open_job_pool(
            0, QUEUE_SIZE, store=args.store, registry=registry(), max_pending=None
        ) as pool:
            print("ready", flush=True)
            if (await anyio.to_thread.run_sync(sys.stdin.readline)).strip() != "go":
                return
            cpu = time.process_time()

            async def one(k: int) -> None:
                for i in range(k, args.n, TASKS):
                    await pool.submit(BODIES[args.body], i)

            async with anyio.create_task_group() as tg:
                for k in range(TASKS):
                    tg.start_soon(one, k)
            await pool.join()
            print(json.dumps({"cpu_s": time.process_time() - cpu, "scripts": counts}), flush=True)
            await anyio.to_thread.run_sync(sys.stdin.readline)  # until the worker is done

    run(args.backend, main)
    return 0


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """Run N jobs in this process's pool; what the window measured."""
    global JOB_REDIS
    from trio_jobpool import open_job_pool

    counts = count_scripts()
    Window.n = args.n
    Window.no_gc = args.no_gc
    if args.profile:
        Window.profiler = Profiler("cprofile", args.profile)
    elif args.pyinstrument:
        Window.profiler = Profiler("pyinstrument", args.pyinstrument)
    if args.body == "redis" and args.client != "pool":
        JOB_REDIS = make_client(args.url, args.client)
        if args.split or args.profile:  # the same client, its connections' tasks named apart
            JOB_REDIS.connection_pool.connection_class = job_connection_class()
    front_process = None
    if args.mode == "scaling":
        front_process = subprocess.Popen(
            [sys.executable, __file__, "--role", "front", "--backend", args.backend,
             "--body", args.body, "--n", str(args.n), "--store", args.store],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
        assert front_process.stdout is not None
        assert front_process.stdin is not None
        assert front_process.stdout.readline().strip() == "ready"
    monitor = Monitor(args.url) if args.monitor else None
    spy = None
    if args.split:
        # py-spy samples this process from outside (no cost in it), only while it holds the
        # GIL: its Python code, not its system calls (socket I/O, the poll), which release it;
        # the samples split the user CPU time, the system time is reported apart.
        spy = subprocess.Popen(
            ["py-spy", "record", "--pid", str(os.getpid()), "--rate", "1000", "--format", "raw",
             "--full-filenames", "--nolineno", "--nonblocking", "--gil", "--output", args.split],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(1.0)  # until it has attached
        Window.spy = spy
    result: dict[str, Any] = {}

    async def main() -> None:
        global JOB_REDIS
        Window.done = anyio.Event()
        async with contextlib.AsyncExitStack() as stack:
            if JOB_REDIS is not None:
                await stack.enter_async_context(JOB_REDIS)
            pool = await stack.enter_async_context(
                open_job_pool(WORKERS, QUEUE_SIZE, store=args.store, registry=registry())
            )
            if args.body == "redis" and args.client == "pool":
                # an experiment: the body's command on the pool's own client and connection
                # (the package has no API for this: the private attribute)
                JOB_REDIS = pool._queue.client
            if front_process is not None:
                await anyio.sleep(SETTLE_S)
            counts.clear()
            trips = pool._trips_done
            before = commandstats(args.url)
            if monitor is not None:
                monitor.on = True
            if front_process is not None:
                assert front_process.stdin is not None
                front_process.stdin.write("go\n")
                front_process.stdin.flush()
                Window.start()
            with anyio.fail_after(120):
                await Window.done.wait()
            if monitor is not None:
                monitor.on = False
            # (the last ends and the front end's join are not in the window's CPU)
            await pool.join()
            if front_process is not None:
                assert front_process.stdout is not None
                line = await anyio.to_thread.run_sync(front_process.stdout.readline)
                result["front"] = json.loads(line)
            after = commandstats(args.url)
            result["redis_cpu_us"] = after.pop("(cpu_us)") - before.pop("(cpu_us)")
            result["commands"] = delta(before, after)
            result["trips"] = pool._trips_done - trips
            result["scripts"] = dict(counts)

    run(args.backend, main)
    if front_process is not None:
        front_process.communicate("stop\n", timeout=30)
    n = args.n
    import trio_jobpool

    out: dict[str, Any] = {
        "trio_jobpool": str(Path(trio_jobpool.__file__).parent.parent),
        "backend": args.backend,
        "mode": args.mode,
        "body": args.body,
        "client": args.client if args.body == "redis" else None,
        "n": n,
        "cpu_us_per_job": round((Window.cpu1 - Window.cpu0) / n * 1e6, 1),
        "user_us_per_job": round((Window.times1.user - Window.times0.user) / n * 1e6, 1),
        "system_us_per_job": round((Window.times1.system - Window.times0.system) / n * 1e6, 1),
        "wall_us_per_job": round((Window.wall1 - Window.wall0) / n * 1e6, 1),
        "trips_per_job": round(result["trips"] / n, 3),
        "gc_collections_per_1000_jobs": round(Window.gc_collections / n * 1000, 1),
        "scripts_per_job": {k: round(v / n, 3) for k, v in result["scripts"].items()},
        "redis_commands_per_job": round(sum(result["commands"].values()) / n, 2),
        "redis_cpu_us_per_job": round(result["redis_cpu_us"] / n, 1),
        "redis_commands": {k: round(v / n, 3) for k, v in result["commands"].items()},
    }
    if "front" in result:
        out["front_cpu_us_per_job"] = round(result["front"]["cpu_s"] / n * 1e6, 1)
        out["front_scripts_per_job"] = {
            k: round(v / n, 3) for k, v in result["front"]["scripts"].items()
        }
    if monitor is not None:
        out["monitor_per_job"] = {
            script: {k: round(v / n, 3) for k, v in commands.items()}
            for script, commands in monitor.inner().items()
        }
    if Window.profiler is not None:
        Window.profiler.save()
        if args.profile:
            out["python_calls_per_job"] = round(calls(Window.profiler.p) / n, 1)
            out["profile_split_share"] = profile_split(Window.profiler.p)
    if spy is not None:
        spy.wait(timeout=30)
        samples = split(Path(args.split).read_text())
        total = sum(samples.values()) or 1
        cpu_us = (Window.times1.user - Window.times0.user) / n * 1e6  # (the samples': user)
        out["split_samples"] = samples
        out["split_us_per_job"] = {k: round(v / total * cpu_us, 1) for k, v in samples.items()}
        out["split_detail_us_per_job"] = {
            k: {p: round(c / total * cpu_us, 1) for p, c in v.items()}
            for k, v in split_detail(Path(args.split).read_text()).items()
        }
    return out


def incr_only(args: argparse.Namespace) -> dict[str, Any]:
    """``--tasks`` tasks (10) each INCR N/tasks times on one client: CPU µs per command."""
    client = make_client(args.url, args.client)
    profiler = None
    if args.profile:
        profiler = Profiler("cprofile", args.profile)

    async def main() -> tuple[float, float]:
        async with client:

            async def some(m: int) -> None:
                for _ in range(m):
                    await client.incr(JOB_KEY)

            async def all_tasks(m: int) -> None:
                async with anyio.create_task_group() as tg:
                    for _ in range(args.tasks):
                        tg.start_soon(some, m)

            await all_tasks(20)  # warm up
            if profiler is not None:
                profiler.start()
            cpu, wall = time.process_time(), time.perf_counter()
            await all_tasks(args.n // args.tasks)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            if profiler is not None:
                profiler.stop()
            return cpu, wall

    cpu, wall = run(args.backend, main)
    n = args.n // args.tasks * args.tasks
    out = {
        "backend": args.backend,
        "client": args.client,
        "tasks": args.tasks,
        "incr_cpu_us": round(cpu / n * 1e6, 1),
        "incr_wall_us": round(wall / n * 1e6, 1),
    }
    if profiler is not None:
        profiler.save()
        out["python_calls_per_incr"] = round(calls(profiler.p) / n, 1)
    return out


async def primitives(n: int = 20_000) -> dict[str, float]:
    """CPU µs per use of each AnyIO primitive a coredis command goes through (see
    docs/performance.md), in the running backend: why a command costs more on Trio."""
    from anyio.lowlevel import checkpoint

    out: dict[str, float] = {}

    def took(name: str, cpu: float, count: int = n) -> None:
        out[name] = round((time.process_time() - cpu) / count * 1e6, 2)

    cpu = time.process_time()
    for _ in range(n):
        with anyio.move_on_after(None):  # noqa: ASYNC100 - its cost is what is measured
            pass
    took("move_on_after(None) enter+exit", cpu)
    cpu = time.process_time()
    for _ in range(n):
        with anyio.move_on_after(5.0):  # noqa: ASYNC100 - its cost is what is measured
            pass
    took("move_on_after(5.0) enter+exit", cpu)
    cpu = time.process_time()
    for _ in range(n):
        with anyio.fail_after(None):  # noqa: ASYNC100 - its cost is what is measured
            pass
    took("fail_after(None) enter+exit", cpu)
    lock = anyio.Lock()
    cpu = time.process_time()
    for _ in range(n):
        async with lock:
            pass
    took("Lock acquire+release, uncontended", cpu)
    cpu = time.process_time()
    for _ in range(n):
        await checkpoint()
    took("checkpoint() (a yield to the scheduler)", cpu)
    cpu = time.process_time()
    for _ in range(n):
        event = anyio.Event()
        event.set()
        await event.wait()
    took("Event() + set() + wait() (already set)", cpu)
    send, receive = anyio.create_memory_object_stream[int](1)

    async def drain() -> None:
        async for _ in receive:
            pass

    async with anyio.create_task_group() as tg:
        tg.start_soon(drain)
        await anyio.sleep(0.01)
        cpu = time.process_time()
        for i in range(n):
            await send.send(i)
        took("memory stream send to a waiting task (a task switch)", cpu)
        await send.aclose()
    events = [anyio.Event() for _ in range(n)]
    woken = [0]

    async def waiter(event: Any) -> None:
        await event.wait()
        woken[0] += 1

    async with anyio.create_task_group() as tg:
        for event in events:
            tg.start_soon(waiter, event)
        await anyio.sleep(0.01)
        cpu = time.process_time()
        for event in events:
            event.set()
        while woken[0] < n:
            await checkpoint()
        took("Event.set() waking a waiting task, until it ran", cpu)
    return out


def profile_split(profile: Any) -> dict[str, float]:
    """Shares of a cProfile's time by the task it ran in (the same split as :func:`classify`,
    from the call tree: the cumulative time of each task's root coroutine): the job's INCR
    (``incr``, and the reader and writer tasks of the body's :class:`JobConnection`), the
    pool (its workers less the body, its link, listener and keeper, the reader and writer
    tasks of its own connections), the event loop (the rest)."""
    import pstats

    cumulative: Counter[str] = Counter()
    for (path, _, function), row in pstats.Stats(profile).stats.items():  # type: ignore[attr-defined]
        cumulative[f"{Path(path).name}:{function}"] += row[3]
    total = pstats.Stats(profile).total_tt  # type: ignore[attr-defined]
    job_tasks = (
        cumulative["profile_worker.py:job_reader_task"]
        + cumulative["profile_worker.py:job_writer_task"]
    )
    job = cumulative["profile_worker.py:incr"] + job_tasks
    pool = (
        cumulative["_workers.py:_run_jobs"]
        - cumulative["profile_worker.py:incr"]
        + cumulative["_link.py:_link"]
        + cumulative["_link.py:_listen"]
        + cumulative["_link.py:_keep"]
        + cumulative["_base.py:_reader_task"]
        + cumulative["_base.py:_writer_task"]
        - job_tasks
    )
    return {
        JOB: round(job / total, 3),
        POOL: round(pool / total, 3),
        LOOP: round(1 - (job + pool) / total, 3),
    }


def calls(profile: Any) -> int:
    """How many Python function calls (and coroutine resumptions) a cProfile saw."""
    import pstats

    return int(pstats.Stats(profile).total_calls)  # type: ignore[attr-defined]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=["worker", "front"], default="worker")
    parser.add_argument("--backend", choices=["trio", "asyncio"], default="trio")
    parser.add_argument("--mode", choices=["enqueued", "scaling"], default="enqueued")
    parser.add_argument("--body", choices=["redis", "noop"], default="redis")
    parser.add_argument("--client", choices=CLIENTS, default="from_url")
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--tasks", type=int, default=WORKERS, help="--incr-only: tasks")
    parser.add_argument("--profile", help="write a cProfile of the window here")
    parser.add_argument("--split", help="split the CPU (py-spy); its raw samples go here")
    parser.add_argument("--pyinstrument", help="write a pyinstrument text report here")
    parser.add_argument("--monitor", action="store_true", help="inner commands per script")
    parser.add_argument("--incr-only", action="store_true", help="the body's INCR alone")
    parser.add_argument(
        "--primitives", action="store_true", help="AnyIO's primitives alone (no Redis)"
    )
    parser.add_argument("--url", help="an existing redis-server (default: a fresh one)")
    parser.add_argument(
        "--no-gc", action="store_true", help="an experiment: the cyclic GC off in the window"
    )
    parser.add_argument("--store", help=argparse.SUPPRESS)  # the front end's
    args = parser.parse_args(argv)
    if args.role == "front":
        return front(args)
    with contextlib.ExitStack() as stack:
        if args.url is None:
            from tests.servers import redis_server

            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="jobpool-prof-"))
            args.url = stack.enter_context(redis_server(Path(tmp)))
        if args.incr_only:
            print(json.dumps(incr_only(args)))
            return 0
        if args.primitives:
            print(json.dumps({"backend": args.backend, **run(args.backend, primitives)}))
            return 0
        queue = f"prof{time.time_ns()}"
        args.store = f"{args.url}/0?queue={queue}"
        global JOB_KEY
        JOB_KEY = f"bench:{queue}:count"
        if args.mode == "enqueued":
            run("trio", lambda: enqueue(args.store, args.n, BODIES[args.body]))
        print(json.dumps(worker(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
