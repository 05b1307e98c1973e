"""Flow control through the HTTP app, in process, on Trio and asyncio: ``key`` on ``POST
/api/v1/jobs`` and in a job's JSON, ``GET /api/v1/limits``, ``GET``/``PUT``/``DELETE
/api/v1/limits/{key}``, every error status of theirs, and the keys' metrics (bounded: only the
keys of ``pool.limited_keys()``). The rate test runs in virtual time (tests/_helpers.py
``run_virtual``): a window is met exactly and nothing sleeps for real."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from trio_jobpool import JobPool, Limit, Rate, open_job_pool
from trio_jobpool.http import create_app
from trio_jobpool.http._input import MAX_KEY
from trio_jobpool.http._openapi import openapi_document

from .test_app import AUTH, JSON, TOKEN, Jobs, error_of, served
from .test_schedules_app import samples, virtual

pytestmark = pytest.mark.anyio

KEY_FIELDS = ["key", "running", "waiting", "limit"]


def limit(max_running: int | None = None, count: int | None = None, per: float = 0) -> Any:
    """A limit's JSON, as the API gives it."""
    rate = None if count is None else {"count": count, "per": float(per)}
    return {"max_running": max_running, "rate": rate}


async def stats_of(client: httpx.AsyncClient, key: str) -> tuple[int, int]:
    """The key's running and waiting jobs, as ``GET /api/v1/limits/{key}`` gives them."""
    body = (await client.get(f"/api/v1/limits/{key}")).json()
    return body["running"], body["waiting"]


@asynccontextmanager
async def served_with(
    max_workers: int, **pool_options: Any
) -> AsyncIterator[tuple[JobPool, Jobs, httpx.AsyncClient]]:
    """As ``served``, with ``open_job_pool``'s flow-control options (``key_limit``, ...)."""
    jobs = Jobs()
    async with open_job_pool(
        max_workers, 100, registry=jobs.registry, shutdown_timeout=0, **pool_options
    ) as pool:
        transport = httpx.ASGITransport(app=create_app(pool, jobs.registry))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield pool, jobs, client
        jobs.release.set()


# -- key on submit -----------------------------------------------------------------------------


async def test_a_submitted_key_is_the_jobs_and_its_json_shows_it() -> None:
    async with served() as (pool, _, client):
        body: dict[str, Any] = {
            "name": "add",
            "args": [1, 2],
            "job_id": "keyed",
            "key": "tenant:42",
        }
        assert (await client.post("/api/v1/jobs", json=body)).status_code == 202
        body = {"name": "add", "args": [1, 2], "job_id": "plain", "key": None}
        assert (await client.post("/api/v1/jobs", json=body)).status_code == 202
        longest = "k" * MAX_KEY
        body = {"name": "add", "args": [1, 2], "job_id": "long", "key": longest}
        assert (await client.post("/api/v1/jobs", json=body)).status_code == 202
        assert [pool.get(i).key for i in ("keyed", "plain", "long")] == ["tenant:42", None, longest]
        job = (await client.get("/api/v1/jobs/keyed", params={"wait": 5})).json()
        assert (job["key"], job["status"], job["result"]) == ("tenant:42", "completed", 3)
        assert (await client.get("/api/v1/jobs/plain", params={"wait": 5})).json()["key"] is None
        listed = (await client.get("/api/v1/jobs")).json()["jobs"]
        assert {j["job_id"]: j["key"] for j in listed} == {
            "keyed": "tenant:42",
            "plain": None,
            "long": longest,
        }


@pytest.mark.parametrize(
    "key",
    ["", "k" * (MAX_KEY + 1), 7, True, ["a"], "a/b", "a\nb", "a\x7fb", ".", "..", "a\ud800b"],
)
async def test_a_bad_key_is_422_naming_it_and_submits_nothing(key: object) -> None:
    async with served() as (pool, _, client):
        content = json.dumps({"name": "add", "key": key}).encode()  # (a lone surrogate: \ud800)
        response = await client.post("/api/v1/jobs", content=content, headers=JSON)
        assert "'key'" in error_of(response, 422, "invalid")
        assert pool.stats().total_submitted == 0


# -- setting, reading, deleting limits ------------------------------------------------------------


async def test_put_sets_the_limit_get_reads_it_delete_removes_it() -> None:
    async with served() as (pool, _, client):
        assert (await client.get("/api/v1/limits")).json() == {"limits": {}, "keys": []}
        body = {"max_running": 2, "rate": {"count": 10, "per": 60}}
        response = await client.put("/api/v1/limits/tenant:1", json=body)
        assert response.status_code == 200, response.text
        shown = response.json()
        assert list(shown) == KEY_FIELDS
        assert shown == {"key": "tenant:1", "running": 0, "waiting": 0, "limit": limit(2, 10, 60)}
        assert await pool.limits() == {"tenant:1": Limit(2, Rate(10, 60))}
        assert (await client.get("/api/v1/limits/tenant:1")).json() == shown
        # A key with "/"-free punctuation and non-ASCII letters, percent-encoded in the path.
        path = "/api/v1/limits/%C8%BA%20%C3%BC%3F%23%2520%26%40x"
        other = await client.put(path, json={"rate": {"count": 5, "per": 1.5}})
        assert other.json()["key"] == "Ⱥ ü?#%20&@x"
        listed = (await client.get("/api/v1/limits")).json()
        assert listed == {
            "limits": {"tenant:1": limit(2, 10, 60), "Ⱥ ü?#%20&@x": limit(None, 5, 1.5)},
            "keys": [shown, {**shown, "key": "Ⱥ ü?#%20&@x", "limit": limit(None, 5, 1.5)}],
        }
        assert list(listed["limits"]) == ["tenant:1", "Ⱥ ü?#%20&@x"]  # sorted by key

        # A PUT replaces the key's own limit whole: the part left out is unlimited.
        replaced = await client.put("/api/v1/limits/tenant:1", json={"max_running": 0})
        assert replaced.json()["limit"] == limit(0)
        assert await pool.limits() == {
            "tenant:1": Limit(0),
            "Ⱥ ü?#%20&@x": Limit(rate=Rate(5, 1.5)),
        }

        deleted = await client.delete("/api/v1/limits/tenant:1")
        assert (deleted.status_code, deleted.json()) == (
            200,
            {"message": "limit deleted", "key": "tenant:1", "removed": True},
        )
        # Deleting again (or the limit of a key that never had one) is not an error.
        again = await client.delete("/api/v1/limits/tenant:1")
        assert (again.status_code, again.json()) == (
            200,
            {"message": "the key had no limit of its own", "key": "tenant:1", "removed": False},
        )
        assert await pool.limits() == {"Ⱥ ü?#%20&@x": Limit(rate=Rate(5, 1.5))}
        # Any valid key has stats: a key never seen has no jobs and no limit.
        assert (await client.get("/api/v1/limits/never-seen")).json() == {
            "key": "never-seen",
            "running": 0,
            "waiting": 0,
            "limit": None,
        }


async def test_a_limit_holds_the_keys_jobs_and_a_change_releases_them() -> None:
    """``max_running=1``: one job of the key runs, the others wait without blocking an
    unkeyed job; the list and the metrics show the counts; a raised limit starts a waiting job
    at once, a deleted one the rest; each of those counts as a delayed start."""
    async with served(max_workers=4, queue_size=10) as (pool, jobs, client):
        assert (await client.put("/api/v1/limits/t", json={"max_running": 1})).status_code == 200
        for n in range(3):
            body = {"name": "block", "args": [f"t{n}"], "job_id": f"t{n}", "key": "t"}
            assert (await client.post("/api/v1/jobs", json=body)).status_code == 202
        body = {"name": "block", "args": ["free"], "job_id": "free"}
        assert (await client.post("/api/v1/jobs", json=body)).status_code == 202
        await anyio.wait_all_tasks_blocked()
        statuses = {i: pool.get(i).status.value for i in ("t0", "t1", "t2", "free")}
        assert statuses == {"t0": "running", "t1": "queued", "t2": "queued", "free": "running"}
        listed = (await client.get("/api/v1/limits")).json()
        assert listed["keys"] == [{"key": "t", "running": 1, "waiting": 2, "limit": limit(1)}]
        scraped = samples((await client.get("/metrics")).text)
        assert scraped["jobpool_key_running"] == {(("key", "t"),): 1.0}
        assert scraped["jobpool_key_waiting"] == {(("key", "t"),): 2.0}
        assert scraped["jobpool_key_max_running"] == {(("key", "t"),): 1.0}
        assert scraped["jobpool_delayed_starts_total"] == {(): 0.0}

        raised = await client.put("/api/v1/limits/t", json={"max_running": 2})
        assert (raised.json()["running"], raised.json()["waiting"]) == (2, 1)  # before it returned
        assert pool.get("t1").status.value == "running"
        deleted = (await client.delete("/api/v1/limits/t")).json()
        assert deleted["removed"] is True
        assert pool.get("t2").status.value == "running"
        assert (await stats_of(client, "t")) == (3, 0)
        assert pool.delayed_starts == 2
        scraped = samples((await client.get("/metrics")).text)
        # No limit of its own and none held back: the key has no series any more.
        for gauge in ("jobpool_key_running", "jobpool_key_waiting", "jobpool_key_max_running"):
            assert gauge not in scraped
        assert scraped["jobpool_delayed_starts_total"] == {(): 2.0}
        assert (await client.get("/api/v1/limits")).json() == {"limits": {}, "keys": []}
        jobs.release.set()


@virtual
async def test_a_rate_limit_set_over_http_is_exact_in_virtual_time() -> None:
    """``rate`` of 2 per 60 s: two jobs of the key start at once, the third 60 s after the
    first; the key has running and waiting gauges, and no max_running one."""
    async with served(max_workers=4, queue_size=10) as (pool, _, client):
        body: dict[str, Any] = {"rate": {"count": 2, "per": 60}}
        assert (await client.put("/api/v1/limits/api", json=body)).status_code == 200
        start = anyio.current_time()
        for n in range(3):
            body = {"name": "add", "args": [n, n], "job_id": f"call-{n}", "key": "api"}
            assert (await client.post("/api/v1/jobs", json=body)).status_code == 202
        await anyio.wait_all_tasks_blocked()
        assert [pool.get(f"call-{n}").status.value for n in range(3)] == [
            "completed",
            "completed",
            "queued",
        ]
        assert await stats_of(client, "api") == (0, 1)
        scraped = samples((await client.get("/metrics")).text)
        assert scraped["jobpool_key_waiting"] == {(("key", "api"),): 1.0}
        assert "jobpool_key_max_running" not in scraped
        await pool.get("call-2").wait()
        assert anyio.current_time() - start == pytest.approx(60)  # when the window freed it
        third = (await client.get("/api/v1/jobs/call-2")).json()
        assert (third["status"], third["result"], third["key"]) == ("completed", 4, "api")
        assert pool.delayed_starts == 1


async def test_the_pools_key_limit_shows_for_keys_held_at_it() -> None:
    """With ``key_limit``, a key held at the pool's limit is listed (and has series) though it
    has no limit of its own; a key under it is not, however many jobs it ran."""
    async with served_with(4, key_limit=Limit(max_running=1)) as (pool, jobs, client):
        for key, count in (("a", 2), ("b", 2), ("c", 1)):
            for n in range(count):
                body: dict[str, Any] = {
                    "name": "block",
                    "args": [key],
                    "job_id": f"{key}{n}",
                    "key": key,
                }
                assert (await client.post("/api/v1/jobs", json=body)).status_code == 202
        for n in range(20):  # keys that came and went: never a series of theirs
            body = {"name": "add", "args": [n, n], "key": f"tenant-{n}"}
            assert (await client.post("/api/v1/jobs", json=body)).status_code == 202
        await anyio.wait_all_tasks_blocked()
        listed = (await client.get("/api/v1/limits")).json()
        assert listed == {
            "limits": {},
            "keys": [
                {"key": "a", "running": 1, "waiting": 1, "limit": limit(1)},
                {"key": "b", "running": 1, "waiting": 1, "limit": limit(1)},
            ],
        }
        assert (await client.get("/api/v1/limits/c")).json()["limit"] == limit(1)
        scraped = samples((await client.get("/metrics")).text)
        for gauge in ("jobpool_key_running", "jobpool_key_waiting", "jobpool_key_max_running"):
            assert set(scraped[gauge]) == {(("key", "a"),), (("key", "b"),)}, gauge
        # Deleting a limit a key does not have of its own leaves the pool's.
        deleted = (await client.delete("/api/v1/limits/a")).json()
        assert deleted["removed"] is False
        assert pool.key_stats("a").limit == Limit(max_running=1)
        jobs.release.set()


# -- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "'max_running', 'rate'"),
        ({"max_running": None, "rate": None}, "'max_running', 'rate'"),
        ({"max_running": -1}, "'max_running'"),
        ({"max_running": 1.5}, "'max_running'"),
        ({"max_running": True}, "'max_running'"),
        ({"max_running": "2"}, "'max_running'"),
        ({"max_running": 2**53}, "'max_running'"),
        ({"max_running": 10**400}, "'max_running'"),
        ({"rate": 10}, "'rate'"),
        ({"rate": "10/60"}, "'rate'"),
        ({"rate": {"count": 10}}, "'rate'"),
        ({"rate": {"per": 60}}, "'rate'"),
        ({"rate": {"count": 0, "per": 60}}, "'count'"),
        ({"rate": {"count": 1.5, "per": 60}}, "'count'"),
        ({"rate": {"count": True, "per": 60}}, "'count'"),
        ({"rate": {"count": 10, "per": 0}}, "'per'"),
        ({"rate": {"count": 10, "per": -1}}, "'per'"),
        ({"rate": {"count": 10, "per": "60"}}, "'per'"),
        ({"rate": {"count": 10, "per": True}}, "'per'"),
        ({"rate": {"count": 10, "per": 10**400}}, "'per'"),
        ({"rate": {"count": 10, "per": 60, "burst": 2}}, "'burst'"),
        ({"max_running": 1, "colour": "red"}, "'colour'"),
        ([], "JSON object"),
    ],
)
async def test_a_bad_limit_is_422_naming_the_field_and_changes_nothing(
    body: object, field: str
) -> None:
    async with served() as (pool, _, client):
        await client.put("/api/v1/limits/k", json={"max_running": 3})
        response = await client.put("/api/v1/limits/k", json=body)
        assert field in error_of(response, 422, "invalid")
        assert await pool.limits() == {"k": Limit(max_running=3)}


async def test_a_key_a_path_cannot_hold_is_422_on_every_method() -> None:
    async with served() as (pool, _, client):
        longest = "k" * MAX_KEY
        assert (await client.put(f"/api/v1/limits/{longest}", json={"max_running": 1})).json()[
            "key"
        ] == longest
        # (".." percent-encoded: a client removes the dot segments of a path)
        for bad in ("k" * (MAX_KEY + 1), "a%0Ab", "%7F", "%2E", "%2E%2E"):
            path = f"/api/v1/limits/{bad}"
            assert "a key" in error_of(await client.get(path), 422, "invalid"), bad
            response = await client.put(path, json={"max_running": 1})
            assert "a key" in error_of(response, 422, "invalid"), bad
            assert "a key" in error_of(await client.delete(path), 422, "invalid"), bad
        # A key with a slash is two path segments: no such path.
        error_of(
            await client.put("/api/v1/limits/a%2Fb", json={"max_running": 1}), 404, "not_found"
        )
        assert list(await pool.limits()) == [longest]


async def test_a_key_set_in_code_that_a_path_cannot_hold_is_listed() -> None:
    async with served() as (pool, _, client):
        await pool.set_limit("org/repo", max_running=1)
        listed = (await client.get("/api/v1/limits")).json()
        assert listed["limits"] == {"org/repo": limit(1)}
        assert [k["key"] for k in listed["keys"]] == ["org/repo"]


async def test_changes_need_the_token_reading_does_not() -> None:
    async with served(token=TOKEN) as (pool, _, client):
        body = {"max_running": 1}
        error_of(await client.put("/api/v1/limits/k", json=body), 401, "unauthorized")
        wrong = {"Authorization": "Bearer nope"}
        error_of(
            await client.put("/api/v1/limits/k", json=body, headers=wrong), 401, "unauthorized"
        )
        assert await pool.limits() == {}
        assert (await client.put("/api/v1/limits/k", json=body, headers=AUTH)).status_code == 200
        error_of(await client.delete("/api/v1/limits/k"), 401, "unauthorized")
        cross = {**AUTH, "Origin": "http://evil.example"}
        error_of(await client.delete("/api/v1/limits/k", headers=cross), 403, "cross_origin")
        assert await pool.limits() == {"k": Limit(max_running=1)}
        assert (await client.get("/api/v1/limits")).status_code == 200
        assert (await client.get("/api/v1/limits/k")).status_code == 200
        assert (await client.delete("/api/v1/limits/k", headers=AUTH)).json()["removed"] is True
        assert await pool.limits() == {}


async def test_other_methods_are_405() -> None:
    async with served() as (_, _, client):
        response = await client.post("/api/v1/limits", json={})
        error_of(response, 405, "method_not_allowed")
        assert response.headers["allow"] == "GET, HEAD"
        response = await client.post("/api/v1/limits/k", json={})
        assert response.headers["allow"] == "DELETE, GET, HEAD, PUT"


async def test_a_put_body_is_read_as_any_other() -> None:
    """The body limits hold for a limit too: 400 for malformed JSON, 415 without the JSON type,
    413 over the cap."""
    async with served(max_body_bytes=100) as (pool, _, client):
        for content in (b"{", b'{"max_running": NaN}', b'{"rate": {"count": 1, "per": 1e999}}'):
            response = await client.put("/api/v1/limits/k", content=content, headers=JSON)
            error_of(response, 400, "malformed_json")
        content = json.dumps({"max_running": 1}).encode()
        response = await client.put("/api/v1/limits/k", content=content)
        error_of(response, 415, "unsupported_media_type")
        big = json.dumps({"max_running": 1, "padding": "x" * 200}).encode()
        response = await client.put("/api/v1/limits/k", content=big, headers=JSON)
        error_of(response, 413, "body_too_large")
        assert await pool.limits() == {}


# -- what the answers hold ------------------------------------------------------------------------


async def test_the_answers_have_the_documented_fields() -> None:
    document = openapi_document(token_required=True, names=["add"], workers=(1, 2))
    schemas = document["components"]["schemas"]
    assert schemas["KeyStats"]["required"] == KEY_FIELDS
    assert schemas["Limit"]["required"] == ["max_running", "rate"]
    assert schemas["Submission"]["properties"]["key"]["maxLength"] == MAX_KEY
    assert "key" in schemas["Job"]["required"]
    paths = document["paths"]
    assert set(paths["/api/v1/limits/{key}"]) == {"get", "put", "delete"}
    put = paths["/api/v1/limits/{key}"]["put"]
    assert set(put["responses"]) == {"200", "400", "401", "403", "408", "413", "415", "422", "503"}
    assert put["security"] == [{"bearer": []}]
    assert paths["/api/v1/limits/{key}"]["delete"]["security"] == [{"bearer": []}]
    assert "security" not in paths["/api/v1/limits"]["get"]
    async with served() as (_, _, client):
        await client.put("/api/v1/limits/k", json={"max_running": 1})
        served_document = (await client.get("/openapi.json")).json()
        assert "security" not in served_document["paths"]["/api/v1/limits/{key}"]["put"]
        listed = (await client.get("/api/v1/limits")).json()
        assert list(listed) == schemas["LimitList"]["required"]
        assert list(listed["keys"][0]) == KEY_FIELDS
        assert list(listed["limits"]["k"]) == schemas["Limit"]["required"]
        deleted = (await client.delete("/api/v1/limits/k")).json()
        assert list(deleted) == schemas["LimitDeleted"]["required"]
        assert deleted["message"] in schemas["LimitDeleted"]["properties"]["message"]["enum"]


async def test_a_durable_pool_keeps_a_limit_set_over_http(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'jobs.db'}"
    async with served(store=store) as (_, _, client):
        body = {"max_running": 2, "rate": {"count": 10, "per": 60}}
        assert (await client.put("/api/v1/limits/tenant:1", json=body)).status_code == 200
        assert (await client.put("/api/v1/limits/gone", json=body)).status_code == 200
        assert (await client.delete("/api/v1/limits/gone")).json()["removed"] is True
    async with served(store=store) as (pool, _, client):
        assert await pool.limits() == {"tenant:1": Limit(2, Rate(10, 60))}
        assert (await client.get("/api/v1/limits")).json()["limits"] == {
            "tenant:1": limit(2, 10, 60)
        }


async def test_a_distributed_pools_limits_are_the_queues(redis_url: str) -> None:
    """Two apps over one Redis queue, a front with no workers and a runner: a limit set
    through the front holds the runner's claims (a key at ``max_running`` 0 keeps its job
    queued while an unkeyed job submitted after it runs), the runner's app lists the limit
    (read from Redis), and deleting it through the runner's app lets the job run."""
    store = f"{redis_url}/0?queue=limits{uuid.uuid4().hex[:12]}"
    jobs = Jobs()
    async with (
        open_job_pool(1, 10, store=store, registry=jobs.registry) as runner,
        open_job_pool(0, 10, store=store, registry=jobs.registry) as front,
    ):
        apps = [create_app(pool, jobs.registry) for pool in (front, runner)]
        async with (
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=apps[0]), base_url="http://front"
            ) as client,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=apps[1]), base_url="http://runner"
            ) as other,
        ):
            assert (await client.put("/api/v1/limits/k", json={"max_running": 0})).json() == {
                "key": "k",
                "running": 0,
                "waiting": 0,
                "limit": limit(0),
            }
            listed = (await other.get("/api/v1/limits")).json()
            assert listed["limits"] == {"k": limit(0)}
            assert [k["key"] for k in listed["keys"]] == ["k"]
            body = {"name": "add", "args": [1, 1], "job_id": "held", "key": "k"}
            assert (await client.post("/api/v1/jobs", json=body)).status_code == 202
            body = {"name": "add", "args": [2, 2], "job_id": "free"}
            assert (await client.post("/api/v1/jobs", json=body)).status_code == 202
            free = (await client.get("/api/v1/jobs/free", params={"wait": 10})).json()
            assert (free["status"], free["result"]) == ("completed", 4)
            assert (await client.get("/api/v1/jobs/held")).json()["status"] == "queued"
            deleted = (await other.delete("/api/v1/limits/k")).json()
            assert deleted["removed"] is True
            held = (await client.get("/api/v1/jobs/held", params={"wait": 10})).json()
            assert (held["status"], held["result"], held["key"]) == ("completed", 2, "k")
            assert (await client.get("/api/v1/limits")).json() == {"limits": {}, "keys": []}
