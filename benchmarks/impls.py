"""The implementations measured, and the small interface the workload drivers use.

An implementation module (``impls_trio``, ``impls_asyncio``, ``impls_jobpool``) has a
``make_env(variant) -> Env``. ``Env.open_pool(kind, workers, queue)`` is an async context manager
(``queue=None``: unbounded; ``kind``: ``"plain"``, ``"priority"`` or ``"cancel"``, the features the
workload needs) yielding a pool with:

* ``await pool.submit(fn, *args, priority=5)`` - returns a handle once the job is accepted;
* ``pool.job_id(handle)`` - what ``cancel`` takes;
* ``await pool.cancel_many(ids)`` - cancels each waiting job by id, one call per job;
* ``await pool.abort()`` - cancel everything now (teardown of the memory workload);
* ``pool.counts()`` - ``{"completed": .., "cancelled": ..}`` for the sanity checks, or ``None``.

The later-job workloads (S1-S3) run trio_jobpool only: they pass ``delay=`` or ``at=`` to
``pool.submit`` (the pool's own), and S3 also uses:

* ``await pool.wait_ended(handle)`` - returns once that job has ended;
* ``pool.due_lags(handles)`` - per job, the pool's own start minus due time, in seconds.

The durable workloads (D1-D3) run trio_jobpool only, in memory and on a SQLite store, through
``open_pool("durable", workers, queue)``, whose pool also has:

* ``await pool.hold_workers(count)`` - submits ``count`` registered jobs that hold a worker each,
  and returns once all of them run; ``pool.release_workers()`` lets them end;
* ``pool.stored()`` - after the block: ``{status: rows}`` of the store's file, or ``None`` (in
  memory);

and ``Env.gather(fns)`` runs async functions concurrently (one task each) until all return.

The flow-control workloads (W6, issue #17) run trio_jobpool only: they pass ``key=`` to
``pool.submit`` into ``open_pool("keys", ...)`` (every key ``max_running=1``) or
``open_pool("keys-fair", ...)`` (the same with ``fair=True``), and read
``pool.counts()["delayed"]`` (the pool's ``delayed_starts``). No other pool here has keys.

Leaving the block drains the pool: it returns once every accepted job has ended. A pool that
cannot do what a workload needs raises :class:`NotSupported` (reported as n/a).

This module imports no async library, so the runner can read the registry cheaply.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

__all__ = ["BY_NAME", "IMPLS", "LIMIT", "Env", "Impl", "NotSupported", "peer_of"]


class NotSupported(Exception):
    """The implementation has no way to run this workload (reported as n/a)."""


@dataclass(frozen=True)
class Env:
    jobs: Any  # jobs.Jobs
    run: Callable[[Callable[[], Any]], Any]  # runs an async function to completion
    open_pool: Callable[..., Any]
    gather: Callable[[list[Callable[[], Coroutine[Any, Any, Any]]]], Awaitable[None]] | None = None


@dataclass(frozen=True)
class Impl:
    name: str
    label: str
    backend: str  # whose job bodies it runs: "trio" or "asyncio"
    loop: str  # event loop: "trio", "asyncio" or "uvloop"
    module: str
    variant: str
    unsupported: frozenset[str] = frozenset()  # workloads that are n/a, with no process spawned
    store: str | None = None  # "sqlite" or "sqlitefull": runs the durable workloads (D1-D3) only
    memory_twin: str | None = None  # the same pool in memory, for the durable ÷ in-memory ratio


_NO_PRIORITIES = frozenset({"W3"})
IMPLS: tuple[Impl, ...] = (
    Impl("trio-loop", "Trio loop (the limit)", "trio", "trio", "impls_trio", "loop"),
    Impl("trio-fast", "Trio loop, nowait fast paths", "trio", "trio", "impls_trio", "fast"),
    Impl("jobpool-trio", "trio_jobpool on Trio", "trio", "trio", "impls_jobpool", "trio"),
    Impl(
        "asyncio-loop",
        "asyncio loop (asyncio.Queue)",
        "asyncio",
        "asyncio",
        "impls_asyncio",
        "loop",
    ),
    Impl(
        "aiojobs",
        "aiojobs on asyncio",
        "asyncio",
        "asyncio",
        "impls_asyncio",
        "aiojobs",
        _NO_PRIORITIES,
    ),
    Impl(
        "aiojobs-uvloop",
        "aiojobs on uvloop",
        "asyncio",
        "uvloop",
        "impls_asyncio",
        "aiojobs-uvloop",
        _NO_PRIORITIES,
    ),
    Impl(
        "jobpool-asyncio",
        "trio_jobpool on asyncio (AnyIO)",
        "asyncio",
        "asyncio",
        "impls_jobpool",
        "asyncio",
    ),
    Impl(
        "jobpool-uvloop",
        "trio_jobpool on uvloop (AnyIO)",
        "asyncio",
        "uvloop",
        "impls_jobpool",
        "uvloop",
    ),
    Impl(
        "jobpool-trio-sqlite",
        "trio_jobpool on Trio, SQLite store",
        "trio",
        "trio",
        "impls_jobpool",
        "trio-sqlite",
        store="sqlite",
        memory_twin="jobpool-trio",
    ),
    Impl(
        "jobpool-asyncio-sqlite",
        "trio_jobpool on asyncio (AnyIO), SQLite store",
        "asyncio",
        "asyncio",
        "impls_jobpool",
        "asyncio-sqlite",
        store="sqlite",
        memory_twin="jobpool-asyncio",
    ),
    Impl(
        "jobpool-trio-sqlite-full",
        "trio_jobpool on Trio, SQLite store with synchronous=FULL (an fsync per commit)",
        "trio",
        "trio",
        "impls_jobpool",
        "trio-sqlitefull",
        store="sqlitefull",
        memory_twin="jobpool-trio",
    ),
)
BY_NAME: dict[str, Impl] = {impl.name: impl for impl in IMPLS}
LIMIT = "trio-loop"


def peer_of(impl: Impl) -> str | None:
    """The aiojobs run on the same event loop, for the asyncio ratios."""
    if impl.backend != "asyncio":
        return None
    return "aiojobs-uvloop" if impl.loop == "uvloop" else "aiojobs"
