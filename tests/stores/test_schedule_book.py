"""The book of periodic schedules (``ScheduleBook``) on every book a pool has: the pool's own
in memory (``MemoryBook``), the fake store's (tests/stores/fake_store.py), SQLite's and the
Redis queue's, through the same calls the pool makes; then what SQLite adds: a tick's step is
one transaction, ordered with the store's other writes; what Redis adds: the step checks the
overlap rule itself, and refuses a tick ahead of Redis's clock; and a tick that fired while its
schedule was declared anew still runs.

The pool-level contract over real restarts and ``kill -9`` is in test_sqlite_schedules.py, and
across real processes on Redis in test_redis_schedules.py."""

from __future__ import annotations

import dataclasses
import math
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any, cast

import anyio
import pytest

from tests._helpers import run_virtual
from tests.durable_app import board, note, registry
from tests.stores._suite import invariant_holds
from trio_jobpool import JobPool, JobStatus, SqliteStore, StoreError, open_job_pool
from trio_jobpool._distributed import DistributedPool
from trio_jobpool._job import RecordedJob
from trio_jobpool._records import record_from_fields
from trio_jobpool.stores import JobRecord
from trio_jobpool.stores._base import ScheduleBook, ScheduleRecord

from .fake_store import MemoryStore

pytestmark = pytest.mark.anyio


def declaration(name: str, now: float, **changes: Any) -> ScheduleRecord:
    """A schedule as the pool declares it at wall-clock ``now`` (every minute, job ``note``)."""
    record = ScheduleRecord(
        name=name,
        job_name="note",
        args=[name],
        cron=None,
        every=60.0,
        tz="UTC",
        anchor=now,
        handled_until=now,
        next_run=now + 60,
    )
    return dataclasses.replace(record, **changes)


def step(record: ScheduleRecord, now: float, tick: float) -> tuple[ScheduleRecord, JobRecord]:
    """The state after ``record`` fires ``tick`` at ``now``, and the tick's job."""
    job_id = f"{record.name}@{tick}"
    after = dataclasses.replace(
        record,
        handled_until=now,
        next_run=tick + 60,
        runs=record.runs + 1,
        last_run=tick,
        last_job_id=job_id,
    )
    job = JobRecord(job_id, record.job_name, list(record.args), record.priority)
    job.submitted_at = now
    return after, job


async def stored_job(pool: JobPool, job_id: str) -> JobRecord | None:
    """The job ``job_id`` as the pool's store has it (``None`` for a pool without a store, or
    if the store has no such job)."""
    store = pool.store
    if isinstance(store, MemoryStore | SqliteStore):
        return store.load(job_id)
    if isinstance(pool, DistributedPool):
        fields = await pool._queue.job(job_id)
        return record_from_fields(job_id, fields) if fields else None
    return None


async def test_declare_fire_and_remove(pool_kwargs: dict[str, Any]) -> None:
    # (no worker on Redis: the tick's job would be claimed, and the test reads it waiting)
    workers = 0 if str(pool_kwargs.get("store", "")).startswith("redis") else 1
    async with open_job_pool(workers, 10, **pool_kwargs) as pool:
        book: ScheduleBook = pool._book
        store = pool.store
        if isinstance(pool, DistributedPool):  # the queue keeps them, through the pool
            assert (await pool.cluster_stats()).total_submitted == 0
            pool.early_tolerance = 1e6  # the test's ticks are ahead of Redis's clock
        else:
            assert (book is cast(object, store)) is (store is not None)  # a store keeps them
        assert await book.load_schedules() == []
        now = time.time()
        first = declaration("b", now)
        assert await book.declare_schedule(first) == first
        assert await book.declare_schedule(declaration("a", now, args=[])) == declaration(
            "a", now, args=[]
        )
        assert [s.name for s in await book.load_schedules()] == ["a", "b"]

        # An identical declaration, later: the schedule kept is returned, unchanged.
        later = declaration("b", now + 5, next_run=now + 65)
        assert await book.declare_schedule(later) == first

        # A tick fires: the state moves and the job is inserted, numbered.
        after, job = step(first, now + 61, now + 60)
        assert await book.fire(first, after, job) == after
        assert await book.load_schedules() == [declaration("a", now, args=[]), after]
        inserted = await stored_job(pool, job.job_id)
        if store is not None:
            assert inserted is not None
            assert (inserted.status, inserted.name, inserted.args) == ("queued", "note", ["b"])
            assert inserted.seq == job.seq > 0

        # The same tick again, from a stale state (another process, an earlier pool): nothing.
        again, other = step(first, now + 62, now + 60)
        other.job_id = "b@again"
        assert await book.fire(first, again, other) == after
        assert await stored_job(pool, "b@again") is None
        assert other.seq == 0
        assert await book.load_schedules() == [declaration("a", now, args=[]), after]

        # A different declaration replaces it, keeping the counters and the last run.
        replaced = declaration("b", now + 70, every=30.0, next_run=now + 100, skipped=9)
        kept = await book.declare_schedule(replaced)
        assert kept == dataclasses.replace(
            replaced, runs=1, skipped=0, last_run=now + 60, last_job_id=job.job_id
        )
        # A step from the state before the replacement does nothing.
        stale, late = step(after, now + 121, now + 120)
        assert await book.fire(after, stale, late) == kept
        assert await stored_job(pool, late.job_id) is None

        # Removed: fire finds nothing, and writes nothing.
        assert await book.remove_schedule("b") is True
        assert await book.remove_schedule("b") is False
        gone, orphan = step(kept, now + 101, now + 100)
        assert await book.fire(kept, gone, orphan) is None
        assert await stored_job(pool, orphan.job_id) is None
        assert await book.load_schedules() == [declaration("a", now, args=[])]
        # A fire without a job (a skipped or paused tick) moves the state only.
        a = declaration("a", now, args=[])
        moved = dataclasses.replace(a, handled_until=now + 61, next_run=now + 120, skipped=1)
        assert await book.fire(a, moved, None) == moved
        assert await book.load_schedules() == [moved]


# -- Redis ---------------------------------------------------------------------------------------


ELSEWHERE = "registered-elsewhere"  # a job name the test's registry does not have


@pytest.fixture
def redis_store(redis_url: str) -> str:
    """A queue of the test's own on the session's server."""
    return f"{redis_url}/0?queue=b{uuid.uuid4().hex[:12]}&lease_timeout=5"


async def waiting_ids(pool: DistributedPool) -> list[str]:
    """The ids of the jobs waiting in Redis, in the order they will be claimed."""
    members = await pool._queue.client.zrange(f"{pool._queue.prefix}:waiting", 0, -1)
    return [str(member)[17:] for member in members]


async def test_the_redis_book_checks_the_overlap_itself(redis_store: str) -> None:
    """A shared book does not rely on the firing process to know every process's jobs: a tick
    whose schedule's last job is live anywhere is skipped by the step itself, and so is a tick
    whose own id is live; the job is submitted as a scheduled job coming due (behind the jobs of
    its priority, counted in the cluster's totals) and its handle follows it here."""
    async with open_job_pool(0, 10, store=redis_store, registry=registry) as pool:
        assert isinstance(pool, DistributedPool)
        book: ScheduleBook = pool._book
        now = time.time() - 600  # every tick of the test has passed
        # (a job this pool does not know: it fires nothing of this schedule itself)
        kept = await book.declare_schedule(declaration("o", now, job_name=ELSEWHERE))
        waiting = await pool.submit(note, "waiting", job_id="waiting")
        after, job = step(kept, now + 61, now + 60)
        assert await book.fire(kept, after, job) == after
        assert isinstance(waiting, RecordedJob)
        assert job.seq > waiting._record.seq
        assert await waiting_ids(pool) == ["waiting", job.job_id]  # behind, at its priority
        assert (await pool.aget(job.job_id)).status is JobStatus.QUEUED

        # The next tick, with the last job still live (in Redis; this process knows nothing of
        # it): skipped by the step, its state moved, nothing submitted.
        skipped, second = step(after, now + 121, now + 120)
        expected = dataclasses.replace(
            skipped, runs=1, last_run=now + 60, last_job_id=job.job_id, skipped=1
        )
        assert await book.fire(after, skipped, second) == expected
        assert await book.load_schedules() == [expected]
        assert await stored_job(pool, second.job_id) is None

        # With overlap "allow", fired anyway; a tick whose own id is live is skipped.
        allowing = declaration("o", now + 130, job_name=ELSEWHERE, overlap="allow")
        allowing = await book.declare_schedule(allowing)
        assert allowing.last_job_id == job.job_id
        fired, third = step(allowing, now + 181, now + 180)
        assert await book.fire(allowing, fired, third) == fired
        await pool.submit(note, "by hand", job_id="o@by-hand")
        taken, fourth = step(fired, now + 241, now + 240)
        fourth.job_id = taken.last_job_id = "o@by-hand"
        assert await book.fire(fired, taken, fourth) == dataclasses.replace(
            taken, runs=2, last_run=now + 180, last_job_id=third.job_id, skipped=2
        )
        assert await waiting_ids(pool) == ["waiting", job.job_id, third.job_id, "o@by-hand"]
        stats = await pool.cluster_stats()
        assert (stats.total_submitted, stats.queued_tasks) == (4, 4)
        assert invariant_holds(stats)
        for job_id in await waiting_ids(pool):
            await pool.acancel(job_id)


async def test_the_redis_book_refuses_a_tick_ahead_of_redis_clock(
    redis_store: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A step whose tick is more than the tolerance (1 s) ahead of Redis's clock changes
    nothing; the pool's timer waits for Redis's clock (and the pool warns, once)."""
    async with open_job_pool(0, 10, store=redis_store, registry=registry) as pool:
        assert isinstance(pool, DistributedPool)
        book: ScheduleBook = pool._book
        now = time.time()
        kept = await book.declare_schedule(declaration("e", now - 60, job_name=ELSEWHERE))
        with caplog.at_level("WARNING", logger="trio_jobpool.distributed"):
            for ahead in (30, 20):  # (the second refusal is not warned again)
                after, job = step(kept, now + ahead, now + ahead)
                pool._ticker_resume = -math.inf
                assert await book.fire(kept, after, job) == kept
                assert pool._ticker_resume == pytest.approx(pool._now() + ahead, abs=0.5)
        assert await book.load_schedules() == [kept]
        assert await stored_job(pool, job.job_id) is None
        warned = [r.getMessage() for r in caplog.records if "ahead of Redis" in r.getMessage()]
        assert len(warned) == 1
        assert "this host's clock is 30.0 s ahead of Redis's" in warned[0]
        after, job = step(kept, now + 0.5, now + 0.5)  # within the tolerance: made
        assert await book.fire(kept, after, job) == after
        pool._ticker_resume = -math.inf
        await pool.acancel(job.job_id)


# -- SQLite ------------------------------------------------------------------------------------


@pytest.fixture(params=["NORMAL", "FULL"])
def synchronous(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_sqlite_keeps_the_book_in_the_file_as_json(tmp_path: Path, synchronous: str) -> None:
    """Arguments and retry policies are JSON in the file: a declaration whose arguments hold a
    tuple is identical to the one kept (a list), and everything comes back as written."""
    db = tmp_path / "jobs.db"
    now = time.time()
    retry = {"max_attempts": 3, "backoff": 0.5}
    record = declaration(
        "s", now, args=[[1, 2], {"k": None}], retry=retry, timeout=float("inf"), paused=True
    )
    store = SqliteStore(db, synchronous=synchronous)
    await store.open()
    try:
        assert await store.declare_schedule(record) == record
        with_tuple = dataclasses.replace(record, args=[(1, 2), {"k": None}], anchor=now + 1)
        assert await store.declare_schedule(with_tuple) == record
    finally:
        await store.aclose()
    again = SqliteStore(db, synchronous=synchronous)
    await again.open()
    try:
        assert await again.load_schedules() == [record]
    finally:
        await again.aclose()


class RefusingStore(SqliteStore):
    """Refuses the insert of any job whose id starts with ``refused@`` (a trigger on its own
    connection), as a full disk or an I/O error would fail a commit."""

    def configure(self, connection: sqlite3.Connection) -> None:
        connection.execute(
            "CREATE TEMP TRIGGER refuse BEFORE INSERT ON main.jobs "
            "WHEN NEW.job_id LIKE 'refused@%' BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )


async def test_a_tick_step_is_one_transaction(tmp_path: Path, synchronous: str) -> None:
    """A tick whose job cannot be inserted leaves its schedule as it was: the state that says
    the tick was handled and its job are written together or not at all."""
    db = tmp_path / "jobs.db"
    store = RefusingStore(db, synchronous=synchronous)
    await store.open()
    now = time.time()
    try:
        kept = await store.declare_schedule(declaration("refused", now))
        after, job = step(kept, now + 61, now + 60)
        with pytest.raises(StoreError, match="refused"):
            await store.fire(kept, after, job)
        assert job.seq == 0
        assert await store.load_schedules() == [kept]
        assert store.load(job.job_id) is None
        after.last_job_id = job.job_id = "refused-not@1"  # the next try succeeds
        assert await store.fire(kept, after, job) == after
        assert await store.load_schedules() == [after]
    finally:
        await store.aclose()
    connection = sqlite3.connect(db)
    try:
        rows = connection.execute("SELECT job_id, status FROM jobs").fetchall()
        (handled,) = connection.execute("SELECT handled_until FROM schedules").fetchone()
    finally:
        connection.close()
    assert rows == [("refused-not@1", "queued")]
    assert handled == now + 61


class TracedStore(SqliteStore):
    """Records every statement its writing connection runs (each row of an executemany too)."""

    def configure(self, connection: sqlite3.Connection) -> None:
        self.statements: list[str] = []
        connection.set_trace_callback(self.statements.append)


async def test_a_tick_step_comes_after_the_writes_queued_before_it(
    tmp_path: Path, synchronous: str
) -> None:
    """The end of a job queued before a tick's step is committed with it or before it, and
    the tick's job is committed before its start is even queued."""
    store = TracedStore(tmp_path / "jobs.db", synchronous=synchronous)
    await store.open()
    now = time.time()
    try:
        kept = await store.declare_schedule(declaration("s", now))
        earlier = JobRecord("earlier", "note", ["earlier"], 5, submitted_at=now)
        await store.wait(store.add(earlier))
        earlier.status, earlier.finished_at, earlier.result = "completed", now, "earlier"
        store.changed(earlier)  # queued, not waited for
        after, job = step(kept, now + 61, now + 60)
        assert await store.fire(kept, after, job) == after
        fired = len(store.statements)  # every statement run by the time fire returned
        job.status, job.attempts, job.started_at = "running", 1, now + 61
        await store.wait(store.started(job))
    finally:
        await store.aclose()
    statements = store.statements

    def first(prefix: str, of: str = "") -> int:
        return next(i for i, s in enumerate(statements) if s.startswith(prefix) and of in s)

    ended = first("UPDATE jobs SET status = 'completed'")
    put = first("INSERT OR REPLACE INTO schedules", job.job_id)  # its last_job_id
    inserted = first("INSERT INTO jobs", job.job_id)
    commit = inserted + statements[inserted:].index("COMMIT")
    started = first("UPDATE jobs SET status = 'running'")
    assert ended < put < inserted < commit < fired <= started
    connection = sqlite3.connect(tmp_path / "jobs.db")
    try:
        rows = dict(connection.execute("SELECT job_id, status FROM jobs").fetchall())
    finally:
        connection.close()
    assert rows == {"earlier": "completed", job.job_id: "running"}


# -- a tick that fires while its schedule changes ----------------------------------------------


class PausingStore(MemoryStore):
    """The fake store, stopping inside each tick's step, once the step is made, until
    ``resume`` is set (events made in the loop by the test)."""

    made: anyio.Event
    resume: anyio.Event

    async def fire(
        self, before: ScheduleRecord, after: ScheduleRecord, job: JobRecord | None
    ) -> ScheduleRecord | None:
        kept = await super().fire(before, after, job)
        self.made.set()
        await self.resume.wait()
        return kept


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
@pytest.mark.parametrize("change", ["declare", "unschedule"])
def test_a_tick_that_fired_runs_even_if_its_schedule_changed_meanwhile(
    backend: str, change: str
) -> None:
    """A tick's step made, and the schedule declared anew (or removed) before the step
    returned to the pool: the job is on record, so the pool runs it. (In virtual time.)"""

    async def main() -> None:
        store = PausingStore()
        store.made, store.resume = anyio.Event(), anyio.Event()
        with anyio.fail_after(1000):
            async with open_job_pool(1, 10, store=store, registry=registry) as pool:
                declared = await pool.schedule("s", note, "first", every=10)
                await store.made.wait()  # the tick at 10 s: made, not yet returned
                if change == "declare":
                    await pool.schedule("s", note, "second", every=60)
                else:
                    await pool.unschedule("s")
                store.resume.set()
                await board.wait_started("first")
                job_id = store.schedules["s"].last_job_id if change == "declare" else None
                await pool.join()
                ran = [job for job, r in store.rows.items() if r.status == "completed"]
                assert len(ran) == 1
                assert pool.get(ran[0]).status is JobStatus.COMPLETED
                assert ran[0].startswith("s@")
                if job_id is not None:
                    assert job_id == ran[0]  # the replacement kept its last run
                    assert [s.runs for s in await pool.schedules()] == [1]
                    await pool.unschedule("s")
                assert declared.runs == 0
        assert board.started == ["first"]

    run_virtual(backend, main)


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_a_tick_the_store_cannot_take_is_tried_again_not_lost(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    """While the store fails, a tick's step fails: the pool logs it and tries again after a
    backoff (0.1, 0.2, 0.4 … s); once the store commits again, the tick fires, once. The pool
    does not end. (In virtual time.)"""

    async def main() -> None:
        store = MemoryStore()
        with anyio.fail_after(1000):
            async with open_job_pool(1, 10, store=store, registry=registry) as pool:
                await pool.schedule("s", note, "tick", every=10)
                store.failing = True
                await anyio.sleep(10.65)  # the step at 10 and the tries at 10.1, 10.3 fail
                assert [s.runs for s in await pool.schedules()] == [0]
                store.failing = False
                await board.wait_started("tick")  # the try at 10.7
                schedule = (await pool.schedules())[0]
                assert (schedule.runs, schedule.skipped) == (1, 0)
                await pool.unschedule("s")
                await pool.join()
        assert board.started == ["tick"]

    with caplog.at_level("WARNING", logger="trio_jobpool"):
        run_virtual(backend, main)
    tries = [r.getMessage() for r in caplog.records if "could not be fired" in r.getMessage()]
    assert [t.rsplit("again in ", 1)[1] for t in tries] == ["0.1 s", "0.2 s", "0.4 s"]


class _UnreadableAtFirst(MemoryStore):
    """A store whose schedules cannot be read the first ``failures`` times."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def load_schedules(self) -> list[ScheduleRecord]:
        if self.failures:
            self.failures -= 1
            raise StoreError("the store cannot be read")
        return await super().load_schedules()


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_schedules_the_store_cannot_read_at_open_are_read_again_not_fatal(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    """If the stored schedules cannot be read as the pool opens (the store fails, Redis does
    not answer), the pool logs it and reads them again after a backoff (0.1, 0.2 … s) instead
    of ending; once it can, the stored schedules fire. (In virtual time.)"""

    async def main() -> None:
        first = MemoryStore()
        async with open_job_pool(1, 10, store=first, registry=registry) as pool:
            await pool.schedule("s", note, "tick", every=10)
        store = _UnreadableAtFirst(2)
        store.schedules = first.schedules
        store.rows = first.rows
        with anyio.fail_after(1000):
            async with open_job_pool(1, 10, store=store, registry=registry) as pool:
                await anyio.sleep(0.5)  # the reads at 0, 0.1 fail; the one at 0.3 succeeds
                assert store.failures == 0
                await board.wait_started("tick")
                await pool.unschedule("s")
                await pool.join()
        assert board.started == ["tick"]

    with caplog.at_level("WARNING", logger="trio_jobpool"):
        run_virtual(backend, main)
    tries = [r.getMessage() for r in caplog.records if "could not be read" in r.getMessage()]
    assert [t.rsplit("again in ", 1)[1] for t in tries] == ["0.1 s", "0.2 s"]
