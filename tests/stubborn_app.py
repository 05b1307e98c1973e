"""A registry for ``trio-jobpool serve`` tests: ``stubborn`` shields itself from cancellation
for an hour (a job the shutdown cannot stop), ``quick`` returns at once."""

from __future__ import annotations

import anyio

from trio_jobpool import JobRegistry

registry = JobRegistry()


@registry.job(name="stubborn")
async def stubborn() -> None:
    with anyio.CancelScope(shield=True):
        await anyio.sleep(3600)


@registry.job(name="quick")
async def quick() -> str:
    return "done"


__all__ = ["registry"]
