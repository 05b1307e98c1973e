"""The registry ``trio-jobpool serve`` runs for the schemathesis command line
(tests/http/test_fuzz.py): one job that takes any arguments and ends at once, never failing.

So no job the fuzzer submits stays live (none fails into a retry that the fuzzer may have
given a backoff of days), and a ``GET /api/v1/jobs/{id}?wait=60`` it draws answers at once
instead of holding the run for a minute.
"""

from __future__ import annotations

import anyio

from trio_jobpool import JobRegistry

registry = JobRegistry()


@registry.job(name="echo")
async def echo(*args: object) -> list[object]:
    """Returns its arguments."""
    await anyio.lowlevel.checkpoint()
    return list(args)
