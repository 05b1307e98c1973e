"""A durable pool whose one job kills the process (for the poison-job test).

python -m tests.stores._poison_child DB MAX_CRASHES
"""

from __future__ import annotations

import sys

import trio

from tests.durable_app import crash, registry
from trio_jobpool import JobNotFound, SqliteStore, open_job_pool


async def main(db: str, max_crashes: int) -> None:
    store = SqliteStore(db, max_crashes=max_crashes)
    async with open_job_pool(2, 10, store=store, registry=registry) as pool:
        try:
            job = pool.get("poison")
        except JobNotFound:
            job = await pool.submit(crash, job_id="poison")
        await job.wait()
        print(f"status={job.status.value} attempts={job.attempts} error={job.error!r}")


if __name__ == "__main__":
    trio.run(main, sys.argv[1], int(sys.argv[2]))
