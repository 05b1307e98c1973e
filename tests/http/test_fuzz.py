"""schemathesis against a real server: requests drawn from the app's own OpenAPI document, valid
and invalid. In process (its Python API, driven by hypothesis) against tests/http/_server.py on
Hypercorn's Trio and asyncio workers: no answer is a 5xx, every answer matches the document, and
no job the server accepted is lost. Then its command line with every check against a real
``trio-jobpool serve``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from tests.servers import free_port

from ._fuzz_formats import register as register_formats
from ._served import Server, checked_server

register_formats()  # a valid schedule's cron expression (see there)

ROOT = Path(__file__).resolve().parent.parent.parent

ACCEPTED: dict[str, list[str]] = {}  # by server: ids of the jobs it answered 202 for
DECLARED: dict[str, set[str]] = {}  # by server: names of the schedules it declared (200, 201)
LIMITED: dict[str, dict[str, bool]] = {}  # by server: key -> set (True) or deleted, its last 200


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
    assert len(operations) == 17
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
        def check(case: schemathesis.Case[Any]) -> None:  # (as_strategy gives Case[Any])
            _cap_wait(case)
            response = case.call_and_validate(timeout=15)
            assert response.status_code < 500
            submit = case.method == "POST" and case.path == "/api/v1/jobs"
            if submit and response.status_code == 202:
                ACCEPTED.setdefault(fuzz_server.url, []).append(response.json()["job_id"])
            declare = case.method == "PUT" and case.path == "/api/v1/schedules/{name}"
            if declare and response.status_code in (200, 201):
                DECLARED.setdefault(fuzz_server.url, set()).add(response.json()["name"])
            limited = case.path == "/api/v1/limits/{key}" and case.method in ("PUT", "DELETE")
            if limited and response.status_code == 200:
                keys = LIMITED.setdefault(fuzz_server.url, {})
                keys[response.json()["key"]] = case.method == "PUT"

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
    waiting = stats["queued_tasks"] + stats["scheduled_tasks"]  # (delay, at: scheduled)
    assert stats["total_submitted"] == ended + waiting + stats["active_workers"]
    assert stats["total_submitted"] >= len(set(accepted))
    for job_id in set(accepted):
        status, _ = fuzz_server.call("GET", f"api/v1/jobs/{_quote(job_id)}")
        assert status == 200, job_id
    # Valid schedules were drawn (a cron expression too: tests/http/_fuzz_formats.py) and
    # declared; each one the fuzzing did not delete again is listed.
    declared = DECLARED.get(fuzz_server.url, set())
    assert declared, "the fuzzing never had a schedule declared"
    listed = {
        schedule["name"] for schedule in fuzz_server.api("GET", "api/v1/schedules")["schedules"]
    }
    for name in declared - listed:
        status, _ = fuzz_server.call("GET", f"api/v1/schedules/{_quote(name)}")
        assert status == 404, name  # deleted by a DELETE the fuzzing drew
    # Valid limits were drawn and set: a key whose last answered request set its limit has
    # it, one whose last deleted it has none.
    limited = LIMITED.get(fuzz_server.url, {})
    assert any(limited.values()), "the fuzzing never had a limit set"
    kept = set(fuzz_server.api("GET", "api/v1/limits")["limits"])
    assert kept == {key for key, is_set in limited.items() if is_set}


MAX_WAIT = 1.0  # seconds: the longest ?wait sent (see _cap_wait)


def _cap_wait(case: schemathesis.Case[Any]) -> None:
    """Send a valid ``?wait`` of ``GET /api/v1/jobs/{job_id}`` above ``MAX_WAIT`` as
    ``MAX_WAIT``, as tests/http/_fuzz_hooks.py does for the command line: a drawn id may be a
    job's that stays live (a ``blocker``, a scheduled job, a job of a key held at its limit),
    and the request would then take the whole wait, up to 60 s, past its timeout. Still a
    valid request, answered as documented; an invalid one is sent as drawn."""
    query = case.query
    if case.operation.label != "GET /api/v1/jobs/{job_id}" or not isinstance(query, dict):
        return
    wait = query.get("wait")
    if isinstance(wait, int | float) and not isinstance(wait, bool) and MAX_WAIT < wait <= 60:
        query["wait"] = MAX_WAIT


def _quote(job_id: str) -> str:
    import urllib.parse

    return urllib.parse.quote(job_id, safe="")


# -- the schemathesis command line, every check -----------------------------------------------

CLI_TOKEN = "fuzz-cli-token"
CLI_SEED = 20260  # fixed: a failure here is reproducible with the same command
CLI_EXAMPLES = 25  # per operation and phase: the run takes about 10 s
HOOKS = Path(__file__).with_name("_fuzz_hooks.py")  # caps ?wait: see there


def test_schemathesis_cli_with_every_check(tmp_path: Path) -> None:
    """``schemathesis run --checks all`` (the command line, as a user runs it) against a real
    ``trio-jobpool serve`` with a token, on a free loopback port: every phase (examples,
    coverage, fuzzing, stateful), a bounded number of examples, a ``?wait`` of a job capped at
    1 s (tests/http/_fuzz_hooks.py: a scheduled job would hold it for the whole wait); any
    failed check fails this test, with schemathesis's report."""
    port = free_port()
    serve = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trio_jobpool",
            "serve",
            "--app",
            "tests.http._fuzz_jobs:registry",
            "--store",
            "memory://",
            "--port",
            str(port),
            "--token",
            CLI_TOKEN,
            "--workers",
            "2",
            "--queue-size",
            "5",
            "--shutdown-timeout",
            "1",
        ],
        cwd=ROOT,
        env={**os.environ, "TRIO_JOBPOOL_TOKEN": ""},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert serve.stdout is not None
        ready = serve.stdout.readline()  # "serving on URL ...", or nothing if it failed
        assert ready.startswith(f"serving on http://127.0.0.1:{port} "), ready
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "run",
                f"http://127.0.0.1:{port}/openapi.json",
                "--checks",
                "all",
                "--max-examples",
                str(CLI_EXAMPLES),
                "--seed",
                str(CLI_SEED),
                "--workers",
                "1",
                "--header",
                f"Authorization: Bearer {CLI_TOKEN}",
                "--request-timeout",
                "15",
                "--generation-database",
                "none",
                "--no-color",
            ],
            cwd=tmp_path,
            env={**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            _, errors = serve.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            serve.kill()
            _, errors = serve.communicate()
    report = run.stdout[-6000:] + run.stderr[-2000:]
    assert run.returncode == 0, report
    assert "17 passed" in run.stdout or "Tested: 17" in run.stdout, report
    assert "Traceback" not in errors, errors
