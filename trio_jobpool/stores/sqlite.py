"""SqliteStore: the embedded durable store (the standard library's ``sqlite3``, no server).

Durability: the database runs in WAL mode. With ``synchronous="NORMAL"`` (the default) a
committed write is in the WAL file, so it survives the process being killed (``kill -9``) but
not necessarily a power cut or an operating-system crash; ``synchronous="FULL"`` syncs every
commit to the disk as well, at a higher cost per commit.

Group commit: writes queue up in memory, numbered in order (tickets), and one transaction
commits *everything* queued so far. Tasks that need their write on disk (a submit; with
``synchronous="FULL"`` also a worker about to start a job) wait for the commit that covers it;
each is woken once. A burst of submits from many tasks therefore costs one commit, not one each.
Who commits depends on ``synchronous``:

* ``"NORMAL"``: the event loop's own thread, in a callback scheduled by the first write queued
  after the last commit (so it runs once the tasks that are ready have queued theirs). Such a
  commit only hands pages to the operating system, a few microseconds per row; only SQLite's
  automatic checkpoint (once the WAL holds 1,000 pages, some hundreds of jobs) waits for the
  disk, two ``fsync`` calls inside that commit. A thread would cost more than the work: it
  needs the GIL for every row, and a busy event loop gives it up only every
  ``sys.getswitchinterval()`` (5 ms). Checkpoints are SQLite's automatic ones, on the same
  connection: a checkpoint by another connection while the loop keeps committing never lets the
  WAL start over.
* ``"FULL"``: every commit waits for ``fsync``, which must not block the event loop: a writer
  thread of the store's own commits, then tells the event loop (one thread-safe call) how far
  it got, and starts on what was queued meanwhile.

Cheap writes: every write after a job's insert finds its row by the primary key and sets only
what changed (see ``_sqlite_schema.py``, the on-disk format).

Periodic schedules: the store is the pool's ``ScheduleBook``. Each of its steps (a declaration,
a removal, a tick: the schedule's new state and the tick's job) is queued as one write, behind
every write queued before it, and made inside that commit's transaction; its caller waits for
the commit (see ``_sqlite_book.py``). A tick's job is thus on disk, together with the
schedule's state that says its tick was handled, before the pool lets a worker start it.

One pool at a time: the store takes an exclusive ``flock`` on the database file itself (see
``_file_lock.py``); a second pool opening the same database, by any path, fails at once with
:class:`StoreError` naming the path. After every commit the store checks that the file at the
path is still the one it locked: a commit into a deleted or replaced database counts as failed.

A failed commit is reported to its waiters (a submit, a worker about to start a job) and to
``on_commit_result`` (the pool pauses its starts); ``failing`` and ``failed_commits`` say how
the writes fare. Inserts and starts of a failed commit are not tried again (their waiters act on
the error); every other update goes first into the next commit.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import operator
import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import anyio
import anyio.to_thread

from .._errors import StoreError
from .._runtime import Runtime, Slot, current_runtime
from ._base import JobRecord, ScheduleRecord
from ._file_lock import DatabaseLock
from ._sqlite_book import SCHEDULE_STEP, Declare, Fire, PutLimit, Remove, ScheduleStep
from ._sqlite_schema import (
    CHANGE,
    COLUMNS,
    COMPLETE,
    INSERT,
    LIMIT_ROWS,
    LIVE_ROWS,
    LIVE_SQL,
    PROGRESS,
    SCHEDULE_COLUMNS,
    START,
    Write,
    change_values,
    complete_values,
    create_schema,
    insert_values,
    to_limit,
    to_record,
    to_schedule,
)

__all__ = ["SqliteStore"]

logger = logging.getLogger("trio_jobpool.store")

_PRUNE_PART: Final = 1000  # rows deleted per transaction by prune
_WAL_LIMIT: Final = 64 << 20  # bytes: a WAL that starts over is truncated to this
# Writes whose waiters act on their failure: the store never tries them again.
_NOT_RETRIED: Final = (INSERT, START, SCHEDULE_STEP)


class SqliteStore:
    """The embedded durable store: one SQLite file in WAL mode (docs/durability.md).

    Pass it as ``open_job_pool(store=...)`` (or use the URL form,
    ``store="sqlite:///path/jobs.db"``). Creating it opens nothing; the pool opens it. One pool
    at a time per database: the store holds an exclusive ``flock`` on the database file itself
    (its inode) while open, so no other path to it (a symlink, a hard link) gets a second pool.

    Args:
        path: the database file; created (with its schema) if missing.
        synchronous: ``"NORMAL"`` (a commit survives the process being killed; commits run on
            the event loop's thread and never wait for the disk) or ``"FULL"`` (it also
            survives a power cut; commits, each with an ``fsync``, run in a writer thread).
        max_crashes: a job interrupted by more crashes of the process running it than this
            ends failed as poison (:class:`JobFailed` with ``type_name``
            ``trio_jobpool.PoisonJob``) instead of running again, so a job that kills its
            process cannot loop forever; ``int >= 0``.

    Attributes:
        failing: ``True`` from a commit that failed (a full disk, a deleted database) to the
            next one that succeeds. While commits fail, the pool starts no job (each waits,
            queued; see docs/durability.md, "A full disk").
        failed_commits: how many commits failed since the store was opened.

    Raises:
        ValueError: a bad ``synchronous`` or ``max_crashes``.
    """

    _max_batch = 1000  # writes per commit on the loop, at most (see _commit_queued)

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
        self._file_lock = DatabaseLock(self.path, self.url)  # one pool at a time
        # Health of the writes, for the pool and its metrics (on the loop's thread).
        self.failing = False  # the last commit failed (a full disk, a deleted file, ...)
        self.failed_commits = 0  # commits that failed since the store was opened
        self._failed_before = 0  # failed_commits when the current streak of failures began
        self.on_commit_result: Callable[[StoreError | None], None] | None = None
        # Writes are numbered in the order they are queued (tickets). The committer (a
        # callback on the loop, or the writer thread) takes whatever is queued, commits it,
        # and reports how far it got.
        self._on_loop = synchronous == "NORMAL"  # who commits (see the module docstring)
        self._commit_scheduled = False  # on the loop: a commit callback is on its way
        self._extra_passes = 0  # on the loop: scheduler passes between a write and its commit
        # With the writer thread: guards _queue, _issued, _written, _closing, _writer_running.
        self._wake = threading.Condition()
        self._queue: list[Write] = []  # writes not yet taken
        self._queued_progress: dict[int, int] = {}  # seq: index in _queue of its progress
        self._next_seq = 1
        self._issued = 0  # writes queued so far
        self._written = 0  # writes the writer thread has finished with (committed or failed)
        self._closing = False
        self._thread: threading.Thread | None = None  # the writer (synchronous="FULL")
        self._writer_running = False
        self._committed = 0  # the same as _written, as the event loop has been told
        # Recent failed commits, each (after, upto, error): writes after+1 … upto failed.
        self._failures: list[tuple[int, int, StoreError]] = []
        self._retry: list[Write] = []  # updates of failed commits
        # A heap of (ticket, arrival, where its task waits): tickets are not always waited
        # for in the order they were issued, as a worker waits for a start queued earlier.
        self._waiters: list[tuple[int, int, Slot]] = []
        self._arrivals = 0
        # Made by open(), in the event loop that uses the store.
        self._runtime: Runtime | None = None
        self._call_soon: Callable[..., Any] | None = None  # from another thread
        self._call_soon_here: Callable[..., Any] | None = None  # from the loop's thread
        self._limiter: anyio.CapacityLimiter | None = None
        self._connection_lock = threading.Lock()  # one writer on the connection at a time

    @classmethod
    def from_url(cls, url: str) -> SqliteStore:
        """The store a URL names: ``sqlite:///path/jobs.db``, optionally with the settings as
        a query: ``sqlite:///jobs.db?synchronous=FULL&max_crashes=5``.

        Raises:
            ValueError: not such a URL, no file, or an unknown or bad setting.
        """
        if not url.startswith("sqlite:///"):
            raise ValueError(f"not a sqlite:/// URL: {url!r}")
        path, _, query = url[len("sqlite:///") :].partition("?")
        if not path:
            raise ValueError(f"store URL {url!r} names no file")
        settings: dict[str, Any] = {}
        for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True):
            if key == "synchronous":
                settings[key] = value.upper()
            elif key == "max_crashes" and value.isdigit():
                settings[key] = int(value)
            else:
                raise ValueError(
                    f"store URL {url!r}: unknown or bad setting {key}={value!r} (known: "
                    "synchronous=NORMAL|FULL, max_crashes=<int>)"
                )
        return cls(path, **settings)

    @property
    def url(self) -> str:
        """``"sqlite:///<path>"``, used in messages."""
        return f"sqlite:///{self.path}"

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    # -- opening and closing ---------------------------------------------------------------

    async def open(self, runtime: Runtime | None = None) -> list[JobRecord]:
        """Lock, open (creating if need be) and recover the database; return the live jobs.
        ``runtime``: the opening pool's backend, which the store's commits and waits use
        (``None``: the one running this task, for a store used without a pool).

        Raises:
            StoreError: the file is in use by another pool, is not an SQLite database, or
                cannot be opened or written (the message names the path and the cause).
        """
        self._limiter = anyio.CapacityLimiter(1)
        self._commit_scheduled = False
        self.failing = False
        self.failed_commits = 0
        if runtime is None:
            runtime = current_runtime()
        self._runtime = runtime
        self._call_soon, self._call_soon_here = runtime.call_soon_threadsafe, runtime.call_soon
        # asyncio runs a call_soon callback right after the tasks that are ready now, before
        # the ones those wake: two more scheduler passes let those queue their writes into
        # the same commit. Trio runs its callbacks a pass later already.
        self._extra_passes = 0 if self._runtime.name == "trio" else 2
        records = await anyio.to_thread.run_sync(self._open_sync, limiter=self._limiter)
        self._closing = False
        if not self._on_loop:
            self._writer_running = True
            self._thread = threading.Thread(
                target=self._writer_loop, name=f"trio_jobpool writer {self.path.name}", daemon=True
            )
            self._thread.start()
        return records

    def _open_sync(self) -> list[JobRecord]:
        self._file_lock.acquire()
        try:
            db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=5.0
            )
            self._db = db
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={self.synchronous}")
            db.execute(f"PRAGMA journal_size_limit={_WAL_LIMIT}")
            create_schema(db)
            self.configure(db)
            self._recover(db)
            rows = db.execute(
                f"SELECT {COLUMNS}, seq FROM jobs WHERE {LIVE_ROWS} ORDER BY priority, seq"
            ).fetchall()
            self._next_seq = db.execute("SELECT coalesce(max(seq), 0) + 1 FROM jobs").fetchone()[0]
            self._limits = dict(to_limit(row) for row in db.execute(LIMIT_ROWS))
            self._reader = sqlite3.connect(self.path, check_same_thread=False, timeout=5.0)
            self._file_lock.check()  # what SQLite opened is the file locked
        except sqlite3.Error as exc:
            self._close_sync()
            raise self._error("cannot open", exc) from None
        except BaseException:
            self._close_sync()
            raise
        return [to_record(row) for row in rows]

    def configure(self, connection: sqlite3.Connection) -> None:
        """Called once with the writing ``sqlite3.Connection`` after it is set up (WAL,
        schema): a hook for subclasses to add their own settings (``PRAGMA cache_size``, ...).
        Runs in the store's worker thread."""

    def _recover(self, db: sqlite3.Connection) -> None:
        """Put jobs a crash interrupted back in the queue, or end them as poison."""
        now = time.time()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "UPDATE jobs SET status = 'queued', crashes = crashes + 1, progress = 0, "
                "progress_message = NULL WHERE finished_at IS NULL AND status = 'running'"
            )
            db.execute(
                "UPDATE jobs SET status = 'failed', error_type = 'trio_jobpool.PoisonJob', "
                "error_message = 'interrupted by ' || crashes || ' crashes of the process "
                "running it', error_traceback = '', finished_at = ? "
                "WHERE finished_at IS NULL AND status = 'queued' AND crashes > ?",
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
                if self._thread is not None:
                    await anyio.to_thread.run_sync(self._thread.join)
                    self._thread = None
                await anyio.to_thread.run_sync(self._close_sync, limiter=self._limiter)

    def _close_sync(self) -> None:
        with self._connection_lock:
            for attribute in ("_db", "_reader"):
                connection = getattr(self, attribute)
                if connection is not None:
                    connection.close()
                    setattr(self, attribute, None)
        self._file_lock.release()

    # -- writing ---------------------------------------------------------------------------

    def add(self, record: JobRecord) -> int:
        """Number a new job (``record.seq``; queued, or scheduled with its due time, never
        started) and queue its insert; return the ticket to :meth:`wait` for. Until that
        returns, the job is not on disk."""
        record.seq = self._next_seq  # add runs only on the loop's thread
        self._next_seq += 1
        return self._enqueue((INSERT, insert_values(record)))

    def add_now(self, record: JobRecord) -> None:
        """Insert a live job and commit it before returning (queued writes wait their turn).

        Blocks the calling thread for one commit: for ``submit_nowait``, which may not wait
        (with ``synchronous="FULL"`` that includes an ``fsync``).

        Raises:
            StoreError: the write failed; nothing was added.
        """
        record.seq = self._next_seq
        self._next_seq += 1
        # Only this insert: a new job has no queued writes that must come first, and the
        # queue's writes keep their own order and their own waiters.
        self._write([(INSERT, insert_values(record))])

    def started(self, record: JobRecord) -> int:
        """Queue the write of a job's start (status, attempts, start time); its ticket."""
        return self._enqueue((START, (record.attempts, record.started_at, record.seq)))

    def progressed(self, record: JobRecord) -> int:
        """Queue the write of a job's progress; its ticket. A progress write of the same job
        that the writer has not taken yet is brought up to date instead: a job reporting
        progress in a tight loop costs one write per commit, not one per report."""
        values = (record.progress, record.progress_message, record.seq)
        if self._on_loop:
            return self._progressed_locked(values)
        with self._wake:
            return self._progressed_locked(values)

    def _progressed_locked(self, values: tuple[Any, ...]) -> int:
        seq = values[-1]
        index = self._queued_progress.get(seq)
        if index is not None:
            self._queue[index] = (PROGRESS, values)
            return self._issued - len(self._queue) + index + 1
        ticket = self._enqueue_locked((PROGRESS, values))
        self._queued_progress[seq] = len(self._queue) - 1
        return ticket

    def changed(self, record: JobRecord) -> int:
        """Queue the write of every changing field of a job (an end, a retry, a requeue, a
        deferral)."""
        if record.status == "completed":
            return self._enqueue((COMPLETE, complete_values(record)))
        return self._enqueue((CHANGE, change_values(record)))

    def flush_now(self) -> None:
        """Commit every write queued so far before returning (blocking the calling thread:
        on the loop, or until the writer thread is done with them). For the rare read that
        must see them (``JobPool.get`` of a job that ended a moment ago); failures are
        reported to the writes' own waiters as usual."""
        if self._retry:
            self._enqueue()
        if self._on_loop:
            while self._queue:
                self._commit_queued()
            return
        with self._wake:
            target = self._issued
            while self._written < target and self._writer_running:
                self._wake.wait()

    async def wait(self, ticket: int) -> None:
        """Wait until the writer has committed write ``ticket`` (see ``Store.wait``): a
        cancellation does not end the wait, it is delivered at the caller's next checkpoint.

        Raises:
            StoreError: the write failed (with everything committed alongside it).
        """
        if self._committed < ticket:
            # Each waiter is woken exactly once, by the report that covers its ticket.
            if self._db is None or (not self._on_loop and not self._writer_running):
                raise StoreError(f"{self.url} is closed")
            assert self._runtime is not None
            slot = Slot()
            self._arrivals += 1
            heapq.heappush(self._waiters, (ticket, self._arrivals, slot))
            error: StoreError | None = await self._runtime.park_shielded(slot)
            if error is not None:
                raise StoreError(*error.args)
            return
        for after, last, error in self._failures:
            if after < ticket <= last:
                raise StoreError(*error.args)

    async def flush(self) -> None:
        """Wait until every write queued so far is committed (as :meth:`wait`).

        Raises:
            StoreError: a commit failed.
        """
        if self._retry:
            self._enqueue()
        # Failures already reported to their waiters are not raised again here.
        if self._committed < self._issued:
            await self.wait(self._issued)

    def _enqueue(self, op: Write | None = None) -> int:
        """Queue ``op`` (after any updates of failed commits); return its ticket."""
        if self._on_loop:  # the queue has no other thread to guard against
            return self._enqueue_locked(op)
        with self._wake:
            return self._enqueue_locked(op)

    def _enqueue_locked(self, op: Write | None) -> int:
        if self._queued_progress and op is not None and op[0] is not PROGRESS:
            # A later progress report must not be folded into one queued before this write.
            # An update's last value is its seq; an insert's job has no progress queued.
            self._queued_progress.pop(op[1][-1], None)
        if self._retry:
            # Updates are not given up on when a commit fails: they go into the next one (a
            # passing fault heals; a lasting one fails that commit too). Inserts are not
            # retried: their submitters got the error, the jobs were not accepted.
            self._queue.extend(self._retry)
            self._issued += len(self._retry)
            self._retry = []
        if op is not None:
            self._queue.append(op)
            self._issued += 1
        if not self._on_loop:
            self._wake.notify()
        elif not self._commit_scheduled and self._call_soon_here is not None:
            self._commit_scheduled = True
            self._call_soon_here(self._commit_queued, self._extra_passes)
        return self._issued

    def _commit_queued(self, passes: int = 0) -> None:
        """On the loop (``synchronous="NORMAL"``): commit everything queued, report it; or,
        with ``passes`` left, let the scheduler run that many more times first."""
        if passes:
            assert self._call_soon_here is not None
            self._call_soon_here(self._commit_queued, passes - 1)
            return
        self._commit_scheduled = False
        queue = self._queue
        if not queue:
            return
        limit = self._max_batch
        if len(queue) > limit:
            # A burst: commit it in parts, each its own callback, so that the loop is never
            # blocked for more than one part (about 10 µs a row).
            batch, self._queue = queue[:limit], queue[limit:]
            self._queued_progress = {
                seq: index - limit for seq, index in self._queued_progress.items() if index >= limit
            }
            self._commit_scheduled = True
            assert self._call_soon_here is not None
            self._call_soon_here(self._commit_queued, 0)
        else:
            batch, self._queue = queue, []
            self._queued_progress.clear()
        upto = self._issued - len(self._queue)
        error = self._write_batch(batch)
        self._on_written(upto - len(batch), upto, error, batch)

    def _write_batch(self, batch: list[Write]) -> StoreError | None:
        """Commit ``batch``; the error to report to its waiters, if it failed."""
        try:
            self._write(batch)
        except StoreError as exc:
            return exc
        except Exception as exc:  # reported to the waiters, not lost
            return StoreError(f"{self.url}: cannot write: {exc!r}")
        return None

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
                self._queued_progress.clear()
                upto = self._issued
            error = self._write_batch(batch)
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
        batch: list[Write],
    ) -> None:
        """In the event loop: the writer finished writes ``after+1 … upto``."""
        if error is not None:
            self._failures.append((after, upto, error))
            del self._failures[:-1024]  # for a wait that comes after its write's report
            # Inserts, starts and schedule steps are not retried: their waiters (a submitter,
            # a worker, the pool's schedules) got the error and act on it (the job is not
            # accepted; it is not started, the pool keeps it queued; the step was not made).
            # Ends, retries, requeues and progress go into the next commit.
            self._retry.extend(op for op in batch if op[0] not in _NOT_RETRIED)
            self.failed_commits += 1
            if not self.failing:  # one line per streak of failures, not one per commit
                self.failing = True
                self._failed_before = self.failed_commits - 1
                logger.warning("%s (trying again while it fails)", error)
        recovered = error is None and self.failing
        if recovered:
            self.failing = False
            logger.warning(
                "%s: writes succeed again, after %d failed commits",
                self.url,
                self.failed_commits - self._failed_before,
            )
        self._committed = committed = max(self._committed, upto)
        if self.on_commit_result is not None and (error is not None or recovered):
            self.on_commit_result(error)  # the pool pauses or resumes its starts
        waiters = self._waiters
        if waiters:
            unpark = self._runtime.unpark_shielded  # type: ignore[union-attr]
            while waiters and waiters[0][0] <= committed:
                unpark(heapq.heappop(waiters)[2], error)

    def _write(self, batch: list[Write]) -> None:
        with self._connection_lock:
            self._write_locked(batch)

    def _write_locked(self, batch: list[Write]) -> None:
        db = self._db
        if db is None:
            raise StoreError(f"{self.url} is closed")
        try:
            db.execute("BEGIN")
            try:
                # Inserts first (a job's insert is queued before any write of its row, and
                # rows are told apart by seq alone, so this changes nothing), then runs of one
                # statement each in one executemany call, in the order they were queued, then
                # the schedule steps, in the order they were queued. A step comes after every
                # job write queued before it, as it must (a tick's overlap was decided on the
                # ends the pool had seen); a job write queued after it is not of its tick's job
                # (whose writes can be queued only once the step is committed), so it may come
                # first.
                inserts = [values for statement, values in batch if statement is INSERT]
                if inserts:
                    db.executemany(INSERT, inserts)
                    if len(inserts) < len(batch):
                        batch = [op for op in batch if op[0] is not INSERT]
                    else:
                        batch = []
                steps: list[ScheduleStep] = []
                for statement, run in itertools.groupby(batch, key=operator.itemgetter(0)):
                    if statement is SCHEDULE_STEP:
                        steps.extend(values[0] for _, values in run)
                    else:
                        db.executemany(statement, [values for _, values in run])
                for step in steps:
                    step.apply(db)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:  # SQLite may have rolled back already (a full disk)
                    db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._error("cannot write", exc) from None
        # Committed, but to the file at the path? A write into a deleted (or replaced) file is
        # one nobody will read: it fails like any other, so no submit is accepted into it.
        self._file_lock.check()

    def rewrite_failed(self) -> None:
        """Queue the updates of failed commits again (ends, retries, progress), if any: the
        pool calls this when it tries the store again after a failure."""
        if self._retry:
            self._enqueue()

    # -- reading ---------------------------------------------------------------------------

    def load(self, job_id: str) -> JobRecord | None:
        """The most recent job stored under ``job_id`` (a quick indexed read, synchronous)."""
        reader = self._reader
        if reader is None:
            return None
        try:
            row = reader.execute(
                f"SELECT {COLUMNS}, seq FROM jobs WHERE job_id = ? ORDER BY seq DESC LIMIT 1",
                (job_id,),
            ).fetchone()
        except sqlite3.Error as exc:
            raise self._error("cannot read", exc) from None
        return None if row is None else to_record(row)

    async def prune(self, older_than: float) -> int:
        """Delete ended jobs that finished more than ``older_than`` seconds ago; return how
        many. Live jobs are never pruned. It deletes in parts of 1,000 jobs, each its own
        transaction. Use it while the pool is open (``await pool.store.prune(...)``).

        Raises:
            ValueError: a negative ``older_than``.
            StoreError: the database could not be written.
        """
        if not older_than >= 0:
            raise ValueError(f"older_than must be >= 0 seconds, got {older_than!r}")
        await self.flush()
        cutoff = time.time() - older_than
        # In parts, each a transaction of its own in a worker thread: the connection is the
        # one the loop commits on, so the loop waits for at most one part.
        deleted = 0
        while True:
            part = await anyio.to_thread.run_sync(self._prune_sync, cutoff, limiter=self._limiter)
            deleted += part
            if part < _PRUNE_PART:
                return deleted

    def _prune_sync(self, cutoff: float) -> int:
        with self._connection_lock:
            db = self._db
            if db is None:
                raise StoreError(f"{self.url} is closed")
            try:
                cursor = db.execute(
                    "DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs WHERE finished_at < ? "
                    f"AND status NOT IN {LIVE_SQL} LIMIT {_PRUNE_PART})",
                    (cutoff,),
                )
            except sqlite3.Error as exc:
                raise self._error("cannot prune", exc) from None
            return cursor.rowcount

    # -- periodic schedules (the ScheduleBook protocol) ------------------------------------

    async def load_schedules(self) -> list[ScheduleRecord]:
        """Every schedule, sorted by name, after every write queued before this call is done
        (committed or failed): a listing taken after a declaration or a tick shows it.

        Raises:
            StoreError: the store is closed, or cannot be read.
        """
        with contextlib.suppress(StoreError):  # those writes' own waiters get their error
            await self.flush()
        reader = self._reader
        if reader is None:
            raise StoreError(f"{self.url} is closed")
        try:
            rows = reader.execute(
                f"SELECT {SCHEDULE_COLUMNS} FROM schedules ORDER BY name"
            ).fetchall()
        except sqlite3.Error as exc:
            raise self._error("cannot read", exc) from None
        return [to_schedule(row) for row in rows]

    async def declare_schedule(self, record: ScheduleRecord) -> ScheduleRecord:
        """Keep ``record`` unless a schedule of its name has an equal definition; return the
        schedule kept (see ``ScheduleBook``), durable before this returns. As :meth:`wait`, a
        cancellation is delivered after the commit.

        Raises:
            StoreError: the write failed: nothing was changed.
        """
        step = Declare(record)
        await self._run_step(step)
        assert step.result is not None
        return step.result

    async def remove_schedule(self, name: str) -> bool:
        """Remove the schedule ``name`` (durable before this returns); ``False`` if there was
        none.

        Raises:
            StoreError: the write failed: nothing was removed.
        """
        step = Remove(name)
        await self._run_step(step)
        return step.result

    async def fire(
        self, before: ScheduleRecord, after: ScheduleRecord, job: JobRecord | None
    ) -> ScheduleRecord | None:
        """A tick's step, in one transaction (see ``ScheduleBook.fire``): if the schedule is
        still ``before`` (its definition, anchor and ``handled_until``), write ``after`` and
        insert ``job`` (numbered here, as :meth:`add` numbers a job: ``job.seq``); return
        ``after``. Otherwise write nothing and return the schedule kept (``None``: removed;
        ``job.seq`` is 0 again). Durable before this returns, and after every write queued
        before it; as :meth:`wait`, a cancellation is delivered after the commit. The overlap
        rule is the pool's (its jobs are all in this process): the store does not check it.

        Raises:
            StoreError: the write failed: neither the schedule nor the job was written.
        """
        if job is not None:
            job.seq = self._next_seq  # on the loop's thread, as in add
            self._next_seq += 1
        step = Fire(before, after, job)
        stored = False
        try:
            await self._run_step(step)
            stored = step.fired
        finally:
            if job is not None and not stored:
                job.seq = 0  # not on record
        return step.result

    # -- limits (the LimitBook protocol of the pool) ---------------------------------------

    def stored_limits(self) -> dict[str, dict[str, Any]]:
        """The keys' own limits as the store holds them (read when it was opened, kept up to
        date by :meth:`put_limit`), by key, in their JSON form."""
        return dict(self._limits)

    async def put_limit(self, key: str, limit: dict[str, Any] | None) -> None:
        """Keep ``limit`` (JSON form: ``{"max_running": …, "rate": {"count": …, "per": …}}``)
        as ``key``'s own, or remove the key's (``None``); durable before this returns, after
        every write queued before it. As :meth:`wait`, a cancellation is delivered after the
        commit.

        Raises:
            StoreError: the write failed: nothing was changed.
        """
        await self._run_step(PutLimit(key, limit))
        if limit is None:
            self._limits.pop(key, None)
        else:
            self._limits[key] = limit

    async def _run_step(self, step: ScheduleStep) -> None:
        """Queue ``step`` behind every write queued so far (at once, before any checkpoint)
        and wait until the commit that makes it is done.

        Raises:
            StoreError: that commit failed (the step was rolled back with it).
        """
        await self.wait(self._enqueue((SCHEDULE_STEP, (step,))))

    def _error(self, what: str, exc: sqlite3.Error) -> StoreError:
        return StoreError(f"{self.url}: {what}: {exc}")
