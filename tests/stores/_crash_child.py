"""Run a durable pool in a process of its own (for the tests that kill it with SIGKILL).

    python -m tests.stores._crash_child DB LOG MARKER N_JOBS MAX_WORKERS [SECONDS [SYNCHRONOUS]]

Submits N_JOBS `append` jobs (ids job-0000 …) unless the store already has them, writes
MARKER once every submit has returned, then runs until the pool is drained.
"""

from __future__ import annotations

import os
import sys

import trio

from tests.durable_app import append, registry
from trio_jobpool import open_job_pool


async def main(
    db: str, marker: str, n_jobs: int, max_workers: int, seconds: float, synchronous: str
) -> None:
    store = f"sqlite:///{db}?synchronous={synchronous}"
    async with open_job_pool(
        max_workers, 10, max_pending=None, store=store, registry=registry
    ) as pool:
        if n_jobs:
            for i in range(n_jobs):
                await pool.submit(append, f"job-{i:04d}", seconds, job_id=f"job-{i:04d}")
        with open(marker, "w") as f:
            f.write("submitted\n")
        await pool.join()


if __name__ == "__main__":
    db, log, marker, n, workers = sys.argv[1:6]
    secs = float(sys.argv[6]) if len(sys.argv) > 6 else 0.02
    synchronous = sys.argv[7] if len(sys.argv) > 7 else "NORMAL"
    os.environ["JOBPOOL_TEST_LOG"] = log
    trio.run(main, db, marker, int(n), int(workers), secs, synchronous)
