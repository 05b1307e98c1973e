"""A worker process of the distributed example: runs jobs from the shared queue until Ctrl+C.

    python examples/distributed/worker.py [REDIS_URL] [--workers N]

Start one or more of these (in other terminals, or on other hosts with the same Redis), then
run producer.py. REDIS_URL defaults to $REDIS_URL, else redis://127.0.0.1:6379/0. Ctrl+C (or
SIGTERM) stops the worker gracefully: it takes no more jobs and finishes those it runs (up to
the pool's shutdown_timeout; what is still running then goes back to the queue). A ``kill -9``
loses nothing either: its jobs run elsewhere once their lease lapses.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))  # for `jobs`, run from anywhere

from jobs import registry, require_redis_extra, store_url

from trio_jobpool import open_job_pool


async def main(url: str, workers: int) -> None:
    store = store_url(url)
    async with open_job_pool(workers, 100, store=store, registry=registry) as pool:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            print(f"worker {os.getpid()}: {workers} workers on {url}, Ctrl+C to stop", flush=True)
            async for _ in signals:
                break  # leaving the block: no more claims, running jobs finish
    stats = pool.stats()  # this process's view: the jobs its workers ran
    print(
        f"worker {os.getpid()}: done, {stats.total_completed} completed, "
        f"{stats.total_failed} failed",
        flush=True,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    parser.add_argument("url", nargs="?", default=default)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    require_redis_extra()
    trio.run(main, args.url, args.workers)
