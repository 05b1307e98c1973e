"""The pool app mounted at ``/jobs`` in a Starlette app whose lifespan opens it, for
``uvicorn tests.http._mounted_app:app`` (tests/http/test_mounted.py). ``$TRIO_JOBPOOL_TOKEN``:
the token; the pool is in memory."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from starlette.applications import Starlette
from starlette.routing import Mount

from trio_jobpool import JobRegistry
from trio_jobpool.http import create_pool_app

registry = JobRegistry()


@registry.job(name="add")
async def add(a: int, b: int) -> int:
    await anyio.lowlevel.checkpoint()
    return a + b


jobs = create_pool_app(
    registry, shutdown_timeout=1.0, token=os.environ.get("TRIO_JOBPOOL_TOKEN") or None
)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    async with jobs.open():
        yield


app = Starlette(routes=[Mount("/jobs", app=jobs)], lifespan=lifespan)
