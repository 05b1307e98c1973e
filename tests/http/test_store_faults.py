"""A distributed pool and its HTTP app while Redis hangs: a real ``redis-server``, paused with
SIGSTOP (it keeps its connections and answers nothing, as a partition or a stuck host would).

What is checked: each call to Redis gives up after the store's ``timeout``, once (coredis's own
retries made it three times as long); a submit that reached Redis and got no answer is
reported as unknown, with the job's id (it may well have been accepted), never as refused; and
``/metrics`` answers within Prometheus's default scrape timeout with what this process knows,
saying that the cluster gauges are missing. The time bounds asserted are those of the
documented timeout (correctness bounds, with generous margins), not performance figures.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.servers import redis_server_process
from trio_jobpool import (
    JobPool,
    JobRegistry,
    StoreError,
    StoreOutcomeUnknown,
    open_job_pool,
)
from trio_jobpool.http import create_app

pytestmark = pytest.mark.anyio

TIMEOUT = 1.0  # the store's timeout in these tests, seconds
SCRAPE_TIMEOUT = 10.0  # Prometheus's default scrape timeout, seconds

registry = JobRegistry()


@registry.job(name="add")
async def add(a: int, b: int) -> int:
    return a + b


@contextlib.contextmanager
def paused(server: subprocess.Popen[bytes]) -> Iterator[None]:
    """Redis stops answering for the block (SIGSTOP), and resumes after it (SIGCONT)."""
    server.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        server.send_signal(signal.SIGCONT)


@contextlib.asynccontextmanager
async def submitter(
    tmp_path: Path, timeout: float = TIMEOUT
) -> AsyncIterator[tuple[subprocess.Popen[bytes], JobPool, httpx.AsyncClient]]:
    """A Redis server of its own, a pool on it with no workers (its link to Redis sends only
    submits, so a paused Redis meets a submit, not a claim) and a client of its app."""
    with redis_server_process(tmp_path) as (url, server):
        store = f"{url}/0?queue=stalled&timeout={timeout:g}"
        async with open_job_pool(0, 100, store=store, registry=registry) as pool:
            app = create_app(pool, registry)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                # connected, and the link idle: a first submit has gone there and back
                first = await client.post("/api/v1/jobs", json={"name": "add", "args": [0, 0]})
                assert first.status_code == 202
                yield server, pool, client


async def _until_found(client: httpx.AsyncClient, job_id: str) -> httpx.Response:
    """GET the job until Redis, resumed, has it. Polled (bounded): nothing tells when a
    paused server has read what waited in its connections."""
    with anyio.fail_after(10):
        while True:
            answer = await client.get(f"/api/v1/jobs/{job_id}")
            if answer.status_code != 404:
                return answer
            await anyio.sleep(0.05)


async def test_a_submit_redis_took_without_answering_is_unknown_not_refused(
    tmp_path: Path,
) -> None:
    async with submitter(tmp_path) as (server, _, client):
        with paused(server):
            started = time.monotonic()
            with anyio.fail_after(10 * TIMEOUT):
                response = await client.post("/api/v1/jobs", json={"name": "add", "args": [2, 3]})
            elapsed = time.monotonic() - started
        body = response.json()
        assert response.status_code == 504, body
        assert body["error"] == "outcome_unknown"
        job_id = body["job_id"]  # named by the app, as the client gave none
        assert job_id in body["message"]
        assert response.headers["location"] == f"/api/v1/jobs/{job_id}"
        # One call to Redis, bounded by the store's timeout (it took three before).
        assert elapsed < 2.5 * TIMEOUT
        # The job was in fact written: Redis read it on waking up. The answer did not say
        # "not accepted", which would have been false.
        found = await _until_found(client, job_id)
        assert found.status_code == 200
        assert found.json()["status"] == "queued"


async def test_pool_submit_to_a_paused_redis_raises_store_outcome_unknown(tmp_path: Path) -> None:
    async with submitter(tmp_path) as (server, pool, client):
        with (
            paused(server),
            pytest.raises(StoreOutcomeUnknown) as caught,
            anyio.fail_after(10 * TIMEOUT),
        ):
            await pool.submit(add, 1, 1, job_id="maybe")
        assert caught.value.job_id == "maybe"
        assert isinstance(caught.value, StoreError)  # (a StoreError, as before, for callers)
        assert "may or may not have been accepted" in str(caught.value)
        assert (await _until_found(client, "maybe")).json()["status"] == "queued"


def _samples(text: str) -> dict[str, float]:
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }


async def test_metrics_answer_within_a_scrape_timeout_while_redis_hangs(tmp_path: Path) -> None:
    # The store's default timeout (5 s): a Redis call alone takes half a scrape timeout.
    async with submitter(tmp_path, timeout=5.0) as (server, _, client):
        healthy = _samples((await client.get("/metrics")).text)
        assert healthy["jobpool_cluster_stats_fresh"] == 1
        assert healthy["jobpool_cluster_queued_tasks"] == 1  # the first submit waits
        with paused(server):
            with anyio.fail_after(SCRAPE_TIMEOUT):
                response = await client.get("/metrics")
        assert response.status_code == 200
        stalled = _samples(response.text)
        assert stalled["jobpool_cluster_stats_fresh"] == 0
        assert "jobpool_cluster_queued_tasks" not in stalled  # left out, not stale figures
        assert stalled["jobpool_jobs_submitted_total"] == 1  # what this process knows
        resumed = _samples((await client.get("/metrics")).text)
        assert resumed["jobpool_cluster_stats_fresh"] == 1
