"""Distributed job queues on one Redis, side by side: jobs through 1 and 2 worker processes;
and trio_jobpool's scaling from 1 to 8 worker processes.

    python benchmarks/distributed.py                     # 10,000 no-op jobs, 3 rounds (5-10 min)
    python benchmarks/distributed.py --quick             # 2,000 jobs, 1 round: a smoke test
    python benchmarks/distributed.py --body redis        # jobs that do one Redis command each
    python benchmarks/distributed.py --scaling           # trio_jobpool, P = 1, 2, 4, 8
    python benchmarks/distributed.py --rounds 5 --only-impls jobpool-trio,saq --procs 2
    python benchmarks/distributed.py --lag               # jobs due at one instant (issue #16)
    python benchmarks/distributed.py --keys              # flow-control keys against none (#17)
    python benchmarks/distributed.py --render benchmarks/results/distributed.json

Issue #5: N jobs through P worker processes (concurrency 10 each) on one redis-server, for
trio_jobpool's distributed pool (under Trio and under asyncio), the closest peers (saq, arq,
streaq) and a hand-written coredis loop as the limit of one client per round trip. The target:
trio_jobpool at least 5x the best of saq/arq/streaq in jobs/s. ``distributed_impls.py`` has
the producers and workers of each implementation, how each is run, and the job bodies.

The job body (``--body``, the same in every mode):

* ``noop`` (the default): the job updates its process's tally in memory (count, first start,
  last end) and nothing else: no Redis command.
* ``redis``: the job runs ``INCR bench:<queue>:count`` through its worker process's own Redis
  client, then updates the tally; its start is stamped before the command. The client is the
  one the library gives a job, as users' jobs reach it: arq ``ctx["redis"]``, saq
  ``ctx["worker"].queue.redis``, streaq ``worker.redis``; trio_jobpool has no API that lends a
  job the pool's client, so each worker process creates one coredis client before "go", enters
  it before opening its pool and the job reaches it through a module-level reference; the
  coredis loops use their one client. INCR of one key, not SET of a key per job: Redis's memory
  does not grow with the body, and the counter's final value (read after the workers stopped)
  is a check independent of each library's bookkeeping: it must equal the jobs the workers
  ran (a job run twice shows in both).

Method of the default mode, for each measurement (one implementation, one P):

1. A fresh ``redis-server`` on a free loopback port (``tests/servers.py``: ``--save ""
   --appendonly no``), stopped after the measurement.
2. A producer process enqueues the N jobs through the implementation's own client API, from 50
   concurrent tasks (one job per call; trio_jobpool: a pool with ``max_workers=0``,
   ``max_pending=None``), reported as "enqueue jobs/s"; then it closes its client and waits.
3. P worker processes start together; each imports everything, says "ready" and waits; once
   all are ready the harness says "go" to all of them at once. Process start-up (the
   interpreter, imports) is thus outside the measurement, and the workers start together.
4. **jobs/s** = N / (the last job's end - the first job's start), both taken on the system-wide
   monotonic clock by the job itself (in memory) in whichever process ran it; each worker
   reports its tally every 20 ms. Worker set-up after "go" (connecting, loading scripts) is
   outside it too: it ends before the first job starts.
5. Then the producer polls the implementation's own store (every 5 ms) until it says all N
   jobs are done (trio_jobpool: ``cluster_stats()``; saq: its incomplete/queued/active counts;
   arq: its queue sorted set; streaq: its queue, running set and results set; the coredis loops:
   the list's length). The time from the last job's end to that confirmation is "confirm lag"
   (it includes the harness noticing the end, up to 20 ms, and the producer connecting).
6. SIGTERM to the workers (graceful stop, the implementations' own handlers); each reports its
   final tally (a total above N means some job ran twice).

Also reported, to tell where the time goes: the server's commands per job (those run inside
Lua scripts included; the harness's own ``INFO`` calls left out) and its CPU per job (``INFO
commandstats`` and ``INFO cpu`` from the workers' start to the end of the run), and the worker
processes' CPU per job (all threads, from their first job's end on).

Method of ``--scaling`` (trio_jobpool only: ``jobpool-trio`` and ``jobpool-asyncio``, or those
of ``--only-impls``; P = 1, 2, 4, 8 unless ``--procs``), for each measurement:

1. A fresh ``redis-server`` as above.
2. P worker processes (10 workers each, as above) and one front end process are started;
   each says "ready" (the front end once its pool, ``max_workers=0`` and ``max_pending=None``,
   is open). The harness says "go" to the workers, waits until each says its pool is open, then
   0.3 s more (``SETTLE_S``: their first claims find nothing and register them idle).
3. The "before" counters: each worker process's CPU seconds (asked on its stdin), and the
   server's ``INFO cpu``, ``memory`` (``used_memory``) and ``commandstats``.
4. "go" to the front end: it submits the N jobs from 50 concurrent tasks (``submit``, one job
   per call) while the workers run them: idle at first, they wake on submits. "submit jobs/s"
   = N / the submitting's duration.
5. Once the workers' tallies reach N, the front end polls ``cluster_stats()`` (every 5 ms)
   until all N jobs have ended in Redis; then the "after" counters, as in 3.
6. SIGTERM to everyone; the workers' final tallies as above; the front end leaves its pool
   only then (leaving costs commands, after the counts).

Reported per (implementation, P): **jobs/s** as above (first job's start to last job's end);
Redis commands per job (after - before, scripts' inner commands included, the check's few polls
too), Redis CPU per job, the worker processes' CPU per job (summed, over the same span: idle
processes' wake-ups count), the front end's CPU per job (from its "go" to the confirmation), and
**Redis bytes per ended job** = (``used_memory`` after - before) / N: the ended jobs are all
still there (``keep_ended``, 3600 s by default); with the growth of ``mem_clients_normal`` /
N beside it, the connections' buffers (noise, not the jobs'). The report states the issue's two
goals and whether the medians meet them: commands per job within 10% (``FLAT``) of the smallest
P's at every P; jobs/s never lower at a larger P than at the next smaller one.

Method of ``--lag`` (issue #16: jobs falling due in the same second), for each measurement
(one variant of ``LAG_IMPLS``: trio_jobpool on Trio and asyncio, arq at its default
``poll_delay`` 0.5 s and at 0.01 s, saq and streaq at their defaults):

1. A fresh ``redis-server`` as above; one worker process (10 workers) started, told "go"
   (trio_jobpool: until its pool is open), then left idle ``LAG_SETTLE_S`` (1 s).
2. A producer submits N jobs (``--jobs``, default 10,000; body ``stamp``: the job appends
   ``time.time()`` to a list) from 50 concurrent tasks, all due at one wall-clock instant T =
   the submits' start + ``--lead`` (default 2 s + N / 1,500 jobs/s): trio_jobpool
   ``submit(at=)``, arq ``_defer_until``, saq ``scheduled=``, streaq
   ``enqueue().start(schedule=)``. "slack" = T - the submits' end (below 1 s: a problem).
3. Once the worker ran N jobs, SIGTERM; its final report carries the starts. lag = start - T:
   p50, p99, max (the last job's start) and min; a job started before T is a problem.

Method of ``--keys`` (issue #17: flow-control keys, trio_jobpool only): in
``distributed_keys.py``'s docstring.

Every (implementation, P) runs once per round, in an order rotated from round to round; each
measurement has a hard timeout (``--timeout``, default 120 s), each process a watchdog of its
own; every wait of the harness is bounded by that timeout. The default mode's report gives
medians with min-max over the rounds, the ratio of trio_jobpool to the best peer at the same
P, and the coredis loops as the limit. Reports go to ``benchmarks/results/`` as
``distributed[-scaling][-redis][-quick].md`` and ``.json``: ``distributed.md`` for the default
(no-op) run, ``distributed-redis.md`` for ``--body redis``, ``distributed-scaling.md`` for
``--scaling`` (``-scaling-redis`` with both), ``-quick`` added for ``--quick``. Each report's
header gives the machine, the commit and the date, and the JSON the config (mode, body).
trio_jobpool is imported from a snapshot copy taken at the start, so that edits to the tree
during the run do not mix versions.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import queue
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from _report import machine_info, source_digest
from distributed_impls import (
    BODIES,
    IMPLS,
    JOBPOOL_BODIES,
    JOBPOOLS,
    LIMITS,
    PEER_SETTINGS,
    PEERS,
    count_key,
)
from run import snapshot

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PACKAGE = ROOT / "trio_jobpool"
RESULTS = HERE / "results"
IMPLS_SCRIPT = HERE / "distributed_impls.py"
sys.path.insert(0, str(ROOT))  # for tests.servers

from tests.servers import redis_server  # noqa: E402

N = 10_000
QUICK_N = 2_000
CONCURRENCY = 10  # jobs at once per worker process
ENQUEUE_TASKS = 50  # concurrent producer tasks
STOP_TIMEOUT = 15.0  # seconds a worker may take to stop after SIGTERM (then SIGKILL)
TARGET = 5.0  # trio_jobpool's jobs/s over the best peer's
SCALING_PROCS = "1,2,4,8"  # --scaling: worker processes
KEYS_PROCS = "1,4"  # --keys: worker processes of the plain and keyed variants
KEYS_ROUNDS = 5  # --keys: rounds
SETTLE_S = 0.3  # --scaling: seconds from the last worker's pool open to the front end's "go"
FLAT = 0.10  # --scaling: the largest departure of commands/job from the smallest P's
TIMES = "\N{MULTIPLICATION SIGN}"
DASH = "\N{EN DASH}"
ARROW = "\N{RIGHTWARDS ARROW}"
VERSIONS = ("trio-jobpool", "trio", "anyio", "coredis", "saq", "arq", "streaq", "redis")


# -- the processes of one measurement ------------------------------------------------------------


class MeasurementError(Exception):
    """The measurement could not finish (a process failed or a deadline passed)."""


@dataclass
class Child:
    """A producer or worker process and what it said (``@@`` lines of its stdout)."""

    name: str
    process: subprocess.Popen[str]
    stderr_path: Path
    records: list[dict[str, Any]] = field(default_factory=list)
    tally: dict[str, Any] = field(default_factory=lambda: {"count": 0})
    reader: threading.Thread | None = None

    def take(self, record: dict[str, Any]) -> None:
        """A message: a tally (every 20 ms) replaces the last one; others are kept."""
        if "count" in record and "final" not in record:
            self.tally = record
        else:
            self.records.append(record)

    def find(self, key: str, value: Any = None) -> dict[str, Any] | None:
        """The first message with ``key`` (equal to ``value`` unless that is None)."""
        return next(
            (r for r in self.records if key in r and (value is None or r[key] == value)), None
        )

    def send(self, line: str) -> None:
        try:
            assert self.process.stdin is not None
            self.process.stdin.write(line + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # it died: its EOF says so

    def stderr_tail(self, lines: int = 15) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait(self, deadline: float) -> int:
        """The exit status; SIGKILL if the process is still there at the deadline."""
        try:
            return self.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


class Children:
    """The processes of one measurement, their messages in one inbox."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = env
        self.inbox: queue.Queue[tuple[Child, dict[str, Any] | None]] = queue.Queue()
        self.children: list[Child] = []

    def spawn(self, name: str, *args: str) -> Child:
        stderr_path = self.workdir / f"{name}.stderr"
        with stderr_path.open("w") as stderr:
            process = subprocess.Popen(
                [sys.executable, str(IMPLS_SCRIPT), *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                env=self.env,
                cwd=self.workdir,
            )
        child = Child(name, process, stderr_path)
        child.reader = threading.Thread(target=self._read, args=(child,), daemon=True)
        child.reader.start()
        self.children.append(child)
        return child

    def _read(self, child: Child) -> None:
        stdout = child.process.stdout
        assert stdout is not None
        for line in stdout:  # until the process closes its stdout (exits)
            if line.startswith("@@"):
                self.inbox.put((child, json.loads(line[2:])))
        self.inbox.put((child, None))

    def pump(self, done: Callable[[], bool], deadline: float, what: str) -> None:
        """Take messages in until ``done()``; raise MeasurementError at the deadline, or when a
        process reports an error or exits meanwhile."""
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise MeasurementError(f"timed out waiting for {what}")
            try:
                child, record = self.inbox.get(timeout=remaining)
            except queue.Empty:
                continue
            if record is None:
                if not done():
                    status = child.process.wait(timeout=STOP_TIMEOUT)
                    raise MeasurementError(
                        f"{child.name} exited (status {status}) while waiting for {what}:\n"
                        + child.stderr_tail()
                    )
                continue
            if "error" in record:
                raise MeasurementError(f"{child.name} failed:\n{record['error']}")
            child.take(record)

    def stop_all(self) -> dict[str, int]:
        """SIGTERM to every process at once, SIGKILL to those still there after STOP_TIMEOUT;
        then take in what they said last. Their exit statuses."""
        for child in self.children:
            child.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT
        statuses = {child.name: child.wait(deadline) for child in self.children}
        for child in self.children:
            if child.reader is not None:
                child.reader.join(timeout=max(0.0, deadline - time.monotonic()) + 1.0)
        with contextlib.suppress(queue.Empty):
            while True:
                child, record = self.inbox.get_nowait()
                if record is not None:
                    child.take(record)
        return statuses


def measure(
    impl: str,
    procs: int,
    n: int,
    timeout: float,
    env: dict[str, str],
    snapshot_dir: str,
    body: str = "noop",
) -> dict[str, Any]:
    """One measurement, in fresh processes on a fresh redis-server; always returns a record."""

    def run(
        record: dict[str, Any], children: Children, url: str, queue_name: str, deadline: float,
        budget: str,
    ) -> None:  # fmt: skip
        producer = children.spawn(
            "producer", "produce", impl, url, queue_name, str(n),
            str(ENQUEUE_TASKS), budget, "--body", body,
        )  # fmt: skip
        children.pump(lambda: producer.find("enqueued") is not None, deadline, "enqueue")
        enqueued = producer.find("enqueued")
        assert enqueued is not None
        record["enqueue_jobs_per_s"] = n / enqueued["seconds"]
        _run_workers(
            record, children, producer, impl, url, queue_name, procs, n, deadline, body,
        )  # fmt: skip

    return _in_fresh_processes(impl, procs, n, timeout, env, snapshot_dir, body, run)


def _in_fresh_processes(
    impl: str,
    procs: int,
    n: int,
    timeout: float,
    env: dict[str, str],
    snapshot_dir: str,
    body: str,
    run: Callable[[dict[str, Any], Children, str, str, float, str], None],
) -> dict[str, Any]:
    """The frame of every measurement: a fresh redis-server in a temporary directory, the
    processes ``run`` spawns (given the record, the children, the server's URL, a fresh queue
    name, the deadline and the processes' watchdog budget), then a graceful stop of them all
    and the workers' final figures. Any failure is the record's ``error``."""
    record: dict[str, Any] = {"impl": impl, "procs": procs, "n": n, "body": body}
    record["loadavg_1m"] = os.getloadavg()[0]  # (others' work on the machine shows here)
    started = time.monotonic()
    deadline = started + timeout
    budget = str(timeout + STOP_TIMEOUT + 5)  # the processes' watchdog
    statuses: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="jobpool-dist-") as tmp:
        workdir = Path(tmp)
        children = Children(workdir, env)
        try:
            with redis_server(workdir) as url:
                queue_name = f"bench{time.time_ns()}"
                try:
                    run(record, children, url, queue_name, deadline, budget)
                finally:
                    statuses = children.stop_all()  # (Redis still up: they stop gracefully)
                    if body == "redis":
                        record["body_runs"] = _body_runs(url, queue_name)
        except MeasurementError as exc:
            record["error"] = str(exc)
        except Exception as exc:  # the server did not start, say: reported, the run goes on
            record["error"] = f"{type(exc).__name__}: {exc}"
        workers = [c for c in children.children if c.name.startswith("worker")]
        if workers and "error" not in record:
            _finish(record, workers, statuses, n, snapshot_dir)
            front = next((c for c in children.children if c.name == "front"), None)
            if front is not None and statuses.get("front"):
                record.setdefault("problems", []).append(
                    f"front: exit status {statuses['front']}: {front.stderr_tail(3)}"
                )
    record["measurement_s"] = time.monotonic() - started
    return record


def _body_runs(url: str, queue_name: str) -> int | None:
    """The redis body's counter: how many bodies ran (None: it could not be read)."""
    try:
        client = redis.Redis.from_url(url, socket_timeout=10)
        try:
            value = client.get(count_key(queue_name))
        finally:
            client.close()
    except redis.RedisError:
        return None
    return int(value or 0)  # type: ignore[arg-type]


def _run_workers(
    record: dict[str, Any],
    children: Children,
    producer: Child,
    impl: str,
    url: str,
    queue_name: str,
    procs: int,
    n: int,
    deadline: float,
    body: str,
) -> None:
    budget = str(deadline - time.monotonic() + STOP_TIMEOUT + 5)
    before = redis_counters(url)
    spawned = time.monotonic()
    workers = [
        children.spawn(
            f"worker{k}", "work", impl, url, queue_name, str(CONCURRENCY), budget, "--body", body
        )
        for k in range(procs)
    ]
    children.pump(lambda: all(w.find("ready") for w in workers), deadline, "workers ready")
    go = time.monotonic()
    record["ready_s"] = go - spawned
    for worker in workers:
        worker.send("go")
    children.pump(lambda: sum(w.tally["count"] for w in workers) >= n, deadline, "all jobs run")
    noticed = time.monotonic()
    after = redis_counters(url)  # (before the check's polls)
    producer.send("check")
    children.pump(lambda: producer.find("confirmed") is not None, deadline, "the store's check")
    confirmed = producer.find("confirmed")
    assert confirmed is not None
    first = min(w.tally["first"] for w in workers if w.tally["count"])
    last = max(w.tally["last"] for w in workers if w.tally["count"])
    record["jobs_per_s"] = n / (last - first)
    record["run_s"] = last - first
    record["start_lag_s"] = first - go  # "go" to the first job: the workers' set-up
    record["notice_lag_s"] = noticed - last
    record["confirm_lag_s"] = confirmed["at"] - last
    record["confirmed"] = confirmed["confirmed"]
    record["store"] = confirmed["store"]
    _server_deltas(record, before, after, n)
    # (from each worker's last tally before the end was noticed: up to 20 ms after its last job)
    record["worker_cpu_us_per_job"] = sum(w.tally.get("cpu", 0.0) for w in workers) / n * 1e6


def _server_deltas(
    record: dict[str, Any], before: dict[str, Any], after: dict[str, Any], n: int
) -> None:
    """Redis commands and CPU per job between two ``redis_counters``; the calls per command."""
    calls = {
        name: count - before["calls"].get(name, 0)
        for name, count in after["calls"].items()
        if count > before["calls"].get(name, 0)
    }
    record["redis_commands_per_job"] = sum(calls.values()) / n
    record["redis_cpu_us_per_job"] = (after["cpu_s"] - before["cpu_s"]) / n * 1e6
    record["redis_calls"] = dict(sorted(calls.items(), key=lambda item: -item[1]))


def redis_counters(url: str) -> dict[str, Any]:
    """The server's CPU seconds, its ``used_memory`` and its calls per command (those run by
    scripts included; ``info``, the harness's own, left out)."""
    client = redis.Redis.from_url(url, socket_timeout=10)
    try:
        cpu: dict[str, Any] = client.info("cpu")  # type: ignore[assignment]
        memory: dict[str, Any] = client.info("memory")  # type: ignore[assignment]
        stats: dict[str, Any] = client.info("commandstats")  # type: ignore[assignment]
    finally:
        client.close()
    calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
    calls.pop("info", None)
    return {
        "cpu_s": float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]),
        "used_memory": int(memory["used_memory"]),
        "used_memory_dataset": int(memory["used_memory_dataset"]),
        "mem_clients_normal": int(memory["mem_clients_normal"]),
        "calls": calls,
    }


# -- the scaling mode's measurement ---------------------------------------------------------------


def measure_scaling(
    impl: str,
    procs: int,
    n: int,
    timeout: float,
    env: dict[str, str],
    snapshot_dir: str,
    body: str = "noop",
) -> dict[str, Any]:
    """One measurement of the scaling mode (P idle workers, then a front end submits); in fresh
    processes on a fresh redis-server; always returns a record."""

    def run(
        record: dict[str, Any], children: Children, url: str, queue_name: str, deadline: float,
        budget: str,
    ) -> None:  # fmt: skip
        workers = [
            children.spawn(
                f"worker{k}", "work", impl, url, queue_name, str(CONCURRENCY),
                budget, "--body", body,
            )
            for k in range(procs)
        ]  # fmt: skip
        front = children.spawn(
            "front", "front", impl, url, queue_name, str(n), str(ENQUEUE_TASKS),
            budget, "--body", body,
        )  # fmt: skip
        _run_scaling(record, children, front, workers, url, n, deadline)

    return _in_fresh_processes(impl, procs, n, timeout, env, snapshot_dir, body, run)


def _run_scaling(
    record: dict[str, Any],
    children: Children,
    front: Child,
    workers: list[Child],
    url: str,
    n: int,
    deadline: float,
) -> None:
    spawned = time.monotonic()
    everyone = [*workers, front]
    children.pump(lambda: all(c.find("ready") for c in everyone), deadline, "processes ready")
    record["ready_s"] = time.monotonic() - spawned
    for worker in workers:
        worker.send("go")
    children.pump(lambda: all(w.find("open") for w in workers), deadline, "the workers' pools")
    time.sleep(SETTLE_S)  # their first claims find nothing and register them idle
    cpu_before = _workers_cpu(children, workers, 1, deadline)
    before = redis_counters(url)
    go = time.monotonic()
    front.send("go")
    children.pump(
        lambda: sum(w.tally["count"] for w in workers) >= n and front.find("submitted") is not None,
        deadline,
        "all jobs run",
    )
    noticed = time.monotonic()
    front.send("check")
    children.pump(lambda: front.find("confirmed") is not None, deadline, "the store's check")
    after = redis_counters(url)  # (all N ended in Redis: the check's polls included)
    cpu_after = _workers_cpu(children, workers, 2, deadline)
    submitted, confirmed = front.find("submitted"), front.find("confirmed")
    assert submitted is not None
    assert confirmed is not None
    first = min(w.tally["first"] for w in workers if w.tally["count"])
    last = max(w.tally["last"] for w in workers if w.tally["count"])
    record["jobs_per_s"] = n / (last - first)
    record["run_s"] = last - first
    record["submit_jobs_per_s"] = n / submitted["seconds"]
    record["submit_s"] = submitted["seconds"]
    record["start_lag_s"] = first - go  # the front end's "go" to the first job's start
    record["notice_lag_s"] = noticed - last
    record["confirm_lag_s"] = confirmed["at"] - last
    record["confirmed"] = confirmed["confirmed"]
    record["store"] = confirmed["store"]
    record["check_polls"] = confirmed["polls"]
    _server_deltas(record, before, after, n)
    record["used_memory_before"] = before["used_memory"]
    record["used_memory_after"] = after["used_memory"]
    record["redis_bytes_per_job"] = (after["used_memory"] - before["used_memory"]) / n
    clients = after["mem_clients_normal"] - before["mem_clients_normal"]
    record["redis_client_bytes_per_job"] = clients / n  # (connections' buffers: not the jobs')
    for name in ("used_memory_dataset", "mem_clients_normal"):
        record[f"{name}_before"] = before[name]
        record[f"{name}_after"] = after[name]
    record["worker_cpu_us_per_job"] = (cpu_after - cpu_before) / n * 1e6
    record["front_cpu_us_per_job"] = confirmed["cpu"] / n * 1e6


def _workers_cpu(children: Children, workers: list[Child], seq: int, deadline: float) -> float:
    """The worker processes' CPU seconds so far, summed (their ``seq``-th answer to ``cpu``)."""
    for worker in workers:
        worker.send("cpu")
    children.pump(
        lambda: all(w.find("seq", seq) for w in workers), deadline, "the workers' CPU times"
    )
    answers = [w.find("seq", seq) or {} for w in workers]  # (all there: see the pump)
    return sum(float(answer["cpu_at"]) for answer in answers)


def _finish(
    record: dict[str, Any],
    workers: list[Child],
    statuses: dict[str, int],
    n: int,
    snapshot_dir: str,
) -> None:
    """The workers' final tallies and exit statuses; what looks wrong goes to ``problems``."""
    problems: list[str] = []
    finals = []
    for worker in workers:
        final = worker.find("final")
        if final is None:
            status = statuses.get(worker.name)
            problems.append(f"{worker.name}: no final report (exit status {status})")
            final = worker.tally
        elif statuses.get(worker.name):
            problems.append(
                f"{worker.name}: exit status {statuses[worker.name]}: {worker.stderr_tail(3)}"
            )
        finals.append(final)
        imported = final.get("trio_jobpool_file")
        if imported and not imported.startswith(snapshot_dir):
            problems.append(f"{worker.name}: imported trio_jobpool from {imported}")
    stderr = {w.name: w.stderr_tail(5) for w in workers if w.stderr_tail(5)}
    if stderr:
        record["stderr"] = stderr  # (warnings, say: kept for a look, not a problem)
    counts = [int(f.get("count", 0)) for f in finals]
    record["per_worker"] = counts
    record["worker_finals"] = [
        {k: v for k, v in f.items() if k not in ("count", "first", "last", "final")} for f in finals
    ]
    if sum(counts) != n:
        problems.append(f"the workers ran {sum(counts)} jobs, not {n}")
    if "body_runs" in record and record["body_runs"] != sum(counts):
        problems.append(f"the redis body's counter says {record['body_runs']}, not {sum(counts)}")
    if "confirmed" in record and not record["confirmed"]:
        problems.append(f"the store did not confirm all jobs done: {record['store']}")
    if problems:
        record["problems"] = problems


# -- a run: the plan, the summary, the report ----------------------------------------------------


def plan(impls: list[str], procs: list[int], rounds: int) -> list[tuple[int, str, int]]:
    """(round, implementation, processes) in run order, rotated from round to round."""
    pairs = [(impl, p) for p in procs for impl in impls]
    steps = []
    for round_ in range(rounds):
        shift = round_ % len(pairs)
        steps += [(round_, impl, p) for impl, p in pairs[shift:] + pairs[:shift]]
    return steps


def _stats(values: list[float]) -> dict[str, Any] | None:
    if not values:
        return None
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "values": values,
    }


METRICS = (
    "jobs_per_s",
    "enqueue_jobs_per_s",
    "confirm_lag_s",
    "start_lag_s",
    "redis_commands_per_job",
    "redis_cpu_us_per_job",
    "worker_cpu_us_per_job",
    "submit_jobs_per_s",  # --scaling
    "front_cpu_us_per_job",  # --scaling
    "redis_bytes_per_job",  # --scaling
    "redis_client_bytes_per_job",  # --scaling
)
BODY_TITLES = {
    "noop": "no-op jobs",
    "redis": "jobs that do one Redis command (INCR through the worker process's own client)",
}
BODY_LINES = {
    "noop": "The job body: the tally only (in memory: no Redis command).",
    "redis": (
        "The job body: `INCR bench:<queue>:count` through the worker process's own client, "
        'then the tally: arq `ctx["redis"]`, saq `ctx["worker"].queue.redis`, streaq '
        "`worker.redis`; trio_jobpool a coredis client created once per worker process "
        "(before the pool opens) and reached through a module-level reference; the coredis "
        "loops their one client. jobs/s runs from the first body's start to the last body's end."
    ),
}


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per P and implementation: the metrics' medians, min, max; ratios to the best peer."""
    summary: dict[str, Any] = {}
    for procs in sorted({r["procs"] for r in records}):
        rows: dict[str, Any] = {}
        for impl in IMPLS:
            mine = [r for r in records if r["impl"] == impl and r["procs"] == procs]
            if not mine:
                continue
            ok = [r for r in mine if "jobs_per_s" in r]
            rows[impl] = {
                "runs": len(ok),
                "errors": [r["error"] for r in mine if "error" in r],
                "problems": sorted({p for r in mine for p in r.get("problems", [])}),
                **{m: _stats([r[m] for r in ok if m in r]) for m in METRICS},
            }
        medians = {name: _median(rows.get(name)) for name in PEERS}
        peers = {name: value for name, value in medians.items() if value}
        best = max(peers, key=peers.__getitem__) if peers else None
        limit = _median(rows.get(LIMITS[0])) if LIMITS else None
        for row in rows.values():
            value = _median(row)
            row["ratio_to_best_peer"] = value / peers[best] if value and best else None
            row["ratio_to_limit"] = value / limit if value and limit else None
        summary[str(procs)] = {"best_peer": best, "rows": rows}
    return summary


def _median(row: dict[str, Any] | None, metric: str = "jobs_per_s") -> float | None:
    if row is None or row.get(metric) is None:
        return None
    return float(row[metric]["median"])


def _num(value: float | None, digits: int = 0) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def _spread(figure: dict[str, Any] | None, digits: int = 0) -> str:
    if figure is None:
        return ""
    text = _num(figure["median"], digits)
    if len(figure["values"]) > 1:
        text += f" ({_num(figure['min'], digits)}{DASH}{_num(figure['max'], digits)})"
    return text


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{TIMES}{value:.2f}"


def _ms(figure: dict[str, Any] | None) -> str:
    return "" if figure is None else f"{figure['median'] * 1000:,.0f}"


def render_markdown(results: dict[str, Any]) -> str:
    config, summary = results["config"], results["summary"]
    body = config.get("body", "noop")
    procs = list(summary)
    lines = [
        f"# Distributed job queues on one Redis: {BODY_TITLES[body]}",
        "",
        f"{config['n']:,} jobs (body `{body}`) enqueued first, then run by P worker processes "
        f"({config['concurrency']} jobs at once each) on one fresh redis-server per "
        f"measurement; {config['rounds']} round(s), medians (min{DASH}max). jobs/s = N / "
        "(last job's end - first job's start) across the workers, process start-up "
        "excluded. Method: `benchmarks/distributed.py`.",
        "",
        *_setting_lines(results, body),
    ]
    header = ["implementation"]
    for p in procs:
        header += [f"P={p} jobs/s", f"P={p} vs best peer"]
    header += [f"P={p} enqueue jobs/s" for p in procs]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for impl in IMPLS:
        if not any(impl in summary[p]["rows"] for p in procs):
            continue
        cells = [f"`{impl}`" + (" (limit)" if impl in LIMITS else "")]
        for p in procs:
            row = summary[p]["rows"].get(impl)
            if row is None:
                cells += ["", ""]
                continue
            jobs = _spread(row["jobs_per_s"]) or ("error" if row["errors"] else "")
            cells += [jobs, _ratio(row["ratio_to_best_peer"])]
        for p in procs:
            row = summary[p]["rows"].get(impl)
            cells.append(_spread(row["enqueue_jobs_per_s"]) if row else "")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", _verdicts(summary), ""]
    counted = _body_count_line(results["records"])
    if counted:
        lines += [counted, ""]
    lines += [
        'Details (medians): start lag = from "go" to the first job (the workers\' set-up); '
        "confirm lag = from the last job's end until the implementation's own store said all "
        "jobs were done (includes the harness noticing, up to 20 ms); share = jobs per "
        "worker process in the last round; Redis commands (those run by scripts included) and "
        "Redis CPU per job, from the server's INFO between the workers' start and the last job; "
        "worker CPU per job: the worker processes' CPU time (all threads) from their first job "
        "to their last tally (up to 20 ms after their last job); ratio of jobs/s to "
        "`coredis-loop-1`.",
        "",
        "| implementation | P | start lag ms | confirm lag ms | share | Redis commands/job "
        "| Redis CPU µs/job | worker CPU µs/job | vs coredis-loop-1 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    records = results["records"]
    for p in procs:
        for impl, row in summary[p]["rows"].items():
            shares = [r.get("per_worker") for r in records if r["impl"] == impl]
            shares = [s for s in shares if s and len(s) == int(p)]
            share = "/".join(str(c) for c in shares[-1]) if shares else ""
            lines.append(
                f"| `{impl}` | {p} | {_ms(row['start_lag_s'])} | {_ms(row['confirm_lag_s'])} "
                f"| {share} | {_num(_median(row, 'redis_commands_per_job'), 1)} "
                f"| {_num(_median(row, 'redis_cpu_us_per_job'))} "
                f"| {_num(_median(row, 'worker_cpu_us_per_job'))} "
                f"| {_ratio(row['ratio_to_limit'])} |"
            )
    lines += ["", "Peer settings changed from their defaults:", ""]
    for name, settings in results["peer_settings"].items():
        why = settings.get("why", "")
        values = ", ".join(f"{k}={v}" for k, v in settings.items() if k != "why")
        lines.append(f"- {name}: {values} ({why})")
    problems = [
        f"- {impl} P={p}: {text}"
        for p in procs
        for impl, row in summary[p]["rows"].items()
        for text in row["problems"] + [e.strip().splitlines()[-1] for e in row["errors"]]
    ]
    if problems:
        lines += ["", "Problems:", "", *problems]
    return "\n".join(lines) + "\n"


def render_scaling(results: dict[str, Any]) -> str:
    """The scaling mode's report: the issue's two goals, then the figures per (impl, P)."""
    config, machine, summary = results["config"], results["machine"], results["summary"]
    body = config.get("body", "noop")
    lines = [
        f"# trio_jobpool scaling on one Redis: {BODY_TITLES[body]}",
        "",
        f"P worker processes ({config['concurrency']} workers each) wait idle on one fresh "
        "redis-server per measurement; then a front end (a pool with `max_workers=0`) submits "
        f"{config['n']:,} jobs (body `{body}`) from {config['enqueue_tasks']} concurrent tasks, "
        "so the workers wake on submits. "
        f"{config['rounds']} round(s), medians (min{DASH}max). jobs/s = N / (last job's end - "
        "first job's start). Redis commands (those run by scripts included), Redis CPU and "
        "the worker processes' CPU: from just before the front end's \"go\" until the store "
        "confirmed all N jobs ended; front end CPU: its own, over the same span; Redis bytes "
        "per ended job: the growth of `used_memory` over that span / N (ended jobs are kept "
        "for `keep_ended`, an hour by default), of which client buffers: the growth of "
        "`mem_clients_normal` (the connections' buffers, which come and go with traffic: "
        "noise, not the jobs'). Method: `benchmarks/distributed.py`.",
        "",
        *_setting_lines(results, body),
    ]
    lines += ["Goals (issue #14):", "", *_scaling_verdicts(summary, machine), ""]
    counted = _body_count_line(results["records"])
    if counted:
        lines += [counted, ""]
    lines += [
        "| implementation | P | jobs/s | vs smallest P | submit jobs/s | Redis commands/job "
        "| Redis CPU µs/job | worker CPU µs/job | front end CPU µs/job | Redis bytes/ended job "
        "| of which client buffers | start lag ms | share |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    records = results["records"]
    for impl in JOBPOOLS:
        base = None
        for p, part in summary.items():
            row = part["rows"].get(impl)
            if row is None:
                continue
            jobs = _median(row)
            base = base if base is not None else jobs
            shares = [r.get("per_worker") for r in records if r["impl"] == impl]
            shares = [s for s in shares if s and len(s) == int(p)]
            share = "/".join(str(c) for c in shares[-1]) if shares else ""
            lines.append(
                f"| `{impl}` | {p} | {_spread(row['jobs_per_s']) or 'error'} "
                f"| {_ratio(jobs / base if jobs and base else None)} "
                f"| {_spread(row['submit_jobs_per_s'])} "
                f"| {_spread(row['redis_commands_per_job'], 2)} "
                f"| {_num(_median(row, 'redis_cpu_us_per_job'))} "
                f"| {_num(_median(row, 'worker_cpu_us_per_job'))} "
                f"| {_num(_median(row, 'front_cpu_us_per_job'))} "
                f"| {_spread(row['redis_bytes_per_job'])} "
                f"| {_num(_median(row, 'redis_client_bytes_per_job'))} "
                f"| {_ms(row['start_lag_s'])} | {share} |"
            )
    problems = [
        f"- {impl} P={p}: {text}"
        for p in summary
        for impl, row in summary[p]["rows"].items()
        for text in row["problems"] + [e.strip().splitlines()[-1] for e in row["errors"]]
    ]
    if problems:
        lines += ["", "Problems:", "", *problems]
    return "\n".join(lines) + "\n"


def _scaling_verdicts(summary: dict[str, Any], machine: dict[str, Any]) -> list[str]:
    """Whether commands/job stay within FLAT of the smallest P's, and whether jobs/s never
    falls from one P to the next (medians), for each trio_jobpool backend."""
    lines = []
    for impl in JOBPOOLS:
        commands = _medians(summary, impl, "redis_commands_per_job")
        jobs = _medians(summary, impl, "jobs_per_s")
        if len(commands) < 2 or len(jobs) < 2:
            lines.append(f"- `{impl}`: fewer than two values of P measured: no verdict.")
            continue
        p0, c0 = commands[0]
        worst_p, worst_c = max(commands, key=lambda pc: abs(pc[1] / c0 - 1))
        departure = worst_c / c0 - 1
        held = "holds" if abs(departure) <= FLAT else "does NOT hold"
        span = f"P={p0}{DASH}{commands[-1][0]}"
        lines.append(
            f"- `{impl}`, Redis commands per job flat within {FLAT:.0%} over {span}: **{held}** "
            f"({c0:.2f} at P={p0}; largest departure {departure:+.1%}, at P={worst_p}: "
            f"{worst_c:.2f})."
        )
        falls = [
            f"P={a}{ARROW}{b}: {jb / ja - 1:+.1%}"
            for (a, ja), (b, jb) in itertools.pairwise(jobs)
            if jb < ja
        ]
        steps = ", ".join(f"P={p} {j:,.0f}" for p, j in jobs)
        verdict = f"**does NOT hold**: falls at {'; '.join(falls)}" if falls else "**holds**"
        lines.append(f"- `{impl}`, jobs/s never falls as P grows: {verdict} ({steps}).")
    lines.append(
        f"- The machine has {machine['cores']} cores, shared by redis-server, the front end "
        "and the P worker processes: once the processes outnumber the cores, CPU, not the "
        "queue, bounds jobs/s."
    )
    return lines


def _medians(summary: dict[str, Any], impl: str, metric: str) -> list[tuple[int, float]]:
    """(P, median) of one implementation's metric, for each P where it has one (P ascending)."""
    found = []
    for p, part in summary.items():
        value = _median(part["rows"].get(impl), metric)
        if value:
            found.append((int(p), value))
    return found


def _body_count_line(records: list[dict[str, Any]]) -> str:
    """For the redis body: whether its counter matched the jobs the workers ran."""
    checked = [r for r in records if "body_runs" in r and "per_worker" in r]
    if not checked:
        return ""
    same = sum(1 for r in checked if r["body_runs"] == sum(r["per_worker"]))
    return (
        f"The INCR counter equalled the jobs the workers ran in {same} of {len(checked)} "
        "measurements (a job run twice counts twice in both)."
    )


def _verdicts(summary: dict[str, Any]) -> str:
    parts = []
    for p, part in summary.items():
        best = part["best_peer"]
        if best is None:
            continue
        for impl in JOBPOOLS:
            row = part["rows"].get(impl)
            ratio = row and row["ratio_to_best_peer"]
            if ratio:
                met = "met" if ratio >= TARGET else "not met"
                parts.append(f"P={p}: `{impl}` {TIMES}{ratio:.2f} of `{best}` ({met})")
    if not parts:
        return ""
    return f"Target {TIMES}{TARGET:g} of the best peer: " + "; ".join(parts) + "."


def _setting_lines(results: dict[str, Any], body: str) -> list[str]:
    """The lines every report has after its method: the job body, the machine, its load."""
    lines = [BODY_LINES[body], "", f"Machine: {_machine_line(results['machine'])}.", ""]
    load = _load_line(results)
    return [*lines, load, ""] if load else lines


def _load_line(results: dict[str, Any]) -> str:
    """The machine's load during the run: other work on it slows every figure down."""
    loads = [r["loadavg_1m"] for r in results["records"] if "loadavg_1m" in r]
    if not loads:
        return ""
    return (
        f"Load average (1 min) before each measurement: {min(loads):.2f}{DASH}{max(loads):.2f} "
        f"(median {statistics.median(loads):.2f}) on {results['machine']['cores']} cores; "
        "the workers, the producer and redis-server all share them."
    )


def _machine_line(machine: dict[str, Any]) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
    commit = machine["commit"] or "?"
    if machine["trio_jobpool_dirty"]:
        commit += " with uncommitted changes to trio_jobpool/"
    return (
        f"{machine['cpu']}, {machine['cores']} cores; {machine['implementation']} "
        f"{machine['python']}; {machine.get('redis_server', 'redis-server ?')}; {versions}; "
        f"commit {commit}; {machine['date']}"
    )


def _machine() -> dict[str, Any]:
    from importlib import metadata

    machine = machine_info()
    versions: dict[str, str | None] = {}
    for name in VERSIONS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    machine["versions"] = versions
    binary = shutil.which("redis-server")
    if binary:
        done = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
        machine["redis_server"] = " ".join(done.stdout.split()[:3])
    return machine


def _progress(step: int, total: int, record: dict[str, Any]) -> str:
    where = f"{record['impl']:<16} P={record['procs']}"
    if "jobs_per_s" in record and "redis_bytes_per_job" in record:  # --scaling
        value = (
            f"{record['jobs_per_s']:>9,.0f} jobs/s  ({record['redis_commands_per_job']:.2f} "
            f"commands/job, {record['redis_bytes_per_job']:,.0f} B/job, submit "
            f"{record['submit_jobs_per_s']:,.0f} jobs/s)"
        )
        if record.get("problems"):
            value += "  PROBLEMS: " + "; ".join(record["problems"])
    elif "jobs_per_s" in record:
        value = (
            f"{record['jobs_per_s']:>9,.0f} jobs/s  (enqueue {record['enqueue_jobs_per_s']:,.0f}"
            f" jobs/s, confirm lag {record['confirm_lag_s'] * 1000:.0f} ms)"
        )
        if record.get("problems"):
            value += "  PROBLEMS: " + "; ".join(record["problems"])
    else:
        value = "ERROR: " + record.get("error", "?").strip().splitlines()[0]
    return f"[{step:>3}/{total}] {where} {value}  ({record['measurement_s']:.1f} s)"


# -- --lag: jobs falling due in the same second (issue #16) -------------------------------------

LAG_SETTLE_S = 1.0  # --lag: seconds from "go" (a jobpool worker: its pool open) to the submits
LAG_MIN_SLACK_S = 1.0  # --lag: a due time less than this after the submits' end is a problem
# --lag's variants: (the implementation run, the worker's extra arguments, its poll settings).
LAG_IMPLS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "jobpool-trio": (
        "jobpool-trio",
        (),
        "no poll: each process's timer for the earliest due time (told of a nearer one by "
        "pub/sub `due:<ms>`) moves due jobs into the queue by one Lua call",
    ),
    "jobpool-asyncio": ("jobpool-asyncio", (), "as `jobpool-trio`, under asyncio"),
    "arq": (
        "arq",
        ("--arq-poll-delay", "0.5"),
        "`poll_delay` 0.5 s (its default): each poll starts the jobs whose score is due",
    ),
    "arq-poll-0.01": ("arq", ("--arq-poll-delay", "0.01"), "`poll_delay` 0.01 s"),
    "saq": (
        "saq",
        (),
        'its defaults: `timers["schedule"]` 1 s, a script that moves due jobs to the queue '
        "behind a 1 s lock (`SETEX`), so a smaller timer would not run it more often",
    ),
    "streaq": (
        "streaq",
        (),
        "its worker's `schedule_delayed_tasks` loop: every 0.5 s (fixed in its code)",
    ),
}


def lag_lead(n: int) -> float:
    """Seconds from the start of the submits to the due time: 2 s + time for the submits at
    1,500 jobs/s (arq submitted 500 deferred jobs at about 1,400 jobs/s in a --quick run)."""
    return 2.0 + n / 1500


def measure_lag(
    name: str, n: int, timeout: float, env: dict[str, str], snapshot_dir: str, lead: float
) -> dict[str, Any]:
    """One --lag measurement: one worker process (CONCURRENCY workers) running and idle, then
    a producer submits N jobs all due at one wall-clock instant; lags from the jobs' starts."""
    impl, extra, _ = LAG_IMPLS[name]
    due: dict[str, Any] = {}

    def run(
        record: dict[str, Any], children: Children, url: str, queue_name: str, deadline: float,
        budget: str,
    ) -> None:  # fmt: skip
        worker = children.spawn(
            "worker0", "work", impl, url, queue_name, str(CONCURRENCY), budget,
            "--body", "stamp", *extra,
        )  # fmt: skip
        children.pump(lambda: worker.find("ready") is not None, deadline, "worker ready")
        worker.send("go")
        if impl in JOBPOOLS:
            children.pump(lambda: worker.find("open") is not None, deadline, "worker's pool")
        time.sleep(LAG_SETTLE_S)  # (the peers connect meanwhile; say nothing when done)
        producer = children.spawn(
            "producer", "produce", impl, url, queue_name, str(n), str(ENQUEUE_TASKS), budget,
            "--body", "stamp", "--lead", f"{lead:.3f}",
        )  # fmt: skip
        children.pump(lambda: producer.find("enqueued") is not None, deadline, "submits")
        enqueued = producer.find("enqueued")
        assert enqueued is not None
        due.update(enqueued)
        record["enqueue_jobs_per_s"] = n / enqueued["seconds"]
        record["slack_s"] = enqueued["due"] - enqueued["submitted_at"]
        children.pump(lambda: worker.tally["count"] >= n, deadline, "all jobs run")
        producer.send("skip")  # (no check of the store: the producer exits)

    record = _in_fresh_processes(name, 1, n, timeout, env, snapshot_dir, "stamp", run)
    starts: list[float] = []
    for final in record.get("worker_finals", []):
        starts += final.pop("starts", [])
    if starts and due:
        lags = sorted(s - due["due"] for s in starts)
        record["lag_p50_s"] = statistics.median(lags)
        record["lag_p99_s"] = lags[min(len(lags) - 1, int(0.99 * len(lags)))]
        record["lag_max_s"] = lags[-1]  # = the last job's start - the due time
        record["lag_min_s"] = lags[0]
        record["start_spread_s"] = lags[-1] - lags[0]
        early = sum(1 for lag in lags if lag < 0)
        problems = record.setdefault("problems", [])
        if early:
            problems.append(f"{early} jobs started before their due time")
        if record["slack_s"] < LAG_MIN_SLACK_S:
            problems.append(f"due only {record['slack_s']:.2f} s after the submits ended")
        if not problems:
            del record["problems"]
    return record


LAG_METRICS = (
    "lag_p50_s",
    "lag_p99_s",
    "lag_max_s",
    "lag_min_s",
    "start_spread_s",
    "enqueue_jobs_per_s",
    "slack_s",
)


def summarise_lag(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per variant: the lag metrics' medians, min, max; p50/p99 ratios to trio_jobpool's."""
    rows: dict[str, Any] = {}
    for name in LAG_IMPLS:
        mine = [r for r in records if r["impl"] == name]
        if not mine:
            continue
        ok = [r for r in mine if "lag_p50_s" in r]
        rows[name] = {
            "runs": len(ok),
            "errors": [r["error"] for r in mine if "error" in r],
            "problems": sorted({p for r in mine for p in r.get("problems", [])}),
            **{m: _stats([r[m] for r in ok if m in r]) for m in LAG_METRICS},
        }
    base = rows.get("jobpool-trio")
    for row in rows.values():
        for q in ("p50", "p99", "max"):
            mine, theirs = _median(row, f"lag_{q}_s"), _median(base, f"lag_{q}_s")
            row[f"ratio_{q}"] = mine / theirs if mine is not None and theirs else None
    return {"rows": rows}


def _lag_ms(figure: dict[str, Any] | None) -> str:
    if figure is None:
        return ""
    text = f"{figure['median'] * 1000:,.1f}"
    if len(figure["values"]) > 1:
        text += f" ({figure['min'] * 1000:,.1f}{DASH}{figure['max'] * 1000:,.1f})"
    return text


def render_lag(results: dict[str, Any]) -> str:
    """The --lag report."""
    config, rows = results["config"], results["summary"]["rows"]
    lines = [
        "# Due lag on Redis: jobs falling due in the same instant (issue #16)",
        "",
        f"One worker process ({config['concurrency']} workers) per implementation runs idle on "
        "a fresh redis-server; then a producer submits "
        f"{config['n']:,} no-op jobs from {config['enqueue_tasks']} concurrent tasks, all due at "
        f"one wall-clock instant T = the submits' start + {config['lead_s']:.1f} s "
        "(trio_jobpool `submit(at=)`, arq `_defer_until`, saq `scheduled=`, streaq "
        "`enqueue().start(schedule=)`). Each job stamps its start (`time.time()`); lag = start "
        f"- T. {config['rounds']} round(s), the variants rotated from round to round; medians "
        f"(min{DASH}max) over the rounds of each round's p50, p99 and max (= the last job's "
        "start - T). Ratios: the variant's median over `jobpool-trio`'s. Method: "
        "`benchmarks/distributed.py --lag`.",
        "",
        f"Machine: {_machine_line(results['machine'])}.",
        "",
    ]
    load = _load_line(results)
    if load:
        lines += [load, ""]
    lines += ["Poll settings:", ""]
    lines += [f"- `{name}`: {LAG_IMPLS[name][2]}." for name in rows]
    lines += [
        "",
        "| implementation | p50 ms | p99 ms | max ms (last start) | p50 vs jobpool-trio "
        "| p99 vs jobpool-trio | first start ms | enqueue jobs/s | T - submits' end s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        lines.append(
            f"| `{name}` | {_lag_ms(row['lag_p50_s']) or 'error'} | {_lag_ms(row['lag_p99_s'])} "
            f"| {_lag_ms(row['lag_max_s'])} | {_ratio(row['ratio_p50'])} "
            f"| {_ratio(row['ratio_p99'])} | {_lag_ms(row['lag_min_s'])} "
            f"| {_spread(row['enqueue_jobs_per_s'])} | {_spread(row['slack_s'], 1)} |"
        )
    problems = [
        f"- {name}: {text}"
        for name, row in rows.items()
        for text in row["problems"] + [e.strip().splitlines()[-1] for e in row["errors"]]
    ]
    if problems:
        lines += ["", "Problems:", "", *problems]
    return "\n".join(lines) + "\n"


def main_lag(args: argparse.Namespace) -> int:
    names = _pick(args.only_impls, list(LAG_IMPLS))
    rounds = args.rounds
    lead = args.lead if args.lead is not None else lag_lead(args.n)
    steps = plan(names, [1], rounds)
    machine = _machine()
    print(f"{len(steps)} measurements (lag) of {args.n:,} jobs due {lead:.1f} s after the start")
    started = time.monotonic()
    records = []
    with _snapshot() as (env, copy):
        source = source_digest(Path(copy) / "trio_jobpool")
        for step, (round_, name, _) in enumerate(steps, 1):
            record = measure_lag(name, args.n, args.timeout, env, copy, lead)
            record["round"] = round_
            records.append(record)
            if "lag_p50_s" in record:
                value = (
                    f"p50 {record['lag_p50_s'] * 1000:8.1f} ms  p99 "
                    f"{record['lag_p99_s'] * 1000:8.1f} ms  max {record['lag_max_s'] * 1000:8.1f}"
                    f" ms  (slack {record['slack_s']:.1f} s)"
                )
                if record.get("problems"):
                    value += "  PROBLEMS: " + "; ".join(record["problems"])
            else:
                value = "ERROR: " + record.get("error", "?").strip().splitlines()[0]
            print(f"[{step:>3}/{len(steps)}] {name:<16} {value}", flush=True)
    results = {
        "machine": machine,
        "config": {
            "mode": "lag",
            "body": "stamp",
            "quick": args.quick,
            "rounds": rounds,
            "n": args.n,
            "impls": names,
            "concurrency": CONCURRENCY,
            "enqueue_tasks": ENQUEUE_TASKS,
            "lead_s": lead,
            "timeout_s": args.timeout,
        },
        "peer_settings": {name: LAG_IMPLS[name][2] for name in names},
        "source": source,
        "source_changed": source_digest(PACKAGE) != source,
        "duration_s": time.monotonic() - started,
        "loadavg_end": os.getloadavg(),
        "summary": summarise_lag(records),
        "records": records,
    }
    print()
    name = "distributed-lag" + ("" if args.n == N else f"-n{args.n}")
    write_report(results, name + ("-quick" if args.quick else ""))
    return 1 if any("error" in r or r.get("problems") for r in records) else 0


def _pick(text: str | None, known: list[str]) -> list[str]:
    if not text:
        return known
    picked = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [item for item in picked if item not in known]
    if unknown:
        sys.exit(f"unknown implementation(s): {', '.join(unknown)}; known: {', '.join(known)}")
    return [item for item in known if item in picked]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help=f"N={QUICK_N:,}, 1 round")
    parser.add_argument("--rounds", type=int, help="rounds (default 3, or 1 with --quick)")
    parser.add_argument("--n", type=int, help=f"jobs per measurement (default {N:,})")
    parser.add_argument(
        "--only-impls", help=f"comma-separated: {','.join(IMPLS)} (--scaling: the jobpool-*)"
    )
    parser.add_argument(
        "--procs", help=f"worker processes, e.g. 1,2 (default; --scaling: {SCALING_PROCS})"
    )
    parser.add_argument(
        "--body",
        choices=[b for b in BODIES if b not in JOBPOOL_BODIES],
        default="noop",
        help="the job's body (default noop)",
    )
    parser.add_argument(
        "--scaling",
        action="store_true",
        help="trio_jobpool only: idle worker processes, a front end submitting during the run",
    )
    parser.add_argument(
        "--lag",
        action="store_true",
        help="N jobs due at one instant: lag from due time to start (issue #16)",
    )
    parser.add_argument(
        "--keys",
        action="store_true",
        help="trio_jobpool only: jobs with flow-control keys against none (issue #17)",
    )
    parser.add_argument(
        "--hold-ms", type=float, default=5.0, help="--keys: the bind variants' job sleep (ms)"
    )
    parser.add_argument("--bind-n", type=int, help="--keys: jobs of the bind variants")
    parser.add_argument(
        "--bind-concurrency", type=int, help="--keys: workers per process in the bind variants"
    )
    parser.add_argument(
        "--no-bind", action="store_true", help="--keys: only plain and keyed (no bind variants)"
    )
    parser.add_argument("--jobs", type=int, dest="n", help="the same as --n")
    parser.add_argument(
        "--lead", type=float, help="--lag: seconds from the submits' start to the due time"
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per measurement")
    parser.add_argument("--render", metavar="JSON", help="measure nothing: re-render a run")
    args = parser.parse_args(argv)
    if not args.lag:
        jobpool_only = args.scaling or args.keys
        args.impls = _pick(args.only_impls, JOBPOOLS if jobpool_only else list(IMPLS))
    procs = args.procs or (SCALING_PROCS if args.scaling else KEYS_PROCS if args.keys else "1,2")
    args.procs_list = [int(p) for p in procs.split(",") if p.strip()]
    if args.rounds is None:
        args.rounds = 1 if args.quick else KEYS_ROUNDS if args.keys else 3
    if args.n is None:
        args.n = QUICK_N if args.quick else N
    if args.rounds < 1 or args.n < 1 or not args.procs_list or min(args.procs_list) < 1:
        parser.error("--rounds, --n and --procs must be at least 1")
    return args


def stem(scaling: bool, body: str, quick: bool) -> str:
    """The results' file name: ``distributed[-scaling][-redis][-quick]``."""
    parts = ["distributed"]
    parts += ["scaling"] if scaling else []
    parts += [] if body == "noop" else [body]
    parts += ["quick"] if quick else []
    return "-".join(parts)


def write_report(
    results: dict[str, Any], stem: str, render: Callable[[dict[str, Any]], str] | None = None
) -> None:
    """Write ``<stem>.json`` and ``<stem>.md`` (by ``render``, else the mode's renderer)."""
    mode = results["config"].get("mode")
    renderers = {"scaling": render_scaling, "lag": render_lag}
    markdown = (render or renderers.get(mode, render_markdown))(results)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=1) + "\n")
    (RESULTS / f"{stem}.md").write_text(markdown)
    print(markdown)
    print(f"written: {RESULTS / stem}.md and .json")


@contextlib.contextmanager
def _snapshot() -> Iterator[tuple[dict[str, str], str]]:
    """The environment that imports a copy of trio_jobpool, and the copy's directory."""
    with tempfile.TemporaryDirectory(prefix="jobpool-dist-snapshot-") as tmp:
        yield snapshot(Path(tmp)), tmp


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.render:
        saved = Path(args.render)
        results = json.loads(saved.read_text())
        mode = results["config"].get("mode")
        if mode == "keys":
            import distributed_keys

            results["summary"] = distributed_keys.summarise(results["records"])
            write_report(results, saved.stem, distributed_keys.render)
            return 0
        lag = mode == "lag"
        results["summary"] = (summarise_lag if lag else summarise)(results["records"])
        write_report(results, saved.stem)
        return 0
    if args.lag:
        return main_lag(args)
    if args.keys:
        import distributed_keys  # (it imports this module: not at the top)

        return distributed_keys.main_keys(args)
    steps = plan(args.impls, args.procs_list, args.rounds)
    machine = _machine()
    where = f"{machine['cpu']}, {machine['cores']} cores"
    mode = "scaling" if args.scaling else "standard"
    print(f"{len(steps)} measurements ({mode}) of {args.n:,} jobs, body {args.body}; {where}")
    started = time.monotonic()
    records = []
    one = measure_scaling if args.scaling else measure
    with _snapshot() as (env, copy):
        source = source_digest(Path(copy) / "trio_jobpool")
        for step, (round_, impl, procs) in enumerate(steps, 1):
            record = one(impl, procs, args.n, args.timeout, env, copy, args.body)
            record["round"] = round_
            records.append(record)
            print(_progress(step, len(steps), record), flush=True)
    results = {
        "machine": machine,
        "config": {
            "mode": mode,
            "body": args.body,
            "quick": args.quick,
            "rounds": args.rounds,
            "n": args.n,
            "procs": args.procs_list,
            "impls": args.impls,
            "concurrency": CONCURRENCY,
            "enqueue_tasks": ENQUEUE_TASKS,
            "timeout_s": args.timeout,
        },
        "peer_settings": PEER_SETTINGS,
        "source": source,
        "source_changed": source_digest(PACKAGE) != source,
        "duration_s": time.monotonic() - started,
        "loadavg_end": os.getloadavg(),
        "summary": summarise(records),
        "records": records,
    }
    print()
    write_report(results, stem(args.scaling, args.body, args.quick))
    return 1 if any("error" in r or r.get("problems") for r in records) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
