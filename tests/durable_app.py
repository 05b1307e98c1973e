"""Registered jobs for the durable-store tests, importable by the subprocesses they start."""

from __future__ import annotations

import os

import anyio

from trio_jobpool import JobRegistry

registry = JobRegistry()


@registry.job(name="append")
async def append(item: str, seconds: float = 0.0) -> str:
    """Append ``item`` to the file named by $JOBPOOL_TEST_LOG, then take ``seconds``."""
    with open(os.environ["JOBPOOL_TEST_LOG"], "a") as log:
        log.write(f"{item}\n")
    await anyio.sleep(seconds)
    return item


@registry.job(name="double")
async def double(x: int) -> int:
    await anyio.lowlevel.checkpoint()
    return 2 * x


@registry.job(name="fail")
async def fail(message: str) -> None:
    await anyio.lowlevel.checkpoint()
    raise ValueError(message)


@registry.job(name="block_unless")
async def block_unless(path: str) -> str:
    """Return at once if ``path`` exists, else run until cancelled."""
    if not os.path.exists(path):
        await anyio.sleep_forever()
    await anyio.lowlevel.checkpoint()
    return path


@registry.job(name="crash")
async def crash() -> None:
    """Kill the process running it, as a job with a fatal bug would."""
    await anyio.lowlevel.checkpoint()
    os._exit(3)
