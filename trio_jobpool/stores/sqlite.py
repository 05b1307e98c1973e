"""SqliteStore: the embedded durable store (the standard library's ``sqlite3``, no server).

Durability: the database runs in WAL mode. With ``synchronous="NORMAL"`` (the default) a
committed write is in the WAL file, so it survives the process being killed (``kill -9``) but
not necessarily a power cut or an operating-system crash; ``synchronous="FULL"`` syncs every
commit to the disk as well, at a higher cost per commit.

Group commit: writes queue up in memory, numbered in order. A writer thread of the store's own
commits *everything* queued so far in one transaction, then tells the event loop (one
thread-safe call) how far it got, and starts on what was queued meanwhile. Tasks that need their
write on disk (a submit, a worker about to start a job) wait for that report; each is woken once.
A burst of submits from many tasks therefore costs one commit, not one each, and the event loop
never waits for a thread to be handed work.

One pool at a time: the store takes an exclusive lock on ``<path>-lock``; a second pool opening
the same file fails at once with :class:`StoreError` naming the path.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import operator
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.to_thread
import sniffio
import trio

from .._errors import StoreError
from ._base import LIVE_STATUSES, JobRecord

fcntl: Any
try:  # POSIX file locks; elsewhere the database's own locking is all there is
    import fcntl
except ImportError:  # pragma: no cover - not on the platforms we test
    fcntl = None

__all__ = ["SqliteStore"]

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- submission order
    job_id TEXT NOT NULL,
    name TEXT NOT NULL,
    args TEXT NOT NULL,
    priority INTEGER NOT NULL,
    status TEXT NOT NULL,
    timeout REAL,
    retry TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    crashes INTEGER NOT NULL DEFAULT 0,
    interrupted INTEGER NOT NULL DEFAULT 0,
    progress REAL NOT NULL DEFAULT 0,
    progress_message TEXT,
    result TEXT,
    error_type TEXT,
    error_message TEXT,
    error_traceback TEXT,
    submitted_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    exec_time REAL,
    retry_at REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_live_id ON jobs (job_id)
    WHERE status IN ('queued', 'retrying', 'running');
CREATE INDEX IF NOT EXISTS jobs_by_id ON jobs (job_id, seq);
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at)
    WHERE finished_at IS NOT NULL;
"""

# A job's fixed columns, then the ones that change as it runs (see _state).
_FIXED: Final = ("job_id", "name", "args", "priority", "timeout", "retry", "submitted_at")
_STATE: Final = (
    "status", "attempts", "crashes", "interrupted", "progress", "progress_message", "result",
    "error_type", "error_message", "error_traceback", "started_at", "finished_at", "exec_time",
    "retry_at",
)  # fmt: skip
_COLUMNS: Final = ", ".join(_FIXED + _STATE)
_INSERT: Final = f"INSERT INTO jobs ({_COLUMNS}) VALUES ({', '.join('?' * len(_FIXED + _STATE))})"
_UPDATE: Final = (
    f"UPDATE jobs SET {', '.join(f'{column} = ?' for column in _STATE)} "
    "WHERE job_id = ? AND status IN ('queued', 'retrying', 'running')"
)
_LIVE_SQL: Final = "('queued', 'retrying', 'running')"


_NO_TIMEOUT: Final = -1.0  # a job's timeout=math.inf; NULL means "the pool's default"


def _timeout_in(value: float | None) -> float | None:
    return _NO_TIMEOUT if value is not None and math.isinf(value) else value


def _timeout_out(value: float | None) -> float | None:
    return math.inf if value == _NO_TIMEOUT else value


class SqliteStore:
    """A durable job store in one SQLite file (see the module docstring).

    Args:
        path: the database file; created (with its schema) if missing.
        synchronous: SQLite's ``synchronous`` setting: ``"NORMAL"`` (survives the process
            being killed) or ``"FULL"`` (survives power loss too).
        max_crashes: a job interrupted by more crashes than this ends ``failed`` as poison
            instead of running again, so a job that kills its process cannot loop forever.

    Raises:
        ValueError: a bad ``synchronous`` or ``max_crashes``.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, synchronous: str = "NORMAL", max_crashes: int = 3
    ) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be 'NORMAL' or 'FULL', got {synchronous!r}")
        if isinstance(max_crashes, bool) or not isinstance(max_crashes, int) or max_crashes < 0:
            raise ValueError(f"max_crashes must be an int >= 0, got {max_crashes!r}")
        self.path = Path(path)
        self.synchronous = synchronous
        self.max_crashes = max_crashes
        self._db: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._lock_file: Any = None
        # Writes are numbered in the order they are queued (tickets). The writer thread takes
        # whatever is queued, commits it, and reports back how far it got.
        self._wake = threading.Condition()  # guards _queue, _issued, _written, _closing
        self._queue: list[tuple[str, tuple[Any, ...]]] = []  # writes not yet taken
        self._issued = 0  # writes queued so far
        self._written = 0  # writes the thread has finished with (committed or failed)
        self._closing = False
        self._writer: threading.Thread | None = None
        self._writer_running = False
        self._committed = 0  # the same as _written, as the event loop has been told
        self._failures: list[tuple[int, int, StoreError]] = []  # (after, upto, error)
        self._retry: list[tuple[str, tuple[Any, ...]]] = []  # updates of failed commits
        self._waiters: deque[tuple[int, anyio.Event]] = deque()  # (ticket, its event)
        # Made by open(), in the event loop that uses the store.
        self._call_soon: Callable[..., Any] | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        self._connection_lock = threading.Lock()  # one writer on the connection at a time

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    # -- opening and closing ---------------------------------------------------------------

    async def open(self) -> list[JobRecord]:
        """Lock, open (creating if need be) and recover the database; return the live jobs.

        Raises:
            StoreError: the file is in use by another pool, is not an SQLite database, or
                cannot be opened or written (the message names the path and the cause).
        """
        self._limiter = anyio.CapacityLimiter(1)
        self._call_soon = _call_soon_threadsafe()
        records = await anyio.to_thread.run_sync(self._open_sync, limiter=self._limiter)
        self._closing = False
        self._writer_running = True
        self._writer = threading.Thread(
            target=self._writer_loop, name=f"trio_jobpool writer {self.path.name}", daemon=True
        )
        self._writer.start()
        return records

    def _open_sync(self) -> list[JobRecord]:
        self._lock()
        try:
            db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=5.0
            )
            self._db = db
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self.synchronous}")
            db.executescript(_SCHEMA)
            self.configure(db)
            self._recover(db)
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE status IN {_LIVE_SQL} ORDER BY priority, seq"
            ).fetchall()
            self._reader = sqlite3.connect(self.path, check_same_thread=False, timeout=5.0)
        except sqlite3.Error as exc:
            self._close_sync()
            raise self._error("cannot open", exc) from None
        except BaseException:
            self._close_sync()
            raise
        return [_record(row) for row in rows]

    def configure(self, connection: sqlite3.Connection) -> None:
        """Called once with the writing connection after it is set up (WAL, schema): a hook
        for subclasses to add their own settings (``PRAGMA cache_size``, ...). Runs in the
        store's worker thread."""

    def _lock(self) -> None:
        if fcntl is None:  # pragma: no cover
            return
        lock_path = Path(f"{self.path}-lock")
        try:
            handle = open(lock_path, "a+")  # noqa: SIM115 - held until aclose()
        except OSError as exc:
            raise StoreError(
                f"{self.url}: cannot create the lock file {lock_path}: {exc}"
            ) from None
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise StoreError(
                f"{self.url} is in use by another pool (locked through {lock_path})"
            ) from None
        self._lock_file = handle

    def _recover(self, db: sqlite3.Connection) -> None:
        """Put jobs a crash interrupted back in the queue, or end them as poison."""
        now = time.time()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "UPDATE jobs SET status = 'queued', crashes = crashes + 1, progress = 0, "
                "progress_message = NULL WHERE status = 'running'"
            )
            db.execute(
                "UPDATE jobs SET status = 'failed', error_type = 'trio_jobpool.PoisonJob', "
                "error_message = 'interrupted by ' || crashes || ' crashes of the process "
                "running it', error_traceback = '', finished_at = ? "
                "WHERE status = 'queued' AND crashes > ?",
                (now, self.max_crashes),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def aclose(self) -> None:
        """Commit what is queued, then close the database and release the lock.

        Runs to completion even if cancelled (the writes it is making are not abandoned).
        """
        if self._db is None:
            return
        with anyio.CancelScope(shield=True):
            try:
                await self.flush()
            finally:
                with self._wake:
                    self._closing = True
                    self._wake.notify_all()
                if self._writer is not None:
                    await anyio.to_thread.run_sync(self._writer.join)
                    self._writer = None
                await anyio.to_thread.run_sync(self._close_sync, limiter=self._limiter)

    def _close_sync(self) -> None:
        for attribute in ("_db", "_reader"):
            connection = getattr(self, attribute)
            if connection is not None:
                connection.close()
                setattr(self, attribute, None)
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    # -- writing ---------------------------------------------------------------------------

    async def add(self, record: JobRecord) -> None:
        """Insert a live job; returns once it is committed (with whatever else is queued).

        Raises:
            StoreError: the write failed (disk full, read-only file, ...); nothing was added.
        """
        await self._wait_for(self._enqueue(("insert", _insert_values(record))))

    def add_now(self, record: JobRecord) -> None:
        """Insert a live job and commit it before returning (queued writes wait their turn).

        Blocks the calling thread for one commit: for ``submit_nowait``, which may not wait.

        Raises:
            StoreError: the write failed; nothing was added.
        """
        # Only this insert: a new job has no queued writes that must come first, and the
        # queue's writes keep their own order and their own waiters.
        self._write([("insert", _insert_values(record))])

    def flush_now(self) -> None:
        """Wait, blocking the calling thread, until the writer has finished with every write
        queued so far. For the rare read that must see them (``JobPool.get`` of a job that
        ended a moment ago); failures are reported to the writes' own waiters as usual."""
        with self._wake:
            target = self._issued
            while self._written < target and self._writer_running:
                self._wake.wait()

    def update(self, record: JobRecord) -> None:
        """Queue a write of the job's state; the writer commits it with what else is queued."""
        self._enqueue(("update", _update_values(record)))

    async def flush(self) -> None:
        """Wait until every write queued so far is committed.

        Raises:
            StoreError: a commit failed.
        """
        if self._retry:
            self._enqueue()
        if self._committed < self._issued:  # (failures already reported are not raised again)
            await self._wait_for(self._issued)

    def _enqueue(self, op: tuple[str, tuple[Any, ...]] | None = None) -> int:
        """Queue ``op`` (after any updates of failed commits); return its ticket."""
        with self._wake:
            if self._retry:
                # Updates are not given up on when a commit fails: they go into the next one
                # (a passing fault heals; a lasting one fails that commit too). Inserts are
                # not retried: their submitters got the error, the jobs were not accepted.
                self._queue.extend(self._retry)
                self._issued += len(self._retry)
                self._retry = []
            if op is not None:
                self._queue.append(op)
                self._issued += 1
            self._wake.notify()
            return self._issued

    async def _wait_for(self, ticket: int) -> None:
        """Wait until the writer has finished with write ``ticket``; raise its failure."""
        if self._committed < ticket:
            # Tickets only grow, so the waiters queue up in ticket order and each is woken
            # exactly once, by the report that covers its ticket.
            done = anyio.Event()
            self._waiters.append((ticket, done))
            await done.wait()
        for after, last, error in self._failures:
            if after < ticket <= last:
                raise error

    def _writer_loop(self) -> None:
        """The writer thread: commit whatever is queued, as one transaction, until closed.

        While it commits, the event loop goes on queueing: the next transaction takes all of
        that (group commit), and the loop never waits for a thread to start.
        """
        try:
            self._write_until_closed()
        finally:
            with self._wake:
                self._writer_running = False
                self._wake.notify_all()

    def _write_until_closed(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._closing:
                    self._wake.wait()
                if not self._queue:
                    return
                batch, self._queue = self._queue, []
                upto = self._issued
            error: StoreError | None = None
            try:
                self._write(batch)
            except StoreError as exc:
                error = exc
            except Exception as exc:  # reported to the waiters, not lost
                error = StoreError(f"{self.url}: cannot write: {exc!r}")
            with self._wake:
                self._written = upto
                self._wake.notify_all()  # flush_now
            assert self._call_soon is not None
            try:
                self._call_soon(self._on_written, upto - len(batch), upto, error, batch)
            except RuntimeError:  # the event loop is gone: nobody is left to tell
                return

    def _on_written(
        self,
        after: int,
        upto: int,
        error: StoreError | None,
        batch: list[tuple[str, tuple[Any, ...]]],
    ) -> None:
        """In the event loop: the writer finished writes ``after+1 … upto``."""
        if error is not None:
            self._failures.append((after, upto, error))
            del self._failures[:-16]  # waiters look only at the failures of their own batch
            self._retry.extend(op for op in batch if op[0] == "update")
        self._committed = committed = max(self._committed, upto)
        waiters = self._waiters
        while waiters and waiters[0][0] <= committed:
            waiters.popleft()[1].set()

    def _write(self, batch: Iterable[tuple[str, tuple[Any, ...]]]) -> None:
        with self._connection_lock:
            self._write_locked(batch)

    def _write_locked(self, batch: Iterable[tuple[str, tuple[Any, ...]]]) -> None:
        db = self._db
        if db is None:
            raise StoreError(f"{self.url} is closed")
        try:
            db.execute("BEGIN")
            try:
                # Runs of the same statement go to SQLite in one executemany call.
                for kind, run in itertools.groupby(batch, key=operator.itemgetter(0)):
                    db.executemany(
                        _INSERT if kind == "insert" else _UPDATE, [values for _, values in run]
                    )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # SQLite may have rolled back already (a full disk)
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._error("cannot write", exc) from None

    # -- reading ---------------------------------------------------------------------------

    def load(self, job_id: str) -> JobRecord | None:
        """The most recent job stored under ``job_id`` (a quick indexed read, synchronous)."""
        reader = self._reader
        if reader is None:
            return None
        try:
            row = reader.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE job_id = ? ORDER BY seq DESC LIMIT 1",
                (job_id,),
            ).fetchone()
        except sqlite3.Error as exc:
            raise self._error("cannot read", exc) from None
        return None if row is None else _record(row)

    async def prune(self, older_than: float) -> int:
        """Delete ended jobs that finished more than ``older_than`` seconds ago; return how
        many. Live jobs are never pruned.

        Raises:
            ValueError: a negative ``older_than``.
            StoreError: the database could not be written.
        """
        if not older_than >= 0:
            raise ValueError(f"older_than must be >= 0 seconds, got {older_than!r}")
        await self.flush()
        cutoff = time.time() - older_than
        return await anyio.to_thread.run_sync(self._prune_sync, cutoff, limiter=self._limiter)

    def _prune_sync(self, cutoff: float) -> int:
        db = self._db
        if db is None:
            raise StoreError(f"{self.url} is closed")
        try:
            cursor = db.execute(
                f"DELETE FROM jobs WHERE status NOT IN {_LIVE_SQL} AND finished_at < ?",
                (cutoff,),
            )
        except sqlite3.Error as exc:
            raise self._error("cannot prune", exc) from None
        return cursor.rowcount

    def _error(self, what: str, exc: sqlite3.Error) -> StoreError:
        return StoreError(f"{self.url}: {what}: {exc}")


def _call_soon_threadsafe() -> Callable[..., Any]:
    """How a thread schedules a call in the running event loop (Trio's or asyncio's)."""
    if sniffio.current_async_library() == "trio":
        return trio.lowlevel.current_trio_token().run_sync_soon
    return asyncio.get_running_loop().call_soon_threadsafe


def _state(record: JobRecord) -> tuple[Any, ...]:
    return (
        record.status,
        record.attempts,
        record.crashes,
        record.interrupted,
        record.progress,
        record.progress_message,
        "null" if record.result is None else json.dumps(record.result),
        record.error_type,
        record.error_message,
        record.error_traceback,
        record.started_at,
        record.finished_at,
        record.exec_time,
        record.retry_at,
    )


def _insert_values(record: JobRecord) -> tuple[Any, ...]:
    fixed = (
        record.job_id,
        record.name,
        json.dumps(record.args),
        record.priority,
        _timeout_in(record.timeout),
        None if record.retry is None else json.dumps(record.retry),
        record.submitted_at,
    )
    return fixed + _state(record)


def _update_values(record: JobRecord) -> tuple[Any, ...]:
    return (*_state(record), record.job_id)


def _record(row: tuple[Any, ...]) -> JobRecord:
    (job_id, name, args, priority, timeout, retry, submitted_at, status, attempts, crashes,
     interrupted, progress, progress_message, result, error_type, error_message,
     error_traceback, started_at, finished_at, exec_time, retry_at) = row  # fmt: skip
    return JobRecord(
        job_id=job_id,
        name=name,
        args=json.loads(args),
        priority=priority,
        status=status,
        timeout=_timeout_out(timeout),
        retry=None if retry is None else json.loads(retry),
        attempts=attempts,
        crashes=crashes,
        interrupted=interrupted,
        progress=progress,
        progress_message=progress_message,
        result=None if result is None else json.loads(result),
        error_type=error_type,
        error_message=error_message,
        error_traceback=error_traceback,
        submitted_at=submitted_at,
        started_at=started_at,
        finished_at=finished_at,
        exec_time=exec_time,
        retry_at=retry_at,
    )


assert LIVE_STATUSES == ("queued", "retrying", "running")  # the SQL above spells them out
