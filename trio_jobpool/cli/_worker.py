"""``trio-jobpool worker`` and ``prune``: the commands that run a store's jobs, or clean it.

``worker`` opens a pool on a shared (Redis) store with the jobs of a registry and runs them until
SIGINT or SIGTERM, then drains (:mod:`._running`). ``prune`` opens an SQLite store by itself and
deletes old ended jobs.

Every expected failure is a :class:`CliError` with its exit code.
"""

from __future__ import annotations

import os

import trio

from trio_jobpool import SqliteStore, StoreError

from ._errors import EXIT_BAD_INPUT, EXIT_FAILED, CliError
from ._output import write_line
from ._running import (
    WorkerOptions,
    declare_schedules,
    load_app,
    open_pool,
    pool_until_signal,
    run_trio,
    store_name,
)

__all__ = ["run_prune", "run_worker"]


# -- worker ----------------------------------------------------------------------------------


def run_worker(options: WorkerOptions) -> int:
    """``trio-jobpool worker``: declare the app's schedules (as ``serve`` does), run the
    store's jobs until SIGINT/SIGTERM, then drain."""
    if not options.store.startswith(("redis://", "rediss://", "sqlite:///")):
        raise CliError(
            EXIT_BAD_INPUT,
            f"--store {options.store!r}: a worker runs the jobs of a shared store, "
            "redis://host:port/db (or an sqlite:/// file that no other pool holds)",
        )
    app = load_app(options.app)
    opener = open_pool(options, app.registry)

    async def main() -> None:
        async with pool_until_signal(opener, options.shutdown_timeout) as (pool, stopping):
            await declare_schedules(pool, app, stopping)
            write_line(
                f"worker {os.getpid()}: {pool.max_workers} workers on {store_name(pool)}, "
                "Ctrl+C to stop"
            )
            await stopping.wait()

    run_trio(main, options.store)
    return 0


# -- prune -----------------------------------------------------------------------------------


def run_prune(store: str, older_than: float) -> int:
    """``trio-jobpool prune``: delete the jobs of an SQLite store that ended before
    ``older_than`` seconds ago; prints how many."""
    if store.startswith(("redis://", "rediss://")):
        raise CliError(
            EXIT_BAD_INPUT,
            "a Redis store needs no pruning: ended jobs expire by themselves, keep_ended "
            "seconds after their end (an hour by default; set it in the URL: ?keep_ended=86400)",
        )
    try:
        sqlite_store = SqliteStore.from_url(store)
    except ValueError as exc:
        raise CliError(
            EXIT_BAD_INPUT, f"--store: {exc} (expected sqlite:///path/jobs.db)"
        ) from None
    if not sqlite_store.path.is_file():
        raise CliError(EXIT_BAD_INPUT, f"--store: no such file: {sqlite_store.path}")
    deleted: list[int] = []

    async def main() -> None:
        await sqlite_store.open()  # takes the store's lock: StoreError if a pool holds it
        try:
            deleted.append(await sqlite_store.prune(older_than))
        finally:
            await sqlite_store.aclose()

    try:
        trio.run(main)
    except StoreError as exc:
        hint = " (stop the server or worker that uses it first)" if "in use" in str(exc) else ""
        raise CliError(EXIT_FAILED, f"{exc}{hint}") from None
    write_line(f"pruned {deleted[0]} ended jobs from {sqlite_store.url}")
    return 0
