"""A worker process of a distributed pool (for the tests that run several, and kill some).

    python -m tests.stores._redis_worker STORE_URL MAX_WORKERS BACKEND [SCHEDULE]

Opens a pool on STORE_URL with MAX_WORKERS workers, declares the periodic schedule SCHEDULE
if given (a JSON object: ``name``, ``job`` (a registered name), ``args`` and the keyword
arguments of ``pool.schedule``), prints ``ready`` once it is open, and runs jobs until its
standard input closes (then it leaves the block: a graceful stop) or it is killed. Jobs log to
$JOBPOOL_TEST_LOG (tests/durable_app.py).
"""

from __future__ import annotations

import json
import sys

import anyio

from tests.durable_app import registry
from trio_jobpool import open_job_pool


async def main(store: str, max_workers: int, schedule: str | None) -> None:
    async with open_job_pool(max_workers, 10, store=store, registry=registry) as pool:
        if schedule is not None:
            options = json.loads(schedule)
            name, job, args = options.pop("name"), options.pop("job"), options.pop("args", [])
            await pool.schedule(name, job, *args, **options)
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)


if __name__ == "__main__":
    url, workers, backend = sys.argv[1:4]
    schedule = sys.argv[4] if len(sys.argv) > 4 else None
    anyio.run(main, url, int(workers), schedule, backend=backend)
