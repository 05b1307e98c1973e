"""The server of the tests that need a real one (browser, fuzzing, load): tests/http/_served.py.

Run as ``python _server.py [--token TOKEN] [--port PORT] [--workers N] [--queue-size N]
[--submit-wait S]``: opens a Trio pool with the jobs below, serves ``create_app(pool, registry,
token=..., submit_wait=...)`` with Hypercorn's trio worker on 127.0.0.1 (on PORT, or by default
on a port the system picks), and prints ``READY http://127.0.0.1:<port>/`` once it listens.
SIGTERM or SIGINT stops it: the server first, then the pool, without waiting for jobs.
"""

from __future__ import annotations

import argparse
import functools
import signal
from typing import cast

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from hypercorn.typing import Framework

import trio_jobpool
from trio_jobpool import JobRegistry, open_job_pool
from trio_jobpool.http import create_app

registry = JobRegistry()


@registry.job(name="quick")
async def quick(value: int = 0) -> int:
    """Ends at once with ``value``."""
    await trio.lowlevel.checkpoint()
    return value


@registry.job(name="blocker")
async def blocker() -> None:
    """Runs until cancelled, reporting progress every 50 ms (it never reaches 100 %)."""
    handle = trio_jobpool.current_job()
    step = 0
    while True:
        step += 1
        handle.set_progress(min(0.9, step / 100), f"step {step}")
        await trio.sleep(0.05)


@registry.job(name="nap")
async def nap(seconds: float) -> float:
    """Sleeps ``seconds``, then returns them."""
    await trio.sleep(seconds)
    return seconds


@registry.job(name="boom")
async def boom(message: str = "boom") -> None:
    """Fails with ``ValueError(message)``."""
    await trio.lowlevel.checkpoint()
    raise ValueError(message)


async def main(arguments: argparse.Namespace) -> None:
    async with open_job_pool(
        max_workers=arguments.workers, queue_size=arguments.queue_size, registry=registry
    ) as pool:
        app = cast(  # (Starlette is an ASGI app)
            Framework,
            create_app(pool, registry, token=arguments.token, submit_wait=arguments.submit_wait),
        )
        config = Config()
        config.bind = [f"127.0.0.1:{arguments.port}"]  # port 0: serve() says which it got
        config.accesslog = None
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stop_on_signal, stop)
            binds = await nursery.start(
                functools.partial(serve, app, config, shutdown_trigger=stop.wait)
            )
            print(f"READY {binds[0]}/", flush=True)
            await stop.wait()
        await pool.stop(drain=False)


async def _stop_on_signal(stop: trio.Event) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
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
    trio.run(main, parser.parse_args())
