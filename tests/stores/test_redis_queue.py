"""The Redis job queue's scripts (trio_jobpool/stores/_redis_queue.py) against a real server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import coredis
import pytest

from tests.servers import redis_cluster
from trio_jobpool.stores._redis_queue import Fields, QueueLost, RedisQueue

pytestmark = pytest.mark.anyio


@pytest.fixture
async def queue(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisQueue]:
    async with coredis.Redis.from_url(redis_url, decode_responses=True) as client:
        name = redis_prefix.strip("{}")
        queue = RedisQueue(client, name)
        await queue.open_epoch()
        yield queue
        keys = [key async for key in client.scan_iter(match=f"{{{name}}}*")]
        if keys:
            await client.delete(keys)


def job(job_id: str, priority: int = 5) -> tuple[str, str, list[int], int, dict[str, object]]:
    return (job_id, "double", [1], priority, {})


async def test_claims_come_by_priority_then_submission_order(queue: RedisQueue) -> None:
    seqs, waiting = await queue.submit([job("a", 5), job("b", 1), job("c", 5), job("d", 1)], None)
    assert (seqs, waiting) == ([1, 2, 3, 4], 4)
    first, _ = await queue.claim("p1", 3, lease_ms=10_000)
    second, _ = await queue.claim("p2", 3, lease_ms=10_000)
    assert [c.job_id for c in first] == ["b", "d", "a"]
    assert [c.job_id for c in second] == ["c"]
    assert first[0].args == [1]
    assert first[0].attempts == 1
    assert await queue.claim("p2", 3, lease_ms=10_000) == ([], None)


async def test_a_live_id_is_refused_and_an_ended_one_can_be_used_again(queue: RedisQueue) -> None:
    assert (await queue.submit([job("x"), job("x")], None))[0] == [1, -1]
    assert len((await queue.claim("p1", 1, lease_ms=10_000))[0]) == 1
    assert (await queue.submit([job("x")], None))[0] == [-1]  # running counts as live
    assert await queue.end("p1", [("x", "completed", {"result": "2"})]) == ["x"]
    assert (await queue.submit([job("x")], None))[0] == [2]  # (a refused submit takes no number)
    stored = await queue.job("x")
    assert (stored["status"], stored["seq"], stored["attempts"]) == ("queued", "2", "0")
    assert not {"result", "ended_by", "finished_at", "owner"} & set(stored)  # the old run's


async def test_scripts_the_server_lost_are_loaded_again(queue: RedisQueue) -> None:
    """A server that restarted (or ran SCRIPT FLUSH) no longer has the scripts: the call that
    finds one missing loads it and is sent once more (it did not run)."""
    assert (await queue.submit([job("a")], None))[0] == [1]
    await queue.client.script_flush()
    assert (await queue.submit([job("b")], None))[0] == [2]
    await queue.client.script_flush()
    claimed, _ = await queue.claim("p1", 5, lease_ms=10_000)
    assert [c.job_id for c in claimed] == ["a", "b"]
    await queue.client.script_flush()
    assert await queue.fetch(["a", "nobody"]) == [await queue.job("a"), {}]
    assert (await queue.stats(1000)).counters["submitted"] == 2


async def test_only_the_holder_of_a_lease_renews_or_ends_it(queue: RedisQueue) -> None:
    await queue.submit([job("a"), job("b")], None)
    await queue.claim("p1", 2, lease_ms=10_000)
    assert await queue.renew("p1", ["a", "b"], lease_ms=10_000) == ([], [])
    assert await queue.renew("p2", ["a"], lease_ms=10_000) == (["a"], [])
    assert await queue.end("p2", [("a", "completed", {})]) == []
    assert await queue.end("p1", [("a", "completed", {})]) == ["a"]
    assert await queue.renew("p1", ["a", "b"], lease_ms=10_000) == (["a"], [])  # a has ended


async def test_a_lapsed_lease_puts_the_job_back_in_its_place(queue: RedisQueue) -> None:
    await queue.submit([job("a", 1), job("b", 1)], None)
    await queue.claim("p1", 1, lease_ms=0)  # a, leased until now: lapsed at once
    assert await queue.reap(max_crashes=3) == (1, 0)
    assert await queue.end("p1", [("a", "completed", {})]) == []  # fenced off
    again, _ = await queue.claim("p2", 2, lease_ms=10_000)
    assert [c.job_id for c in again] == ["a", "b"]  # a kept its place ahead of b
    assert (again[0].attempts, again[0].crashes) == (2, 1)


async def test_a_job_whose_leases_keep_lapsing_ends_as_poison(queue: RedisQueue) -> None:
    await queue.submit([job("p")], None)
    await queue.claim("p1", 1, lease_ms=0)
    assert await queue.reap(max_crashes=1) == (1, 0)  # one crash is allowed
    await queue.claim("p1", 1, lease_ms=0)
    assert await queue.reap(max_crashes=1) == (0, 1)  # the second is one too many
    stored = await queue.job("p")
    assert stored["status"] == "failed"
    assert stored["error_type"] == "trio_jobpool.PoisonJob"
    assert await queue.claim("p1", 1, lease_ms=10_000) == ([], None)


async def test_cancel_ends_a_waiting_job_and_tells_a_running_ones_process(
    queue: RedisQueue,
) -> None:
    await queue.submit([job("w"), job("r", 1)], None, submitter="front")
    await queue.claim("p1", 1, lease_ms=10_000)  # r
    channels = [queue.events, queue.events_of("front"), queue.events_of("other")]
    async with queue.client.pubsub(channels=channels) as pubsub:
        assert await queue.cancel("w") == "cancelled"
        assert await queue.cancel("r") == "running"
        assert await queue.cancel("nobody") == "not live"
        messages: list[tuple[str | bytes, int | str | bytes]] = []
        while len(messages) < 2:
            message = await pubsub.get_message(timeout=5)
            assert message is not None
            if message["type"] == "message":
                messages.append((message["channel"], message["data"]))
    # the end goes to the submitter's channel only; a cancel, to every process
    assert messages == [(queue.events_of("front"), 'ended:["w"]'), (queue.events, "cancel:r")]
    assert (await queue.job("w"))["status"] == "cancelled"
    assert await queue.claim("p2", 5, lease_ms=10_000) == ([], None)


async def test_a_cancel_its_process_missed_still_ends_the_running_job(queue: RedisQueue) -> None:
    """Pub/sub is not kept: a running job that was cancelled ends cancelled at its next step
    (retry, hand-back, reap) instead of running again, and renew tells its process."""
    await queue.submit([job("r"), job("g"), job("l"), job("k")], None)
    await queue.claim("p1", 4, lease_ms=10_000)
    for job_id in ["r", "g", "l"]:
        assert await queue.cancel(job_id) == "running"
    assert await queue.renew("p1", ["r", "g", "l", "k"], lease_ms=10_000) == ([], ["r", "g", "l"])
    assert await queue.retry("p1", [("r", 0, {"error_message": "flaky"})]) == ["r"]
    assert await queue.give_back("p1", [("g", True, {}, False)], 3) == ["g"]
    await queue.claim("p1", 0, lease_ms=10_000)
    assert await queue.renew("p1", ["l"], lease_ms=0) == ([], ["l"])  # lapses at once
    assert await queue.reap(max_crashes=3) == (0, 1)
    for job_id in ["r", "g", "l"]:
        assert (await queue.job(job_id))["status"] == "cancelled"
    assert await queue.claim("p2", 5, lease_ms=10_000) == ([], None)  # none came back
    stats = await queue.stats(10_000)
    assert (stats.counters["cancelled"], stats.counters.get("retried", 0)) == (3, 0)
    assert (stats.waiting, stats.retrying, stats.running) == (0, 0, 1)  # k runs on


async def test_a_retry_holds_no_process_and_comes_back_in_its_place(queue: RedisQueue) -> None:
    await queue.submit([job("a", 1), job("b", 1), job("c", 1)], None)
    running, _ = await queue.claim("p1", 2, lease_ms=10_000)
    assert [c.job_id for c in running] == ["a", "b"]
    error: Fields = {"error_type": "ValueError", "error_message": "flaky"}
    assert await queue.retry("p2", [("a", 0, error)]) == []  # not its job
    assert await queue.retry("p1", [("a", 60_000, error)]) == ["a"]
    assert await queue.renew("p1", ["a"], lease_ms=10_000) == (["a"], [])  # no lease: waiting
    stored = await queue.job("a")
    assert (stored["status"], stored["error_message"]) == ("retrying", "flaky")
    claimed, next_retry = await queue.claim("p2", 5, lease_ms=10_000)
    assert [c.job_id for c in claimed] == ["c"]  # a is not due yet
    assert next_retry is not None
    assert 55_000 < next_retry <= 60_000
    assert await queue.end("p1", [("b", "completed", {})]) == ["b"]
    await queue.submit([job("d", 1)], None)
    assert await queue.retry("p2", [("c", 0, error)]) == ["c"]  # due at once
    again, next_retry = await queue.claim("p3", 5, lease_ms=10_000)
    assert [(j.job_id, j.attempts) for j in again] == [("c", 2), ("d", 1)]  # c kept its place
    assert next_retry is not None  # a is still waiting for its retry
    assert await queue.cancel("a") == "cancelled"  # a retrying job is cancelled at once
    assert await queue.claim("p3", 5, lease_ms=10_000) == ([], None)


async def test_end_and_claim_is_one_step(queue: RedisQueue) -> None:
    await queue.submit([job("a", 1), job("b", 2), job("c", 3)], None)
    (first,), _ = await queue.claim("p1", 1, lease_ms=10_000)
    assert first.job_id == "a"
    ended, claimed, next_retry = await queue.end_and_claim(
        "p1",
        [("a", "completed", {"result": "2"}), ("zz", "completed", {})],
        5,
        10_000,
    )
    assert ended == ["a"]  # zz was never p1's
    assert [c.job_id for c in claimed] == ["b", "c"]
    assert next_retry is None
    assert (await queue.job("a"))["status"] == "completed"
    ended, claimed, _ = await queue.end_and_claim("p1", [], 0, 10_000)  # a renewal of nothing
    assert (ended, claimed) == ([], [])


async def test_an_out_of_range_priority_is_refused(queue: RedisQueue) -> None:
    with pytest.raises(ValueError, match="out of range"):
        await queue.submit([job("a", 2**60)], None)


async def test_the_scripts_work_on_a_three_node_cluster(tmp_path: Path) -> None:
    with redis_cluster(tmp_path) as urls:
        host, port = urls[0].removeprefix("redis://").split(":")
        async with coredis.RedisCluster(host, int(port), decode_responses=True) as client:
            queue = RedisQueue(client, "clustered")  # type: ignore[arg-type]
            await queue.open_epoch()
            assert (await queue.submit([job("a", 5), job("b", 1)], None))[0] == [1, 2]
            claimed, _ = await queue.claim("p1", 2, lease_ms=0)
            assert [c.job_id for c in claimed] == ["b", "a"]
            assert await queue.reap(max_crashes=3) == (2, 0)
            assert await queue.cancel("a") == "cancelled"
            (b,), _ = await queue.claim("p2", 2, lease_ms=10_000)
            assert await queue.end("p2", [(b.job_id, "completed", {})]) == ["b"]
            assert (await queue.job("b"))["status"] == "completed"
            await client.flushall()  # every node: the queue's epoch is gone with its jobs
            with pytest.raises(QueueLost):
                await queue.job("b")


async def test_every_script_refuses_once_redis_lost_the_queue(queue: RedisQueue) -> None:
    await queue.submit([job("a"), job("b")], None)
    (a,), _ = await queue.claim("p1", 1, lease_ms=10_000)
    await queue.client.flushall()  # what a restart without persistence leaves, too
    calls = [
        queue.submit([job("c")], None),
        queue.claim("p1", 1, lease_ms=10_000),
        queue.end("p1", [(a.job_id, "completed", {})]),
        queue.renew("p1", [a.job_id], 10_000),
        queue.retry("p1", [(a.job_id, 10, {})]),
        queue.give_back("p1", [(a.job_id, True, {}, False)], 3),
        queue.progress("p1", [(a.job_id, {"progress": 0.5})]),
        queue.reap(max_crashes=3),
        queue.cancel("b"),
        queue.job("b"),
        queue.stats(1000),
    ]
    for call in calls:
        with pytest.raises(QueueLost):
            await call
    old = queue.epoch
    assert await queue.open_epoch() != old  # a new run of the queue, empty
    assert (await queue.submit([job("c")], None))[0] == [1]


async def test_a_stall_reported_after_the_reaper_counted_a_crash_replaces_it(
    queue: RedisQueue,
) -> None:
    await queue.submit([job("s")], None)
    await queue.claim("p1", 1, lease_ms=0)  # lapsed at once
    assert await queue.reap(max_crashes=1) == (1, 0)
    assert (await queue.job("s"))["crashes"] == "1"
    # p1 wakes up, fences the job and says it stalled: not a crash
    assert await queue.give_back("p1", [("s", True, {}, True)], max_crashes=1) == []
    fields = await queue.job("s")
    assert (fields["crashes"], fields["stalls"], fields["status"]) == ("0", "1", "queued")
    await queue.claim("p2", 1, lease_ms=10_000)  # a second stall, still held: over the limit
    assert await queue.give_back("p2", [("s", True, {}, True)], max_crashes=1) == ["s"]
    fields = await queue.job("s")
    assert (fields["status"], fields["error_type"]) == ("failed", "trio_jobpool.LeaseLapsed")


async def test_a_resent_end_is_confirmed_and_a_late_one_refused(queue: RedisQueue) -> None:
    await queue.submit([job("e"), job("f")], None)
    await queue.claim("p1", 2, lease_ms=10_000)
    assert await queue.end("p1", [("e", "completed", {})]) == ["e"]
    # its answer was lost: the same end again is confirmed, and counted once
    assert await queue.end("p1", [("e", "completed", {})]) == ["e"]
    assert (await queue.stats(1000)).counters["completed"] == 1
    assert await queue.end("p2", [("f", "completed", {})]) == []  # p2 never held it


async def test_one_call_submits_claims_and_ends_thousands_of_jobs(queue: RedisQueue) -> None:
    """The scripts write the members of the waiting set and of the leases, and the counters,
    once per call, in slices of a thousand (unpack() of a Lua table has a limit): a call with
    2,500 jobs does for each what a call with one does."""
    n = 2500
    await queue.keep_ended(3600)
    jobs = [job(f"j{i}", priority=i % 3) for i in range(n)]
    seqs, waiting = await queue.submit(jobs[:1200], None, submitter="s1")
    more, waiting = await queue.submit(jobs[1200:], None, submitter="s2")
    assert (seqs + more, waiting) == (list(range(1, n + 1)), n)
    claimed, _ = await queue.claim("p1", n, lease_ms=10_000)
    expected = sorted(range(n), key=lambda i: (i % 3, i))  # by priority, then submission
    assert [c.job_id for c in claimed] == [f"j{i}" for i in expected]
    assert {c.attempts for c in claimed} == {1}
    read = await queue.stats(1000)
    assert (read.waiting, read.running, read.counters["submitted"]) == (0, n, n)
    channels = [queue.events_of("s1"), queue.events_of("s2")]
    ends: list[tuple[str, str, Fields]] = [
        (f"j{i}", "completed" if i % 2 else "failed", {"exec_time": 0.5}) for i in range(n)
    ]
    async with queue.client.pubsub(channels=channels) as pubsub:
        assert await queue.end("p1", ends) == [f"j{i}" for i in range(n)]
        announced: dict[str, list[str]] = {}
        while sum(len(ids) for ids in announced.values()) < n:
            message = await pubsub.get_message(timeout=5)
            assert message is not None
            if message["type"] == "message":
                channel, data = message["channel"], message["data"]
                assert isinstance(channel, str)  # (the client decodes responses)
                assert isinstance(data, str)
                assert data.startswith("ended:")
                ids = json.loads(data[6:])
                announced.setdefault(channel, []).extend(ids)
    assert announced == {
        queue.events_of("s1"): [f"j{i}" for i in range(1200)],
        queue.events_of("s2"): [f"j{i}" for i in range(1200, n)],
    }
    read = await queue.stats(1000)
    assert (read.waiting, read.running) == (0, 0)
    assert (read.counters["completed"], read.counters["failed"]) == (n // 2, n // 2)
    stored = await queue.job("j7")
    assert stored["status"] == "completed"
    assert (stored["ended_by"], stored["exec_time"], stored["attempts"]) == ("p1", "0.5", "1")
    assert "owner" not in stored
    assert float(stored["finished_at"]) >= float(stored["started_at"])
    assert 0 < await queue.client.ttl(f"{queue.prefix}:job:j7") <= 3600  # kept for keep_ended
