"""Jobs and a worker process for the lease-fencing tests (tests/stores/test_redis_leases.py).

    python -m tests.stores._lease_jobs STORE_URL MAX_WORKERS BACKEND

runs a worker process as tests/stores/_redis_worker.py does, and when its pool has closed
writes its ``stats()`` as JSON to ``$JOBPOOL_TEST_STATS/<pid>.json``. Jobs log to
``$JOBPOOL_TEST_LOG``: ``<pid> start|end <item> <time>``; ``end`` is the last line of a body,
so the number of ``end`` lines of an item is the number of times its body ran to completion.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time

import anyio

from trio_jobpool import JobRegistry, current_job, open_job_pool

registry = JobRegistry()


def _log(*words: object) -> None:
    with open(os.environ["JOBPOOL_TEST_LOG"], "a") as log:
        log.write(" ".join(map(str, (os.getpid(), *words, time.time()))) + "\n")


@registry.job(name="nap")
async def nap(item: str, seconds: float) -> str:
    """Log its start, sleep ``seconds`` (a checkpoint the whole time), log its end."""
    _log("start", item)
    await anyio.sleep(seconds)
    _log("end", item)
    return item


@registry.job(name="block_once")
async def block_once(item: str, seconds: float) -> str:
    """On its first attempt, block the event loop for ``seconds`` (``time.sleep``); then
    wait a moment (its first checkpoint after the block) and log its end."""
    _log("start", item)
    if current_job().attempts == 1:
        time.sleep(seconds)  # noqa: ASYNC251 (blocking the loop is the point)
    await anyio.sleep(0.05)
    _log("end", item)
    return item


@registry.job(name="block_then_shield")
async def block_then_shield(item: str, seconds: float) -> str:
    """On its first attempt, block the event loop for ``seconds``, then await in a shielded
    scope (logged ``shielded`` once that is over); then wait a moment and log its end."""
    _log("start", item)
    if current_job().attempts == 1:
        time.sleep(seconds)  # noqa: ASYNC251 (blocking the loop is the point)
        with anyio.CancelScope(shield=True):
            await anyio.sleep(0.05)
        _log("shielded", item)
    await anyio.sleep(0.05)
    _log("end", item)
    return item


# For a pool in the test's own process: set (by the test) to an event that
# ``nap_while_blocked`` sets once it naps, and ``block_while_napping`` awaits before it blocks.
napping: anyio.Event | None = None


@registry.job(name="nap_while_blocked")
async def nap_while_blocked(item: str, seconds: float) -> str:
    """Log its start; on its first attempt, set ``napping`` and nap ``seconds`` (the loop is
    blocked meanwhile by ``block_while_napping``, so the nap is over when the loop runs again);
    log its end."""
    _log("start", item)
    if current_job().attempts == 1:
        assert napping is not None
        napping.set()
        await anyio.sleep(seconds)
    _log("end", item)
    return item


@registry.job(name="block_while_napping")
async def block_while_napping(item: str, seconds: float) -> str:
    """Log its start; on its first attempt, wait for ``napping``, then block the event loop
    for ``seconds``; then wait a moment and log its end."""
    _log("start", item)
    if current_job().attempts == 1:
        assert napping is not None
        await napping.wait()
        time.sleep(seconds)  # noqa: ASYNC251 (blocking the loop is the point)
    await anyio.sleep(0.05)
    _log("end", item)
    return item


async def main(store: str, max_workers: int) -> None:
    async with open_job_pool(max_workers, 10, store=store, registry=registry) as pool:
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)
    path = os.path.join(os.environ["JOBPOOL_TEST_STATS"], f"{os.getpid()}.json")
    with open(path, "w") as file:
        json.dump(dataclasses.asdict(pool.stats()), file)


if __name__ == "__main__":
    url, workers, backend = sys.argv[1:4]
    anyio.run(main, url, int(workers), backend=backend)
