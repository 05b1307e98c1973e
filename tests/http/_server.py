"""The server of the tests that need a real one (browser, fuzzing, load): tests/http/_served.py.

Run as ``python _server.py [--backend trio|asyncio] [--token TOKEN] [--port PORT] [--workers N]
[--queue-size N] [--submit-wait S] [--key-limit N]``: opens a pool with the jobs below on that
backend (with ``--key-limit``, ``key_limit=Limit(max_running=N)``), serves
``create_app(pool, registry, token=..., submit_wait=...)`` with Hypercorn's worker of the same
backend on 127.0.0.1 (on PORT, or by default on a port the system picks), and prints
``READY http://127.0.0.1:<port>/`` once it listens.
SIGTERM or SIGINT stops it: the server first, then the pool, without waiting for jobs.
"""

from __future__ import annotations

import argparse
import signal
import socket
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, cast

import anyio
import anyio.lowlevel
import hypercorn.asyncio
import hypercorn.trio
from hypercorn.config import Config
from hypercorn.typing import Framework

import trio_jobpool
from trio_jobpool import JobRegistry, Limit, open_job_pool
from trio_jobpool.http import create_app

registry = JobRegistry()


@registry.job(name="quick")
async def quick(value: int = 0) -> int:
    """Ends at once with ``value``."""
    await anyio.lowlevel.checkpoint()
    return value


@registry.job(name="blocker")
async def blocker() -> None:
    """Runs until cancelled, reporting progress every 50 ms (it never reaches 100 %)."""
    handle = trio_jobpool.current_job()
    step = 0
    while True:
        step += 1
        handle.set_progress(min(0.9, step / 100), f"step {step}")
        await anyio.sleep(0.05)


@registry.job(name="nap")
async def nap(seconds: float) -> float:
    """Sleeps ``seconds``, then returns them."""
    await anyio.sleep(seconds)
    return seconds


@registry.job(name="boom")
async def boom(message: str = "boom") -> None:
    """Fails with ``ValueError(message)``."""
    await anyio.lowlevel.checkpoint()
    raise ValueError(message)


async def main(arguments: argparse.Namespace) -> None:
    # The socket is bound and listening before the ready line: a client that connects at once
    # waits in the backlog until Hypercorn accepts. Hypercorn takes the socket by its fd, and
    # closes it when it stops: this process gives it up (detach) once the port is known.
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", arguments.port))
    listener.listen(128)
    port = listener.getsockname()[1]
    config = Config()
    config.bind = [f"fd://{listener.detach()}"]
    config.accesslog = None
    key_limit = None if arguments.key_limit is None else Limit(max_running=arguments.key_limit)
    async with open_job_pool(
        max_workers=arguments.workers,
        queue_size=arguments.queue_size,
        registry=registry,
        key_limit=key_limit,
    ) as pool:
        app = create_app(pool, registry, token=arguments.token, submit_wait=arguments.submit_wait)
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(_stop_on_signal, stop)
            tg.start_soon(_serve(arguments.backend), cast(Framework, app), config, stop.wait)
            print(f"READY http://127.0.0.1:{port}/", flush=True)
            await stop.wait()
        await pool.stop(drain=False)


def _serve(
    backend: str,
) -> Callable[[Framework, Config, Callable[[], Awaitable[None]]], Coroutine[Any, Any, None]]:
    async def serve(app: Framework, config: Config, trigger: Callable[[], Awaitable[None]]) -> None:
        if backend == "trio":
            await hypercorn.trio.serve(app, config, shutdown_trigger=trigger)
        else:
            await hypercorn.asyncio.serve(app, config, shutdown_trigger=trigger)

    return serve


async def _stop_on_signal(stop: anyio.Event) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            stop.set()
            return


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--token", default=None, help="the bearer token the app requires")
    parser.add_argument("--port", type=int, default=0, help="the port (default: any free one)")
    parser.add_argument("--workers", type=int, default=4, help="max_workers (default: 4)")
    parser.add_argument("--queue-size", type=int, default=100, help="queue_size (default: 100)")
    parser.add_argument("--submit-wait", type=float, default=0.25, help="the app's submit_wait")
    parser.add_argument("--backend", choices=["trio", "asyncio"], default="trio")
    parser.add_argument(
        "--key-limit", type=int, default=None, help="the max_running of the pool's key_limit"
    )
    arguments = parser.parse_args()
    anyio.run(main, arguments, backend=arguments.backend)
