"""Periodic schedules against a real ``trio-jobpool serve``: the endpoints ``GET
/api/v1/schedules``, ``GET``/``PUT``/``DELETE /api/v1/schedules/{name}`` and their errors,
the commands ``trio-jobpool schedules list|set|delete`` and their exit codes, and ``serve`` and
``worker`` declaring the schedules of an ``--app`` module (``declare_schedules``).

The client commands run in this process (``main([...])``) against ``serve`` started as a real
subprocess (as in tests/test_cli_service.py: examples/ci_jobs.py on SQLite, with a token).
"""

from __future__ import annotations

import datetime
import json
import math
import re
import signal
import textwrap
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.servers import free_port
from tests.test_cli_service import TOKEN, Process, run, serving
from trio_jobpool.cli import main

AUTH = {"Authorization": f"Bearer {TOKEN}"}
RUN_TIMEOUT = 10.0  # seconds for a due tick's job to show, beyond its time

APP_WITH_SCHEDULES = """
from trio_jobpool import JobRegistry

registry = JobRegistry()


@registry.job(name="tick")
async def tick(label: str) -> str:
    return label


async def declare_schedules(pool):
    await pool.schedule("nightly", "tick", "n", cron="30 2 * * *", tz="Europe/Berlin")
    await pool.schedule("pulse", tick, "p", every=3600, paused=True, priority=2)
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One server for the client tests of this module (token TOKEN): its URL."""
    db = tmp_path_factory.mktemp("serve-schedules") / "jobs.db"
    port = str(free_port())
    with serving("--port", port, "--store", f"sqlite:///{db}", "--token", TOKEN) as (_, url):
        yield url


@pytest.fixture
def url(server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The server's URL, also in $TRIO_JOBPOOL_URL; $TRIO_JOBPOOL_TOKEN unset."""
    monkeypatch.setenv("TRIO_JOBPOOL_URL", server)
    monkeypatch.delenv("TRIO_JOBPOOL_TOKEN", raising=False)
    return server


def schedule_path(name: str) -> str:
    return f"/api/v1/schedules/{urllib.parse.quote(name, safe='')}"


def wait_for_first_run(http: httpx.Client, name: str, next_run: float) -> dict[str, object]:
    """Sleep until the schedule's tick (a time: nothing to wait on), then read the schedule
    until it shows the run (the tick fires as its time passes; bounded)."""
    time.sleep(max(0.0, next_run - time.time()))
    deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        schedule: dict[str, object] = http.get(schedule_path(name)).json()
        if schedule["runs"]:
            return schedule
        assert time.monotonic() < deadline, f"{name} did not fire: {schedule}"
        time.sleep(0.05)


# -- the endpoints, end to end ------------------------------------------------------------------


def test_every_schedule_endpoint_of_a_served_pool(url: str) -> None:
    """Each endpoint and error status against ``trio-jobpool serve`` on SQLite (in process, on
    both backends, tests/http/test_schedules_app.py goes through each in detail)."""
    nightly = {"name": "lint", "args": ["repo-s", 0], "cron": "30 2 * * *", "tz": "Europe/Berlin"}
    with httpx.Client(base_url=url, timeout=30) as http:

        def error(response: httpx.Response) -> tuple[int, str]:
            assert "Traceback" not in response.text
            return response.status_code, response.json()["error"]

        path = schedule_path("e2e nightly")
        assert error(http.put(path, json=nightly)) == (401, "unauthorized")
        created = http.put(path, json=nightly, headers=AUTH)
        assert created.status_code == 201, created.text
        assert created.headers["location"] == "/api/v1/schedules/e2e%20nightly"
        body = created.json()
        assert (body["name"], body["job_name"], body["args"], body["cron"], body["tz"]) == (
            "e2e nightly",
            "lint",
            ["repo-s", 0],
            "30 2 * * *",
            "Europe/Berlin",
        )
        assert body["next_run"] > time.time()
        same = http.put(path, json=nightly, headers=AUTH)  # identical: nothing changes
        assert (same.status_code, same.json()) == (200, body)
        assert http.get(path).json() == body
        listed = http.get("/api/v1/schedules").json()["schedules"]
        assert body in listed

        for changed, field in (
            ({"cron": "61 * * * *"}, "'cron'"),
            ({"cron": "@daily"}, "'cron'"),
            ({"cron": None, "every": 0.5}, "'every'"),
            ({"every": 60}, "'cron' and 'every'"),
            ({"tz": "Mars/Olympus"}, "'tz'"),
            ({"overlap": "queue"}, "'overlap'"),
            ({"misfire": "all"}, "'misfire'"),
            ({"paused": "yes"}, "'paused'"),
        ):
            response = http.put(path, json={**nightly, **changed}, headers=AUTH)
            assert error(response) == (422, "invalid"), changed
            assert field in response.json()["message"], (changed, response.json())
        unknown = {**nightly, "name": "publish"}
        assert error(http.put(path, json=unknown, headers=AUTH)) == (400, "unknown_job_name")
        malformed = {**AUTH, "Content-Type": "application/json"}
        assert error(http.put(path, content=b"{", headers=malformed)) == (400, "malformed_json")
        assert error(http.put(schedule_path("a\nb"), json=nightly, headers=AUTH)) == (
            422,
            "invalid",
        )
        assert http.get(path).json() == body  # none of those changed it

        assert error(http.get(schedule_path("e2e-nobody"))) == (404, "not_found")
        assert error(http.delete(schedule_path("e2e-nobody"), headers=AUTH)) == (404, "not_found")
        assert error(http.post("/api/v1/schedules", json={}, headers=AUTH)) == (
            405,
            "method_not_allowed",
        )
        assert error(http.delete(path)) == (401, "unauthorized")
        deleted = http.delete(path, headers=AUTH)
        assert (deleted.status_code, deleted.json()) == (
            200,
            {"message": "schedule deleted", "name": "e2e nightly"},
        )
        assert error(http.get(path)) == (404, "not_found")
        assert body["name"] not in {
            s["name"] for s in http.get("/api/v1/schedules").json()["schedules"]
        }

        document = http.get("/openapi.json").json()
        assert set(document["paths"]["/api/v1/schedules/{name}"]) == {"get", "put", "delete"}
        assert (
            "Europe/Berlin"
            in document["components"]["schemas"]["ScheduleDefinition"]["properties"]["tz"]["enum"]
        )


def test_a_schedule_fires_in_the_served_pool(url: str) -> None:
    """An ``every`` schedule of 2 s: its first tick submits ``name@tick``, which runs; the
    list, the job and the metrics show it; a tick is not run again once it is deleted."""
    body = {"name": "lint", "args": ["repo-tick", 0], "every": 2}
    with httpx.Client(base_url=url, timeout=30, headers=AUTH) as http:
        declared = http.put(schedule_path("e2e-every"), json=body).json()
        try:
            schedule = wait_for_first_run(http, "e2e-every", declared["next_run"])
            tick = time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(math.floor(declared["next_run"]))
            )
            assert schedule["last_job_id"] == f"e2e-every@{tick}"
            assert schedule["last_run"] == declared["next_run"]
            job = http.get(f"/api/v1/jobs/e2e-every@{tick}", params={"wait": 10}).json()
            assert (job["status"], job["result"], job["name"]) == (
                "completed",
                "repo-tick: no lint errors",
                "lint",
            )
            assert job["started_at"] >= declared["next_run"]
            metrics = http.get("/metrics").text
            runs = re.search(
                r'^jobpool_schedule_runs_total\{schedule="e2e-every"\} (\S+)$', metrics, re.M
            )
            assert runs is not None
            assert float(runs.group(1)) >= 1
            assert re.search(
                r'^jobpool_schedule_skipped_total\{schedule="e2e-every"\} ', metrics, re.M
            )
            lag = re.search(r"^jobpool_schedule_lag_seconds_count (\S+)$", metrics, re.M)
            assert lag is not None
            assert float(lag.group(1)) >= 1
        finally:
            assert http.delete(schedule_path("e2e-every")).status_code == 200
        assert 'schedule="e2e-every"' not in http.get("/metrics").text


# -- the commands ----------------------------------------------------------------------------------


def test_schedules_set_list_and_delete(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["schedules", "set", "cli-nightly", "build", '["repo-c", 0]', "--cron", "30 2 * * *"]
    options = ["--tz", "Europe/Berlin", "--priority", "2", "--timeout", "15m", "--token", TOKEN]
    code, out, err = run(capsys, *args, *options)
    assert (code, err) == (0, "")
    found = re.fullmatch(r"created schedule cli-nightly \(build\): next run at (\S+)\n", out)
    assert found, out
    next_run = datetime.datetime.fromisoformat(found.group(1))
    assert next_run.utcoffset() is not None
    code, out, _ = run(capsys, *args, *options)  # identical: declared, unchanged
    assert (code, out) == (0, found.group(0).replace("created", "declared"))

    code, out, _ = run(capsys, "schedules", "list", "--json")
    assert code == 0
    (shown,) = [s for s in json.loads(out)["schedules"] if s["name"] == "cli-nightly"]
    assert (shown["job_name"], shown["args"], shown["priority"], shown["timeout"]) == (
        "build",
        ["repo-c", 0],
        2,
        900.0,
    )
    assert abs(shown["next_run"] - next_run.timestamp()) <= 0.5

    every = ["schedules", "set", "cli-pulse", "lint", "--every", "6h", "--paused"]
    code, out, _ = run(capsys, *every, "--overlap", "allow", "--misfire", "once", "--token", TOKEN)
    assert (code, out) == (0, "created schedule cli-pulse (lint): paused\n")
    code, out, _ = run(capsys, "schedules", "list")
    assert code == 0
    assert "schedules" in out
    assert url in out
    # (not a terminal: one line per schedule, no cell cut short)
    nightly_line = (
        r"│ cli-nightly +│ build +│ cron '30 2 \* \* \*' in Europe/Berlin +│ "
        rf"{re.escape(found.group(1))} +│ - +│ +0 │ +0 │"
    )
    assert re.search(nightly_line, out), out
    assert re.search(r"│ cli-pulse +│ lint +│ every 6 h, paused +│ \S+ +│ - +│ +0 │ +0 │", out), out
    code, out, _ = run(capsys, "schedules", "list", "--json")
    (pulse,) = [s for s in json.loads(out)["schedules"] if s["name"] == "cli-pulse"]
    assert (pulse["every"], pulse["paused"], pulse["overlap"], pulse["misfire"]) == (
        21600.0,
        True,
        "allow",
        "once",
    )

    for name in ("cli-nightly", "cli-pulse"):
        code, out, err = run(capsys, "schedules", "delete", name, "--token", TOKEN)
        assert (code, out, err) == (0, f"schedule deleted: {name}\n", "")
    code, out, _ = run(capsys, "schedules", "list", "--json")
    assert not {"cli-nightly", "cli-pulse"} & {s["name"] for s in json.loads(out)["schedules"]}


def test_schedules_refusals_and_their_exit_codes(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["schedules", "set", "cli-bad", "lint"]
    code, out, err = run(capsys, *base, "--every", "60")
    assert (code, out) == (2, "")
    assert err.startswith("trio-jobpool schedules set: ")
    assert "(401 unauthorized)" in err
    assert "--token or $TRIO_JOBPOOL_TOKEN" in err
    for extra, text in (
        (["--cron", "61 * * * *"], "'cron': cron expression '61 * * * *': bad minute field"),
        (["--cron", "0 0 * *"], "'cron': cron expression '0 0 * *': 4 fields, expected 5"),
        (["--every", "0.5"], "'every' must be a number of seconds >= 1"),
        (["--every", "60", "--tz", "Mars/Olympus"], "'tz' must be an IANA time zone name"),
    ):
        code, out, err = run(capsys, *base, *extra, "--token", TOKEN)
        assert (code, out) == (2, ""), extra
        assert err.startswith(f"trio-jobpool schedules set: {text}"), err
        assert err.endswith(" (422 invalid)\n"), err
        assert err.count("\n") == 1, err
    code, out, err = run(
        capsys, "schedules", "set", "cli-bad", "publish", "--every", "60", "--token", TOKEN
    )
    assert (code, out) == (2, "")
    assert (
        err
        == "trio-jobpool schedules set: no job is registered as 'publish' (400 unknown_job_name)\n"
    )
    code, out, err = run(capsys, "schedules", "delete", "cli-nobody", "--token", TOKEN)
    assert (code, out) == (1, "")
    assert err == "trio-jobpool schedules delete: no schedule 'cli-nobody' (404 not_found)\n"
    code, out, err = run(capsys, "schedules", "delete", "cli-nobody")
    assert (code, out) == (2, "")
    assert "(401 unauthorized)" in err
    code, out, _ = run(capsys, "schedules", "list", "--json")
    assert "cli-bad" not in {s["name"] for s in json.loads(out)["schedules"]}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("schedules",), "the following arguments are required: ACTION"),
        (("schedules", "pause", "x"), "invalid choice: 'pause'"),
        (("schedules", "set", "x", "lint"), "one of the arguments --cron --every is required"),
        (
            ("schedules", "set", "x", "lint", "--cron", "* * * * *", "--every", "60"),
            "argument --every: not allowed with argument --cron",
        ),
        (("schedules", "set", "x", "lint", "--every", "soon"), "not a duration: 'soon'"),
        (("schedules", "set", "x", "lint", "--every", "1", "--overlap", "queue"), "invalid choice"),
        (("schedules", "delete"), "the following arguments are required: NAME"),
    ],
)
def test_schedules_usage_errors(
    args: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, *args)
    assert (code, out) == (2, "")
    assert err.startswith("usage: trio-jobpool schedules")
    assert message in err


def test_schedules_bad_args_and_no_server(capsys: pytest.CaptureFixture[str]) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    code, out, err = run(
        capsys, "schedules", "set", "x", "lint", "repo", "--every", "60", "--url", nobody
    )
    assert (code, out) == (2, "")
    assert "ARGS is not JSON" in err  # refused before any request
    for args in (("list",), ("set", "x", "lint", "--every", "60"), ("delete", "x")):
        code, out, err = run(capsys, "schedules", *args, "--url", nobody)
        assert (code, out) == (3, "")
        assert err.startswith(f"trio-jobpool schedules {args[0]}: cannot reach {nobody}: "), err


# -- serve and worker declare the app's schedules ---------------------------------------------


def test_serve_declares_the_schedules_of_its_app(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = tmp_path / "scheduled_jobs.py"
    app.write_text(APP_WITH_SCHEDULES)
    process = Process("serve", "--app", f"{app}:registry", "--port", "0", "--store", "memory://")
    try:
        process.expect(r"^schedules: nightly, pulse$")
        url = process.expect(r"^serving on (http://\S+) ").group(1)
        code, out, _ = run(capsys, "schedules", "list", "--json", "--url", url)
        assert code == 0
        schedules = {s["name"]: s for s in json.loads(out)["schedules"]}
        assert set(schedules) == {"nightly", "pulse"}
        assert (schedules["nightly"]["cron"], schedules["nightly"]["tz"]) == (
            "30 2 * * *",
            "Europe/Berlin",
        )
        pulse = schedules["pulse"]
        assert (
            pulse["job_name"],
            pulse["args"],
            pulse["every"],
            pulse["paused"],
            pulse["priority"],
        ) == (
            "tick",
            ["p"],
            3600.0,
            True,
            2,
        )
    finally:
        code = process.stop(signal.SIGTERM)
    assert code == 0, process.stderr
    assert process.stderr == ""


def test_worker_declares_the_schedules_of_its_app(tmp_path: Path) -> None:
    app = tmp_path / "scheduled_jobs.py"
    app.write_text(APP_WITH_SCHEDULES)
    store = f"sqlite:///{tmp_path / 'jobs.db'}"
    worker = Process("worker", "--app", str(app), "--store", store, "--workers", "1")
    try:
        worker.expect(r"^schedules: nightly, pulse$")
        worker.expect(r"^worker \d+: 1 workers on sqlite:///")
    finally:
        code = worker.stop(signal.SIGTERM)
    assert code == 0, worker.stderr
    assert worker.stderr == ""


@pytest.mark.parametrize(
    ("declare", "message"),
    [
        (
            'await pool.schedule("bad", "tick", "x", cron="61 * * * *")',
            "declare_schedules failed: cron expression '61 * * * *': bad minute field",
        ),
        (
            'await pool.schedule("bad", "nothing", every=60)',
            "declare_schedules failed: ",
        ),
        ('raise RuntimeError("oops")', "declare_schedules failed:\nTraceback"),
    ],
)
def test_a_failing_declare_schedules_stops_serve(
    declare: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = tmp_path / "bad_schedules.py"
    app.write_text(
        APP_WITH_SCHEDULES.split("async def declare_schedules")[0]
        + "async def declare_schedules(pool):\n"
        + textwrap.indent(declare, "    ")
        + "\n"
    )
    capsys.readouterr()
    code = main(["serve", "--app", str(app), "--port", "0", "--store", "memory://"])
    out, err = capsys.readouterr()
    assert code == 2
    assert "serving on" not in out
    assert err.startswith(f"trio-jobpool serve: --app {str(app)!r}: {message}"), err
    if "Traceback" not in message:
        assert err.count("\n") == 1, err


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        ("declare_schedules = 3", "declare_schedules is a int, not an async function"),
        ("def declare_schedules(pool):\n    return None", "declare_schedules returned NoneType"),
    ],
)
def test_a_declare_schedules_that_is_no_async_function(
    definition: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = tmp_path / "odd_schedules.py"
    app.write_text(APP_WITH_SCHEDULES.split("async def declare_schedules")[0] + definition + "\n")
    code, out, err = run(capsys, "serve", "--app", str(app), "--port", "0", "--store", "memory://")
    assert (code, out) == (2, "")
    assert err.startswith(f"trio-jobpool serve: --app {str(app)!r}: {message}"), err
