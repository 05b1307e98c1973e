"""Redis loses the queue's data (FLUSHALL, a restart without persistence) under running pools:
every handle of a lost job ends with StoreError (never a hang), ``aget`` raises JobNotFound, and
the pool goes on with a new run of the queue; with an AOF fsynced at every write, a kill -9 of
Redis loses nothing (docs/distributed.md, "Running Redis for a queue")."""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import coredis
import pytest

from tests.durable_app import block_unless, double, registry
from tests.servers import START_TIMEOUT, _ping, free_port, redis_binary, redis_server_process
from trio_jobpool import JobHandle, JobNotFound, JobStatus, StoreError, open_job_pool

pytestmark = pytest.mark.anyio

WAIT = 15.0  # seconds any handle may take to end once Redis lost its job (bounded: no hang)


def queue_url(redis_url: str) -> str:
    return f"{redis_url}/0?queue=q{uuid.uuid4().hex[:12]}&lease_timeout=1.0&timeout=1.0"


@contextlib.contextmanager
def server(workdir: Path, port: int, *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    """A redis-server on ``port`` with data in ``workdir``; killed (SIGKILL) and waited for
    on exit unless the test did so already."""
    command = [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
               "--dir", str(workdir), *extra]  # fmt: skip
    log = (workdir / f"redis-{port}.log").open("ab")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _ping(port):  # another process coming up: poll it, bounded in time
            assert process.poll() is None, "redis-server exited"
            assert time.monotonic() < deadline, "redis-server did not answer"
            time.sleep(0.01)
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        log.close()


async def all_lost(pool: object, handles: list[JobHandle[int]]) -> None:
    """Every handle ends FAILED with StoreError naming the loss, within WAIT seconds; aget of
    each raises JobNotFound."""
    with anyio.fail_after(WAIT):
        for handle in handles:
            with pytest.raises(StoreError, match="no longer has the queue's data"):
                await handle.result()
            assert handle.status is JobStatus.FAILED
    for handle in handles:
        with pytest.raises(JobNotFound):
            await pool.aget(handle.job_id)  # type: ignore[attr-defined]


async def test_flushall_ends_every_handle_with_store_error_and_the_pool_goes_on(
    redis_url: str, tmp_path: Path
) -> None:
    url = queue_url(redis_url)
    async with open_job_pool(1, 100, store=url, registry=registry) as pool:
        running = await pool.submit(block_unless, str(tmp_path / "never"))
        with anyio.fail_after(WAIT):
            while running.status is not JobStatus.RUNNING:  # (it runs in this pool: a handle)
                await pool.aget(running.job_id)
        waiting = [await pool.submit(double, i) for i in range(5)]
        scheduled = await pool.submit(double, 5, delay=60)  # lost with the queue too
        async with coredis.Redis.from_url(redis_url) as client:
            await client.flushall()
        await all_lost(pool, [running, *waiting, scheduled])  # type: ignore[list-item]
        assert pool.scheduled_jobs() == []
        assert await (await pool.submit(double, 21)).result() == 42  # a new run of the queue
        assert await (await pool.submit(double, 2, delay=0.05)).result() == 4
        stats = await pool.cluster_stats()
    assert (stats.total_submitted, stats.total_completed, stats.scheduled_tasks) == (2, 2, 0)


async def test_an_idle_worker_process_serves_the_new_run_of_the_queue_after_flushall(
    redis_url: str,
) -> None:
    """A pool whose workers were idle (registered in Redis, and flushed with it) learns of the
    loss at its next call (its lease renewal, or a tick) and claims in the new run, which
    registers its workers again: a job another process submits then runs there."""
    url = queue_url(redis_url)
    async with (
        open_job_pool(0, 10, store=url, registry=registry) as front,
        open_job_pool(1, 10, store=url, registry=registry) as worker,
    ):
        assert await (await front.submit(double, 1)).result() == 2  # the worker is idle again
        lost = front._queue.epoch  # type: ignore[attr-defined]
        async with coredis.Redis.from_url(redis_url) as client:
            await client.flushall()
        with anyio.fail_after(WAIT):
            await front.cluster_stats()  # the front end finds the loss and adopts the new run
            assert front._queue.epoch != lost  # type: ignore[attr-defined]
            assert await (await front.submit(double, 2)).result() == 4
        assert worker.stats().total_completed == 2


async def test_redis_restarted_without_persistence_ends_every_handle_with_store_error(
    tmp_path: Path,
) -> None:
    port = free_port()
    with server(tmp_path, port, "--appendonly", "no") as first:
        url = queue_url(f"redis://127.0.0.1:{port}")
        async with open_job_pool(0, 100, store=url, registry=registry) as front:
            waiting = [await front.submit(double, i) for i in range(20)]
            first.send_signal(signal.SIGKILL)
            first.wait()
            with server(tmp_path, port, "--appendonly", "no"):
                await all_lost(front, waiting)
                again = await front.submit(double, 4)
                async with open_job_pool(1, 10, store=url, registry=registry):
                    assert await again.result() == 8


async def test_an_aof_fsynced_always_loses_no_accepted_job_to_a_kill_of_redis(
    tmp_path: Path,
) -> None:
    port = free_port()
    count = 300
    aof = ("--appendonly", "yes", "--appendfsync", "always")
    with server(tmp_path, port, *aof) as first:
        url = queue_url(f"redis://127.0.0.1:{port}")
        async with open_job_pool(0, 1000, store=url, registry=registry) as front:
            handles = [await front.submit(double, i) for i in range(count)]
            first.send_signal(signal.SIGKILL)  # right after the last submit returned
            first.wait()
            with server(tmp_path, port, *aof):
                stats = await front.cluster_stats()
                assert (stats.total_submitted, stats.queued_tasks) == (count, count)
                async with open_job_pool(4, 10, store=url, registry=registry):
                    with anyio.fail_after(30):
                        for i, handle in enumerate(handles):
                            assert await handle.result() == 2 * i


async def test_an_evicting_maxmemory_policy_is_warned_of_at_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        redis_server_process(tmp_path, "--maxmemory-policy", "allkeys-lru") as (url, _),
        caplog.at_level(logging.WARNING, logger="trio_jobpool.distributed"),
    ):
        async with open_job_pool(0, 10, store=queue_url(url), registry=registry):
            pass
    assert any("maxmemory-policy allkeys-lru" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with (
        redis_server_process(tmp_path, "--maxmemory-policy", "noeviction") as (url, _),
        caplog.at_level(logging.WARNING, logger="trio_jobpool.distributed"),
    ):
        async with open_job_pool(0, 10, store=queue_url(url), registry=registry):
            pass
    assert not [r for r in caplog.records if "maxmemory-policy" in r.getMessage()]


async def test_a_job_redis_lost_alone_ends_its_handle_when_the_pool_looks_it_up(
    redis_url: str,
) -> None:
    url = queue_url(redis_url)
    queue = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["queue"][0]
    async with open_job_pool(0, 100, store=url, registry=registry) as front:
        looked_up, reconnected = await front.submit(double, 1), await front.submit(double, 2)
        async with coredis.Redis.from_url(redis_url) as client:
            # what a failover to a replica that missed the last writes leaves: no such job
            await client.delete([f"{{{queue}}}:job:{h.job_id}" for h in (looked_up, reconnected)])
            with pytest.raises(JobNotFound):
                await front.aget(looked_up.job_id)
            assert looked_up.status is JobStatus.FAILED
            await client.client_kill(
                type_=coredis.PureToken.PUBSUB
            )  # (as a failover drops every connection)
        with anyio.fail_after(WAIT), pytest.raises(StoreError, match="is lost"):
            await reconnected.result()  # the listener looked up what it follows
