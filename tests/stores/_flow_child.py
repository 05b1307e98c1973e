"""A durable pool with a limited key, in a process of its own (for the test that kills it with
SIGKILL, tests/stores/test_sqlite_flow.py).

    python -m tests.stores._flow_child DB LOG BACKEND UNTIL

Sets the key "k" to ``max_running=1`` and submits three ``logged_until`` jobs of that key
("a", "b", "c", each running until the file UNTIL exists); once "a" is running (and its start
is durable) and the other two wait, prints ``ready`` and waits to be killed.
"""

from __future__ import annotations

import os
import sys

import anyio

from tests.durable_app import logged_until, registry
from trio_jobpool import JobStatus, SqliteStore, open_job_pool


async def main(db: str, until: str) -> None:
    store = SqliteStore(db)
    async with open_job_pool(2, 10, store=store, registry=registry) as pool:
        await pool.set_limit("k", max_running=1)
        handles = [
            await pool.submit(logged_until, item, until, job_id=item, key="k") for item in "abc"
        ]
        with anyio.fail_after(10):
            while handles[0].status is not JobStatus.RUNNING:
                await anyio.sleep(0.01)
        await store.flush()
        assert [handle.status for handle in handles[1:]] == [JobStatus.QUEUED] * 2
        print("ready", flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    db, log, backend, until = sys.argv[1:5]
    os.environ["JOBPOOL_TEST_LOG"] = log
    anyio.run(main, db, until, backend=backend)
