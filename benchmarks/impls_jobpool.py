"""trio_jobpool, through its public API only, on Trio, on asyncio and on uvloop (via AnyIO).

The pool is opened with its defaults (so each job gets the default ``job_timeout`` deadline, as
users get it) except ``shutdown_timeout=None``, so that leaving the block drains every job however
long that takes. ``queue=None`` maps to ``max_pending=None`` (no bound at all); otherwise
``queue_size=queue, max_pending=0``. The adapter adds no layer on the hot path: ``submit`` is the
pool's own bound method.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from impls import Env
from jobs import asyncio_jobs, trio_jobs

from trio_jobpool import JobPool, open_job_pool

__all__ = ["make_env"]


class JobPoolAdapter:
    def __init__(self, pool: JobPool) -> None:
        self.pool = pool
        self.submit = pool.submit

    @staticmethod
    def job_id(handle: Any) -> str:
        return handle.job_id  # type: ignore[no-any-return]

    async def cancel_many(self, ids: list[str]) -> None:
        cancel = self.pool.cancel
        for job_id in ids:
            cancel(job_id)

    async def abort(self) -> None:
        await self.pool.stop(drain=False)

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
        }


@asynccontextmanager
async def open_pool(kind: str, workers: int, queue: int | None) -> AsyncIterator[Any]:
    if queue is None:
        pool_cm = open_job_pool(max_workers=workers, max_pending=None, shutdown_timeout=None)
    else:
        pool_cm = open_job_pool(
            max_workers=workers, queue_size=queue, max_pending=0, shutdown_timeout=None
        )
    async with pool_cm as pool:
        yield JobPoolAdapter(pool)


def _run_anyio(fn: Callable[[], Any], *, uvloop: bool) -> Any:
    import anyio

    return anyio.run(fn, backend="asyncio", backend_options={"use_uvloop": uvloop})


def make_env(variant: str) -> Env:
    """``variant``: ``"trio"``, ``"asyncio"`` or ``"uvloop"``."""
    if variant == "trio":
        import trio

        return Env(jobs=trio_jobs(), run=trio.run, open_pool=open_pool)
    return Env(
        jobs=asyncio_jobs(),
        run=partial(_run_anyio, uvloop=variant == "uvloop"),
        open_pool=open_pool,
    )
