"""Periodic schedules on the distributed pool (docs/distributed.md, "Periodic schedules"): the
queue in Redis is the book, every process fires, each tick fires once. Real worker processes
(tests/stores/_redis_worker.py) declare one schedule and one of them is killed; then pools in
one event loop stand for processes: the overlap rule checked by the step itself, declarations
reaching every process without polling (Redis's own command counters), a listener that was
away reading the schedules again, Redis losing its data, and a host whose clock is ahead.

Ticks are on the wall clock and steps on Redis's: no test can fake either, so these wait for
real ticks (``every=1``), as briefly as they can.
"""

from __future__ import annotations

import collections
import datetime
import json
import logging
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import anyio
import coredis
import pytest

from tests.durable_app import board, hold, note, registry, tick
from tests.stores._suite import invariant_holds
from trio_jobpool import JobPool, JobRegistry, open_job_pool
from trio_jobpool._distributed import DistributedPool
from trio_jobpool.stores._base import JobRecord, ScheduleRecord

from .test_redis_processes import worker_processes
from .test_redis_wakeups import _script_calls

pytestmark = pytest.mark.anyio

elsewhere = JobRegistry()  # the registry of a process that runs other jobs


@elsewhere.job(name="other")
async def other() -> None:
    await anyio.lowlevel.checkpoint()


def queue_url(redis_url: str, lease_timeout: float = 5.0) -> str:
    return f"{redis_url}/0?queue=s{uuid.uuid4().hex[:12]}&lease_timeout={lease_timeout}"


def prefix_of(url: str) -> str:
    """The key prefix (hash tag) of the queue ``url`` names."""
    return "{" + url.rpartition("queue=")[2].partition("&")[0] + "}"


async def until(predicate: Callable[[], bool], timeout: float = 20) -> None:
    """Wait until ``predicate()`` holds, looking every 10 ms (what other processes and Redis
    do is no event here); bounded."""
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.01)


def pool_of(pool: JobPool) -> DistributedPool:
    assert isinstance(pool, DistributedPool)
    return pool


def tick_time(job_id: str) -> int:
    """The tick of a ``name@YYYY-MM-DDTHH:MM:SSZ`` job id, in whole seconds."""
    stamp = job_id.partition("@")[2]
    return int(datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S%z").timestamp())


async def settled(client: coredis.Redis[str], url: str, processes: int) -> None:
    """Wait until the ``processes`` pools on the queue have made the calls of their start (the
    first lease renewal says a process is there; a reap follows it, and the schedules are read
    meanwhile): then they make none while idle, for a lease timeout (looked at every 10 ms)."""
    with anyio.fail_after(20):
        while await client.zcard(f"{prefix_of(url)}:seen") < processes:
            await anyio.sleep(0.01)
    await anyio.sleep(0.2)


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "jobs.log"
    monkeypatch.setenv("JOBPOOL_TEST_LOG", str(path))  # inherited by the worker processes
    return path


def ticks_logged(log: Path) -> list[tuple[int, str, float]]:
    """``(pid, job id, time)`` of each start of a ``tick`` job, in order."""
    found = []
    for line in log.read_text().splitlines() if log.exists() else []:
        pid, event, item, at = line.split()
        if event == "tick":
            found.append((int(pid), item, float(at)))
    return found


# -- real processes -----------------------------------------------------------------------------


async def test_three_processes_fire_each_tick_once_also_when_one_is_killed(
    redis_url: str, log: Path, anyio_backend: str
) -> None:
    """Three worker processes declare the same schedule (every second) and all fire it; one is
    killed with SIGKILL after a few ticks. Every tick from the first to the last fired exactly
    one job (consecutive seconds, distinct ids, as many as the schedule's runs and the queue's
    submits), and no tick was skipped. A tick job runs twice only if the killed process had
    started it (its lease lapsed: at least once)."""
    url = queue_url(redis_url, lease_timeout=1.0)
    schedule = json.dumps({"name": "tick", "job": "tick", "every": 1, "overlap": "allow"})
    with worker_processes(url, 3, 1, anyio_backend, schedule) as workers:
        await until(lambda: len(ticks_logged(log)) >= 4)
        victim = workers[1]
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        killed_at = time.time()
        await until(lambda: len({i for _, i, _ in ticks_logged(log)}) >= 9)
    prefix = prefix_of(url)
    async with coredis.Redis.from_url(redis_url, decode_responses=True) as client:
        fields = await client.hgetall(f"{prefix}:schedule:tick")
        submitted = int((await client.hgetall(f"{prefix}:stats"))["submitted"])
        keys = [key async for key in client.scan_iter(f"{prefix}:job:tick@*")]
        submitters = {
            key: await client.hget(key, "submitter") for key in keys
        }  # which process fired each tick
    fired = sorted(key.partition(":job:")[2] for key in keys)
    seconds = [tick_time(job_id) for job_id in fired]
    assert seconds == list(range(seconds[0], seconds[0] + len(seconds)))  # each tick, once
    assert (int(fields["runs"]), int(fields["skipped"]), submitted) == (len(fired), 0, len(fired))
    assert fields["last_job_id"] == fired[-1]
    rows = ticks_logged(log)
    starts = collections.Counter(job_id for _, job_id, _ in rows)
    assert set(starts) <= set(fired)
    assert len(set(fired) - set(starts)) <= 2  # fired as the workers stopped: not run
    first_pid: dict[str, int] = {}
    for pid, job_id, _ in rows:
        first_pid.setdefault(job_id, pid)
    assert all(first_pid[job_id] == victim.pid for job_id, n in starts.items() if n > 1)
    assert any(at > killed_at for _, _, at in rows)  # the others went on
    firing = {str(submitters[f"{prefix}:job:{job_id}"]).split(":")[1] for job_id in fired}
    assert len(firing) > 1  # not one process alone: they raced for the ticks
    assert firing <= {str(w.pid) for w in workers}
    assert all(f":{victim.pid}:" not in str(submitters[f"{prefix}:job:{job_id}"])
               for job_id in fired if tick_time(job_id) > killed_at + 1)  # fmt: skip


# -- pools in one event loop ----------------------------------------------------------------------


async def test_a_tick_fired_while_the_last_job_runs_in_another_process_is_skipped(
    redis_url: str,
) -> None:
    """``overlap="skip"``: the schedule's job runs in pool A; the next ticks are fired by pool
    B (a front end, whose clock A's trails by 0.5 s so that B's timer is always first), which
    knows nothing of the job: the step in Redis skips them. Once the job ends, the next tick
    runs."""
    url = queue_url(redis_url)
    async with (
        open_job_pool(1, 10, store=url, registry=registry) as a,
        open_job_pool(0, 10, store=url, registry=registry) as b,
    ):
        pool_of(a)._wall_offset -= 0.5
        steps: list[tuple[bool, ScheduleRecord, ScheduleRecord | None]] = []
        fire = pool_of(b)._fire_shared

        async def recorded(
            before: ScheduleRecord, after: ScheduleRecord, job: JobRecord | None
        ) -> ScheduleRecord | None:
            kept = await fire(before, after, job)
            steps.append((job is not None, before, kept))
            return kept

        pool_of(b)._fire_shared = recorded  # type: ignore[method-assign]
        await b.schedule("slow", hold, "slow", "slow-gate", every=1)
        await board.wait_started("slow")  # the first tick's job, fired by B, runs in A
        await until(lambda: sum(1 for with_job, _, _ in steps if with_job) >= 3)
        [schedule] = await a.schedules()
        first = schedule.last_job_id
        assert (schedule.runs, a.stats().total_submitted, b.stats().total_submitted) == (1, 0, 1)
        assert schedule.skipped >= 2
        # each of B's steps after the first was given the tick's job and skipped it itself
        for with_job, before, kept in steps[1:]:
            assert with_job
            assert kept is not None
            assert (kept.runs, kept.last_job_id) == (1, first)
            assert kept.skipped == before.skipped + 1
        board.open("slow-gate")
        await until(lambda: board.started.count("slow") == 2)  # the next tick runs again
        await b.unschedule("slow")
        await until(lambda: not pool_of(a)._plans)
        board.open("slow-gate")
        await a.join()
        await b.join()
        stats = await b.cluster_stats()
    assert stats.total_completed == stats.total_submitted == 2
    assert invariant_holds(stats)


async def test_declarations_reach_every_process_without_polling(redis_url: str) -> None:
    """A declaration, a replacement and a removal by one process reach the others' copies as
    they are made, announced by the one script that makes each (Redis counts no other call);
    a replacement whose job a process does not have makes it drop its copy (and warn)."""
    url = queue_url(redis_url, lease_timeout=120)  # no lease renewal within the test
    async with (
        coredis.Redis.from_url(redis_url, decode_responses=True) as client,
        open_job_pool(0, 10, store=url, registry=registry) as a,
        open_job_pool(0, 10, store=url, registry=registry) as b,
        open_job_pool(0, 10, store=url, registry=elsewhere) as c,
    ):
        plans = pool_of(b)._plans
        await settled(client, url, 3)
        calls = await _script_calls(client)
        declared = await a.schedule("s", note, "x", every=3600)
        await until(lambda: "s" in plans)
        assert plans["s"][0] == pool_of(a)._plans["s"][0]
        assert await _script_calls(client) == calls + 1
        replaced = await a.schedule("s", note, "y", every=7200)
        await until(lambda: plans["s"][0].args == ["y"])
        assert (replaced.every, plans["s"][0].every) == (7200, 7200)
        assert await _script_calls(client) == calls + 2
        await b.unschedule("s")
        await until(lambda: "s" not in pool_of(a)._plans)
        assert await _script_calls(client) == calls + 3
        assert declared.next_run < replaced.next_run

        await a.schedule("t", note, "t", every=3600)
        await until(lambda: "t" in plans)
        assert "t" not in pool_of(c)._plans  # its registry has no such job: it never fires it
        await c.schedule("t", other, every=3600)  # replaced by a job A and B do not have
        await until(lambda: "t" not in plans and "t" not in pool_of(a)._plans)
        assert pool_of(c)._plans["t"][0].job_name == "other"
        assert await _script_calls(client) == calls + 5
        async with open_job_pool(0, 10, store=url, registry=elsewhere) as d:  # a new process
            assert [s.job_name for s in await d.schedules()] == ["other"]
            await until(lambda: "t" in pool_of(d)._plans)  # loaded as it started
            await d.unschedule("t")
        await until(lambda: "t" not in pool_of(c)._plans)


async def test_a_listener_that_was_away_reads_the_schedules_again(redis_url: str) -> None:
    """Pub/sub keeps nothing: when its connection is lost, a process may miss a declaration
    or a removal. When it subscribes again, it reads every schedule again."""
    url = queue_url(redis_url)
    prefix = prefix_of(url)
    async with (
        coredis.Redis.from_url(redis_url, decode_responses=True) as client,
        open_job_pool(0, 10, store=url, registry=registry) as a,
    ):
        await a.schedule("gone", note, "gone", every=3600)
        await a.schedule("kept", note, "kept", every=3600)
        plans = pool_of(a)._plans
        # removed behind its back: no message
        await client.delete([f"{prefix}:schedule:gone"])
        await client.srem(f"{prefix}:schedules", ["gone"])
        await anyio.sleep(0.2)
        assert set(plans) == {"gone", "kept"}
        await client.client_kill(type_=coredis.PureToken.PUBSUB)  # every subscriber
        await until(lambda: set(plans) == {"kept"})


async def test_redis_losing_its_data_loses_no_schedule_a_process_has(
    redis_url: str, log: Path
) -> None:
    """FLUSHALL under two pools whose schedule fires every second: the pools put it back (the
    second to try finds it there), with its anchor and its counters as they knew them, and it
    goes on ticking in the new run of the queue; no tick fires twice."""
    url = queue_url(redis_url, lease_timeout=1.0) + "&timeout=1.0"
    prefix = prefix_of(url)
    async with (
        coredis.Redis.from_url(redis_url, decode_responses=True) as client,
        open_job_pool(1, 10, store=url, registry=registry) as a,
        open_job_pool(0, 10, store=url, registry=registry) as b,
    ):
        await a.schedule("t", tick, every=1, overlap="allow")
        await b.schedule("t", tick, every=1, overlap="allow")  # identical: nothing changes
        await board.event("ticks:2").wait()
        [before] = await b.schedules()
        await client.flushall()
        with anyio.fail_after(20):
            await board.event(f"ticks:{board.calls['tick'] + 3}").wait()
        stats = await a.cluster_stats()  # the new run's counters (read first: ticks go on)
        [after] = await a.schedules()
        assert await client.smembers(f"{prefix}:schedules") == {"t"}
    # the counters went on from those of the copy put back (a copy may lag one step behind:
    # the other pool's step of the same tick)
    assert after.runs >= before.runs - 1 + stats.total_submitted
    assert stats.total_submitted >= 3  # counted in the new run of the queue
    moved = after.next_run - before.next_run
    assert moved == pytest.approx(round(moved), abs=1e-6)  # on the same ticks (its anchor kept)
    ran = [job_id for _, job_id, _ in ticks_logged(log)]
    assert len(ran) == len(set(ran))  # no tick ran twice
    assert ran == sorted(ran, key=tick_time)


async def test_a_host_whose_clock_is_ahead_fires_no_tick_early(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A pool whose wall clock is 0.8 s ahead of Redis's (the tolerance shortened to 0.2 s):
    its steps are refused until Redis's clock comes within the tolerance of the tick, so each
    tick's job is submitted (by Redis's clock) at most 0.2 s before the tick; it warns once."""
    url = queue_url(redis_url)
    with caplog.at_level(logging.WARNING, logger="trio_jobpool.distributed"):
        async with open_job_pool(1, 10, store=url, registry=registry) as pool:
            fast = pool_of(pool)
            fast.early_tolerance = 0.2
            fast._wall_offset += 0.8
            await pool.schedule("fast", tick, every=1)
            await board.event("ticks:2").wait()
            [schedule] = await pool.schedules()
            await pool.unschedule("fast")
            assert schedule.last_job_id is not None
            fields = await fast._queue.job(schedule.last_job_id)
    assert schedule.last_run is not None
    submitted = float(fields["submitted_at"])  # Redis's clock
    assert submitted >= schedule.last_run - 0.2 - 0.01
    warned = [r.getMessage() for r in caplog.records if "ahead of Redis" in r.getMessage()]
    assert len(warned) == 1
