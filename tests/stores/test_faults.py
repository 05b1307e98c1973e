"""Faults of a durable store: a full disk, unwritable paths, corrupt files, a locked database.

Each raises :class:`StoreError` (a ``JobPoolError``) naming the database's path, and no job is
acknowledged that is not on disk: a submit that raises accepted nothing, and every submit that
returned left its job on disk, where the next pool finds it. (A second pool on the same file is
covered in test_sqlite.py.) These faults exist for stores with a disk only; the memory pool
has none of them.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from tests.durable_app import blob, board, hold, note, registry
from trio_jobpool import (
    JobNotFound,
    JobPoolError,
    JobStatus,
    SqliteStore,
    StoreError,
    open_job_pool,
)

pytestmark = pytest.mark.anyio


class Leave(Exception):
    """Raised to leave a pool's block by an exception: its waiting jobs stay on disk."""


def statuses(db: Path) -> dict[str, str]:
    connection = sqlite3.connect(db)
    try:
        return dict(connection.execute("SELECT job_id, status FROM jobs ORDER BY seq"))
    finally:
        connection.close()


def names(path: Path) -> str:
    """A pattern matching a message that names ``path``."""
    return re.escape(str(path))


class SmallDisk(SqliteStore):
    """A store whose database may grow by ``room`` pages only: a disk that fills up."""

    def __init__(self, path: Path, room: int, synchronous: str = "NORMAL") -> None:
        super().__init__(path, synchronous=synchronous)
        self.room = room

    def configure(self, connection: sqlite3.Connection) -> None:
        (pages,) = connection.execute("PRAGMA page_count").fetchone()
        connection.execute(f"PRAGMA max_page_count = {pages + self.room}")


# -- a full disk -------------------------------------------------------------------------------


@pytest.mark.parametrize("submit", ["submit", "submit_nowait"])
async def test_a_full_disk_refuses_the_job_that_does_not_fit(tmp_path: Path, submit: str) -> None:
    db = tmp_path / "jobs.db"
    acknowledged: list[str] = []
    with pytest.raises(Leave):  # noqa: PT012 - the block is the subject
        async with open_job_pool(1, 1000, store=SmallDisk(db, room=8), registry=registry) as pool:
            await pool.submit(hold, "blocker", job_id="blocker")
            await board.wait_started("blocker")
            for i in range(100):
                job_id = f"big-{i}"
                before = pool.stats()
                try:
                    if submit == "submit":
                        await pool.submit(blob, "x" * 5000, job_id=job_id)
                    else:
                        pool.submit_nowait(blob, "x" * 5000, job_id=job_id)
                except StoreError as exc:
                    error, refused = exc, job_id
                    break
                acknowledged.append(job_id)
            else:
                pytest.fail("the disk never filled up")
            assert isinstance(error, JobPoolError)
            assert str(db) in str(error)
            assert acknowledged, "the very first job did not fit: the test proves little"
            with pytest.raises(JobNotFound):
                pool.get(refused)  # not accepted...
            assert pool.stats() == before  # ... and not counted
            for job_id in acknowledged:
                assert pool.get(job_id).status is JobStatus.QUEUED
            raise Leave  # the shutdown leaves the waiting jobs to the next pool
    on_disk = statuses(db)
    assert refused not in on_disk
    assert [job for job in on_disk if job.startswith("big-")] == acknowledged
    assert {on_disk[job] for job in acknowledged} == {"queued"}

    board.open()
    async with open_job_pool(1, 1000, store=f"sqlite:///{db}", registry=registry) as pool:
        await pool.join()  # room again: every acknowledged job runs
        for job_id in acknowledged:
            assert await pool.get(job_id).result() == 5000
    assert set(statuses(db).values()) == {"completed"}


async def test_a_full_disk_is_reported_as_a_full_disk(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    async with open_job_pool(1, 10, store=SmallDisk(db, room=2), registry=registry) as pool:
        with pytest.raises(StoreError) as info:
            await pool.submit(blob, "x" * 20_000)  # 20 kB: 5 pages, room for 2
    cause = str(info.value).replace(str(db), "<path>")
    assert "disk is full" in cause, cause  # SQLite's own words: "database or disk is full"


# -- paths that cannot hold a database ---------------------------------------------------------


async def test_a_directory_is_not_a_database(tmp_path: Path) -> None:
    directory = tmp_path / "jobs.db"
    directory.mkdir()
    with pytest.raises(StoreError, match=names(directory)):
        async with open_job_pool(store=f"sqlite:///{directory}", registry=registry):
            pass
    assert list(directory.iterdir()) == []


async def test_a_path_under_a_regular_file(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("a file, not a directory\n")
    path = not_a_dir / "jobs.db"
    with pytest.raises(StoreError, match=names(path)):
        async with open_job_pool(store=f"sqlite:///{path}", registry=registry):
            pass


async def test_a_database_sqlite_cannot_write(tmp_path: Path) -> None:
    """Read-only even for root: SQLite cannot create the shared-memory file of its WAL."""
    db = tmp_path / "jobs.db"
    async with open_job_pool(store=f"sqlite:///{db}", registry=registry) as pool:
        await (await pool.submit(note, "earlier", job_id="earlier")).wait()
    Path(f"{db}-shm").mkdir()
    before = db.read_bytes()
    with pytest.raises(StoreError, match=names(db)) as info:
        async with open_job_pool(store=f"sqlite:///{db}", registry=registry):
            pass
    assert "readonly" in str(info.value)
    assert db.read_bytes() == before
    Path(f"{db}-shm").rmdir()
    async with open_job_pool(store=f"sqlite:///{db}", registry=registry) as pool:
        assert pool.get("earlier").status is JobStatus.COMPLETED  # nothing was harmed


# -- corrupt files -----------------------------------------------------------------------------


def random_bytes(path: Path) -> None:
    path.write_bytes(random.Random(7).randbytes(16_384))


def bad_header(path: Path) -> None:
    path.write_bytes(b"SQLite format 3\x00" + random.Random(8).randbytes(8192))


@pytest.mark.parametrize("spoil", [random_bytes, bad_header], ids=["random", "header"])
async def test_a_file_that_is_not_a_database(tmp_path: Path, spoil: Any) -> None:
    db = tmp_path / "jobs.db"
    spoil(db)
    before = db.read_bytes()
    with pytest.raises(StoreError, match=names(db)):
        async with open_job_pool(store=f"sqlite:///{db}", registry=registry):
            pass
    assert db.read_bytes() == before  # never overwritten
    with pytest.raises(StoreError, match=names(db)):  # and nothing was left locked
        async with open_job_pool(store=f"sqlite:///{db}", registry=registry):
            pass


async def test_a_truncated_database(tmp_path: Path) -> None:
    real = tmp_path / "real.db"
    async with open_job_pool(
        1, 500, max_pending=None, store=f"sqlite:///{real}", registry=registry
    ) as pool:
        for i in range(300):
            pool.submit_nowait(note, "x" * 200, job_id=f"job-{i}")
    size = real.stat().st_size
    assert size > 16 * 4096
    for cut in [4096, size // 2, size - 4096]:
        db = tmp_path / f"cut-{cut}.db"
        shutil.copy(real, db)
        os.truncate(db, cut)
        with pytest.raises(StoreError, match=names(db)):
            async with open_job_pool(store=f"sqlite:///{db}", registry=registry):
                pass


# -- a locked database -------------------------------------------------------------------------


class ImpatientStore(SqliteStore):
    """Gives up on a locked database after 50 ms instead of the default 5 s."""

    def configure(self, connection: sqlite3.Connection) -> None:
        connection.execute("PRAGMA busy_timeout = 50")


async def test_a_database_locked_by_another_program_refuses_submits(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    async with open_job_pool(1, 10, store=ImpatientStore(db), registry=registry) as pool:
        await (await pool.submit(note, "before", job_id="before")).wait()
        await pool.submit(hold, "blocker", job_id="blocker")
        await board.wait_started("blocker")
        other = sqlite3.connect(db, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # another program holds the write lock
            stats = pool.stats()
            with pytest.raises(StoreError, match=names(db)) as info:
                await pool.submit(note, "refused", job_id="refused")
            assert "locked" in str(info.value)
            with pytest.raises(StoreError, match=names(db)):
                pool.submit_nowait(note, "refused", job_id="refused")
            with pytest.raises(JobNotFound):
                pool.get("refused")
            assert pool.stats() == stats
            other.execute("ROLLBACK")
        finally:
            other.close()
        after = await pool.submit(note, "after", job_id="after")  # the lock is gone: fine
        board.open()
        assert await after.result() == "after"
    assert statuses(db) == {"before": "completed", "blocker": "completed", "after": "completed"}


@pytest.mark.parametrize("anyio_backend", ["trio"])  # it waits out SQLite's 5 s busy timeout
async def test_a_database_locked_by_another_program_cannot_be_opened(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    sqlite3.connect(db).close()
    other = sqlite3.connect(db, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreError, match=names(db)) as info:
            async with open_job_pool(store=f"sqlite:///{db}", registry=registry):
                pass
        assert "locked" in str(info.value)
    finally:
        other.close()
    async with open_job_pool(store=f"sqlite:///{db}", registry=registry):
        pass  # and the pool released what it had taken


# -- bugs ----------------------------------------------------------------------------------------

LOOP_THREAD = threading.get_ident()


class HeldCommit(SmallDisk):
    """A small disk whose next commit made in a worker thread can be held at its BEGIN until
    the event loop's thread is inside ``submit_nowait`` (waiting for the connection). Commits
    are made in a thread with ``synchronous="FULL"`` only (on the loop's thread otherwise,
    where nothing can come between them and ``submit_nowait``)."""

    def __init__(self, path: Path, room: int) -> None:
        super().__init__(path, room, synchronous="FULL")
        self.armed = False
        self.held = threading.Event()

    def configure(self, connection: sqlite3.Connection) -> None:
        super().configure(connection)
        connection.set_trace_callback(self._trace)

    def _trace(self, statement: str) -> None:
        if statement != "BEGIN" or not self.armed or threading.get_ident() == LOOP_THREAD:
            return
        self.armed = False
        self.held.set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # another thread: polling does not block the loop
            frame = sys._current_frames().get(LOOP_THREAD)
            while frame is not None and frame.f_code.co_name != "submit_nowait":
                frame = frame.f_back
            if frame is not None:
                return
            time.sleep(0.001)


async def test_a_failed_submit_nowait_does_not_fail_a_submit_that_was_written(
    tmp_path: Path,
) -> None:
    db = tmp_path / "jobs.db"
    store = HeldCommit(db, room=4)
    outcome: dict[str, str] = {}
    async with open_job_pool(1, 100, store=store, registry=registry) as pool:

        async def submit_small() -> None:
            try:
                await pool.submit(blob, "small", job_id="small")
                outcome["small"] = "accepted"
            except StoreError:
                outcome["small"] = "refused"

        store.armed = True
        async with anyio.create_task_group() as tg:
            tg.start_soon(submit_small)
            await anyio.to_thread.run_sync(store.held.wait)  # its commit is under way
            with pytest.raises(StoreError):
                pool.submit_nowait(blob, "x" * 100_000, job_id="big")  # does not fit
        accepted_in_memory = outcome["small"] == "accepted"
    on_disk = "small" in statuses(db)
    assert "big" not in statuses(db)
    # What submit said is what happened: accepted if and only if it is on disk.
    assert accepted_in_memory == on_disk, (outcome, statuses(db))
