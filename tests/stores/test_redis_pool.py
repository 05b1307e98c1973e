"""The distributed pool (store="redis://...") where its contract differs from a pool of one
process, through the public API, on Trio and asyncio.

The contract Redis shares with the other stores is checked by the conformance suite
(tests/stores/test_conformance.py, which runs every case on Redis too). Here are the
differences docs/distributed.md lists: a job submitted here may run in any process, handles of
jobs running elsewhere are brought up to date by ``aget``, jobs of other processes are cancelled
through ``acancel``, the bound counts the jobs waiting in Redis, leaving the block or stopping
hands jobs back to the shared queue; and the store's own settings and failures. Several pools
on one queue in one event loop stand for several processes here;
tests/stores/test_redis_processes.py runs real ones.
"""

from __future__ import annotations

import logging
import signal
import urllib.parse
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import coredis
import pytest

from tests.durable_app import (
    board,
    double,
    fail,
    flaky,
    hang,
    hold,
    note,
    registry,
    report_progress,
)
from tests.servers import redis_cluster, redis_server_process
from tests.stores._suite import (
    SHORT,
    SHUTDOWN,
    Leave,
    invariant_holds,
    status,
)
from trio_jobpool import (
    DuplicateJob,
    JobCancelled,
    JobFailed,
    JobHandle,
    JobNotFound,
    JobNotSerializable,
    JobPool,
    JobStatus,
    JobTimeout,
    PoolClosed,
    QueueFull,
    StoreError,
    open_job_pool,
)
from trio_jobpool.stores.redis import RedisStore

pytestmark = pytest.mark.anyio


@pytest.fixture
def queue_url(redis_url: str) -> str:
    """A queue of this test's own on the session's server."""
    return f"{redis_url}/0?queue=t{uuid.uuid4().hex[:12]}&lease_timeout=5"


@pytest.fixture
def kw(queue_url: str) -> dict[str, Any]:
    return {"store": queue_url, "registry": registry}


async def until(predicate: Callable[[], bool]) -> None:
    """Let other tasks (and Redis round trips) run until ``predicate()`` holds; bounded."""
    with anyio.fail_after(10):
        while not predicate():
            await anyio.sleep(0.001)


async def until_refused_for_room(store_url: str) -> None:
    """Wait until Redis has refused a submit for want of room (the queue's ``full`` mark): that
    submit now waits for room. Redis's state is no event of this process; looked at every
    5 ms, bounded."""
    parts = urllib.parse.urlsplit(store_url)
    queue = dict(urllib.parse.parse_qsl(parts.query))["queue"]
    base = urllib.parse.urlunsplit(parts._replace(query=""))
    async with coredis.Redis.from_url(base, decode_responses=True) as raw:
        with anyio.fail_after(10):
            while not await raw.exists([f"{{{queue}}}:full"]):
                await anyio.sleep(0.005)


# -- ordering ----------------------------------------------------------------------------------


async def test_order_holds_across_processes(kw: dict[str, Any]) -> None:
    """Jobs submitted by a front end (max_workers=0) run by priority in two worker pools."""
    async with open_job_pool(0, 100, **kw) as front:
        for i in range(20):
            await front.submit(note, f"p5-{i}", priority=5)
        await front.submit(note, "p1", priority=1)
        stats = await front.cluster_stats()
        assert (stats.queued_tasks, stats.max_workers, stats.total_submitted) == (21, 0, 21)
        async with open_job_pool(1, 100, **kw) as a, open_job_pool(1, 100, **kw) as b:
            await front.join()  # every job it submitted has ended, wherever it ran
            ran = a.stats().total_completed + b.stats().total_completed
        assert ran == 21
        assert front.stats().total_completed == 0  # it ran nothing itself
    assert board.started[0] == "p1"
    assert sorted(board.started[1:], key=lambda n: int(n[3:])) == [f"p5-{i}" for i in range(20)]
    # two workers take jobs in order: a later job never starts two places before an earlier one
    positions = [int(n[3:]) for n in board.started[1:]]
    assert all(positions[i] < positions[i + 2] for i in range(len(positions) - 2))


# -- results, errors, handles ------------------------------------------------------------------


async def test_results_and_errors_reach_the_submitting_process(kw: dict[str, Any]) -> None:
    async with open_job_pool(0, 10, **kw) as front, open_job_pool(2, 10, **kw):
        ok = await front.submit(double, 21, job_id="ok")
        bad = await front.submit(fail, "bad input", job_id="bad")
        assert await ok.result() == 42
        assert ok.status is JobStatus.COMPLETED
        assert ok.attempts == 1
        assert ok.exec_time is not None
        assert ok.started_at is not None
        assert ok.finished_at is not None
        assert ok.submitted_at <= ok.started_at <= ok.finished_at
        with pytest.raises(JobFailed, match="ValueError: bad input") as info:
            await bad.result()
        assert "raise ValueError(message)" in info.value.traceback_text
        assert front.get("ok") is ok
        snapshot = await front.aget("bad")  # as Redis has it
        assert (snapshot.status, snapshot.attempts) == (JobStatus.FAILED, 1)
    async with open_job_pool(0, 10, **kw) as later:
        read = await later.aget("ok")  # any process reads any job from Redis
        assert (read.status, await read.result()) == (JobStatus.COMPLETED, 42)
        with pytest.raises(JobNotFound):
            await later.aget("nobody")
        with pytest.raises(JobNotFound):
            later.get("ok")  # get() knows this process's jobs only


async def test_only_registered_jobs_with_json_arguments_and_results(kw: dict[str, Any]) -> None:
    async def unregistered() -> None:
        return None

    async with open_job_pool(1, 10, **kw) as pool:
        with pytest.raises(Exception, match="not registered"):
            await pool.submit(unregistered)
        with pytest.raises(JobNotSerializable):
            await pool.submit(note, object())  # type: ignore[arg-type]
        by_name: JobHandle[int] = await pool.submit("double", 4)
        assert await by_name.result() == 8
        bad_result: JobHandle[object] = await pool.submit("returns_object")
        with pytest.raises(JobNotSerializable):
            await bad_result.result()


async def test_aget_brings_the_handle_of_a_job_running_elsewhere_up_to_date(
    kw: dict[str, Any],
) -> None:
    async with open_job_pool(0, 10, **kw) as front, open_job_pool(1, 10, **kw):
        handle = await front.submit(report_progress, "p")
        await board.wait_started("p")
        assert status(handle) is JobStatus.QUEUED  # as far as this process has heard
        with anyio.fail_after(10):  # the progress reaches Redis with the worker's next trip
            while (await front.aget(handle.job_id)).progress != 0.5:
                await anyio.sleep(0.005)
        assert (await front.aget(handle.job_id)) is handle
        assert (status(handle), handle.attempts, handle.progress_message) == (
            JobStatus.RUNNING,
            1,
            "half",
        )
        assert handle.started_at is not None
        board.open("p")
        assert await handle.result() == handle.job_id
        assert (handle.progress, handle.progress_message) == (1.0, "done")


async def test_a_job_that_just_ended_here_is_ended_for_aget_and_acancel(
    kw: dict[str, Any],
) -> None:
    # The end reaches Redis with the link's next trip; until then, aget and acancel answer
    # from what this process knows, as Redis will.
    async with open_job_pool(1, 10, **kw) as pool:
        for n in range(10):
            handle = await pool.submit(note, f"n{n}")
            await handle.wait()
            assert (await pool.aget(handle.job_id)).status is JobStatus.COMPLETED
            with pytest.raises(JobNotFound):
                await pool.acancel(handle.job_id)


# -- cancelling --------------------------------------------------------------------------------


async def test_cancel_from_another_process_stops_a_running_job(kw: dict[str, Any]) -> None:
    async with open_job_pool(1, 10, **kw) as worker, open_job_pool(0, 10, **kw) as front:
        running = await front.submit(hang, "running", job_id="running")
        await board.wait_started("running")
        with pytest.raises(JobNotFound):
            front.cancel("nobody")
        await front.acancel("running")  # reaches the worker's process through pub/sub
        with pytest.raises(JobCancelled):
            await running.result()
        assert worker.stats().total_cancelled == 1
        # the worker's handle of a job submitted elsewhere has its time of submission
        assert abs(worker.get("running").submitted_at - running.submitted_at) < 1
        assert await (await front.submit(note, "next")).result() == "next"  # worker moved on
        stats = await front.cluster_stats()
        assert invariant_holds(stats), stats
        assert (stats.total_cancelled, stats.total_completed, stats.active_workers) == (1, 1, 0)


async def test_a_cancel_whose_message_was_missed_reaches_the_job_with_the_lease_renewal(
    redis_url: str,
) -> None:
    """Pub/sub keeps nothing: the process running a job may miss its cancel message (it was
    reconnecting). The cancel is recorded on the job too, and the next lease renewal finds it.
    Here the flag is set without the message, as if the message had been missed."""
    import coredis

    queue = f"t{uuid.uuid4().hex[:12]}"
    store = f"{redis_url}/0?queue={queue}&lease_timeout=0.6"
    async with open_job_pool(1, 10, store=store, registry=registry) as pool:
        handle = await pool.submit(hang, "missed", job_id="missed")
        await board.wait_started("missed")
        async with coredis.Redis.from_url(redis_url, decode_responses=True) as raw:
            await raw.hset(f"{{{queue}}}:job:missed", {"cancel_requested": 1})
        with anyio.fail_after(10), pytest.raises(JobCancelled):
            await handle.result()  # within one renewal (0.2 s)


# -- timeouts and retries ----------------------------------------------------------------------


async def test_the_timeout_travels_with_the_job(kw: dict[str, Any]) -> None:
    """A job's own timeout applies in whichever process runs it; None means the runner's."""
    async with (
        open_job_pool(0, 10, job_timeout=3600, **kw) as front,
        open_job_pool(1, 10, job_timeout=0.05, **kw),
    ):
        own = await front.submit(hang, "own", timeout=0.02)
        runners = await front.submit(hang, "runners")
        assert isinstance((await own.wait()).error, JobTimeout)  # type: ignore[attr-defined]
        assert isinstance((await runners.wait()).error, JobTimeout)  # type: ignore[attr-defined]


# -- the bound, closing, shutting down ----------------------------------------------------------


async def test_the_bound_queue_full_and_backpressure(kw: dict[str, Any]) -> None:
    async with open_job_pool(0, 1, max_pending=1, **kw) as front:
        await front.submit(note, "w1", job_id="w1")
        await front.submit(note, "w2", job_id="w2")
        with pytest.raises(QueueFull, match="refused"):
            front.submit_nowait(note, "refused", job_id="refused")
        with pytest.raises(JobNotFound):
            front.get("refused")

        accepted: list[JobHandle[Any]] = []

        async def submit_blocked() -> None:
            accepted.append(await front.submit(note, "w3", job_id="w3"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(submit_blocked)
            await until_refused_for_room(kw["store"])
            assert accepted == []  # backpressure: the submit waits for room
            assert (await front.cluster_stats()).total_submitted == 2
            await front.acancel("w1")  # makes room; the waiting submit goes on
        assert [h.job_id for h in accepted] == ["w3"]
        async with open_job_pool(1, 10, **kw):
            await front.join()
    assert board.started == ["w2", "w3"]


async def test_a_submit_waiting_for_room_is_refused_when_the_pool_closes(
    kw: dict[str, Any],
) -> None:
    async with open_job_pool(0, 1, **kw) as front:
        await front.submit(note, "w1")
        refused: list[BaseException] = []

        async def submit_blocked() -> None:
            try:
                await front.submit(note, "w2")
            except PoolClosed as exc:
                refused.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(submit_blocked)
            await until_refused_for_room(kw["store"])
            assert refused == []
            front.close()
        assert len(refused) == 1


async def test_bad_input_is_refused_at_submit_and_the_pool_carries_on(kw: dict[str, Any]) -> None:
    async with open_job_pool(1, 10, **kw) as pool:
        with pytest.raises(ValueError, match="out of range"):
            await pool.submit(note, "huge", priority=2**60)  # a sorted-set score holds 2**53
        with pytest.raises(ValueError, match="out of range"):
            pool.submit_nowait(note, "huge", priority=-(2**60))
        # an error message that is not valid Unicode (a lone surrogate) still gets stored
        odd = await pool.submit(fail, "cannot read \udcff")
        with pytest.raises(ValueError, match="cannot read"):
            await odd.result()
        assert await (await pool.submit(double, 5)).result() == 10
    async with open_job_pool(0, 10, **kw) as other:
        read = await other.aget(odd.job_id)
        assert read.status is JobStatus.FAILED
        assert "cannot read \\udcff" in str(read.error)


async def test_a_job_cancelled_before_it_was_sent_never_reaches_redis(kw: dict[str, Any]) -> None:
    async with open_job_pool(1, 10, **kw) as pool:
        handle = pool.submit_nowait(note, "never", job_id="never")
        handle.cancel()  # before the link's next trip
        with pytest.raises(JobCancelled):
            await handle.result()
        with pytest.raises(JobNotFound):
            await pool.aget("never")  # Redis never had it
        assert await (await pool.submit(note, "after")).result() == "after"
    assert board.started == ["after"]


async def test_ended_jobs_expire_after_keep_ended(queue_url: str) -> None:
    store = RedisStore.from_url(f"{queue_url}&keep_ended=0.2")
    assert store.keep_ended == 0.2
    async with open_job_pool(1, 10, store=store, registry=registry) as pool:
        done = await pool.submit(double, 3, job_id="done")
        live = await pool.submit(hold, "live", job_id="live")
        assert await done.result() == 6
        await board.wait_started("live")
        with anyio.fail_after(10):  # Redis expires the ended job's hash, not the live one's
            while True:
                try:
                    await pool.aget("done")
                except JobNotFound:
                    break
                await anyio.sleep(0.05)
        assert (await pool.aget("live")).status is JobStatus.RUNNING
        board.open()
        assert await live.result() == "live"
        stats = await pool.cluster_stats()
    assert (stats.total_completed, stats.total_submitted) == (2, 2)  # the counters stay


async def test_a_live_id_is_a_duplicate_in_every_process(kw: dict[str, Any]) -> None:
    async with open_job_pool(0, 10, **kw) as a, open_job_pool(0, 10, **kw) as b:
        await a.submit(note, "x", job_id="x")
        with pytest.raises(DuplicateJob, match="'x'"):
            await a.submit(note, "x", job_id="x")
        with pytest.raises(DuplicateJob, match="'x'"):
            await b.submit(note, "x", job_id="x")
        late = b.submit_nowait(note, "x", job_id="x")  # found out by Redis: on the handle
        with pytest.raises(DuplicateJob):
            await late.result()


async def test_leaving_by_an_exception_hands_running_jobs_back(kw: dict[str, Any]) -> None:
    handles: dict[str, JobHandle[Any]] = {}
    with pytest.raises(Leave):  # noqa: PT012 - the block is the subject
        async with open_job_pool(1, 10, **kw) as pool:
            handles["running"] = await pool.submit(hang, "running", job_id="running")
            await board.wait_started("running")
            handles["waiting"] = await pool.submit(note, "waiting", job_id="waiting")
            raise Leave
    with pytest.raises(JobCancelled, match=SHUTDOWN):
        await handles["running"].result()  # this process's run of it was cut short
    assert handles["waiting"].status is JobStatus.QUEUED  # it waits in Redis for others
    async with open_job_pool(0, 10, **kw) as front:
        stats = await front.cluster_stats()
        assert (stats.queued_tasks, stats.active_workers, stats.total_cancelled) == (2, 0, 0)
        running = await front.aget("running")
        assert (running.status, running.attempts) == (JobStatus.QUEUED, 1)
    async with open_job_pool(2, 10, **kw) as pool:
        await until(lambda: board.started.count("running") == 2 and "waiting" in board.started)
        await pool.acancel("running")


async def test_a_job_a_shutdown_cut_off_is_logged_where_it_starts_over(
    kw: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """The process that takes a job another process's shutdown cut off logs that it starts
    over, with its attempt (INFO: once; docs/service.md)."""
    caplog.set_level(logging.INFO, logger="trio_jobpool")
    async with open_job_pool(1, 10, shutdown_timeout=0.01, **kw) as pool:
        await pool.submit(hang, "cut", job_id="cut")
        await board.wait_started("cut")
    assert not [r for r in caplog.records if "starts again" in r.getMessage()]
    async with open_job_pool(1, 10, **kw) as pool:
        await until(lambda: board.started.count("cut") == 2)
        await pool.acancel("cut")
    logged = [
        (r.levelno, r.getMessage()) for r in caplog.records if "starts again" in r.getMessage()
    ]
    assert logged == [
        (
            logging.INFO,
            "job 'cut' (hang) starts again from the beginning, attempt 2: earlier attempts "
            "were cut short (1 by a pool's shutdown); a job that runs longer than the "
            "shutdown_timeout starts over at every restart",
        )
    ]


async def test_a_stopped_pool_leaves_waiting_jobs_to_the_others(kw: dict[str, Any]) -> None:
    async with open_job_pool(1, 10, **kw) as pool:
        await pool.submit(hold, "running")
        await board.wait_started("running")
        waiting = await pool.submit(note, "waiting")
        board.open()
    assert waiting.status is JobStatus.QUEUED  # not drained: the queue is shared
    async with open_job_pool(1, 10, **kw) as pool:
        await until(lambda: "waiting" in board.started)


# -- arguments and errors of the store ---------------------------------------------------------


async def test_max_workers_zero_is_for_distributed_pools_only(kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="max_workers"):
        open_job_pool(0, 10, registry=registry)
    async with open_job_pool(0, 10, **kw) as front:
        assert front.stats().max_workers == 0


async def test_a_distributed_pool_needs_a_registry(queue_url: str) -> None:
    with pytest.raises(ValueError, match="registry"):
        open_job_pool(1, 10, store=queue_url)


def test_store_settings_from_the_url_and_bad_ones() -> None:
    store = RedisStore.from_url(
        "redis://u:secret@127.0.0.1:7777/2?queue=jobs&lease_timeout=7.5&max_crashes=1"
    )
    assert (store.queue, store.lease_timeout, store.max_crashes) == ("jobs", 7.5, 1)
    assert "secret" not in store.url
    assert "7777" in store.url
    bad = {
        "redis://h?queue=a:b": "queue must be",
        "redis://h?lease_timeout=0": "lease_timeout must be",
        "redis://h?color=red": "unknown settings",
        "redis://h?max_crashes=x": "bad setting",
    }
    for url, message in bad.items():
        with pytest.raises(ValueError, match=message):
            RedisStore.from_url(url)
    with pytest.raises(ValueError, match="redis://"):
        RedisStore("http://localhost")


def test_ended_jobs_are_kept_an_hour_by_default() -> None:
    """docs/distributed.md, "Sizing Redis": an hour bounds what a busy queue holds."""
    assert RedisStore().keep_ended == 3600.0
    assert RedisStore.from_url("redis://h/0").keep_ended == 3600.0
    assert RedisStore.from_url("redis://h/0?keep_ended=none").keep_ended is None


async def test_redis_down_at_the_start_is_a_clear_error() -> None:
    from tests.servers import free_port

    url = f"redis://127.0.0.1:{free_port()}/0?timeout=1"
    with pytest.raises(StoreError, match=r"cannot reach Redis at redis://127\.0\.0\.1"):
        async with open_job_pool(1, 10, store=url, registry=registry):
            pass  # pragma: no cover - never entered


async def test_redis_lost_mid_run_fails_submits_and_the_pool_carries_on(tmp_path: Path) -> None:
    with redis_server_process(tmp_path) as (server_url, server):
        url = f"{server_url}/0?queue=lost&lease_timeout=3&timeout=0.3"
        async with open_job_pool(1, 10, store=url, registry=registry) as pool:
            assert await (await pool.submit(double, 1)).result() == 2
            server.send_signal(signal.SIGSTOP)  # Redis stops answering
            try:
                with pytest.raises(StoreError, match=r"cannot submit.*: Redis at redis://"):
                    await pool.submit(double, 2, job_id="maybe")
                with pytest.raises(StoreError, match="did not answer"):
                    await pool.cluster_stats()
            finally:
                server.send_signal(signal.SIGCONT)
            assert await (await pool.submit(double, 3)).result() == 6  # back: it carries on
            # A submit that failed for want of an answer may still have reached Redis (as
            # here, where the paused server read it later): its id tells (docs/distributed.md).
            try:
                maybe = await pool.aget("maybe")
            except JobNotFound:
                expected = 2
            else:
                expected = 3
                with anyio.fail_after(10):
                    while not maybe.status.ended:
                        await anyio.sleep(0.01)
                        maybe = await pool.aget("maybe")
                assert await maybe.result() == 4
            stats = await pool.cluster_stats()
        assert (stats.total_submitted, stats.total_completed) == (expected, expected)


async def test_a_store_object_works_like_its_url(queue_url: str) -> None:
    store = RedisStore.from_url(queue_url)
    for _ in range(2):  # one store object may serve one pool after another
        async with open_job_pool(1, 10, store=store, registry=registry) as pool:
            assert isinstance(pool, JobPool)
            assert pool.store is store
            assert await (await pool.submit(double, 2)).result() == 4


# -- Redis Cluster -----------------------------------------------------------------------------


async def test_the_core_cases_on_a_three_node_cluster(tmp_path: Path) -> None:
    with redis_cluster(tmp_path) as urls:
        url = f"{urls[1]}/0?cluster=1&queue=c{uuid.uuid4().hex[:8]}&lease_timeout=5"
        await _core_cases_on(url)


async def _core_cases_on(url: str) -> None:
    async with open_job_pool(0, 100, store=url, registry=registry) as front:
        assert (await front.cluster_stats()).max_workers == 0
        await front.submit(hold, "blocker", priority=-1)
        for i, priority in enumerate([5, 1, 5, 1, 10]):
            await front.submit(note, f"{i}", priority=priority)
        doomed = await front.submit(note, "doomed", priority=0)
        failing = await front.submit(flaky, "f", 1, retry=SHORT)
        later = await front.submit(note, "later", delay=0.2, priority=20)  # scheduled
        unwanted = await front.submit(note, "unwanted", delay=60)
        assert (await front.cluster_stats()).scheduled_tasks == 2
        async with open_job_pool(1, 10, store=url, registry=registry) as worker:
            await board.wait_started("blocker")
            doomed.cancel()
            with pytest.raises(JobCancelled):
                await doomed.result()
            await worker.acancel(unwanted.job_id)
            board.open()
            assert await later.result() == "later"
            await front.join()
            stats = await front.cluster_stats()
            assert worker.stats().total_completed == 8
    assert await failing.result() == "f ok after 2"
    assert invariant_holds(stats)
    assert (stats.total_completed, stats.total_cancelled, stats.total_retried) == (8, 2, 1)
    assert board.started[:6] == ["blocker", "1", "3", "0", "2", "f"]
    assert sorted(board.started[6:]) == ["4", "f", "later"]  # (the retry of f, when due)
    # A periodic schedule: kept under the queue's hash tag (one node), its declaration heard
    # by every process (pub/sub reaches the subscribers of every node), its tick fired once.
    async with (
        open_job_pool(0, 10, store=url, registry=registry) as front,
        open_job_pool(1, 10, store=url, registry=registry) as worker,
    ):
        await front.schedule("every", note, "ticked", every=1)
        await until(lambda: "every" in worker._plans)
        await board.wait_started("ticked")
        [schedule] = await worker.schedules()
        await front.unschedule("every")
        await until(lambda: not worker._plans)
        await front.join()
    assert schedule.runs >= 1
    assert schedule.last_job_id is not None
    assert schedule.last_job_id.startswith("every@")
