"""The jobs of the distributed example: one registry, imported by the producer and the worker.

Every process on a queue must register the same names (a job travels through Redis by name,
with JSON arguments), so the registry lives in a module of its own.
"""

from __future__ import annotations

import os

import anyio

from trio_jobpool import JobRegistry, current_job

registry = JobRegistry()


@registry.job(name="build")
async def build(repo: str, seconds: float) -> str:
    """Pretend to build ``repo``, reporting progress; say which process did it."""
    job = current_job()
    for step in range(1, 5):
        await anyio.sleep(seconds / 4)
        job.set_progress(step / 4, f"step {step} of 4")
    return f"built {repo} in process {os.getpid()}"


@registry.job(name="test")
async def test(repo: str) -> str:
    await anyio.sleep(0.05)
    if "broken" in repo:
        raise RuntimeError("tests are red")
    return f"tested {repo}"
