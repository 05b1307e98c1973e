"""Fencing in real worker processes (tests/stores/_lease_jobs.py) on a real redis-server: a
worker paused (SIGSTOP) or whose event loop a job blocks past the lease runs no job body to its
end after that (the job runs again elsewhere, once), and the per-process totals add up to the
cluster's (docs/distributed.md, "Leases, fencing and at-least-once")."""

from __future__ import annotations

import collections
import contextlib
import json
import select
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import coredis
import pytest

from tests.stores import _lease_jobs
from tests.stores._lease_jobs import (
    block_once,
    block_then_shield,
    block_while_napping,
    nap,
    nap_while_blocked,
    registry,
)
from trio_jobpool import JobStatus, open_job_pool

pytestmark = pytest.mark.anyio

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "jobs.log"
    monkeypatch.setenv("JOBPOOL_TEST_LOG", str(path))  # inherited by the worker processes
    (tmp_path / "stats").mkdir()
    monkeypatch.setenv("JOBPOOL_TEST_STATS", str(tmp_path / "stats"))
    return path


@contextlib.contextmanager
def worker(url: str, max_workers: int, backend: str) -> Iterator[subprocess.Popen[str]]:
    """A worker process (its pool open on entry); stopped gracefully on exit (its stdin
    closes; killed if it does not stop in time), and always waited for."""
    command = [sys.executable, "-m", "tests.stores._lease_jobs", url, str(max_workers), backend]
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        cwd=Path(__file__).parents[2],
    )  # fmt: skip
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], READY_TIMEOUT)
        line = process.stdout.readline() if ready else ""
        assert line.strip() == "ready", f"worker {process.pid} did not start: {line!r}"
        yield process
    finally:
        process.send_signal(signal.SIGCONT)  # (in case the test paused it)
        assert process.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            process.stdin.close()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        assert process.stdout is not None
        process.stdout.close()


def read_log(log: Path) -> list[tuple[int, str, str]]:
    """(pid, event, item) per line of the jobs' log."""
    if not log.exists():
        return []
    lines = log.read_text().splitlines()
    return [(int(pid), event, item) for pid, event, item, _ in map(str.split, lines)]


def process_stats(log: Path) -> dict[int, dict[str, Any]]:
    """Each worker process's final ``stats()``, by pid."""
    folder = log.parent / "stats"
    return {int(path.stem): json.loads(path.read_text()) for path in folder.glob("*.json")}


async def until(predicate: Callable[[], bool], timeout: float = 30) -> None:
    """Wait until ``predicate()`` holds, looking every 10 ms (another process's progress
    cannot be awaited as an event here); bounded."""
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


def queue_url(redis_url: str, lease: float, max_crashes: int = 3) -> tuple[str, str]:
    name = f"l{uuid.uuid4().hex[:12]}"
    return f"{redis_url}/0?queue={name}&lease_timeout={lease}&max_crashes={max_crashes}", name


TOTALS = ["total_completed", "total_failed", "total_cancelled", "total_timed_out", "total_retried"]


async def test_a_worker_paused_past_its_lease_finishes_no_job_that_ran_elsewhere(
    redis_url: str, log: Path, anyio_backend: str
) -> None:
    lease = 1.0
    url, _ = queue_url(redis_url, lease)
    count = 8
    async with open_job_pool(0, 100, store=url, registry=registry) as front:
        with worker(url, 2, anyio_backend) as paused, worker(url, 2, anyio_backend) as other:
            handles = [await front.submit(nap, f"n{i}", 1.0, job_id=f"n{i}") for i in range(count)]
            await until(lambda: any(p == paused.pid for p, e, _ in read_log(log) if e == "start"))
            paused.send_signal(signal.SIGSTOP)  # mid-job: its lease lapses meanwhile
            await anyio.sleep(4 * lease)
            paused.send_signal(signal.SIGCONT)
            with anyio.fail_after(30):
                for handle in handles:
                    assert await handle.result() == handle.job_id
            cluster = await front.cluster_stats()
    rows = read_log(log)
    ends = collections.Counter(item for _, event, item in rows if event == "end")
    starts = collections.Counter(item for _, event, item in rows if event == "start")
    assert ends == {f"n{i}": 1 for i in range(count)}  # each body ran to its end once
    assert any(n > 1 for n in starts.values())  # (the paused worker's jobs ran again)
    assert all(handle.status is JobStatus.COMPLETED for handle in handles)
    stats = process_stats(log)
    assert set(stats) == {paused.pid, other.pid}
    for name in TOTALS:
        assert sum(s[name] for s in stats.values()) == getattr(cluster, name), name
    assert cluster.total_completed == count


async def test_a_job_that_blocks_the_loop_past_its_lease_is_a_stall_not_a_crash(
    redis_url: str, log: Path, anyio_backend: str
) -> None:
    lease = 1.0
    url, queue = queue_url(redis_url, lease, max_crashes=1)
    async with open_job_pool(0, 100, store=url, registry=registry) as front:
        with worker(url, 2, anyio_backend) as process:
            napping = await front.submit(nap, "napping", 2.0, job_id="napping")
            await until(lambda: any(i == "napping" for _, _, i in read_log(log)))
            # blocks the worker's loop for 3.5 leases; this process reaps the lapsed leases
            blocking = await front.submit(block_once, "blocking", 3.5 * lease, job_id="blocking")
            with anyio.fail_after(30):
                assert await napping.result() == "napping"
                assert await blocking.result() == "blocking"
            cluster = await front.cluster_stats()
    rows = read_log(log)
    ends = collections.Counter(item for _, event, item in rows if event == "end")
    starts = collections.Counter(item for _, event, item in rows if event == "start")
    # The harmless job on the same loop, and the blocking one: each body ran to its end once.
    assert ends == {"napping": 1, "blocking": 1}
    assert starts == {"napping": 2, "blocking": 2}
    stats = process_stats(log)[process.pid]
    for name in TOTALS:
        assert stats[name] == getattr(cluster, name), name
    assert cluster.total_completed == 2
    # Redis counted the lapse as a stall of the worker, not as a crash
    async with coredis.Redis.from_url(redis_url, decode_responses=True) as client:
        for job_id in ("napping", "blocking"):
            fields = await client.hgetall(f"{{{queue}}}:job:{job_id}")
            assert (fields["crashes"], fields.get("stalls")) == ("0", "1"), job_id


async def test_a_fence_that_passes_in_a_shielded_part_of_a_job_waits_for_its_end(
    redis_url: str, log: Path
) -> None:
    lease = 1.0
    url, _ = queue_url(redis_url, lease)
    async with open_job_pool(1, 10, store=url, registry=registry) as pool:  # in this process
        handle = await pool.submit(block_then_shield, "s", 2 * lease)
        with anyio.fail_after(30):
            assert await handle.result() == "s"
        stats = await pool.cluster_stats()
    events = [event for _, event, _ in read_log(log)]
    assert events == ["start", "shielded", "start", "end"]  # fenced after its shielded part
    assert (stats.total_completed, pool.stats().total_completed) == (1, 1)


async def test_a_job_whose_nap_ended_during_a_stall_is_fenced_before_it_resumes(
    redis_url: str, log: Path, anyio_backend: str
) -> None:
    # A job's await completes during the stall, before its fence: when the loop runs again,
    # what it awaited is done (on asyncio, AnyIO's scope cannot cancel it then: the pool's own
    # per-job timer must, in a way AnyIO's scope takes as its own cancellation).
    lease = 1.0
    url, _ = queue_url(redis_url, lease)
    _lease_jobs.napping = anyio.Event()
    try:
        async with open_job_pool(2, 10, store=url, registry=registry) as pool:  # this process
            blocking = await pool.submit(block_while_napping, "b", 2.5 * lease, job_id="b")
            napping = await pool.submit(nap_while_blocked, "a", 0.1, job_id="a")
            with anyio.fail_after(30):
                assert await napping.result() == "a"
                assert await blocking.result() == "b"
            cluster = await pool.cluster_stats()
            stats = pool.stats()
    finally:
        _lease_jobs.napping = None
    rows = read_log(log)
    ends = collections.Counter(item for _, event, item in rows if event == "end")
    starts = collections.Counter(item for _, event, item in rows if event == "start")
    assert ends == {"a": 1, "b": 1}  # the nap that ended in the stall did not run on to its end
    assert starts == {"a": 2, "b": 2}
    assert (cluster.total_completed, stats.total_completed) == (2, 2)
