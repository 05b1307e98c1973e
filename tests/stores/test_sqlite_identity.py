"""The SQLite store's hold on its database (issue #12, items 1, 4 and 5).

* One pool per database, whatever the name: a symlink, a hard link or a deleted lock file no
  longer lets a second pool open the same database (in this process or another), and the pool
  that is refused touches nothing.
* A full disk: a job whose start cannot be written stays queued and runs once there is room
  again; an end that cannot be written is written once there is room.
* The database deleted (or replaced) under a running pool: submits fail, none is accepted into a
  file nobody will read.
"""

from __future__ import annotations

import collections
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families

from tests.durable_app import board, hold, note, registry
from trio_jobpool import JobPool, JobStatus, SqliteStore, StoreError, open_job_pool
from trio_jobpool.http.metrics import pool_registry, render

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    """Both backends; Trio with a clock that jumps over the pool's backoff sleeps."""
    if request.param == "trio":
        return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})
    return "asyncio"


def _snapshot(directory: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every file of ``directory``: (size, mtime in ns, contents), to see that nothing changed."""
    files = {}
    for path in sorted(directory.iterdir()):
        if path.is_file() and not path.is_symlink():
            stat = path.stat()
            files[path.name] = (stat.st_size, stat.st_mtime_ns, path.read_bytes())
        else:
            files[path.name] = (0, 0, os.readlink(path).encode() if path.is_symlink() else b"")
    return files


def _statuses(db: Path) -> dict[str, str]:
    connection = sqlite3.connect(db)
    try:
        return dict(connection.execute("SELECT job_id, status FROM jobs ORDER BY seq"))
    finally:
        connection.close()


# -- one pool per database -------------------------------------------------------------------


def _other_name(db: Path, how: str) -> Path:
    """Another way to name the database ``db``: a symlink, a hard link, or the same path with
    the lock file of earlier versions deleted."""
    if how == "symlink":
        other = db.parent / "link.db"
        other.symlink_to(db)
    elif how == "hard link":
        other = db.parent / "hard.db"
        os.link(db, other)
    else:
        other = db
        Path(f"{db}-lock").unlink(missing_ok=True)
    return other


@pytest.mark.parametrize("how", ["symlink", "hard link", "deleted lock file"])
async def test_a_second_pool_on_the_same_database_by_any_name_is_refused_and_touches_nothing(
    tmp_path: Path, how: str
) -> None:
    db = tmp_path / "jobs.db"
    async with open_job_pool(1, 10, store=f"sqlite:///{db}", registry=registry) as pool:
        await (await pool.submit(note, "first", job_id="first")).wait()
        await pool.store.flush()  # type: ignore[union-attr]
        other = _other_name(db, how)
        before = _snapshot(tmp_path)
        with pytest.raises(StoreError, match="in use by another pool"):
            async with open_job_pool(1, 10, store=f"sqlite:///{other}", registry=registry):
                pytest.fail("a second pool opened the database")
        assert _snapshot(tmp_path) == before  # no -wal, -shm or lock file of its own, no write
        await (await pool.submit(note, "second", job_id="second")).wait()  # the first goes on
    async with open_job_pool(1, 10, store=f"sqlite:///{other}", registry=registry) as pool:
        assert (await pool.aget("second")).status is JobStatus.COMPLETED  # released, same data


_LEAVE_WAL = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], timeout=0)
try:
    print(connection.execute("PRAGMA journal_mode=DELETE").fetchone()[0])
except sqlite3.OperationalError as exc:
    print(exc)
"""


async def test_a_second_store_object_in_the_same_process_keeps_the_first_ones_locks(
    tmp_path: Path,
) -> None:
    """A refused open in the process of the pool that holds the database closes nothing of
    the first pool's (a closed descriptor would drop SQLite's own locks on the file)."""
    db = tmp_path / "jobs.db"
    link = tmp_path / "link.db"
    link.symlink_to(db)
    async with open_job_pool(1, 10, store=SqliteStore(db), registry=registry) as pool:
        for _ in range(3):
            with pytest.raises(StoreError, match="in use by another pool"):
                async with open_job_pool(1, 10, store=SqliteStore(link), registry=registry):
                    pass
        # SQLite's locks of the first pool are intact: another process cannot take the
        # database out of WAL mode (that needs the exclusive lock the pool's shared one
        # blocks; a closed descriptor would have dropped it, and this would succeed).
        other = await anyio.run_process([sys.executable, "-c", _LEAVE_WAL, str(db)])
        assert other.stdout.decode().strip() == "database is locked", other.stdout
        await (await pool.submit(note, "after", job_id="after")).wait()


def test_a_pool_in_another_process_is_refused_by_every_name(tmp_path: Path) -> None:
    """Two real processes: the one that comes second exits with the error, and no job runs in
    it (the jobs of the first are long, so they are still live while the second tries)."""
    db, log, marker = tmp_path / "jobs.db", tmp_path / "log.txt", tmp_path / "submitted"
    first = subprocess.Popen(
        [sys.executable, "-m", "tests.stores._crash_child", *map(str, (db, log, marker, 4, 2, 60))],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():  # another process: nothing to wait on but its file
            assert first.poll() is None, "the first pool exited"
            assert time.monotonic() < deadline, "the first pool never submitted its jobs"
            time.sleep(0.02)
        link, hard = tmp_path / "link.db", tmp_path / "hard.db"
        link.symlink_to(db)
        os.link(db, hard)
        Path(f"{db}-lock").unlink(missing_ok=True)
        for name in (db, link, hard):
            second = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "tests.stores._crash_child",
                    *map(str, (name, log, marker, 0, 2)),
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert second.returncode != 0, (name, second.stderr)
            assert "in use by another pool" in second.stderr, second.stderr
        assert not (tmp_path / "link.db-wal").exists()
        assert not (tmp_path / "hard.db-wal").exists()
        started = collections.Counter(log.read_text().split())
        # only the first process's two workers ever started a job, each once
        assert set(started) <= {"job-0000", "job-0001"}, started
        assert set(started.values()) <= {1}, started
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()


# -- a full disk ---------------------------------------------------------------------------


class FillableDisk(SqliteStore):
    """A store whose disk can be filled and emptied: every insert into ``jobs`` and every
    change of a job's status also stores a 16 KiB blob (a trigger), and :meth:`fill` caps the
    database at the pages it has (``PRAGMA max_page_count``). While full, every submit, start
    and end fails with SQLite's own "database or disk is full"."""

    def __init__(self, path: Path, *, full: bool, synchronous: str = "NORMAL") -> None:
        super().__init__(path, synchronous=synchronous)
        self.full = full
        self.connection: sqlite3.Connection | None = None

    def configure(self, connection: sqlite3.Connection) -> None:
        connection.executescript(
            """
            CREATE TABLE IF NOT EXISTS ballast (data BLOB);
            CREATE TRIGGER IF NOT EXISTS ballast_insert AFTER INSERT ON jobs
                BEGIN INSERT INTO ballast VALUES (zeroblob(16384)); END;
            CREATE TRIGGER IF NOT EXISTS ballast_status AFTER UPDATE OF status ON jobs
                BEGIN INSERT INTO ballast VALUES (zeroblob(16384)); END;
            """
        )
        self.connection = connection
        if self.full:
            self.fill()

    def fill(self) -> None:
        assert self.connection is not None
        self.connection.execute("PRAGMA max_page_count = 1")  # (never below the current size)

    def make_room(self) -> None:
        assert self.connection is not None
        self.connection.execute("PRAGMA max_page_count = 1000000")


def _metric(pool: JobPool, name: str) -> float:
    """The value of the sample ``name`` on the pool's ``/metrics``."""
    text = render(pool_registry(pool)).decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise KeyError(name)


async def _queue_on_disk(db: Path, names: list[str]) -> None:
    """Leave ``names`` queued on disk: a pool accepts them behind a job that holds its only
    worker, and its block is left by an exception (the shutdown leaves waiting jobs queued)."""
    with pytest.raises(KeyError):  # noqa: PT012 - the block is the subject
        async with open_job_pool(1, 100, store=f"sqlite:///{db}", registry=registry) as pool:
            await pool.submit(hold, "blocker", "never", job_id="blocker")
            await board.wait_started("blocker")
            for name in names:
                await pool.submit(note, name, job_id=name)
            raise KeyError("leave")
    board.reset()
    assert set(_statuses(db).values()) == {"queued"}


@pytest.mark.parametrize("synchronous", ["NORMAL", "FULL"])
async def test_jobs_whose_start_cannot_be_written_stay_queued_and_run_once_there_is_room(
    tmp_path: Path, synchronous: str, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "jobs.db"
    names = [f"job-{i:02d}" for i in range(32)]
    await _queue_on_disk(db, names)
    board.open("never")  # (the blocker left queued runs to its end this time)
    store = FillableDisk(db, full=True, synchronous=synchronous)
    async with open_job_pool(
        4, 100, job_timeout=None, store=store, registry=registry
    ) as pool:  # the disk is full from the start: every start the workers try fails
        with pytest.raises(StoreError, match="disk is full"):
            await pool.submit(note, "refused", job_id="refused")  # after the starts' commit
        for _ in range(10):  # some backoffs go by: nothing starts, nothing ends
            await anyio.sleep(0.05)
            stats = pool.stats()
            assert (stats.total_failed, stats.total_completed) == (0, 0)
            assert stats.queued_tasks + stats.active_workers == 33
        assert board.started == []
        assert store.failing
        assert store.failed_commits >= 1
        assert _metric(pool, "jobpool_store_failing") == 1
        assert _metric(pool, "jobpool_store_failed_commits_total") == store.failed_commits
        store.make_room()
        await pool.join()
        store = store  # rebound: mypy keeps the failing narrowed above across calls
        assert not store.failing
        assert _metric(pool, "jobpool_store_failing") == 0
        stats = pool.stats()
        assert (stats.total_completed, stats.total_failed, stats.total_submitted) == (33, 0, 33)
        assert pool.histograms()["wait_time"].count == 33  # one start each, none that failed
    # the log: one line when the commits began to fail, one when they succeeded again
    logged = [r.getMessage() for r in caplog.records if r.name == "trio_jobpool.store"]
    assert len(logged) == 2, logged
    assert "database or disk is full (trying again while it fails)" in logged[0]
    assert "writes succeed again" in logged[1]
    # every accepted job ran exactly once, and its end is on disk
    assert collections.Counter(board.started) == dict.fromkeys([*names, "blocker"], 1)
    statuses = _statuses(db)
    assert "refused" not in statuses
    assert set(statuses.values()) == {"completed"}


async def test_a_pool_closed_while_the_disk_is_full_leaves_its_waiting_jobs_to_the_next(
    tmp_path: Path,
) -> None:
    db = tmp_path / "jobs.db"
    names = [f"job-{i:02d}" for i in range(8)]
    await _queue_on_disk(db, names)
    board.open("never")
    store = FillableDisk(db, full=True)
    async with open_job_pool(
        2, 100, job_timeout=None, shutdown_timeout=0.2, store=store, registry=registry
    ) as pool:
        with pytest.raises(StoreError, match="disk is full"):
            await pool.submit(note, "refused", job_id="refused")
    # the drain gave up after 0.2 s: nothing ran, nothing ended, the jobs wait on disk
    assert board.started == []
    assert set(_statuses(db).values()) == {"queued"}
    async with open_job_pool(2, 100, store=f"sqlite:///{db}", registry=registry) as pool:
        await pool.join()
    assert collections.Counter(board.started) == dict.fromkeys([*names, "blocker"], 1)
    assert set(_statuses(db).values()) == {"completed"}


async def test_an_end_that_cannot_be_written_is_written_once_there_is_room(
    tmp_path: Path, anyio_backend: Any
) -> None:
    db = tmp_path / "jobs.db"
    store = FillableDisk(db, full=False)
    async with open_job_pool(1, 10, job_timeout=None, store=store, registry=registry) as pool:
        handle = await pool.submit(hold, "job", job_id="job")
        await board.wait_started("job")
        store.fill()
        board.open()
        await handle.wait()  # it completed; its end cannot be written
        await anyio.sleep(0.3)  # (some backoffs on Trio's mock clock; some real time on asyncio)
        assert _statuses(db) == {"job": "running"}  # (a crash now: the next pool reruns it)
        store.make_room()
        if not isinstance(anyio_backend, str):  # Trio's mock clock: exact, and no flush at all
            await anyio.sleep(10)  # past the longest backoff: the pool has tried again
            assert _statuses(db) == {"job": "completed"}
            assert not store.failing
    assert _statuses(db) == {"job": "completed"}


# -- the database deleted or replaced under a running pool ------------------------------------


@pytest.mark.parametrize("synchronous", ["NORMAL", "FULL"])
@pytest.mark.parametrize("fault", ["deleted", "replaced"])
async def test_submits_to_a_deleted_database_fail_and_none_is_accepted(
    tmp_path: Path, synchronous: str, fault: str
) -> None:
    db = tmp_path / "jobs.db"
    url = f"sqlite:///{db}?synchronous={synchronous}"
    accepted: list[str] = []
    refused: list[str] = []
    with pytest.raises(KeyError):  # noqa: PT012 - the block is the subject
        async with open_job_pool(1, 200, job_timeout=None, store=url, registry=registry) as pool:
            await (await pool.submit(note, "before", job_id="before")).wait()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{db}{suffix}").unlink()
            if fault == "replaced":
                db.write_bytes(b"")  # another, empty database at the path
            before = pool.stats()
            for i in range(100):
                try:
                    await pool.submit(note, f"after-{i}", job_id=f"after-{i}")
                except StoreError as exc:
                    refused.append(str(exc))
                else:
                    accepted.append(f"after-{i}")
            assert pool.stats() == before  # nothing was counted as accepted
            raise KeyError("leave")  # (whatever is still queued stays for the next pool)
    assert (len(refused), accepted) == (100, [])
    assert all(str(db) in message and fault in message for message in refused), refused[0]
    async with open_job_pool(1, 200, store=url, registry=registry) as pool:
        await pool.join()
        for job_id in accepted:  # (none) every accepted job is in the file at the path
            assert (await pool.aget(job_id)).status is JobStatus.COMPLETED
