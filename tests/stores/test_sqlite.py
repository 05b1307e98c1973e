"""The SQLite store: crash recovery (real processes killed with SIGKILL), restarts, faults."""

from __future__ import annotations

import collections
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from tests.durable_app import (
    append,
    block_unless,
    board,
    double,
    fail,
    progress_burst,
    registry,
)
from trio_jobpool import (
    DuplicateJob,
    JobFailed,
    JobHandle,
    JobNotFound,
    JobNotRegistered,
    JobNotSerializable,
    JobStatus,
    SqliteStore,
    StoreError,
    open_job_pool,
)
from trio_jobpool.stores._base import JobRecord
from trio_jobpool.stores._sqlite_schema import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[2]


def _run_child(module: str, *args: object, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def _statuses(db: Path) -> dict[str, str]:
    with sqlite3.connect(db) as connection:
        return dict(connection.execute("SELECT job_id, status FROM jobs ORDER BY seq"))


@pytest.mark.parametrize("synchronous", ["NORMAL", "FULL"])
def test_sigkill_mid_run_loses_nothing_and_reruns_only_what_was_running(
    tmp_path: Path, synchronous: str
) -> None:
    db, log, marker = tmp_path / "jobs.db", tmp_path / "log.txt", tmp_path / "submitted"
    n_jobs, workers = 200, 4
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.stores._crash_child",
            *map(str, (db, log, marker, n_jobs, workers, 0.02, synchronous)),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        # Watching another process: poll its files, bounded in time.
        while not (marker.exists() and len(_lines(log)) >= 40):
            assert child.poll() is None, child.stderr.read() if child.stderr else ""
            assert time.monotonic() < deadline, "the child made no progress"
            time.sleep(0.002)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
        if child.stderr:
            child.stderr.close()
    assert child.returncode == -signal.SIGKILL

    at_kill = _statuses(db)
    assert len(at_kill) == n_jobs  # every accepted job is on disk
    ended = {job for job, status in at_kill.items() if status == "completed"}
    assert ended, "the kill came before any job ended: the test proves nothing"
    logged_before = len(_lines(log))

    restart = _run_child(
        "tests.stores._crash_child", db, log, marker, 0, workers, 0.02, synchronous
    )
    assert restart.returncode == 0, restart.stderr

    # The jobs on record as running at the kill (in the table, or with NORMAL only in the start
    # journal) are the ones the restart counted a crash against.
    with sqlite3.connect(db) as connection:
        running = {job for (job,) in connection.execute("SELECT job_id FROM jobs WHERE crashes")}
    assert len(running) <= workers
    runs = collections.Counter(_lines(log))
    assert set(runs) == {f"job-{i:04d}" for i in range(n_jobs)}  # every job ran at least once
    duplicates = {job for job, count in runs.items() if count > 1}
    assert duplicates <= running  # only jobs running at the moment of the kill ran twice
    assert not ended & set(_lines(log)[logged_before:])  # no ended job ran again
    assert set(_statuses(db).values()) == {"completed"}


def test_a_job_that_kills_its_process_ends_as_poison(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    for run in range(3):  # max_crashes=2: the third crash is one too many
        child = _run_child("tests.stores._poison_child", db, 2)
        assert child.returncode == 3, (run, child.stdout, child.stderr)
    final = _run_child("tests.stores._poison_child", db, 2)
    assert final.returncode == 0, final.stderr
    assert "status=failed" in final.stdout
    assert "attempts=3" in final.stdout
    assert "PoisonJob" in final.stdout
    assert "3 crashes" in final.stdout


@pytest.mark.anyio
async def test_restart_keeps_the_order_of_waiting_jobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, log, go = tmp_path / "jobs.db", tmp_path / "log.txt", tmp_path / "go"
    monkeypatch.setenv("JOBPOOL_TEST_LOG", str(log))
    rng = random.Random(11)
    priorities = [rng.randint(1, 5) for _ in range(60)]

    class OwnerGoesAway(Exception):
        pass

    with pytest.raises(OwnerGoesAway):  # noqa: PT012 - the block is the subject
        async with open_job_pool(
            1, 10, max_pending=None, store=f"sqlite:///{db}", registry=registry
        ) as pool:
            await pool.submit(block_unless, str(go), job_id="blocker", priority=0)
            await anyio.wait_all_tasks_blocked()
            for i, priority in enumerate(priorities):
                await pool.submit(append, f"{i}", priority=priority, job_id=f"job-{i}")
            raise OwnerGoesAway
    assert _lines(log) == []
    go.touch()
    async with open_job_pool(1, 10, store=f"sqlite:///{db}", registry=registry) as pool:
        assert pool.stats().total_submitted == 61  # recovered: waiting, and the blocker
        await pool.join()
        assert pool.get("blocker").attempts == 2  # its first attempt was cut short
    expected = sorted(range(len(priorities)), key=lambda i: (priorities[i], i))
    assert _lines(log) == [str(i) for i in expected]


@pytest.mark.anyio
async def test_results_and_errors_of_earlier_runs_are_readable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    async with open_job_pool(2, 10, store=url, registry=registry) as pool:
        await (await pool.submit(double, 21, job_id="ok")).wait()
        await (await pool.submit(fail, "broken input", job_id="bad")).wait()
    async with open_job_pool(2, 10, store=url, registry=registry, history=0) as pool:
        ok = pool.get("ok")
        assert ok.status is JobStatus.COMPLETED
        assert await ok.result() == 42
        assert ok.attempts == 1
        assert ok.finished_at is not None
        bad = pool.get("bad")
        assert bad.status is JobStatus.FAILED
        with pytest.raises(JobFailed) as info:
            await bad.result()
        assert info.value.type_name == "ValueError"
        assert info.value.message == "broken input"
        assert "Traceback" in info.value.traceback_text
        assert "broken input" in str(info.value)
        with pytest.raises(JobNotFound):
            pool.get("never-submitted")


@pytest.mark.anyio
async def test_durable_pools_take_registered_functions_and_json_only(tmp_path: Path) -> None:
    async def not_registered() -> None:
        await anyio.lowlevel.checkpoint()

    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    async with open_job_pool(store=url, registry=registry) as pool:
        with pytest.raises(JobNotRegistered):
            await pool.submit(not_registered)
        with pytest.raises(JobNotSerializable, match="argument"):
            await pool.submit(double, {1, 2})  # type: ignore[arg-type]
        with pytest.raises(JobNotSerializable, match="nan"):
            pool.submit_nowait(double, float("nan"))  # type: ignore[arg-type]
        by_name: JobHandle[int] = await pool.submit("double", 4)
        assert await by_name.result() == 8
        assert pool.stats().total_submitted == 1


@pytest.mark.anyio
async def test_duplicate_ids_are_refused_against_the_disk(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    go = tmp_path / "go"

    class Leave(Exception):
        pass

    with pytest.raises(Leave):  # noqa: PT012 - the block is the subject
        async with open_job_pool(1, 10, store=url, registry=registry) as pool:
            await pool.submit(block_unless, str(go), job_id="blocker")
            await pool.submit(double, 1, job_id="twin")
            raise Leave
    async with open_job_pool(1, 10, store=url, registry=registry) as pool:
        with pytest.raises(DuplicateJob, match="twin"):
            await pool.submit(double, 2, job_id="twin")
        go.touch()
        pool.cancel("blocker")
        assert await pool.get("twin").result() == 2
        again = await pool.submit(double, 3, job_id="twin")  # ended: the id may be used again
        assert await again.result() == 6


@pytest.mark.anyio
async def test_a_result_that_json_cannot_hold_fails_the_job(tmp_path: Path) -> None:
    local = type(registry)()

    @local.job(name="returns_a_set")
    async def returns_a_set() -> set[int]:
        await anyio.lowlevel.checkpoint()
        return {1}

    async with open_job_pool(store=f"sqlite:///{tmp_path / 'jobs.db'}", registry=local) as pool:
        handle = await pool.submit(returns_a_set)
        await handle.wait()
        assert handle.status is JobStatus.FAILED
        assert isinstance(handle.error, JobNotSerializable)


@pytest.mark.anyio
async def test_store_faults_are_clear_errors(tmp_path: Path) -> None:
    not_sqlite = tmp_path / "notes.txt"
    not_sqlite.write_text("this is not a database\n" * 100)
    with pytest.raises(StoreError, match=str(not_sqlite)):
        async with open_job_pool(store=f"sqlite:///{not_sqlite}", registry=registry):
            pass
    missing_dir = tmp_path / "no" / "such" / "dir" / "jobs.db"
    with pytest.raises(StoreError, match=r"jobs\.db"):
        async with open_job_pool(store=f"sqlite:///{missing_dir}", registry=registry):
            pass


@pytest.mark.anyio
async def test_a_second_pool_on_the_same_file_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    async with open_job_pool(store=url, registry=registry):
        with pytest.raises(StoreError, match="in use by another pool"):
            async with open_job_pool(store=url, registry=registry):
                pass
    async with open_job_pool(store=url, registry=registry):  # released with the first
        pass


@pytest.mark.anyio
async def test_prune_deletes_old_ended_jobs_only(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "jobs.db")
    async with open_job_pool(1, 10, store=store, registry=registry) as pool:
        for i in range(5):
            await (await pool.submit(double, i, job_id=f"old-{i}")).wait()
        assert pool.store is store
        assert await store.prune(older_than=3600) == 0
        assert await store.prune(older_than=0) == 5
        with pytest.raises(ValueError, match="older_than"):
            await store.prune(older_than=-1)
    async with open_job_pool(store=SqliteStore(tmp_path / "jobs.db"), registry=registry) as pool:
        with pytest.raises(JobNotFound):
            pool.get("old-0")


def test_store_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="registry"):
        open_job_pool(store="sqlite:///x.db")
    with pytest.raises(ValueError, match="queue_size"):
        open_job_pool(queue_size=0, store="sqlite:///x.db", registry=registry)
    with pytest.raises(ValueError, match="not supported"):
        open_job_pool(store="postgres://x", registry=registry)
    with pytest.raises(TypeError, match="store"):
        open_job_pool(store=42, registry=registry)
    with pytest.raises(ValueError, match="synchronous"):
        SqliteStore("x.db", synchronous="OFF")
    assert not os.path.exists("x.db")  # nothing was opened


def test_a_store_url_carries_its_settings(tmp_path: Path) -> None:
    store = SqliteStore.from_url(f"sqlite:///{tmp_path}/jobs.db?synchronous=full&max_crashes=5")
    assert (store.path, store.synchronous, store.max_crashes) == (tmp_path / "jobs.db", "FULL", 5)
    assert SqliteStore.from_url("sqlite:///jobs.db").synchronous == "NORMAL"
    for bad in ("?synchronous=OFF", "?max_crashes=-1", "?max_crashes=x", "?cache=1", "?x"):
        with pytest.raises(ValueError, match=r"synchronous must|bad setting"):
            SqliteStore.from_url(f"sqlite:///jobs.db{bad}")
    with pytest.raises(ValueError, match="names no file"):
        SqliteStore.from_url("sqlite:///?synchronous=FULL")
    with pytest.raises(ValueError, match="not a sqlite"):
        SqliteStore.from_url("redis://localhost")


class TracingStore(SqliteStore):
    """A store that shows its subclass every statement its writing connection runs (each
    row of an ``executemany`` too)."""

    def configure(self, connection: sqlite3.Connection) -> None:
        connection.set_trace_callback(self.statement)

    def statement(self, statement: str) -> None:
        raise NotImplementedError


class CountingStore(TracingStore):
    """Counts the progress rows its connection writes."""

    progress_rows = 0

    def statement(self, statement: str) -> None:
        if statement.startswith("UPDATE jobs SET progress"):
            self.progress_rows += 1


@pytest.mark.anyio
@pytest.mark.parametrize("synchronous", ["NORMAL", "FULL"])
async def test_progress_reports_between_two_commits_are_one_write(
    tmp_path: Path, synchronous: str
) -> None:
    store = CountingStore(tmp_path / "jobs.db", synchronous=synchronous)
    async with open_job_pool(1, 10, store=store, registry=registry) as pool:
        job = await pool.submit(progress_burst, "p", 1000, job_id="p")
        await board.wait_started("p")
        await store.flush()
        # The 1,000 reports came without a checkpoint. On the loop (NORMAL) the writer took
        # them as one write; the writer thread of FULL may commit while the burst goes on (the
        # interpreter switches threads every 5 ms), and then the rest fold into the next one:
        # a few writes, never one per report.
        if synchronous == "NORMAL":
            assert store.progress_rows == 1
        else:
            assert 1 <= store.progress_rows <= 10
        board.open()
        await job.wait()
    with sqlite3.connect(tmp_path / "jobs.db") as connection:
        row = connection.execute(
            "SELECT progress, progress_message, status FROM jobs WHERE job_id = 'p'"
        ).fetchone()
    assert row == (1.0, "after", "completed")


# The schema of the first release of the store (version 1): kept to test the upgrade.
_SCHEMA_V1 = """
CREATE TABLE jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL, name TEXT NOT NULL,
    args TEXT NOT NULL, priority INTEGER NOT NULL, status TEXT NOT NULL, timeout REAL,
    retry TEXT, attempts INTEGER NOT NULL DEFAULT 0, crashes INTEGER NOT NULL DEFAULT 0,
    interrupted INTEGER NOT NULL DEFAULT 0, progress REAL NOT NULL DEFAULT 0,
    progress_message TEXT, result TEXT, error_type TEXT, error_message TEXT,
    error_traceback TEXT, submitted_at REAL NOT NULL, started_at REAL, finished_at REAL,
    exec_time REAL, retry_at REAL
);
CREATE UNIQUE INDEX jobs_live_id ON jobs (job_id) WHERE status IN ('queued', 'retrying', 'running');
CREATE INDEX jobs_by_id ON jobs (job_id, seq);
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
"""


@pytest.mark.anyio
async def test_a_file_of_the_first_schema_is_upgraded_and_resumed(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    with sqlite3.connect(db) as connection:
        connection.executescript(_SCHEMA_V1)
        for seq, (job_id, status) in enumerate(
            [("done", "completed"), ("second", "queued"), ("first", "running")], start=1
        ):
            connection.execute(
                "INSERT INTO jobs (seq, job_id, name, args, priority, status, attempts, "
                "submitted_at, finished_at) VALUES (?, ?, 'double', ?, ?, ?, ?, ?, ?)",
                (seq, job_id, f"[{seq}]", 5 if job_id == "second" else 1, status,
                 int(status != "queued"), time.time(), time.time() if status == "completed"
                 else None),
            )  # fmt: skip
    connection.close()
    async with open_job_pool(1, 10, store=f"sqlite:///{db}", registry=registry) as pool:
        first, second = pool.get("first"), pool.get("second")
        assert [await first.result(), await second.result()] == [6, 4]
        assert first.attempts == 2  # the attempt the crash cut short, and this one
        assert pool.get("done").status is JobStatus.COMPLETED  # read back from disk
    with sqlite3.connect(db) as connection:
        indexes = {name for (name,) in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
        )}  # fmt: skip
        (version,) = connection.execute("PRAGMA user_version").fetchone()
        statuses = dict(connection.execute("SELECT job_id, status FROM jobs"))
    connection.close()
    assert indexes == {"jobs_by_id", "jobs_by_end"}
    assert version == SCHEMA_VERSION
    assert statuses == {"done": "completed", "second": "completed", "first": "completed"}


class CancelDuringCommit(TracingStore):
    """Cancels ``scope`` from inside its next commit (made on the event loop's thread)."""

    scope: anyio.CancelScope | None = None

    def statement(self, statement: str) -> None:
        if statement.startswith("INSERT") and self.scope is not None:
            self.scope.cancel()
            self.scope = None


@pytest.mark.anyio
async def test_a_submit_cancelled_while_its_job_is_written_returns_the_job(tmp_path: Path) -> None:
    store = CancelDuringCommit(tmp_path / "jobs.db")
    returned, went_on = [], []
    async with open_job_pool(1, 10, store=store, registry=registry) as pool:
        with anyio.CancelScope() as scope:
            store.scope = scope
            returned.append(await pool.submit(double, 21, job_id="mid-write"))
            await anyio.lowlevel.checkpoint()  # the cancellation is delivered here
            went_on.append(True)
        assert scope.cancelled_caught
        assert returned
        assert not went_on
        assert await returned[0].result() == 42  # accepted, so it ran
    with sqlite3.connect(tmp_path / "jobs.db") as connection:
        assert connection.execute("SELECT status FROM jobs").fetchall() == [("completed",)]
    connection.close()


@pytest.mark.anyio
@pytest.mark.parametrize("synchronous", ["NORMAL", "FULL"])
async def test_the_wal_file_stays_small_under_a_steady_load(
    tmp_path: Path, synchronous: str
) -> None:
    # 3,000 jobs write about 60 MB of WAL frames; checkpoints must let the WAL start over
    # (SQLite's autocheckpoint: at 1,000 pages, 4 MiB) instead of growing with the load.
    db = tmp_path / "jobs.db"
    store = SqliteStore(db, synchronous=synchronous)
    async with open_job_pool(10, 100, store=store, registry=registry) as pool:
        for i in range(3_000):
            await pool.submit(double, i)
        await pool.join()
        wal = db.with_name("jobs.db-wal").stat().st_size
    assert wal < 16 << 20, wal


class SmallCommits(TracingStore):
    """Commits at most 8 writes at a time on the loop; records each commit's size."""

    _max_batch = 8

    def configure(self, connection: sqlite3.Connection) -> None:
        self.sizes: list[int] = []
        super().configure(connection)

    def statement(self, statement: str) -> None:
        if statement == "BEGIN":
            self.sizes.append(0)
        elif statement.startswith(("INSERT", "UPDATE")) and self.sizes:
            self.sizes[-1] += 1


@pytest.mark.anyio
async def test_a_burst_of_submits_is_committed_in_parts(tmp_path: Path) -> None:
    store = SmallCommits(tmp_path / "jobs.db")
    async with open_job_pool(2, 100, store=store, registry=registry) as pool:
        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(pool.submit, double, i)
        await pool.join()
        assert pool.stats().total_completed == 50
    assert max(store.sizes) == 8  # the burst was split, and no part was larger
    assert sum(store.sizes) == 150  # each job: inserted, started, ended


@pytest.mark.anyio
@pytest.mark.parametrize("synchronous", ["NORMAL", "FULL"])
async def test_a_late_write_never_brings_an_ended_job_back(
    tmp_path: Path, synchronous: str
) -> None:
    # E.g. the write of a retry whose commit failed, retried after the job was cancelled.
    db = tmp_path / "jobs.db"
    store = SqliteStore(db, synchronous=synchronous)
    async with open_job_pool(1, 10, store=store, registry=registry) as pool:
        assert await (await pool.submit(double, 1, job_id="x")).result() == 2
        await store.flush()
        with sqlite3.connect(db) as connection:
            (seq,) = connection.execute("SELECT seq FROM jobs WHERE job_id = 'x'").fetchone()
        connection.close()
        late = JobRecord("x", "double", [1], 5, status="retrying", attempts=9, seq=seq)
        late.progress = 0.5
        for ticket in (store.changed(late), store.started(late), store.progressed(late)):
            await store.wait(ticket)
    assert _statuses(db) == {"x": "completed"}
    async with open_job_pool(1, 10, store=SqliteStore(db), registry=registry) as pool:
        assert pool.get("x").attempts == 1
        assert pool.get("x").progress == 0.0


@pytest.mark.anyio
async def test_prune_deletes_in_parts_and_counts_them_all(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "jobs.db")
    async with open_job_pool(10, 100, store=store, registry=registry) as pool:
        for i in range(2_500):  # two whole parts of 1,000 and a last one of 500
            await pool.submit(double, i)
        await pool.join()
        live = await pool.submit(block_unless, str(tmp_path / "never"), job_id="live")
        assert await store.prune(older_than=0) == 2_500
        assert live.status is not JobStatus.COMPLETED
        live.cancel()
