"""trio_jobpool, through its public API only, on Trio, on asyncio and on uvloop (via AnyIO).

The pool is opened with its defaults (so each job gets the default ``job_timeout`` deadline, as
users get it) except ``shutdown_timeout=None``, so that leaving the block drains every job however
long that takes. ``queue=None`` maps to ``max_pending=None`` (no bound at all); otherwise
``queue_size=queue, max_pending=0``. The adapter adds no layer on the hot path: ``submit`` is the
pool's own bound method.

The durable workloads open their pool with ``open_pool("durable", ...)``: the same settings plus a
:class:`JobRegistry` holding the backend's no-op job (registered as ``"noop"``) and a job that
holds a worker (``"hold"``). The ``-sqlite`` variants add ``store="sqlite:///<tmp>/jobs.db"``: a
fresh file in a new temporary directory (under ``$JOBPOOL_BENCH_DIR`` if set, else the system's
temporary directory), with the store's defaults (WAL, ``synchronous=NORMAL``).

The flow-control workloads (W6) open ``open_pool("keys", ...)``: the same settings plus
``key_limit=Limit(max_running=1)`` (every key at most one job running), and
``open_pool("keys-fair", ...)`` also ``fair=True``. ``Limit`` is imported only then, so a version
of trio_jobpool from before flow control still runs every other workload (``ab.py``).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

from impls import Env
from jobs import Jobs, asyncio_jobs, trio_jobs

from trio_jobpool import JobPool, JobRegistry, open_job_pool

__all__ = ["make_env"]


class Gate:
    """What the registered ``hold`` jobs wait on (made inside the running event loop)."""

    def __init__(self, jobs: Jobs) -> None:
        self.count = 0
        self.started = 0
        self.all_started = jobs.Event()
        self.release = jobs.Event()


class JobPoolAdapter:
    def __init__(self, pool: JobPool, gate: Gate | None = None) -> None:
        self.pool = pool
        self.submit = pool.submit
        self._gate = gate
        self.stored_statuses: dict[str, int] | None = None

    @staticmethod
    def job_id(handle: Any) -> str:
        return handle.job_id  # type: ignore[no-any-return]

    async def cancel_many(self, ids: list[str]) -> None:
        cancel = self.pool.cancel
        for job_id in ids:
            cancel(job_id)

    async def abort(self) -> None:
        await self.pool.stop(drain=False)

    @staticmethod
    async def wait_ended(handle: Any) -> None:
        await handle.wait()

    @staticmethod
    def due_lags(handles: list[Any]) -> list[float]:
        """Per job, the pool's own figure: the start of its attempt minus its due time."""
        return [handle.started_at - handle.scheduled_for for handle in handles]

    async def hold_workers(self, count: int) -> None:
        gate = self._gate
        assert gate is not None, "hold_workers needs open_pool('durable', ...)"
        gate.count = count
        for _ in range(count):
            await self.pool.submit("hold")
        await gate.all_started.wait()

    def release_workers(self) -> None:
        assert self._gate is not None
        self._gate.release.set()

    def stored(self) -> dict[str, int] | None:
        return self.stored_statuses

    def counts(self) -> dict[str, int]:
        """The pool's own counters (``stats()`` stays valid after the pool stopped)."""
        stats = self.pool.stats()
        return {
            "completed": stats.total_completed,
            "cancelled": stats.total_cancelled,
            "submitted": stats.total_submitted,
            "failed": stats.total_failed,
            "timed_out": stats.total_timed_out,
            "queued": stats.queued_tasks,
            "active": stats.active_workers,
            # (a version before later jobs, measured side by side by ab.py, has none)
            "scheduled": getattr(stats, "scheduled_tasks", 0),
            # starts that a key's limit held back (none before flow control)
            "delayed": getattr(self.pool, "delayed_starts", 0),
        }


def _registry(jobs: Jobs, gate: Gate) -> JobRegistry:
    registry = JobRegistry()
    registry.register(jobs.noop, name="noop")

    async def hold() -> None:
        gate.started += 1
        if gate.started == gate.count:
            gate.all_started.set()
        await gate.release.wait()

    registry.register(hold, name="hold")
    return registry


def _statuses(db: Path) -> dict[str, int]:
    connection = sqlite3.connect(db)
    try:
        return dict(connection.execute("SELECT status, count(*) FROM jobs GROUP BY status"))
    finally:
        connection.close()


def _make_open_pool(jobs: Jobs, store: str | None) -> Callable[..., Any]:
    @asynccontextmanager
    async def open_pool(kind: str, workers: int, queue: int | None) -> AsyncIterator[Any]:
        sizes: dict[str, Any] = {"max_workers": workers, "shutdown_timeout": None}
        if queue is None:
            sizes["max_pending"] = None
        else:
            sizes.update(queue_size=queue, max_pending=0)
        if kind in ("keys", "keys-fair"):
            from trio_jobpool import Limit

            sizes.update(key_limit=Limit(max_running=1), fair=kind == "keys-fair")
        if kind != "durable":
            async with open_job_pool(**sizes) as pool:
                yield JobPoolAdapter(pool)
            return
        gate = Gate(jobs)
        registry = _registry(jobs, gate)
        directory = Path(
            tempfile.mkdtemp(prefix="jobpool-bench-", dir=os.environ.get("JOBPOOL_BENCH_DIR"))
        )
        db = directory / "jobs.db"
        try:
            url = None if store is None else f"sqlite:///{db}"
            if store == "sqlitefull":
                url = f"{url}?synchronous=FULL"
            async with open_job_pool(**sizes, store=url, registry=registry) as pool:
                adapter = JobPoolAdapter(pool, gate)
                yield adapter
            if store is not None:
                adapter.stored_statuses = _statuses(db)
        finally:
            shutil.rmtree(directory, ignore_errors=True)

    return open_pool


async def _gather(fns: list[Callable[[], Coroutine[Any, Any, Any]]]) -> None:
    import anyio

    async with anyio.create_task_group() as group:
        for fn in fns:
            group.start_soon(fn)


def _run_anyio(fn: Callable[[], Any], *, uvloop: bool) -> Any:
    import anyio

    return anyio.run(fn, backend="asyncio", backend_options={"use_uvloop": uvloop})


def make_env(variant: str) -> Env:
    """``variant``: ``"trio"``, ``"asyncio"`` or ``"uvloop"``, optionally with ``"-sqlite"`` or
    ``"-sqlitefull"`` (``synchronous=FULL``)."""
    backend, _, store = variant.partition("-")
    if backend == "trio":
        import trio

        jobs = trio_jobs()
        return Env(
            jobs=jobs, run=trio.run, open_pool=_make_open_pool(jobs, store or None), gather=_gather
        )
    jobs = asyncio_jobs()
    return Env(
        jobs=jobs,
        run=partial(_run_anyio, uvloop=backend == "uvloop"),
        open_pool=_make_open_pool(jobs, store or None),
        gather=_gather,
    )
