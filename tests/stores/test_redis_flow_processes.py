"""Flow control on the distributed pool: three worker processes never run more of a key's jobs
together than its ``max_running``, also when one of them is killed with SIGKILL while it holds
the key's slots (they come back when its leases lapse); limits set by one process apply to all.

The test process is the producer (``max_workers=0``); the workers are processes of
tests/stores/_redis_worker.py, whose jobs log their starts and ends with the time.
"""

from __future__ import annotations

import collections
import signal
import time
from pathlib import Path

import anyio
import pytest

from tests.durable_app import logged, registry
from tests.stores.test_redis_processes import queue_url, read_log, until, worker_processes
from trio_jobpool import JobStatus, KeyStats, Limit, Rate, open_job_pool

pytestmark = pytest.mark.anyio


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "jobs.log"
    monkeypatch.setenv("JOBPOOL_TEST_LOG", str(path))  # inherited by the worker processes
    return path


def most_at_once(
    rows: list[tuple[int, str, str, float]], items: set[str], dead: dict[int, float]
) -> int:
    """The most jobs of ``items`` running at one moment, by their logged starts and ends; a
    job of a process in ``dead`` (pid: when it was killed) that never logged its end stopped
    running at the kill."""
    events: list[tuple[float, int]] = []
    open_runs: dict[tuple[int, str], float] = {}
    for pid, event, item, at in rows:
        if item not in items:
            continue
        if event == "start":
            open_runs[(pid, item)] = at
            events.append((at, 1))
        elif event in ("end", "cancelled") and (pid, item) in open_runs:
            del open_runs[(pid, item)]
            events.append((at, -1))
    for pid, _ in open_runs:
        assert pid in dead, f"a job of live process {pid} never ended"
        events.append((dead[pid], -1))
    events.sort(key=lambda e: (e[0], e[1]))  # an end and a start at the same instant: end first
    most = current = 0
    for _, change in events:
        current += change
        most = max(most, current)
    return most


async def test_three_processes_never_exceed_a_keys_max_running_even_when_one_is_killed(
    redis_url: str,
    log: Path,
    anyio_backend: str,
) -> None:
    url = queue_url(redis_url, lease_timeout=1.0)
    count = 30
    async with open_job_pool(0, 1000, store=url, registry=registry) as front:
        await front.set_limit("k", max_running=2)
        with worker_processes(url, 3, max_workers=4, backend=anyio_backend) as workers:
            handles = [
                await front.submit(logged, f"k-{i:02d}", 0.2, job_id=f"k-{i:02d}", key="k")
                for i in range(count)
            ]
            free = [
                await front.submit(logged, f"free-{i}", 0.2, job_id=f"free-{i}") for i in range(6)
            ]
            # the key's backlog blocks no other job: every free job starts within its first
            # rounds, long before the key's last job
            with anyio.fail_after(30):
                for handle in free:
                    await handle.wait()
            victim_pid = 0

            def victim_runs_the_key() -> bool:
                nonlocal victim_pid
                running: dict[int, set[str]] = collections.defaultdict(set)
                for pid, event, item, _ in read_log(log):
                    if item.startswith("k-"):
                        if event == "start":
                            running[pid].add(item)
                        else:
                            running[pid].discard(item)
                for pid, items in running.items():
                    if items:
                        victim_pid = pid
                        return True
                return False

            await until(victim_runs_the_key)
            victim = next(process for process in workers if process.pid == victim_pid)
            victim.send_signal(signal.SIGKILL)
            victim.wait()
            killed_at = time.time()
            with anyio.fail_after(60):
                for handle in handles:
                    assert await handle.result() == handle.job_id
    assert all(handle.status is JobStatus.COMPLETED for handle in handles)
    rows = read_log(log)
    items = {f"k-{i:02d}" for i in range(count)}
    assert most_at_once(rows, items, {victim_pid: killed_at}) <= 2
    assert most_at_once(rows, items, {victim_pid: killed_at}) == 2  # the limit was used
    # the killed process's job ran again elsewhere, once its lease had lapsed
    again = [r for r in rows if r[1] == "start" and r[2] in items and r[0] != victim_pid]
    starts = collections.Counter(
        item for _, event, item, _ in rows if event == "start" and item in items
    )
    assert set(starts) == items
    assert sum(starts.values()) - count <= 2  # at most the two jobs the victim held
    assert again


async def test_limits_are_the_queues_for_every_process(
    redis_url: str,
    log: Path,
    anyio_backend: str,
) -> None:
    url = queue_url(redis_url)
    async with (
        open_job_pool(
            2, 100, store=url, registry=registry, key_limit=Limit(max_running=1)
        ) as first,
        open_job_pool(2, 100, store=url, registry=registry) as second,
    ):
        await first.set_limit("api", max_running=3, rate=Rate(10, 60))
        assert await second.limits() == {"api": Limit(max_running=3, rate=Rate(10, 60))}
        assert second.key_stats("api").limit == Limit(max_running=3, rate=Rate(10, 60))
        # the default (key_limit) is the queue's: the second process keeps it too
        handles = [
            await second.submit(logged, f"t{i}", 0.3, job_id=f"t{i}", key="tenant")
            for i in range(3)
        ]
        await until(lambda: sum(1 for r in read_log(log) if r[1] == "start") >= 1)
        with anyio.fail_after(30):
            for handle in handles:
                await handle.wait()
        rows = read_log(log)
        assert most_at_once(rows, {"t0", "t1", "t2"}, {}) == 1
        assert handles[0].key == "tenant"
        await second.set_limit("api")
        assert await first.limits() == {}
        assert first.key_stats("tenant") == KeyStats("tenant", 0, 0, Limit(max_running=1))


async def test_fair_and_aging_are_refused_on_a_distributed_pool(redis_url: str) -> None:
    url = queue_url(redis_url)
    with pytest.raises(ValueError, match="distributed"):
        open_job_pool(1, 10, store=url, registry=registry, fair=True)
    with pytest.raises(ValueError, match="distributed"):
        open_job_pool(1, 10, store=url, registry=registry, aging=5)
