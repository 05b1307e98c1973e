"""Wake-ups that scale: what a job costs in Redis does not grow with the number of idle worker
processes. Each idle worker is registered in Redis; a submitted job wakes one registered
worker's process (a message on that process's own channel), which claims it: one claim per job,
not one per idle process (stores/_redis_scripts.py, "Wake-ups").

Measured from outside, with Redis's own command counters (``INFO commandstats``): a front end
(a pool with no workers) submits jobs one at a time to a queue served by 1, then 4 idle worker
processes (tests/stores/_redis_worker.py).
"""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import coredis
import pytest

from tests.durable_app import registry
from trio_jobpool import JobHandle, JobStatus, open_job_pool

from .test_redis_processes import worker_processes

pytestmark = pytest.mark.anyio

JOBS = 60
STARTED_TIMEOUT = 20.0  # seconds for the worker processes to be seen in Redis


async def _script_calls(client: coredis.Redis[str]) -> int:
    """How many scripts the server has run (EVALSHA and EVAL calls) since it started."""
    stats: Any = await client.info("commandstats")
    calls = 0
    for name in ("cmdstat_evalsha", "cmdstat_eval"):
        entry = stats.get(name)
        if entry:
            calls += int(entry["calls"])
    return calls


async def _script_calls_per_job(redis_url: str, processes: int, backend: str) -> float:
    queue = f"w{uuid.uuid4().hex[:12]}"
    url = f"{redis_url}/0?queue={queue}&lease_timeout=60"
    client: coredis.Redis[str] = coredis.Redis.from_url(redis_url, decode_responses=True)
    async with client:
        with worker_processes(url, processes, 10, backend):
            async with open_job_pool(0, JOBS, store=url, registry=registry) as front:
                # Every worker process has said it is there (its first lease renewal, sent as
                # its pool opens, with its first claim), and one job has gone through.
                with anyio.fail_after(STARTED_TIMEOUT):
                    while (await front.cluster_stats()).max_workers < 10 * processes:
                        await anyio.sleep(0.01)
                    assert await (await front.submit("double", -1)).result() == -2
                before = await _script_calls(client)
                handles: list[JobHandle[int]] = []
                for i in range(JOBS):
                    handles.append(await front.submit("double", i))
                    await handles[-1].wait()  # one job at a time: every submit finds them idle
                after = await _script_calls(client)
            assert [h.status for h in handles] == [JobStatus.COMPLETED] * JOBS
            assert [await h.result() for h in handles] == [2 * i for i in range(JOBS)]
    return (after - before) / JOBS


async def test_the_scripts_a_job_costs_do_not_grow_with_idle_processes(
    redis_url: str, anyio_backend: str
) -> None:
    one = await _script_calls_per_job(redis_url, 1, anyio_backend)
    four = await _script_calls_per_job(redis_url, 4, anyio_backend)
    # A job costs four scripts: its submit, the claim that takes it, the call that carries its
    # end (and claims again), and the front end's read of the end. Were every idle process
    # woken by a submit, each would claim: four processes would cost three more per job
    # (measured on the broadcast wake-ups of 7f97ad4: 4.0 with one process, 7.0 with four).
    assert one <= 4.5, one
    assert four <= one + 0.5, (one, four)
