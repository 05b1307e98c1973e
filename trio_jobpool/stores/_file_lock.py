"""DatabaseLock: one pool at a time on an SQLite database file.

The lock is an exclusive ``flock`` on the database file itself, that is on its inode, not on a
name: a symlink or a hard link to the database, or any other path to it, meets the same lock,
and there is no lock file that could be deleted from under a running pool. ``flock`` locks
belong to an open file description, so they never mix with the POSIX (``fcntl``) byte-range
locks SQLite takes on the same file.

Invariants, for every lock of this process:

* ``_HELD`` maps the ``(st_dev, st_ino)`` of each database file a lock of this process holds to
  the path it was acquired by; an entry exists exactly while its lock's descriptor is open and
  holds the ``flock``. ``_HELD_LOCK`` guards ``_HELD``: an acquire holds it from its first look
  at ``_HELD`` until its entry is made, a release around its close, so that no acquire in
  another thread decides on a stale ``_HELD``.
* A process holds at most one lock per file, and opens no descriptor on a file it holds where
  it can tell: :meth:`DatabaseLock.acquire` refuses a file in ``_HELD`` before opening it,
  when the path names it already.
* A descriptor on a file that another lock of this process holds is never closed: closing
  *any* descriptor of a file drops every POSIX lock this process holds on it, SQLite's
  included. Such a descriptor, opened because the path came to name a held file between the
  ``stat`` and the ``open``, is kept in ``_STRAY`` for the life of the process.
* The lock guards a file, not a path: while it is held the path may come to name another file,
  or none. :meth:`DatabaseLock.check` says whether it still names the locked file; the store
  checks after opening and after every commit, and a commit whose check fails counts as failed.

Where ``fcntl`` is missing there are no file locks: every method does nothing and the
database's own locking is all there is.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from .._errors import StoreError

fcntl: Any
try:  # POSIX file locks; elsewhere the database's own locking is all there is
    import fcntl
except ImportError:  # pragma: no cover - not on the platforms we test
    fcntl = None

__all__ = ["DatabaseLock"]

# The database files (st_dev, st_ino) that locks of this process hold, and their paths.
_HELD: dict[tuple[int, int], str] = {}
_HELD_LOCK = threading.Lock()
# Descriptors opened on a database another lock of this process holds: closing them would
# drop that store's SQLite locks (POSIX locks are per process and file), so they stay open.
_STRAY: list[int] = []


class DatabaseLock:
    """The one-pool-per-database lock on the file at ``path`` (see the module docstring).

    Args:
        path: the database file.
        url: how error messages name the database (the store's URL).

    Every method blocks the calling thread briefly (a ``stat``, an ``open``, a non-blocking
    ``flock``): the store acquires and releases the lock in a worker thread, and checks it
    after every commit on whichever thread committed.
    """

    def __init__(self, path: Path, url: str) -> None:
        self.path = path
        self.url = url
        self._fd: int | None = None  # the descriptor holding the flock, while held
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the locked file

    def acquire(self) -> None:
        """Take the lock: ``flock`` on the file at the path, created empty if missing.

        Raises:
            StoreError: another pool holds the database (this process or another), or it
                cannot be opened or locked; nothing was created or written then, except an
                empty database file where there was none, and the lock is not held.
        """
        if fcntl is None:  # pragma: no cover
            return
        with _HELD_LOCK:
            try:
                known = os.stat(self.path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise StoreError(f"{self.url}: cannot open: {exc}") from None
            else:
                holder = _HELD.get((known.st_dev, known.st_ino))
                if holder is not None:
                    raise self._in_use(f"this process's pool on {holder}")
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                raise StoreError(f"{self.url}: cannot open: {exc}") from None
            opened = os.fstat(fd)
            identity = (opened.st_dev, opened.st_ino)
            if identity in _HELD:  # the path changed to another store's file in between
                _STRAY.append(fd)  # never closed: that would drop the other store's locks
                raise self._in_use(f"this process's pool on {_HELD[identity]}")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                # No lock of this process holds this file, so closing drops no one's locks.
                os.close(fd)
                if isinstance(exc, BlockingIOError):
                    raise self._in_use("another process") from None
                raise StoreError(f"{self.url}: cannot lock: {exc}") from None
            _HELD[identity] = str(self.path)
            self._fd = fd
            self._identity = identity
        try:
            self.check()  # the lock guards the file that is at the path now
        except StoreError:
            self.release()
            raise

    def _in_use(self, holder: str) -> StoreError:
        return StoreError(
            f"{self.url} is in use by another pool ({holder} holds a lock on the database file)"
        )

    def check(self) -> None:
        """Check that the locked file is still the one at the path (one ``os.stat``); does
        nothing while the lock is not held.

        Raises:
            StoreError: the database file was deleted, or replaced by another file.
        """
        if self._identity is None:
            return
        try:
            now = os.stat(self.path)
        except OSError as exc:
            raise StoreError(
                f"{self.url}: the database file was deleted or moved while the pool had it "
                f"open ({exc.strerror}); nothing more is written to it"
            ) from None
        if (now.st_dev, now.st_ino) != self._identity:
            raise StoreError(
                f"{self.url}: the database file was replaced by another file while the pool "
                "had it open; nothing more is written to it"
            )

    def release(self) -> None:
        """Release the lock, if held. Call it after every connection on the file is closed:
        closing the descriptor drops this process's POSIX locks on the file."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with _HELD_LOCK:
            if self._identity is not None:
                _HELD.pop(self._identity, None)
                self._identity = None
            os.close(fd)
