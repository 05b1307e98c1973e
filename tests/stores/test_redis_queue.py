"""The Redis job queue's scripts (trio_jobpool/stores/_redis_queue.py) against a real server."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import coredis
import pytest

from tests.servers import redis_cluster
from trio_jobpool.stores._redis_queue import Fields, NewJob, QueueLost, RedisQueue

pytestmark = pytest.mark.anyio


def job(job_id: str, priority: int = 5, delay_ms: int | None = None) -> NewJob:
    return NewJob(job_id, "double", [1], priority, {}, delay_ms)


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
    assert await queue.retry("p1", [("r", 0, {"error_message": "flaky"}, False)]) == ["r"]
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
    assert await queue.retry("p2", [("a", 0, error, False)]) == []  # not its job
    assert await queue.retry("p1", [("a", 60_000, error, False)]) == ["a"]
    assert await queue.renew("p1", ["a"], lease_ms=10_000) == (["a"], [])  # no lease: waiting
    stored = await queue.job("a")
    assert (stored["status"], stored["error_message"]) == ("retrying", "flaky")
    claimed, next_retry = await queue.claim("p2", 5, lease_ms=10_000)
    assert [c.job_id for c in claimed] == ["c"]  # a is not due yet
    assert next_retry is not None
    assert 55_000 < next_retry <= 60_000
    assert await queue.end("p1", [("b", "completed", {})]) == ["b"]
    await queue.submit([job("d", 1)], None)
    assert await queue.retry("p2", [("c", 0, error, False)]) == ["c"]  # due at once
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
        queue.retry("p1", [(a.job_id, 10, {}, False)]),
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


# -- later jobs: scheduled at submit, deferred, promoted when due (docs/distributed.md) ---------


async def _until_due(queue: RedisQueue, owner: str = "timer") -> list[str]:
    """Wait as long as Redis says the next job is due (its own clock: the one thing a test of
    the scripts cannot fake), then claim nothing: the call that lets due jobs in. Return the
    ids the waiting set then holds, in the order claims would take them."""
    _, due_in = await queue.claim(owner, 0, lease_ms=10_000)
    if due_in is not None:  # (else every one was due already, and is in)
        await anyio.sleep(due_in / 1000 + 0.005)
        await queue.claim(owner, 0, lease_ms=10_000)
    members = await queue.client.zrange(f"{queue.prefix}:waiting", 0, -1)
    return [str(m)[17:] for m in members]


async def test_a_scheduled_job_waits_beyond_the_bound_and_enters_behind_its_priority(
    queue: RedisQueue,
) -> None:
    seqs, waiting = await queue.submit([job("a"), job("s", delay_ms=100)], bound=1)
    assert (seqs, waiting) == ([1, 2], 1)  # s is not refused: it does not wait yet
    stored = await queue.job("s")
    assert (stored["status"], stored["seq"]) == ("scheduled", "2")
    assert float(stored["scheduled_for"]) >= float(stored["submitted_at"]) + 0.1
    assert (await queue.submit([job("a2")], bound=1))[0] == [-2]  # the bound counts a only
    assert (await queue.submit([job("s")], bound=None))[0] == [-1]  # live: a duplicate
    read = await queue.stats(1000)
    assert (read.waiting, read.scheduled, read.counters["submitted"]) == (1, 1, 2)
    (a,), due_in = await queue.claim("p1", 5, lease_ms=10_000)
    assert a.job_id == "a"
    assert due_in is not None
    assert 0 < due_in <= 101
    # submitted after s, before s is due: b waits ahead of s; c, more urgent, ahead of both
    await queue.submit([job("b"), job("c", priority=1)], bound=None)
    assert await _until_due(queue) == ["c", "b", "s"]
    stored = await queue.job("s")
    assert (stored["status"], stored["seq"], stored["place"]) == ("queued", "2", "5")
    claimed, due_in = await queue.claim("p2", 5, lease_ms=10_000)
    assert [c.job_id for c in claimed] == ["c", "b", "s"]
    assert due_in is None
    s = claimed[2]
    assert (s.seq, s.attempts, s.deferrals) == (2, 1, 0)  # still submission number 2
    assert s.scheduled_for is not None
    assert s.ready_at == s.scheduled_for  # its wait counts from its due time
    read = await queue.stats(1000)
    assert (read.waiting, read.scheduled, read.running) == (0, 0, 4)


async def test_a_job_that_came_due_is_cancelled_and_given_back_by_its_new_place(
    queue: RedisQueue,
) -> None:
    await queue.submit([job("s", delay_ms=5), job("t", delay_ms=5)], None)
    await queue.submit([job("a"), job("b")], None)
    assert await _until_due(queue) == ["a", "b", "s", "t"]
    assert await queue.cancel("s") == "cancelled"  # found in the waiting set by its place
    claimed, _ = await queue.claim("p1", 1, lease_ms=10_000)
    assert [c.job_id for c in claimed] == ["a"]
    assert await queue.give_back("p1", [("a", True, {}, False)], 3) == ["a"]  # its own place
    claimed, _ = await queue.claim("p2", 5, lease_ms=10_000)
    assert [c.job_id for c in claimed] == ["a", "b", "t"]  # s never comes back
    assert await queue.give_back("p2", [("t", False, {}, False)], 3) == ["t"]
    await queue.submit([job("c")], None)
    claimed, _ = await queue.claim("p3", 5, lease_ms=10_000)
    assert [c.job_id for c in claimed] == ["t", "c"]  # t's place was taken before c came
    read = await queue.stats(1000)
    assert (read.waiting, read.running, read.counters["cancelled"]) == (0, 4, 1)


async def test_due_jobs_are_let_in_once_in_batches_in_due_order(queue: RedisQueue) -> None:
    n = 2500
    later = [job(f"j{i}", priority=i % 2, delay_ms=1 + i // 1000) for i in range(n)]
    await queue.submit(later, bound=0)
    await anyio.sleep(0.01)  # every one is due (Redis's clock)
    waiting = []
    for batch in range(3):  # at most 1,000 per call, and the answer says more are due now
        _, due_in = await queue.claim(f"p{batch}", 0, lease_ms=10_000)
        read = await queue.stats(1000)
        waiting.append((read.waiting, read.scheduled, due_in))
    assert waiting == [(1000, 1500, 0), (2000, 500, 0), (2500, 0, None)]
    claimed, _ = await queue.claim("p9", n, lease_ms=10_000)
    # each entered once, and in due order: the earlier batches first within each priority
    expected = sorted(range(n), key=lambda i: (i % 2, i // 1000, i))
    assert [c.job_id for c in claimed] == [f"j{i}" for i in expected]
    assert (await queue.stats(1000)).counters["submitted"] == n


async def test_a_job_scheduled_earlier_than_any_before_is_announced_to_every_process(
    queue: RedisQueue,
) -> None:
    async with queue.client.pubsub(channels=[queue.events]) as pubsub:
        await queue.submit([job("a", delay_ms=60_000)], None)
        await queue.submit([job("b", delay_ms=120_000)], None)  # later than a: nothing
        await queue.submit([job("c", delay_ms=30_000), job("d", delay_ms=40_000)], None)
        await queue.cancel("a")  # (a cancel of a scheduled job: no due time to announce)
        dues: list[int] = []
        while len(dues) < 2:
            message = await pubsub.get_message(timeout=5)
            assert message is not None
            data = str(message["data"])
            if message["type"] == "message" and data.startswith("due:"):
                dues.append(int(data[4:]))
    # from the script's own time: the delay, and the millisecond that its clock, rounded
    # down, may lack (a job is never due early)
    assert dues == [60_001, 30_001]
    _, due_in = await queue.claim("p1", 0, lease_ms=10_000)
    assert due_in is not None
    assert 29_000 < due_in <= 30_001


async def test_a_scheduled_job_is_cancelled_at_once_and_the_reaper_lets_due_ones_in(
    queue: RedisQueue,
) -> None:
    await queue.submit([job("x", delay_ms=60_000), job("y", delay_ms=1)], None, submitter="f")
    async with queue.client.pubsub(channels=[queue.events_of("f")]) as pubsub:
        assert await queue.cancel("x") == "cancelled"
        message = None
        while message is None or message["type"] != "message":
            message = await pubsub.get_message(timeout=5)
            assert message is not None
        assert message["data"] == 'ended:["x"]'
    assert (await queue.job("x"))["status"] == "cancelled"
    assert await queue.cancel("x") == "not live"
    await anyio.sleep(0.01)
    assert await queue.reap(max_crashes=3) == (0, 0)  # no process claims: the reaper lets y in
    read = await queue.stats(1000)
    assert (read.waiting, read.scheduled, read.counters["cancelled"]) == (1, 0, 1)


async def test_a_due_job_wakes_registered_idle_workers(queue: RedisQueue) -> None:
    await queue.claim("idle", 2, lease_ms=10_000)  # nothing waits: two idle workers registered
    await queue.submit([job("s", delay_ms=1)], None)
    await anyio.sleep(0.01)
    async with queue.client.pubsub(channels=[queue.events_of("idle")]) as pubsub:
        await queue.claim("other", 0, lease_ms=10_000)  # lets s in: one wake-up, for it
        message = None
        while message is None or message["type"] != "message":
            message = await pubsub.get_message(timeout=5)
            assert message is not None
        assert message["data"] == "new"
    assert await queue.client.hget(f"{queue.prefix}:idle", "idle") == "1"


async def test_a_deferred_job_is_scheduled_keeping_its_attempts_and_counts_no_retry(
    queue: RedisQueue,
) -> None:
    await queue.submit([job("d"), job("e"), job("f")], None, submitter="front")
    await queue.claim("p1", 3, lease_ms=10_000)
    async with queue.client.pubsub(channels=[queue.events_of("front")]) as pubsub:
        assert await queue.retry("p2", [("d", 60_000, {}, True)]) == []  # not p2's
        assert await queue.retry("p1", [("d", 60_000, {"exec_time": 0.5}, True)]) == ["d"]
        message = None
        while message is None or message["type"] != "message":
            message = await pubsub.get_message(timeout=5)
            assert message is not None
        assert message["data"] == 'scheduled:["d"]'  # its submitter follows it
    stored = await queue.job("d")
    assert (stored["status"], stored["attempts"], stored["deferrals"]) == ("scheduled", "1", "1")
    assert "owner" not in stored
    assert await queue.renew("p1", ["d"], lease_ms=10_000) == (["d"], [])  # no lease
    read = await queue.stats(1000)
    assert (read.scheduled, read.running, read.counters.get("retried", 0)) == (1, 2, 0)
    # Defer(0): back in the queue at once, behind the jobs of its priority already waiting
    await queue.submit([job("g")], None)
    assert await queue.end("p1", [("f", "completed", {})]) == ["f"]
    assert await queue.retry("p1", [("e", 0, {}, True)]) == ["e"]
    claimed, due_in = await queue.claim("p3", 5, lease_ms=10_000)
    assert [(c.job_id, c.attempts, c.deferrals) for c in claimed] == [("g", 1, 0), ("e", 2, 1)]
    assert due_in is not None  # d, in about a minute
    assert await queue.cancel("d") == "cancelled"
    read = await queue.stats(1000)
    assert (read.scheduled, read.counters["cancelled"], read.counters["submitted"]) == (0, 1, 4)


async def test_a_job_cancelled_while_running_ends_cancelled_when_it_defers(
    queue: RedisQueue,
) -> None:
    await queue.submit([job("r")], None)
    await queue.claim("p1", 1, lease_ms=10_000)
    assert await queue.cancel("r") == "running"
    assert await queue.retry("p1", [("r", 60_000, {}, True)]) == ["r"]
    assert (await queue.job("r"))["status"] == "cancelled"
    assert (await queue.stats(1000)).scheduled == 0
