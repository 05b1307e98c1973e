"""Assembly: :func:`open_job_pool`, the one switch from a store (or its URL) to a kind of pool.

This is the one module that names the concrete stores and pools: a pool in memory or with a
local :class:`~trio_jobpool.stores._base.Store` (any implementation: SQLite is the one shipped)
is a :class:`JobPool` with a :class:`Journal`; a :class:`RedisStore` makes a
:class:`DistributedPool`, whose waiting jobs live in Redis. The runtime (backend) is selected here,
once per pool, and handed to whatever needs it.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Final

from ._config import PoolConfig
from ._distributed import DistributedPool
from ._errors import StoreError
from ._excgroups import lone_error
from ._journal import Journal
from ._limits import Limit
from ._pool import JobPool
from ._registry import JobRegistry
from ._retry import RetryPolicy
from ._runtime import Runtime, TaskGroupLike, current_runtime
from ._validate import check_count, seconds
from .stores._base import JobRecord, Store
from .stores.redis import RedisStore
from .stores.sqlite import SqliteStore

__all__ = ["open_job_pool", "open_store"]

# The one scheme switch: a store URL's scheme -> the store it names.
_SCHEMES: Final[dict[str, Callable[[str], Store | RedisStore]]] = {
    "sqlite": SqliteStore.from_url,
    "redis": RedisStore.from_url,
    "rediss": RedisStore.from_url,
}


def open_job_pool(
    max_workers: int = 10,
    queue_size: int = 100,
    *,
    job_timeout: float | None = 1800.0,
    shutdown_timeout: float | None = 30.0,
    max_pending: int | None = 0,
    retry: RetryPolicy | None = None,
    history: int = 10_000,
    store: object = None,
    registry: JobRegistry | None = None,
    shutdown_grace: float | None = 1.0,
    key_limit: Limit | None = None,
    fair: bool = False,
    aging: float | None = None,
) -> AbstractAsyncContextManager[JobPool]:
    """Open a job pool for the duration of an ``async with`` block.

    Returns an async context manager: ``async with open_job_pool(...) as pool`` opens a nursery
    (on asyncio, an AnyIO task group), starts a deadline watcher in it and ``max_workers``
    workers, and yields the :class:`JobPool`. The retry timers and the deadline watcher are
    tasks of that nursery. The workers, and so every running job, are tasks of a task group of
    their own, which a task of the nursery stands for: what a worker raises is raised in the
    nursery, a cancellation of the nursery cancels the workers, and the block does not end
    before every worker has ended, except that it stops waiting for a job that has not ended
    ``shutdown_grace`` seconds after the shutdown cancelled it (see :meth:`JobPool.stop` and
    the design notes, "Jobs that ignore cancellation").

    Leaving the block:

    * normally: ``await pool.stop(drain=True)`` (jobs get up to ``shutdown_timeout``, then the
      rest is cancelled; it returns once every job has ended and every worker has exited, or
      jobs that ignore their cancellation were abandoned after ``shutdown_grace``);
    * by an exception, or a cancellation: every job is cancelled at once, the pool's tasks
      unwind (jobs still running after ``shutdown_grace`` are abandoned, as by ``stop``), and
      that exception itself is re-raised: the same object, not wrapped in an exception group
      and not re-derived (an exception group raised by the block comes out as that very group,
      of its own class). If the nursery ends with more than one exception (for example the
      block's and a job's ``KeyboardInterrupt``), they are raised together in a
      ``BaseExceptionGroup``.

    Whichever way the block ends, no job is left live (an abandoned job's handle has ended
    ``CANCELLED``, though its code may still run; see :meth:`JobPool.stop`).

    Args:
        max_workers: how many jobs run at once; ``int >= 1`` (``>= 0`` for a distributed
            pool: ``max_workers=0`` is a process that only submits).
        queue_size: how many accepted jobs may wait beyond those that idle workers take at
            once; ``int >= 0``.
        job_timeout: the default timeout of a job, from the start of each attempt; ``None``
            (or ``math.inf``) for none; a number ``>= 0``.
        shutdown_timeout: how long leaving the block normally (or ``stop()`` without
            ``timeout``) lets jobs finish before cancelling them; ``None`` (or ``math.inf``)
            for no limit; a number ``>= 0``.
        max_pending: extra waiting room on top of ``queue_size``; ``int >= 0``, or ``None``
            for no bound at all. The pool is *full* when no worker is idle and
            ``queue_size + max_pending`` accepted jobs wait (jobs back from a retry backoff are
            not counted).
        retry: the default :class:`RetryPolicy` for jobs submitted with ``retry=None``;
            ``None`` for no retries.
        history: how many ended jobs :meth:`JobPool.get` can still find; ``int >= 0``.
        store: ``None`` (or ``"memory://"``), the in-memory pool; ``"sqlite:///path/jobs.db"``
            (a path relative to the working directory; ``sqlite:////abs/path.db`` for an
            absolute one), a :class:`SqliteStore` or any other object that implements the
            ``Store`` protocol: the durable pool, which writes every accepted job to the store
            before ``submit`` returns, and whose next pool on the same store resumes what a
            crash left (docs/durability.md); ``"redis://host:port/db"`` (settings as a query:
            ``?queue=builds&lease_timeout=30``) or a :class:`RedisStore`: the distributed pool,
            whose waiting jobs live in Redis, shared with other processes
            (docs/distributed.md); it yields a :class:`JobPool` with the differences listed
            there. A store needs a ``registry`` and ``queue_size + max_pending >= 1``. The
            store is opened (and recovered, or connected) when the block is entered, before any
            job runs, and closed when it is left.
        registry: a :class:`JobRegistry`; with one, ``submit`` also accepts a registered job's
            name. With a store, only registered functions with JSON arguments can be
            submitted.
        shutdown_grace: how long the shutdown then waits for the cancelled jobs to end, before
            it *abandons* those still running (see :meth:`JobPool.stop`); ``None`` (or
            ``math.inf``) to wait for them forever; a number ``>= 0``. The default, 1 s, is
            ample for the cleanup of a job that honours its cancellation (a ``finally`` that
            closes a connection or writes a line) and keeps the bound on a shutdown short:
            leaving the block takes at most ``shutdown_timeout + shutdown_grace``.
        key_limit: a :class:`Limit` for every flow-control key without a limit of its own
            (:meth:`JobPool.set_limit`); jobs without a key are never limited. See
            docs/flow-control.md.
        fair: ``True`` to take the eligible jobs of one priority round-robin across keys
            (each key FIFO; jobs without a key together form one key) rather than in order of
            submission.
        aging: seconds (a finite number ``> 0``), or ``None``: a job that has waited
            ``k·aging`` seconds is ordered as a job of priority ``priority - k`` entering now
            (and ahead of it); ``None`` keeps priorities strict.

    Raises:
        ValueError: from the call itself (before any task starts): ``max_workers < 1``
            (``< 0`` on Redis), ``queue_size < 0``, ``max_pending < 0``, ``history < 0``, a
            negative or NaN ``job_timeout`` / ``shutdown_timeout`` / ``shutdown_grace``, an
            ``aging`` that is not a finite number ``> 0``, a
            store URL other than ``memory://``, ``sqlite:///…`` or ``redis://…`` (or bad
            settings in it), a store without a ``registry``, or a store with
            ``queue_size + max_pending < 1``.
        TypeError: from the call itself: a count that is not an ``int`` (or is a ``bool``), a
            timeout that is not a number or ``None``, a ``retry`` that is not a
            :class:`RetryPolicy`, a ``registry`` that is not a :class:`JobRegistry`, a
            ``key_limit`` that is not a :class:`Limit`, a ``fair`` that is not a ``bool``.
        RuntimeError: when the block is entered outside Trio and asyncio.
        StoreError: when the block is entered and the store cannot be opened (in use by
            another pool, not an SQLite file, not writable; Redis not reachable).
        ImportError: when the block is entered with a Redis store and without coredis (the
            ``redis`` extra).
    """
    the_store = open_store(store)
    distributed = isinstance(the_store, RedisStore)
    check_count("max_workers", max_workers, 0 if distributed else 1)
    check_count("queue_size", queue_size, 0)
    check_count("max_pending", max_pending, 0, allow_none=True)
    check_count("history", history, 0)
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise TypeError(f"retry must be a RetryPolicy or None, got {retry!r}")
    if registry is not None and not isinstance(registry, JobRegistry):
        raise TypeError(f"registry must be a JobRegistry or None, got {registry!r}")
    if key_limit is not None and not isinstance(key_limit, Limit):
        raise TypeError(f"key_limit must be a Limit or None, got {key_limit!r}")
    if not isinstance(fair, bool):
        raise TypeError(f"fair must be a bool, got {fair!r}")
    if aging is not None:
        if isinstance(aging, bool) or not isinstance(aging, int | float):
            raise TypeError(f"aging must be a number of seconds or None, got {aging!r}")
        if not math.isfinite(aging) or aging <= 0:
            raise ValueError(f"aging must be a finite number of seconds > 0, got {aging!r}")
        aging = float(aging)
    if the_store is not None:
        if registry is None:
            raise ValueError(f"a pool on {the_store.url} needs a registry: it stores jobs by name")
        if max_pending is not None and queue_size + max_pending < 1:
            raise ValueError(
                f"a pool on {the_store.url} needs queue_size + max_pending >= 1: a job is "
                "written to the store before a worker may take it"
            )
    config = PoolConfig(
        max_workers=max_workers,
        queue_size=queue_size,
        job_timeout=seconds("job_timeout", job_timeout),
        shutdown_timeout=seconds("shutdown_timeout", shutdown_timeout),
        shutdown_grace=seconds("shutdown_grace", shutdown_grace),
        max_pending=max_pending,
        retry=retry,
        history=history,
        registry=registry,
        key_limit=key_limit,
        fair=fair,
        aging=aging,
    )
    if isinstance(the_store, RedisStore):
        if fair or aging is not None:
            raise ValueError(
                "fair and aging are not available on a distributed pool: its order is the "
                "Redis queue's (strict priority, FIFO within one; see docs/flow-control.md)"
            )
        return _distributed_pool(config, the_store)
    return _local_pool(config, the_store)


def open_store(store: object) -> Store | RedisStore | None:
    """The store named by ``open_job_pool``'s ``store=`` argument: ``None`` (or
    ``"memory://"``) for none, a URL whose scheme names a store, or a store object.

    Raises:
        ValueError: a URL of no supported scheme (or a malformed one).
        TypeError: neither a URL nor a store.
    """
    if store is None or store == "memory://":
        return None
    if isinstance(store, str):
        scheme, sep, _ = store.partition("://")
        factory = _SCHEMES.get(scheme) if sep else None
        if factory is None or (scheme == "sqlite" and not store.startswith("sqlite:///")):
            raise ValueError(
                f"store {store!r} is not supported: use None, 'memory://', 'sqlite:///path' "
                "or 'redis://host:port/db'"
            )
        return factory(store)
    if isinstance(store, RedisStore | Store):
        return store
    raise TypeError(
        f"store must be None, a URL, a RedisStore or a Store (such as a SqliteStore), got {store!r}"
    )


@asynccontextmanager
async def _local_pool(config: PoolConfig, store: Store | None) -> AsyncIterator[JobPool]:
    """A pool in memory, or with a journal on ``store`` (opened first, closed last: what was
    queued gets written; a failure of that is raised unless another exception is on its way)."""
    runtime = current_runtime()
    journal = None if store is None else Journal(store)
    recovered = [] if journal is None else await journal.open(runtime)
    close_error: StoreError | None = None
    try:

        def make(nursery: TaskGroupLike) -> JobPool:
            return JobPool(config, runtime, nursery, journal)

        async with _pool_block(runtime, make, recovered) as pool:
            yield pool
    finally:
        if journal is not None:
            try:
                await journal.aclose()
            except StoreError as exc:
                close_error = exc
    if close_error is not None:
        raise close_error


@asynccontextmanager
async def _distributed_pool(config: PoolConfig, store: RedisStore) -> AsyncIterator[JobPool]:
    """A distributed pool on ``store``, inside its Redis client's block. That client's own
    task group wraps what leaves the block in an exception group: the block's own exception
    is taken out again."""
    runtime = current_runtime()
    body_error: BaseException | None = None
    single: BaseException | None = None
    try:
        async with store._connect() as queue:

            def make(nursery: TaskGroupLike) -> JobPool:
                return DistributedPool(config, runtime, nursery, store, queue)

            try:
                async with _pool_block(runtime, make, []) as pool:
                    yield pool
            except BaseException as exc:
                body_error = exc
                raise
    except BaseExceptionGroup as group:
        single = lone_error(group, body_error)
        if single is None or single is not body_error:
            raise
    if single is not None:
        raise single


@asynccontextmanager
async def _pool_block(
    runtime: Runtime,
    make: Callable[[TaskGroupLike], JobPool],
    recovered: list[JobRecord],
) -> AsyncIterator[JobPool]:
    """The pool's nursery and its life: workers, deadline watcher, the jobs ``recovered`` from
    its store; a distributed pool's services once its workers' group is open (its first trip
    claims for the idle workers)."""
    pool: JobPool | None = None
    single: BaseException | None = None
    body_error: BaseException | None = None
    try:
        async with runtime.open_task_group() as nursery:
            pool = make(nursery)
            await pool._open_workers_group(nursery)
            await pool._start_services(nursery)
            nursery.start_soon(pool._watch_deadlines)
            nursery.start_soon(pool._watch_due)
            nursery.start_soon(pool._watch_schedules)
            pool._recover(recovered)
            pool._spawn_workers(pool.max_workers)
            try:
                yield pool
            except BaseException as exc:
                body_error = exc
                pool._abort()
                raise
            await pool.stop(drain=True)
            pool._after_stop()
    except BaseExceptionGroup as group:
        single = lone_error(group, body_error)
        if single is None:
            raise
    finally:
        if pool is not None:  # whatever way the nursery ended, no job is left live
            pool._shut_down()
            await pool._final_flush()
    if single is not None:
        # Re-raised outside the except block, so it does not get the group as its context.
        raise single
