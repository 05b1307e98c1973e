"""A durable pool holding jobs for later, in a process of its own (for the test that kills it
with SIGKILL, tests/stores/test_sqlite_later.py).

    python -m tests.stores._later_child DB LOG BACKEND SYNCHRONOUS

Submits three ``logged`` jobs for later ("passed" in 0.6 s, "soon" in 1.2 s, "later" in
2 s) and one ``logged_defer`` job ("deferred") that runs at once and defers itself by 1.5 s;
once nothing but those is live and the deferral is durable, prints ``ready`` and waits to be
killed.
"""

from __future__ import annotations

import os
import sys

import anyio

from tests.durable_app import logged, logged_defer, registry
from trio_jobpool import SqliteStore, open_job_pool

DELAYS = {"passed": 0.6, "soon": 1.2, "later": 2.0}
DEFER = 1.5


async def main(db: str, synchronous: str) -> None:
    store = SqliteStore(db, synchronous=synchronous)
    async with open_job_pool(2, 10, store=store, registry=registry) as pool:
        for job, delay in DELAYS.items():
            await pool.submit(logged, job, job_id=job, delay=delay)
        await pool.submit(logged_defer, "deferred", DEFER, job_id="deferred")
        await pool.join()  # returns once "deferred" ran and is scheduled again
        await store.flush()  # its deferral is durable
        print("ready", flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    db, log, backend, synchronous = sys.argv[1:5]
    os.environ["JOBPOOL_TEST_LOG"] = log
    anyio.run(main, db, synchronous, backend=backend)
