"""The servers of ``benchmarks/http_bench.py``: ``python benchmarks/http_servers.py KIND PORT``.

Serves one ASGI app with Hypercorn (its trio or asyncio worker, in this process) on
``127.0.0.1:PORT``, prints ``READY http://127.0.0.1:PORT/ <trio_jobpool's __init__.py>`` once a
connection to it succeeds (the runner checks that it imported the runner's snapshot of the
package), and stops on SIGTERM or SIGINT (the server first, then the pool, without waiting for
jobs).

KIND is one of :data:`KINDS`:

* ``pool-trio``, ``pool-asyncio``: trio_jobpool's ``create_app`` around an in-memory pool
  (``max_workers=10``, ``queue_size=1_000_000``: never full here) with the job ``noop``
  registered; the pool runs on the same event loop as Hypercorn (``anyio.run`` with the trio or
  the asyncio backend). ``POST /api/v1/jobs`` submits a job and answers 202.
* ``floor-trio``, ``floor-asyncio``: the reference floor, a bare Starlette app whose
  ``POST /api/v1/jobs`` reads and parses the JSON body and answers 202 with a small JSON body
  of the same shape; no pool.
"""

from __future__ import annotations

import functools
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any, Final, cast

import anyio
import anyio.lowlevel
from hypercorn.config import Config
from hypercorn.typing import Framework
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import trio_jobpool
from trio_jobpool import JobRegistry, open_job_pool
from trio_jobpool.http import create_app

KINDS: Final = ("pool-trio", "pool-asyncio", "floor-trio", "floor-asyncio")
POOL_WORKERS: Final = 10
POOL_QUEUE: Final = 1_000_000
READY_TRIES: Final = 500  # connection attempts, 10 ms apart, before giving up
# What the floor answers: the shape and size of the pool's answer (a 32-character job id).
FLOOR_BODY: Final = {"job_id": "0" * 32, "status": "queued"}

registry = JobRegistry()


@registry.job(name="noop")
async def noop() -> None:
    """One checkpoint: the cheapest job there is, on either backend."""
    await anyio.lowlevel.checkpoint()


async def floor_submit(request: Request) -> JSONResponse:
    """Read and parse the body, answer as the pool's submit does; nothing else."""
    await request.json()
    return JSONResponse(FLOOR_BODY, status_code=202)


def floor_app() -> Starlette:
    return Starlette(routes=[Route("/api/v1/jobs", floor_submit, methods=["POST"])])


def serve_function(backend: str) -> Callable[..., Coroutine[Any, Any, Any]]:
    """Hypercorn's ``serve`` for the event loop of ``backend``."""
    if backend == "trio":
        from hypercorn.trio import serve as trio_serve

        return trio_serve
    from hypercorn.asyncio import serve as asyncio_serve

    return asyncio_serve


async def serve_until_signal(app: Any, port: int, backend: str) -> None:
    """Serve ``app`` until SIGTERM or SIGINT; print the ready line once it accepts connections."""
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.graceful_timeout = 1.0
    stop = anyio.Event()
    serve = serve_function(backend)
    async with anyio.create_task_group() as group:
        group.start_soon(_stop_on_signal, stop)
        group.start_soon(
            functools.partial(serve, cast(Framework, app), config, shutdown_trigger=stop.wait)
        )
        await _wait_listening(port)
        print(f"READY http://127.0.0.1:{port}/ {trio_jobpool.__file__}", flush=True)
        await stop.wait()


async def _wait_listening(port: int) -> None:
    for _ in range(READY_TRIES):
        try:
            stream = await anyio.connect_tcp("127.0.0.1", port)
        except OSError:
            await anyio.sleep(0.01)
        else:
            await stream.aclose()
            return
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {READY_TRIES} tries")


async def _stop_on_signal(stop: anyio.Event) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            stop.set()
            return


async def main(kind: str, port: int) -> None:
    what, backend = kind.split("-")
    if what == "floor":
        await serve_until_signal(floor_app(), port, backend)
        return
    async with open_job_pool(
        max_workers=POOL_WORKERS, queue_size=POOL_QUEUE, registry=registry
    ) as pool:
        await serve_until_signal(create_app(pool, registry), port, backend)
        await pool.stop(drain=False)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in KINDS or not sys.argv[2].isdigit():
        sys.exit(f"usage: python {sys.argv[0]} {{{','.join(KINDS)}}} PORT")
    kind_, port_ = sys.argv[1], int(sys.argv[2])
    anyio.run(main, kind_, port_, backend=kind_.split("-")[1])
