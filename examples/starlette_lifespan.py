"""A job pool inside a Starlette app, opened and closed by the app's lifespan.

The lifespan opens the pool with ``async with open_job_pool(...)`` and keeps it on ``app.state``;
routes submit jobs and report on them. Leaving the lifespan (server shutdown) drains the pool.
The pool works on whatever event loop the server runs: asyncio here (uvicorn, ``TestClient``),
Trio under Hypercorn's trio worker. Jobs use ``anyio`` so that they run on both.

Serve it with ``uvicorn examples.starlette_lifespan:app`` (from the repository root), or run
``python examples/starlette_lifespan.py`` to exercise it with Starlette's ``TestClient``.
For the ready-made endpoints of docs/service.md with a pool of their own, see
``examples/asgi_service.py`` (``trio_jobpool.http.create_pool_app``).

Routes:

* ``POST /jobs`` with ``{"repo": "repo-a", "priority": 1}`` → ``202 {"job_id": ..., "status": ...}``
* ``GET /jobs/{job_id}`` (``?wait=SECONDS`` waits up to that long for the job to end) → the job's
  status, attempts, progress, result or error, and ``pool.stats().as_dict()``
* ``GET /stats`` → ``pool.stats().as_dict()``
"""

from __future__ import annotations

import importlib.util
import json
import math
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from trio_jobpool import (
    DuplicateJob,
    JobHandle,
    JobNotFound,
    JobPool,
    JobStatus,
    PoolClosed,
    QueueFull,
    current_job,
    open_job_pool,
)

try:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route
except ImportError as exc:  # pragma: no cover - depends on the environment
    if __name__ != "__main__":
        raise
    print(f"skipped: this example needs starlette and httpx ({exc.name} is not installed)")
    print("  pip install starlette httpx")
    raise SystemExit(0) from None


async def build(repo: str) -> str:
    """A stand-in for a CI build: four steps, reporting progress as it goes."""
    job = current_job()
    for step, name in enumerate(("checkout", "compile", "test", "package"), 1):
        job.set_progress((step - 1) / 4, name)
        await anyio.sleep(0.1)
    job.set_progress(1.0, "done")
    if repo == "broken":
        raise RuntimeError(f"build of {repo!r} failed")
    return f"built {repo}"


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    """Open the pool when the app starts; drain and close it when the app stops."""
    async with open_job_pool(max_workers=4, queue_size=100, shutdown_timeout=10.0) as pool:
        app.state.pool = pool
        yield


def _pool(request: Request) -> JobPool:
    pool: JobPool = request.app.state.pool
    return pool


def _error(status_code: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status_code)


async def _job_info(handle: JobHandle[Any]) -> dict[str, Any]:
    info: dict[str, Any] = {
        "job_id": handle.job_id,
        "status": handle.status.value,
        "priority": handle.priority,
        "attempts": handle.attempts,
        "progress": handle.progress,
        "progress_message": handle.progress_message,
        "exec_time": handle.exec_time,
    }
    if handle.status == JobStatus.COMPLETED:
        # The job has ended, so wait() returns at once; it is the way to read the value.
        info["result"] = (await handle.wait()).unwrap()
    elif handle.error is not None:
        info["error"] = f"{type(handle.error).__name__}: {handle.error}"
    return info


async def submit_job(request: Request) -> JSONResponse:
    """``POST /jobs``: submit a build; answers 202 with the job's id and status."""
    try:
        body = await request.json()
    except json.JSONDecodeError:
        return _error(400, "the body must be JSON")
    if not isinstance(body, dict) or not isinstance(body.get("repo"), str):
        return _error(422, 'expected {"repo": "<name>", "priority": <int>}')
    priority = body.get("priority", 5)
    job_id = body.get("job_id")
    if isinstance(priority, bool) or not isinstance(priority, int):
        return _error(422, f"priority must be an int, got {priority!r}")
    if job_id is not None and not (isinstance(job_id, str) and job_id):
        return _error(422, f"job_id must be a non-empty string, got {job_id!r}")
    try:
        handle = _pool(request).submit_nowait(build, body["repo"], priority=priority, job_id=job_id)
    except DuplicateJob as exc:
        return _error(409, str(exc))
    except QueueFull as exc:
        return JSONResponse({"error": str(exc)}, status_code=429, headers={"Retry-After": "1"})
    except PoolClosed as exc:
        return _error(503, str(exc))
    return JSONResponse({"job_id": handle.job_id, "status": handle.status.value}, status_code=202)


async def job_status(request: Request) -> JSONResponse:
    """``GET /jobs/{job_id}``: the job's status and the pool's stats."""
    pool = _pool(request)
    try:
        handle = pool.get(request.path_params["job_id"])
    except JobNotFound as exc:
        return _error(404, str(exc))
    try:
        wait = float(request.query_params.get("wait", "0"))
    except ValueError:
        return _error(422, "wait must be a number of seconds")
    if wait > 0 and math.isfinite(wait):
        with anyio.move_on_after(min(wait, 30.0)):
            await handle.wait()
    info = await _job_info(handle)
    return JSONResponse({"job": info, "stats": pool.stats().as_dict()})


async def pool_stats(request: Request) -> JSONResponse:
    """``GET /stats``: ``pool.stats().as_dict()``."""
    return JSONResponse(_pool(request).stats().as_dict())


app = Starlette(
    routes=[
        Route("/jobs", submit_job, methods=["POST"]),
        Route("/jobs/{job_id}", job_status, methods=["GET"]),
        Route("/stats", pool_stats, methods=["GET"]),
    ],
    lifespan=lifespan,
)


def main() -> None:
    """Exercise the app with Starlette's ``TestClient`` (runs the lifespan on asyncio)."""
    if not any(importlib.util.find_spec(name) for name in ("httpx2", "httpx")):
        print("skipped: starlette's TestClient needs httpx (pip install httpx)")
        return
    with warnings.catch_warnings():
        # Recent Starlette prefers the `httpx2` package and warns when it falls back to httpx.
        warnings.filterwarnings("ignore", message=r".*httpx.*", category=UserWarning)
        from starlette.testclient import TestClient

    def rounded(value: Any) -> Any:
        if isinstance(value, float):
            return round(value, 4)
        if isinstance(value, dict):
            return {key: rounded(item) for key, item in value.items()}
        return value

    def show(method: str, path: str, response: Any) -> None:
        print(f"{method} {path} -> {response.status_code}")
        answer = rounded(response.json())
        for key in ("job", "stats") if "job" in answer else ():
            print(f"  {key}: {json.dumps(answer[key])}")
        if "job" not in answer:
            print(f"  {json.dumps(answer)}")

    with TestClient(app) as client:
        print("lifespan started: the pool is open")
        body: dict[str, Any] = {"repo": "repo-a", "priority": 1}
        response = client.post("/jobs", json=body)
        show("POST", f"/jobs {json.dumps(body)}", response)
        job_id = response.json()["job_id"]
        body = {"repo": "broken", "job_id": "broken"}
        show("POST", f"/jobs {json.dumps(body)}", client.post("/jobs", json=body))
        body = {"repo": "repo-b", "job_id": "broken"}
        show("POST", "/jobs (id of a live job)", client.post("/jobs", json=body))
        show("GET", f"/jobs/{job_id}", client.get(f"/jobs/{job_id}"))
        show("GET", f"/jobs/{job_id}?wait=5", client.get(f"/jobs/{job_id}", params={"wait": 5}))
        show("GET", "/jobs/broken?wait=5", client.get("/jobs/broken", params={"wait": 5}))
        show("GET", "/jobs/nope", client.get("/jobs/nope"))
        show("GET", "/stats", client.get("/stats"))
    print("lifespan ended: the pool was drained and closed")


if __name__ == "__main__":
    main()
