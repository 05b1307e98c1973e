"""Load: 5,000 HTTP submits, 50 at a time, against a real server whose queue fills up. Every
job the server accepted ends; every refusal is a 429 with a Retry-After. Bounded in count and
in time; nothing is timed against a threshold."""

from __future__ import annotations

import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator

import anyio
import httpx
import pytest

from ._served import Server, checked_server

SUBMITS = 5_000
CONCURRENCY = 50
LIMIT = 240  # seconds for the whole test, a bound, not a measure


@pytest.fixture(params=["trio", "asyncio"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server on Hypercorn's trio worker, then one on its asyncio worker."""
    # 2 workers at 50 ms a job run 40 jobs a second: far fewer than the submits arrive.
    options = ("--workers", "2", "--queue-size", "100", "--submit-wait", "0.01")
    log_dir = tmp_path_factory.mktemp("load-server")
    with checked_server(log_dir, backend=request.param, options=options) as running:
        yield running


def test_concurrent_submits_end_or_are_told_to_retry(server: Server) -> None:
    accepted: list[str] = []
    statuses: Counter[int] = Counter()
    retry_after: set[str] = set()

    async def submitter(client: httpx.AsyncClient, numbers: Iterator[int]) -> None:
        for n in numbers:
            body = {"name": "nap", "args": [0.05], "job_id": f"load-{n}"}
            response = await client.post("api/v1/jobs", json=body)
            statuses[response.status_code] += 1
            if response.status_code == 202:
                accepted.append(response.json()["job_id"])
            elif response.status_code == 429:
                assert response.json()["error"] == "queue_full"
                retry_after.add(response.headers["retry-after"])

    async def waiter(client: httpx.AsyncClient, job_ids: Iterator[str]) -> None:
        for job_id in job_ids:
            path = f"api/v1/jobs/{urllib.parse.quote(job_id)}"
            while True:  # each ?wait answers within 60 s, ended or not
                job = (await client.get(path, params={"wait": 60})).json()
                if job["status"] not in ("queued", "running"):
                    break
            assert job["status"] == "completed", job
            assert job["result"] == 0.05

    async def main() -> None:
        limits = httpx.Limits(max_connections=CONCURRENCY)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=30) as client:
            with anyio.fail_after(LIMIT):
                numbers = iter(range(SUBMITS))
                async with anyio.create_task_group() as tg:
                    for _ in range(CONCURRENCY):
                        tg.start_soon(submitter, client, numbers)
                job_ids = iter(accepted)
                async with anyio.create_task_group() as tg:
                    for _ in range(CONCURRENCY):
                        tg.start_soon(waiter, client, job_ids)

    started = time.monotonic()
    anyio.run(main, backend="trio")
    print(  # (shown with pytest -s: what the run did, not a threshold)
        f"{SUBMITS} submits in {time.monotonic() - started:.1f} s: {statuses[202]} accepted "
        f"and ended, {statuses[429]} refused with 429 (Retry-After: {sorted(retry_after)})"
    )
    assert sum(statuses.values()) == SUBMITS
    assert set(statuses) == {202, 429}, statuses
    assert len(set(accepted)) == len(accepted) == statuses[202]
    assert retry_after
    assert all(1 <= int(seconds) <= 300 for seconds in retry_after)
    stats = server.stats()
    assert stats["total_submitted"] == stats["total_completed"] == len(accepted)
    assert stats["queued_tasks"] == stats["active_workers"] == 0
