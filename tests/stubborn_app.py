"""A registry for the ``trio-jobpool serve`` shutdown tests: ``stubborn`` shields itself from
cancellation for an hour (a job the shutdown cannot stop); ``ends_when_cancelled`` runs until
cancelled, then returns (so its end is written at the shutdown)."""

from __future__ import annotations

import anyio

from trio_jobpool import JobRegistry

registry = JobRegistry()


@registry.job(name="stubborn")
async def stubborn() -> None:
    with anyio.CancelScope(shield=True):
        await anyio.sleep(3600)


@registry.job(name="ends_when_cancelled")
async def ends_when_cancelled() -> str:
    try:
        await anyio.sleep_forever()
    except anyio.get_cancelled_exc_class():
        return "ended"  # (the job's choice: it completes instead)
    raise AssertionError("unreachable")


__all__ = ["registry"]
