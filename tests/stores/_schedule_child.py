"""A durable pool with a periodic schedule, in a process of its own (for the tests that kill it
with SIGKILL, tests/stores/test_sqlite_schedules.py).

    python -m tests.stores._schedule_child DB LOG BACKEND SYNCHRONOUS MODE

``MODE`` ``ticking``: one worker; declares ``tick`` every second (job ``tick``, which logs
``<pid> tick <job id> <time>``); once three of its jobs have started, occupies the worker with
a ``hold`` job ("blocker"), so that the next tick's job is fired (on record) but never starts,
and the ticks after it are skipped (``overlap="skip"``); once the schedule shows four runs and a
skip, prints ``ready`` and waits to be killed. (The schedule is read every 50 ms for that: the
pool has no event for a tick that fired without a job starting.)

``MODE`` ``declare:<misfire>``: declares ``far`` every 100 s with that ``misfire``; prints
``ready`` once the declaration is durable (``schedule`` returned) and waits to be killed.
"""

from __future__ import annotations

import os
import sys

import anyio

from tests.durable_app import board, hold, registry, tick
from trio_jobpool import SqliteStore, open_job_pool


async def main(db: str, synchronous: str, mode: str) -> None:
    store = SqliteStore(db, synchronous=synchronous)
    async with open_job_pool(1, 10, store=store, registry=registry) as pool:
        if mode == "ticking":
            await pool.schedule("tick", tick, every=1)
            await board.event("ticks:3").wait()
            await pool.submit(hold, "blocker", job_id="blocker")
            await board.wait_started("blocker")
            while True:
                [schedule] = await pool.schedules()
                if schedule.runs == 4 and schedule.skipped:
                    break
                await anyio.sleep(0.05)
        else:
            misfire = mode.removeprefix("declare:")
            await pool.schedule("far", tick, every=100, misfire=misfire)
        print("ready", flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    db, log, backend, synchronous, mode = sys.argv[1:6]
    os.environ["JOBPOOL_TEST_LOG"] = log
    anyio.run(main, db, synchronous, mode, backend=backend)
