"""The distributed pool with real worker processes (tests/stores/_redis_worker.py).

The test process is the producer (a pool with ``max_workers=0``); the workers are separate
Python processes on the same queue, started and stopped here. Jobs log each start, end and
cancellation with their process id and the time (``logged`` in tests/durable_app.py), so what
ran where, and when, is read back from the log.
"""

from __future__ import annotations

import collections
import contextlib
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest

from tests.durable_app import logged, logged_until, registry
from tests.servers import redis_server_process
from trio_jobpool import JobCancelled, JobStatus, open_job_pool

pytestmark = pytest.mark.anyio

READY_TIMEOUT = 30.0  # seconds for a worker process to open its pool
STOP_TIMEOUT = 15.0  # seconds for it to stop gracefully once its stdin closes


@contextlib.contextmanager
def worker_processes(
    url: str, count: int, max_workers: int, backend: str, schedule: str | None = None
) -> Iterator[list[subprocess.Popen[str]]]:
    """``count`` worker processes on the queue ``url``, each ready (its pool open, and the
    periodic ``schedule`` declared if given: see tests/stores/_redis_worker.py) on entry;
    stopped gracefully on exit (killed if they do not stop in time), and always waited for."""
    processes: list[subprocess.Popen[str]] = []
    command = [sys.executable, "-m", "tests.stores._redis_worker", url, str(max_workers), backend]
    if schedule is not None:
        command.append(schedule)
    try:
        for _ in range(count):
            processes.append(
                subprocess.Popen(
                    command,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    cwd=Path(__file__).parents[2],
                )
            )
        for process in processes:
            assert process.stdout is not None
            ready, _, _ = select.select([process.stdout], [], [], READY_TIMEOUT)
            line = process.stdout.readline() if ready else ""
            assert line.strip() == "ready", f"worker {process.pid} did not start: {line!r}"
        yield processes
    finally:
        for process in processes:
            if process.stdin is not None:
                with contextlib.suppress(BrokenPipeError):
                    process.stdin.close()
        for process in processes:
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            for pipe in (process.stdin, process.stdout):
                if pipe is not None:
                    pipe.close()


def read_log(log: Path) -> list[tuple[int, str, str, float]]:
    """(pid, event, item, time) per line of the jobs' log."""
    if not log.exists():
        return []
    rows = []
    for line in log.read_text().splitlines():
        pid, event, item, when = line.split()
        rows.append((int(pid), event, item, float(when)))
    return rows


async def until(predicate: Callable[[], bool], timeout: float = 30) -> None:
    """Wait until ``predicate()`` holds, looking every 10 ms (other processes' progress
    cannot be awaited as an event here); bounded."""
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "jobs.log"
    monkeypatch.setenv("JOBPOOL_TEST_LOG", str(path))  # inherited by the worker processes
    return path


def queue_url(redis_url: str, lease_timeout: float = 5.0) -> str:
    return f"{redis_url}/0?queue=p{uuid.uuid4().hex[:12]}&lease_timeout={lease_timeout}"


async def test_two_worker_processes_take_jobs_by_priority_and_a_cancel_reaches_them(
    redis_url: str, log: Path, tmp_path: Path, anyio_backend: str
) -> None:
    url = queue_url(redis_url)
    priorities = [10] * 10 + [5] * 10 + [1] * 10  # submitted worst first
    async with open_job_pool(0, 100, store=url, registry=registry) as front:
        for i, priority in enumerate(priorities):
            await front.submit(logged, f"{priority}-{i}", 0.02, priority=priority)
        with worker_processes(url, 2, max_workers=1, backend=anyio_backend) as workers:
            await front.join()
            started = [row for row in read_log(log) if row[1] == "start"]
            assert {pid for pid, *_ in started} == {w.pid for w in workers}  # both took part
            order = [item for _, _, item, _ in started]
            expected = [f"{p}-{i}" for i, p in sorted(enumerate(priorities), key=lambda x: x[1])]
            # Two processes start their jobs side by side: each job starts within one place of
            # its place in (priority, submission) order, and priorities never mix.
            assert sorted(order) == sorted(expected)
            for index, item in enumerate(order):
                assert abs(expected.index(item) - index) <= 1, (order, expected)

            blocker = await front.submit(logged_until, "blocker", str(tmp_path / "never"))
            await until(lambda: any(row[2] == "blocker" for row in read_log(log)))
            blocker.cancel()  # a job submitted here, running in a worker process
            with pytest.raises(JobCancelled):
                await blocker.result()
            events = [row[1] for row in read_log(log) if row[2] == "blocker"]
            assert events == ["start", "cancelled"]
            stats = await front.cluster_stats()
    assert (stats.total_completed, stats.total_cancelled, stats.max_workers) == (30, 1, 2)


async def test_a_worker_killed_mid_run_loses_no_job(
    redis_url: str, log: Path, anyio_backend: str
) -> None:
    url = queue_url(redis_url, lease_timeout=1.0)
    count = 200
    async with open_job_pool(0, 1000, store=url, registry=registry) as front:
        with worker_processes(url, 2, max_workers=4, backend=anyio_backend) as workers:
            handles = [
                await front.submit(logged, f"job-{i:03d}", 0.01, job_id=f"job-{i:03d}")
                for i in range(count)
            ]
            victim = workers[0]
            await until(
                lambda: sum(1 for r in read_log(log) if r[0] == victim.pid and r[1] == "end") >= 20
            )
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            killed_at = time.time()
            with anyio.fail_after(60):
                for handle in handles:
                    assert await handle.result() == handle.job_id
            stats = await front.cluster_stats()
    assert all(handle.status is JobStatus.COMPLETED for handle in handles)
    assert (stats.total_completed, stats.queued_tasks, stats.active_workers) == (count, 0, 0)
    rows = read_log(log)
    starts = collections.Counter(item for _, event, item, _ in rows if event == "start")
    assert set(starts) == {f"job-{i:03d}" for i in range(count)}  # every job ran
    first_pid: dict[str, int] = {}
    for pid, event, item, _ in rows:
        if event == "start":
            first_pid.setdefault(item, pid)
    twice = {item for item, n in starts.items() if n > 1}
    # Only jobs the killed process held at the kill ran again: at most one per worker (a job
    # whose code had returned, but whose end was not in Redis yet, counts: at least once).
    assert all(first_pid[item] == victim.pid for item in twice), twice
    assert len(twice) <= 4
    assert all(starts[item] == 2 for item in twice)
    # ... and they ran again only once their lease (1 s) had lapsed.
    for item in twice:
        again = [w for pid, e, i, w in rows if i == item and e == "start" and pid != victim.pid]
        assert again
        assert again[0] >= killed_at - 0.1


async def test_a_worker_that_loses_redis_cancels_its_job_before_the_lease_lapses(
    tmp_path: Path, log: Path, anyio_backend: str
) -> None:
    lease = 1.5
    with redis_server_process(tmp_path) as (server_url, server):
        url = queue_url(server_url, lease_timeout=lease) + "&timeout=0.5"
        release = tmp_path / "release"
        async with open_job_pool(0, 10, store=url, registry=registry) as front:
            with worker_processes(url, 1, max_workers=1, backend=anyio_backend) as (worker,):
                job = await front.submit(logged_until, "fenced", str(release))
                await until(lambda: any(r[1] == "start" for r in read_log(log)))
                server.send_signal(signal.SIGSTOP)  # Redis stops answering (a partition)
                try:
                    await until(lambda: any(r[1] == "cancelled" for r in read_log(log)), 10)
                    # the lease lapses; then Redis comes back
                    await anyio.sleep(lease)
                    release.touch()
                finally:
                    server.send_signal(signal.SIGCONT)
                assert await job.result() == "fenced"
        rows = [r for r in read_log(log) if r[2] == "fenced"]
    assert [event for _, event, _, _ in rows] == ["start", "cancelled", "start", "end"]
    (_, _, _, started), (_, _, _, cancelled), (_, _, _, again), _ = rows
    assert cancelled < started + lease  # cancelled before its lease could lapse
    assert again > cancelled  # never two runs at once
    assert all(pid == worker.pid for pid, *_ in rows)
