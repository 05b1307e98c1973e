"""schemathesis hooks of the command-line run in tests/http/test_fuzz.py (loaded through
``SCHEMATHESIS_HOOKS``, as a file).

A scheduled job (a submission with ``delay`` or ``at`` in the future) stays live until it is due,
so a ``GET /api/v1/jobs/{job_id}?wait=S`` of one holds its request the whole ``S`` seconds (up to
60), as the service documents: it can end only if cancelled. The run follows the ``Location`` of
its submissions, so it draws such requests, and each would hold it for up to a minute (past its
request timeout). A valid ``wait`` above ``MAX_WAIT`` is therefore sent as ``MAX_WAIT``: still a
valid request, answered as documented; an invalid one (a negative case) is sent as drawn.
"""

from __future__ import annotations

from typing import Any

import schemathesis

MAX_WAIT = 1.0  # seconds


@schemathesis.hook
def before_call(
    context: schemathesis.HookContext, case: schemathesis.Case[Any], kwargs: dict[str, Any]
) -> None:
    query = case.query
    if case.operation.label != "GET /api/v1/jobs/{job_id}" or not isinstance(query, dict):
        return
    wait = query.get("wait")
    if isinstance(wait, int | float) and not isinstance(wait, bool) and MAX_WAIT < wait <= 60:
        query["wait"] = MAX_WAIT
