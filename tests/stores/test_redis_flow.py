"""Flow control in the Redis queue's scripts, against a real server: a claim takes only jobs of
keys under their limit, in priority order, without scanning the backlog of keys at their limit;
a key's slot comes back at every way its job stops running (end, retry, deferral, hand-back, a
lapsed lease); rate windows; limits and the default; the waiting count; a Cluster."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import coredis
import pytest

from tests.servers import redis_cluster
from trio_jobpool import JobRegistry, open_job_pool
from trio_jobpool.stores._redis_queue import NewJob, RedisQueue

pytestmark = pytest.mark.anyio

LEASE = 60_000


def job(job_id: str, key: str | None = None, priority: int = 5) -> NewJob:
    return NewJob(job_id, "double", [1], priority, {}, None, key)


async def claim_ids(queue: RedisQueue, owner: str, count: int) -> list[str]:
    claimed, _ = await queue.claim(owner, count, LEASE)
    return [c.job_id for c in claimed]


async def running(queue: RedisQueue) -> dict[str, str]:
    return dict(await queue.client.hgetall(f"{queue.prefix}:krun"))


async def test_a_key_at_its_limit_blocks_no_other_job(queue: RedisQueue) -> None:
    await queue.set_limit("big", {"max_running": 1, "rate": None})
    _, waiting = await queue.submit([job(f"b{i}", "big") for i in range(1000)], None)
    assert waiting == 1000
    _, waiting = await queue.submit([job("free", None, 9), job("small", "small", 9)], None)
    assert waiting == 1002
    # the big key's backlog is ahead by priority and order, yet one claim gets the others
    assert await claim_ids(queue, "p1", 5) == ["b0", "free", "small"]
    assert await running(queue) == {"big": "1", "small": "1"}
    stats = await queue.stats(60_000)
    assert stats.waiting == 999
    assert stats.running == 3
    # each of the big key's jobs waits for the end of the one before
    assert await claim_ids(queue, "p2", 5) == []
    assert await queue.end("p1", [("b0", "completed", {})]) == ["b0"]
    assert await claim_ids(queue, "p2", 5) == ["b1"]
    claimed = await queue.claim("p2", 1, LEASE)
    assert claimed[0] == []


async def test_strict_priority_among_eligible_keys(queue: RedisQueue) -> None:
    await queue.set_limit("held", {"max_running": 0, "rate": None})
    await queue.submit(
        [
            job("held1", "held", 1),
            job("b5", "b", 5),
            job("plain3", None, 3),
            job("c2", "c", 2),
            job("b2", "b", 2),
            job("plain2", None, 2),
        ],
        None,
    )
    assert await claim_ids(queue, "p", 10) == ["c2", "b2", "plain2", "plain3", "b5"]
    await queue.set_limit("held", None)
    assert await claim_ids(queue, "p", 10) == ["held1"]


async def test_a_slot_comes_back_at_every_way_a_job_stops_running(queue: RedisQueue) -> None:
    await queue.set_limit("k", {"max_running": 1, "rate": None})
    await queue.submit([job(f"j{i}", "k") for i in range(6)], None)
    assert await claim_ids(queue, "p", 3) == ["j0"]
    await queue.end("p", [("j0", "failed", {})])  # an end
    assert await claim_ids(queue, "p", 3) == ["j1"]
    assert await queue.retry("p", [("j1", 60_000, {}, False)]) == ["j1"]  # a retry
    assert await claim_ids(queue, "p", 3) == ["j2"]
    assert await queue.retry("p", [("j2", 60_000, {}, True)]) == ["j2"]  # a deferral
    assert await claim_ids(queue, "p", 3) == ["j3"]
    assert await queue.give_back("p", [("j3", True, {}, False)], 3) == ["j3"]  # a hand-back
    assert await claim_ids(queue, "p", 3) == ["j3"]  # back in its place, first
    # a lapsed lease (its process died): the reaper frees the slot
    await queue.client.zadd(f"{queue.prefix}:leases", {"j3": 0})
    assert await queue.reap(3) == (1, 0)
    assert await claim_ids(queue, "q", 3) == ["j3"]
    await queue.end("q", [("j3", "completed", {})])
    # a stale end of the lapsed holder changes nothing: the slot is not freed twice
    assert await queue.end("p", [("j3", "completed", {})]) == []
    assert await claim_ids(queue, "q", 3) == ["j4"]
    assert await running(queue) == {"k": "1"}


async def test_cancelling_the_head_of_a_key_offers_its_next_job(queue: RedisQueue) -> None:
    await queue.submit([job("a", "k"), job("b", "k"), job("c", "k")], None)
    await queue.set_limit("k", {"max_running": 1, "rate": None})
    assert await queue.cancel("a") == "cancelled"
    assert await queue.cancel("c") == "cancelled"
    assert (await queue.stats(60_000)).waiting == 1
    assert await claim_ids(queue, "p", 3) == ["b"]
    assert (await queue.stats(60_000)).waiting == 0


async def test_the_bound_counts_the_jobs_of_keys_at_their_limit(queue: RedisQueue) -> None:
    await queue.set_limit("k", {"max_running": 0, "rate": None})
    seqs, waiting = await queue.submit([job(f"j{i}", "k") for i in range(3)], 3)
    assert (seqs, waiting) == ([1, 2, 3], 3)
    seqs, _ = await queue.submit([job("more", None)], 3)
    assert seqs == [-2]  # FULL


async def test_a_rate_window_holds_count_starts_per_window(queue: RedisQueue) -> None:
    await queue.set_limit("api", {"max_running": None, "rate": {"count": 3, "per": 0.4}})
    await queue.submit([job(f"j{i}", "api") for i in range(7)], None)
    claimed, due_in = await queue.claim("p", 10, LEASE)
    taken = len(claimed)
    assert taken == 3
    assert due_in is not None
    assert 0 < due_in <= 401
    with anyio.fail_after(10):  # bounded: 7 jobs at 3 per 0.4 s
        while taken < 7:
            # the claim says when the window frees a start: wait that long, then claim
            await anyio.sleep((due_in if due_in is not None else 100) / 1000)
            claimed, due_in = await queue.claim("p", 10, LEASE)
            taken += len(claimed)
    # the server's own record of the starts: never more than 3 in any 0.4 s
    started = []
    for i in range(7):
        stored = await queue.client.hget(f"{queue.prefix}:job:j{i}", "started_at")
        assert stored is not None
        started.append(float(stored))
    started.sort()
    for i in range(len(started) - 3):
        assert started[i + 3] - started[i] >= 0.4, started


async def test_the_default_limit_and_own_limits(queue: RedisQueue) -> None:
    await queue.submit([job(f"t{i}", "tenant") for i in range(3)], None)
    await queue.submit([job(f"v{i}", "vip") for i in range(3)], None)
    await queue.set_limit("", {"max_running": 1, "rate": None})  # the queue's default
    await queue.set_limit("vip", {"max_running": 2, "rate": None})
    assert await queue.limits() == {
        "": {"max_running": 1, "rate": None},
        "vip": {"max_running": 2, "rate": None},
    }
    assert sorted(await claim_ids(queue, "p", 10)) == ["t0", "v0", "v1"]
    await queue.set_limit("", None)
    assert sorted(await claim_ids(queue, "p", 10)) == ["t1", "t2"]


async def test_flow_control_works_on_a_cluster(tmp_path: Path) -> None:
    with redis_cluster(tmp_path) as urls:
        host, port = urls[0].removeprefix("redis://").split(":")
        async with coredis.RedisCluster(host, int(port), decode_responses=True) as client:
            queue = RedisQueue(client, "flowcluster")  # type: ignore[arg-type]
            await queue.open_epoch()
            await queue.set_limit("k", {"max_running": 1, "rate": {"count": 5, "per": 60}})
            await queue.submit([job("a", "k"), job("b", "k"), job("c", None)], None)
            assert await claim_ids(queue, "p", 5) == ["a", "c"]
            await queue.end("p", [("a", "completed", {})])
            assert await claim_ids(queue, "p", 5) == ["b"]
            limits = await queue.limits()
            assert json.dumps(limits["k"], sort_keys=True) == json.dumps(
                {"max_running": 1, "rate": {"count": 5, "per": 60}}, sort_keys=True
            )


async def test_a_job_read_back_from_redis_keeps_its_key(redis_url: str, redis_prefix: str) -> None:
    """``aget`` of a keyed job this process has no handle of (another process ran it, or it
    ended) reads its key back from the job's hash; a job without a key reads back ``None``."""
    registry = JobRegistry()

    @registry.job(name="double")
    async def double(value: int) -> int:
        await anyio.lowlevel.checkpoint()
        return 2 * value

    store = f"{redis_url}/0?queue={redis_prefix.strip('{}')}"
    async with (
        open_job_pool(1, 10, store=store, registry=registry) as runner,
        open_job_pool(0, 10, store=store, registry=registry) as reader,
    ):
        keyed = await runner.submit(double, 2, job_id="keyed", key="tenant:1")
        plain = await runner.submit(double, 3, job_id="plain")
        assert (await keyed.result(), await plain.result()) == (4, 6)
        read = await reader.aget("keyed")
        assert (read.status.value, read.key) == ("completed", "tenant:1")
        assert (await reader.aget("plain")).key is None
