"""schemathesis hooks of the command-line run in tests/http/test_fuzz.py (loaded through
``SCHEMATHESIS_HOOKS``, as a file).

A scheduled job (a submission with ``delay`` or ``at`` in the future) stays live until it is due,
so a ``GET /api/v1/jobs/{job_id}?wait=S`` of one holds its request the whole ``S`` seconds (up to
60), as the service documents: it can end only if cancelled. The run follows the ``Location`` of
its submissions, so it draws such requests, and each would hold it for up to a minute (past its
request timeout). A valid ``wait`` above ``MAX_WAIT`` is therefore sent as ``MAX_WAIT``: still a
valid request, answered as documented; an invalid one (a negative case) is sent as drawn.

It also registers the document's ``cron`` format (tests/http/_fuzz_formats.py, the module next
to this file): a valid schedule is drawn with a valid expression.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import schemathesis


def _register_formats() -> None:
    # Loaded as a file, not as tests.http._fuzz_hooks: the module next to it, by its path.
    path = Path(__file__).with_name("_fuzz_formats.py")
    spec = importlib.util.spec_from_file_location("_fuzz_formats", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.register()


_register_formats()

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
