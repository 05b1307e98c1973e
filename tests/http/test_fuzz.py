"""schemathesis against a real server (Hypercorn, Trio): requests drawn from the app's own
OpenAPI document, valid and invalid; no answer is a 5xx, every answer matches the document, and
no job the server accepted is lost."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from ._served import Server, checked_server

ACCEPTED: dict[str, list[str]] = {}  # by server: ids of the jobs it answered 202 for


@pytest.fixture(scope="module", params=["trio", "asyncio"])
def fuzz_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server on Hypercorn's trio worker, then one on its asyncio worker."""
    # Few workers and a short queue, so that 429 (and its Retry-After) are drawn too.
    options = ("--workers", "2", "--queue-size", "5", "--submit-wait", "0.01")
    log_dir = tmp_path_factory.mktemp("fuzz-server")
    with checked_server(log_dir, backend=request.param, options=options) as server:
        yield server


@pytest.fixture(scope="module")
def api_schema(fuzz_server: Server) -> Any:
    return schemathesis.openapi.from_url(fuzz_server.url + "openapi.json")


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_answers_as_documented(
    fuzz_server: Server, api_schema: Any, mode: GenerationMode
) -> None:
    # (schemathesis's own pytest plugin does not work with pytest 9 yet: its strategies,
    # driven by hypothesis here)
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) == 9
    for operation in operations:
        # (a job id in a path cannot be invalid: any string is one)
        if mode is GenerationMode.NEGATIVE and not (operation.query or operation.body):
            continue

        @settings(
            max_examples=40,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case: schemathesis.Case) -> None:
            response = case.call_and_validate(timeout=15)
            assert response.status_code < 500
            submit = case.method == "POST" and case.path == "/api/v1/jobs"
            if submit and response.status_code == 202:
                ACCEPTED.setdefault(fuzz_server.url, []).append(response.json()["job_id"])

        try:
            check()
        except Exception as exc:
            exc.add_note(f"operation: {operation.label}")
            raise


def test_nothing_accepted_was_lost(fuzz_server: Server) -> None:
    # (runs after the fuzzing above, on the same server)
    accepted = ACCEPTED.get(fuzz_server.url, [])
    assert accepted, "the fuzzing never had a job accepted"
    stats = fuzz_server.stats()
    ended = sum(stats[f"total_{s}"] for s in ("completed", "failed", "cancelled", "timed_out"))
    assert stats["total_submitted"] == ended + stats["queued_tasks"] + stats["active_workers"]
    assert stats["total_submitted"] >= len(set(accepted))
    for job_id in set(accepted):
        status, _ = fuzz_server.call("GET", f"api/v1/jobs/{_quote(job_id)}")
        assert status == 200, job_id


def _quote(job_id: str) -> str:
    import urllib.parse

    return urllib.parse.quote(job_id, safe="")
