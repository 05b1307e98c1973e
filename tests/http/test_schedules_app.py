"""Periodic schedules through the HTTP app, in process, on Trio and asyncio: ``GET
/api/v1/schedules``, ``GET``/``PUT``/``DELETE /api/v1/schedules/{name}``, every error status
of theirs, the pause toggle the dashboard makes, and the schedules' metrics. The tests whose
schedules fire run in virtual time (tests/_helpers.py ``run_virtual``): a tick is met exactly
and nothing sleeps for real."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests._helpers import run_virtual
from trio_jobpool import JobRegistry, RetryPolicy, open_job_pool
from trio_jobpool.http import create_app
from trio_jobpool.http._input import MAX_SCHEDULE_NAME, time_zones
from trio_jobpool.http._openapi import openapi_document

from .test_app import AUTH, JSON, TOKEN, Jobs, error_of, served

pytestmark = pytest.mark.anyio

NIGHTLY = {"name": "add", "args": [1, 2], "cron": "30 2 * * *", "tz": "Europe/Berlin"}
FIELDS = [
    "name",
    "job_name",
    "args",
    "cron",
    "every",
    "tz",
    "priority",
    "timeout",
    "retry",
    "overlap",
    "misfire",
    "paused",
    "next_run",
    "last_run",
    "last_job_id",
    "runs",
    "skipped",
]


def definition_of(schedule: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """The body that declares ``schedule`` (as the list gives it) again, with ``changes``: what
    the dashboard's pause toggle sends."""
    body = {
        "name": schedule["job_name"],
        **{
            field: schedule[field]
            for field in (
                "args",
                "cron",
                "every",
                "tz",
                "priority",
                "timeout",
                "retry",
                "overlap",
                "misfire",
                "paused",
            )
        },
    }
    return {**body, **changes}


# -- declaring, reading, deleting ---------------------------------------------------------------


async def test_put_declares_201_then_an_identical_put_changes_nothing() -> None:
    async with served() as (pool, _, client):
        created = await client.put("/api/v1/schedules/nightly", json=NIGHTLY)
        assert created.status_code == 201, created.text
        assert created.headers["location"] == "/api/v1/schedules/nightly"
        body = created.json()
        assert list(body) == FIELDS
        assert body == {
            "name": "nightly",
            "job_name": "add",
            "args": [1, 2],
            "cron": "30 2 * * *",
            "every": None,
            "tz": "Europe/Berlin",
            "priority": 5,
            "timeout": None,
            "retry": None,
            "overlap": "skip",
            "misfire": "skip",
            "paused": False,
            "next_run": body["next_run"],
            "last_run": None,
            "last_job_id": None,
            "runs": 0,
            "skipped": 0,
        }
        # The next 02:30 in Berlin: within a day, on a whole minute.
        assert time.time() < body["next_run"] <= time.time() + 25 * 3600
        assert body["next_run"] % 60 == 0
        (schedule,) = await pool.schedules()
        assert (schedule.name, schedule.job_name, schedule.args) == ("nightly", "add", (1, 2))

        again = await client.put("/api/v1/schedules/nightly", json=NIGHTLY)
        assert (again.status_code, again.json()) == (200, body)
        assert "location" not in again.headers
        listed = (await client.get("/api/v1/schedules")).json()
        assert listed == {"schedules": [body]}
        assert (await client.get("/api/v1/schedules/nightly")).json() == body


async def test_a_different_put_replaces_the_schedule() -> None:
    async with served() as (pool, _, client):
        await client.put("/api/v1/schedules/s", json={"name": "add", "args": [1, 1], "every": 60})
        changed = {
            "name": "fail",
            "args": ["boom"],
            "every": 3600,
            "priority": -2,
            "timeout": 30,
            "retry": {"max_attempts": 3, "backoff": 1, "max_backoff": 10, "jitter": False},
            "overlap": "allow",
            "misfire": "once",
        }
        replaced = await client.put("/api/v1/schedules/s", json=changed)
        assert replaced.status_code == 200
        body = replaced.json()
        assert {field: body[field] for field in changed if field != "name"} == {
            **{field: value for field, value in changed.items() if field != "name"},
            "every": 3600.0,
            "timeout": 30.0,
            "retry": {"max_attempts": 3, "backoff": 1.0, "max_backoff": 10.0, "jitter": False},
        }
        assert (body["job_name"], body["cron"], body["tz"]) == ("fail", None, "UTC")
        (schedule,) = await pool.schedules()
        assert schedule.retry == RetryPolicy(
            max_attempts=3, backoff=1, max_backoff=10, jitter=False
        )
        assert (schedule.overlap, schedule.misfire, schedule.priority) == ("allow", "once", -2)
        # Declared again from what GET gives: identical, so nothing changes.
        again = await client.put("/api/v1/schedules/s", json=definition_of(body))
        assert (again.status_code, again.json()) == (200, body)


async def test_delete_removes_the_schedule_then_404() -> None:
    async with served() as (pool, _, client):
        await client.put("/api/v1/schedules/gone", json={"name": "add", "args": [1, 1], "every": 5})
        response = await client.delete("/api/v1/schedules/gone")
        assert (response.status_code, response.json()) == (
            200,
            {"message": "schedule deleted", "name": "gone"},
        )
        assert await pool.schedules() == []
        assert "'gone'" in error_of(await client.delete("/api/v1/schedules/gone"), 404, "not_found")
        error_of(await client.get("/api/v1/schedules/gone"), 404, "not_found")
        assert (await client.get("/api/v1/schedules")).json() == {"schedules": []}


async def test_names_with_any_character_but_a_slash() -> None:
    async with served() as (_, _, client):
        name = "Ⱥ ü?#%20&@x"
        path = "/api/v1/schedules/%C8%BA%20%C3%BC%3F%23%2520%26%40x"
        response = await client.put(path, json={"name": "add", "args": [1, 1], "every": 60})
        assert response.status_code == 201, response.text
        assert response.headers["location"] == path
        assert (await client.get(path)).json()["name"] == name
        longest = "n" * MAX_SCHEDULE_NAME
        body = {"name": "add", "args": [1, 1], "every": 60}
        assert (await client.put(f"/api/v1/schedules/{longest}", json=body)).status_code == 201
        # (".." percent-encoded: a client removes the dot segments of a path)
        for bad in ("n" * (MAX_SCHEDULE_NAME + 1), "a%0Ab", "%2E", "%2E%2E", "%7F"):
            response = await client.put(f"/api/v1/schedules/{bad}", json=body)
            assert "schedule's name" in error_of(response, 422, "invalid"), bad
        # A name with a slash is two path segments: no such path.
        error_of(await client.put("/api/v1/schedules/a%2Fb", json=body), 404, "not_found")
        listed = (await client.get("/api/v1/schedules")).json()["schedules"]
        assert sorted(s["name"] for s in listed) == sorted([name, longest])


# -- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "add", "cron": "61 * * * *"}, "'cron'"),
        ({"name": "add", "cron": "@daily"}, "'cron'"),
        ({"name": "add", "cron": "* * * *"}, "'cron'"),
        ({"name": "add", "cron": "0 0 31 2 *"}, "'cron'"),
        ({"name": "add", "cron": "0 0 L * *"}, "'cron'"),
        ({"name": "add", "cron": 5}, "'cron'"),
        ({"name": "add", "every": 0.5}, "'every'"),
        ({"name": "add", "every": -1}, "'every'"),
        ({"name": "add", "every": "60"}, "'every'"),
        ({"name": "add", "every": True}, "'every'"),
        ({"name": "add", "every": 10**400}, "'every'"),
        ({"name": "add"}, "'cron'"),
        ({"name": "add", "cron": None, "every": None}, "'every'"),
        ({"name": "add", "cron": "* * * * *", "every": 60}, "'cron' and 'every'"),
        ({"name": "add", "every": 60, "tz": "Mars/Olympus"}, "'tz'"),
        ({"name": "add", "every": 60, "tz": "localtime"}, "'tz'"),
        ({"name": "add", "every": 60, "tz": None}, "'tz'"),
        ({"name": "add", "every": 60, "overlap": "queue"}, "'overlap'"),
        ({"name": "add", "every": 60, "misfire": "all"}, "'misfire'"),
        ({"name": "add", "every": 60, "paused": "yes"}, "'paused'"),
        ({"name": "add", "every": 60, "priority": 1.5}, "'priority'"),
        ({"name": "add", "every": 60, "timeout": -1}, "'timeout'"),
        ({"name": "add", "every": 60, "retry": {"tries": 3}}, "'tries'"),
        ({"name": "add", "every": 60, "args": {"a": 1}}, "'args'"),
        ({"name": "add", "every": 60, "job_id": "x"}, "'job_id'"),
        ({"every": 60}, "'name'"),
        ([], "JSON object"),
    ],
)
async def test_a_bad_field_is_422_naming_it_and_changes_nothing(body: object, field: str) -> None:
    async with served() as (pool, _, client):
        response = await client.put("/api/v1/schedules/s", json=body)
        assert field in error_of(response, 422, "invalid")
        assert await pool.schedules() == []


async def test_an_unknown_job_is_400_and_a_closed_pool_503() -> None:
    async with served() as (pool, _, client):
        response = await client.put("/api/v1/schedules/s", json={"name": "rm_rf", "every": 60})
        assert "rm_rf" in error_of(response, 400, "unknown_job_name")
        # A name of the app's registry that the pool's lacks: as for a submit, 400.
        other = JobRegistry()

        @other.job(name="elsewhere")
        async def elsewhere() -> None:
            await anyio.lowlevel.checkpoint()

        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(pool, other)), base_url="http://test"
        ) as outside:
            body = {"name": "elsewhere", "every": 60}
            response = await outside.put("/api/v1/schedules/s", json=body)
        # In memory the pool takes any function (by its qualified name); a store refuses it
        # (test_a_durable_pool_refuses_a_job_its_registry_lacks).
        assert response.status_code == 201
        assert response.json()["job_name"].endswith("<locals>.elsewhere")
        pool.close()
        response = await client.put("/api/v1/schedules/t", json={"name": "add", "every": 60})
        error_of(response, 503, "pool_closed")
        assert [s.name for s in await pool.schedules()] == ["s"]


async def test_a_durable_pool_refuses_a_job_its_registry_lacks(tmp_path: Path) -> None:
    jobs = Jobs()
    other = JobRegistry()

    @other.job(name="elsewhere")
    async def elsewhere() -> None:
        await anyio.lowlevel.checkpoint()

    store = f"sqlite:///{tmp_path / 'jobs.db'}"
    async with open_job_pool(1, store=store, registry=jobs.registry, shutdown_timeout=0) as pool:
        app = create_app(pool, other)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test"
        ) as client:
            response = await client.put(
                "/api/v1/schedules/s", json={"name": "elsewhere", "every": 60}
            )
            error_of(response, 400, "unknown_job_name")
        assert await pool.schedules() == []


@pytest.mark.parametrize(
    "content", [b"{", b'{"name": "add", "every": NaN}', b'{"name": "add", "every": 1e999}']
)
async def test_malformed_json_is_400(content: bytes) -> None:
    async with served() as (pool, _, client):
        response = await client.put("/api/v1/schedules/s", content=content, headers=JSON)
        error_of(response, 400, "malformed_json")
        assert await pool.schedules() == []


async def test_changes_need_the_token_reading_does_not() -> None:
    async with served(token=TOKEN) as (pool, _, client):
        body = {"name": "add", "args": [1, 1], "every": 60}
        error_of(await client.put("/api/v1/schedules/s", json=body), 401, "unauthorized")
        wrong = {"Authorization": "Bearer nope"}
        error_of(
            await client.put("/api/v1/schedules/s", json=body, headers=wrong), 401, "unauthorized"
        )
        assert await pool.schedules() == []
        assert (await client.put("/api/v1/schedules/s", json=body, headers=AUTH)).status_code == 201
        error_of(await client.delete("/api/v1/schedules/s"), 401, "unauthorized")
        assert len((await client.get("/api/v1/schedules")).json()["schedules"]) == 1
        assert (await client.get("/api/v1/schedules/s")).status_code == 200
        cross = {**AUTH, "Origin": "http://evil.example"}
        error_of(await client.delete("/api/v1/schedules/s", headers=cross), 403, "cross_origin")
        assert (await client.delete("/api/v1/schedules/s", headers=AUTH)).status_code == 200
        error_of(await client.delete("/api/v1/schedules/s", headers=AUTH), 404, "not_found")


async def test_other_methods_are_405() -> None:
    async with served() as (_, _, client):
        response = await client.post("/api/v1/schedules", json={})
        error_of(response, 405, "method_not_allowed")
        assert response.headers["allow"] == "GET, HEAD"
        response = await client.post("/api/v1/schedules/s", json={})
        assert response.headers["allow"] == "DELETE, GET, HEAD, PUT"


# -- what the answers hold ------------------------------------------------------------------------


async def test_the_answers_have_the_documented_fields() -> None:
    document = openapi_document(token_required=True, names=["add"], workers=(1, 2))
    schemas = document["components"]["schemas"]
    assert schemas["Schedule"]["required"] == FIELDS
    definition = schemas["ScheduleDefinition"]["properties"]
    assert definition["name"]["enum"] == ["add"]
    assert definition["tz"]["enum"] == sorted(time_zones())
    assert {"UTC", "Europe/Berlin"} <= set(definition["tz"]["enum"])
    assert not {"localtime", "posixrules"} & set(definition["tz"]["enum"])
    assert definition["overlap"]["enum"] == ["skip", "allow"]
    assert definition["misfire"]["enum"] == ["skip", "once"]
    assert definition["cron"]["format"] == "cron"
    put = document["paths"]["/api/v1/schedules/{name}"]["put"]
    assert set(put["responses"]) >= {"200", "201", "400", "401", "422", "503"}
    assert put["security"] == [{"bearer": []}]
    delete = document["paths"]["/api/v1/schedules/{name}"]["delete"]
    assert set(delete["responses"]) >= {"200", "401", "404"}
    async with served() as (_, _, client):
        await client.put("/api/v1/schedules/s", json=NIGHTLY)
        served_document = (await client.get("/openapi.json")).json()
        assert set(served_document["paths"]) >= {"/api/v1/schedules", "/api/v1/schedules/{name}"}
        assert "security" not in served_document["paths"]["/api/v1/schedules/{name}"]["put"]
        listed = (await client.get("/api/v1/schedules")).json()
        assert list(listed["schedules"][0]) == FIELDS


async def test_a_schedule_declared_in_code_is_listed_with_its_arguments() -> None:
    """Arguments JSON cannot hold show as their ``repr``; an infinite timeout as ``null``."""
    async with served() as (pool, jobs, client):
        await pool.schedule("code", jobs.add, {1, 2}, 3, every=60, timeout=math.inf)
        (listed,) = (await client.get("/api/v1/schedules")).json()["schedules"]
        assert (listed["args"], listed["timeout"], listed["job_name"]) == (
            ["{1, 2}", 3],
            None,
            "add",
        )


# -- firing, pausing, counting: in virtual time -----------------------------------------------


def virtual(test: Callable[[], Awaitable[None]]) -> Callable[[str], None]:
    """Run an async test body in virtual time on each backend."""

    @pytest.mark.parametrize("backend", ["trio", "asyncio"])
    def run(backend: str) -> None:
        run_virtual(backend, test)

    run.__name__ = test.__name__
    run.__doc__ = test.__doc__
    return run


def samples(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


@virtual
async def test_a_schedule_fires_and_its_counts_show_in_the_list_and_the_metrics() -> None:
    async with served() as (pool, _, client):
        body = {"name": "add", "args": [20, 22], "every": 60}
        declared = (await client.put("/api/v1/schedules/minutely", json=body)).json()
        await anyio.sleep(61)  # past the first tick
        schedule = (await client.get("/api/v1/schedules/minutely")).json()
        assert (schedule["runs"], schedule["skipped"]) == (1, 0)
        assert schedule["last_run"] == declared["next_run"]
        assert schedule["next_run"] == declared["next_run"] + 60
        tick = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(math.floor(declared["next_run"])))
        assert schedule["last_job_id"] == f"minutely@{tick}"
        job = (
            await client.get(f"/api/v1/jobs/{schedule['last_job_id']}", params={"wait": 5})
        ).json()
        assert (job["status"], job["result"], job["name"]) == ("completed", 42, "add")

        scraped = samples((await client.get("/metrics")).text)
        assert scraped["jobpool_schedule_runs_total"] == {(("schedule", "minutely"),): 1.0}
        assert scraped["jobpool_schedule_skipped_total"] == {(("schedule", "minutely"),): 0.0}
        # One start of a job that fell due: the tick's, at its time exactly (virtual time).
        assert scraped["jobpool_schedule_lag_seconds_count"] == {(): 1.0}
        assert scraped["jobpool_schedule_lag_seconds_sum"] == {(): pytest.approx(0.0, abs=1e-3)}
        assert pool.histograms()["due_lag"].count == 1


@virtual
async def test_the_pause_toggle_stops_the_ticks_and_resumes_them() -> None:
    """What the dashboard's toggle does: PUT the definition the list gave, ``paused`` flipped."""
    async with served() as (_, _, client):
        body = {"name": "add", "args": [1, 1], "every": 60, "priority": 3, "misfire": "once"}
        await client.put("/api/v1/schedules/s", json=body)
        await anyio.sleep(61)
        (listed,) = (await client.get("/api/v1/schedules")).json()["schedules"]
        assert listed["runs"] == 1
        paused = await client.put("/api/v1/schedules/s", json=definition_of(listed, paused=True))
        assert paused.status_code == 200
        shown = paused.json()
        assert shown["paused"] is True
        unchanged = (
            "job_name",
            "args",
            "every",
            "tz",
            "priority",
            "misfire",
            "runs",
            "last_job_id",
        )
        assert {f: shown[f] for f in unchanged} == {f: listed[f] for f in unchanged}
        await anyio.sleep(600)  # ten ticks while paused: none fires, none counts
        now = (await client.get("/api/v1/schedules/s")).json()
        assert (now["paused"], now["runs"], now["skipped"]) == (True, 1, 0)
        resumed = await client.put("/api/v1/schedules/s", json=definition_of(now, paused=False))
        assert resumed.json()["paused"] is False
        await anyio.sleep(61)  # its ticks count from the declaration that resumed it
        after = (await client.get("/api/v1/schedules/s")).json()
        assert (after["runs"], after["skipped"]) == (2, 0)


@virtual
async def test_a_tick_whose_last_job_is_live_is_skipped_and_counted() -> None:
    async with served() as (_, jobs, client):
        await client.put("/api/v1/schedules/slow", json={"name": "block", "every": 60})
        await anyio.sleep(181)  # three ticks: the first job blocks, the next two are skipped
        schedule = (await client.get("/api/v1/schedules/slow")).json()
        assert (schedule["runs"], schedule["skipped"]) == (1, 2)
        scraped = samples((await client.get("/metrics")).text)
        assert scraped["jobpool_schedule_skipped_total"] == {(("schedule", "slow"),): 2.0}
        jobs.release.set()
        job = (
            await client.get(f"/api/v1/jobs/{schedule['last_job_id']}", params={"wait": 5})
        ).json()
        assert job["status"] == "completed"


async def test_the_metrics_show_only_the_schedules_that_exist() -> None:
    async with served() as (_, _, client):
        text = (await client.get("/metrics")).text
        assert "# TYPE jobpool_schedule_runs_total counter" in text
        assert "jobpool_schedule_runs_total{" not in text
        assert (
            "# HELP jobpool_schedule_lag_seconds Time from a job's due time (a schedule's tick, "
            "delay/at, a Defer) to its start.\n"
        ) in text
        for name in ("a", 'b"\\'):
            body = {"name": "add", "args": [1, 1], "every": 3600}
            await client.put(f"/api/v1/schedules/{name.replace(chr(92), '%5C')}", json=body)
        scraped = samples((await client.get("/metrics")).text)
        assert set(scraped["jobpool_schedule_runs_total"]) == {
            (("schedule", "a"),),
            (("schedule", 'b"\\'),),
        }
        await client.delete("/api/v1/schedules/a")
        scraped = samples((await client.get("/metrics")).text)
        assert set(scraped["jobpool_schedule_runs_total"]) == {(("schedule", 'b"\\'),)}


async def test_a_put_body_is_read_as_any_other() -> None:
    """The body limits hold for a schedule too: 415 without the JSON type, 413 over the cap."""
    async with served(max_body_bytes=200) as (pool, _, client):
        content = json.dumps({"name": "add", "every": 60}).encode()
        response = await client.put("/api/v1/schedules/s", content=content)
        error_of(response, 415, "unsupported_media_type")
        big = json.dumps({"name": "add", "every": 60, "args": ["x" * 300]}).encode()
        response = await client.put("/api/v1/schedules/s", content=big, headers=JSON)
        error_of(response, 413, "body_too_large")
        assert await pool.schedules() == []


async def test_a_durable_pool_declares_through_the_app(tmp_path: Path) -> None:
    async with served(store=f"sqlite:///{tmp_path / 'jobs.db'}") as (pool, _, client):
        response = await client.put("/api/v1/schedules/nightly", json=NIGHTLY)
        assert response.status_code == 201, response.text
        (schedule,) = await pool.schedules()
        assert (schedule.job_name, schedule.args, schedule.tz) == ("add", (1, 2), "Europe/Berlin")
        assert (await client.delete("/api/v1/schedules/nightly")).status_code == 200
