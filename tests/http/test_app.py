"""The HTTP app in process, through httpx's ASGI transport, on Trio and asyncio: every endpoint
and every error status of docs/service.md."""

from __future__ import annotations

import datetime
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from trio_jobpool import (
    Defer,
    JobHandle,
    JobPool,
    JobRegistry,
    PoolStats,
    current_job,
    open_job_pool,
)
from trio_jobpool.http import create_app
from trio_jobpool.http._openapi import openapi_document

pytestmark = pytest.mark.anyio

TOKEN = "t0ken-with-some-length"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {"Content-Type": "application/json"}


class Jobs:
    """A registry whose jobs the test drives: ``block`` waits for ``release``."""

    def __init__(self) -> None:
        self.registry = JobRegistry()
        self.release = anyio.Event()
        self.started = anyio.Event()  # set when a block job starts
        self.registry.register(self.add, name="add")
        self.registry.register(self.block, name="block")
        self.registry.register(self.fail, name="fail")
        self.registry.register(self.odd_result, name="odd_result")
        self.registry.register(self.bad_repr, name="bad_repr")
        self.registry.register(self.bad_error, name="bad_error")
        self.registry.register(self.defer_once, name="defer_once")

    async def add(self, a: int, b: int) -> int:
        await anyio.lowlevel.checkpoint()
        return a + b

    async def block(self, label: str = "") -> str:
        self.started.set()
        current_job().set_progress(0.25, f"waiting {label}")
        await self.release.wait()
        return label

    async def fail(self, message: str) -> None:
        await anyio.lowlevel.checkpoint()
        raise ValueError(message)

    async def odd_result(self) -> object:
        await anyio.lowlevel.checkpoint()
        return {1, 2}  # JSON cannot hold a set

    async def bad_error(self, size: int = 0) -> None:
        await anyio.lowlevel.checkpoint()
        raise _BadStr() if size == 0 else ValueError("x" * size)

    async def bad_repr(self) -> object:
        await anyio.lowlevel.checkpoint()
        return _BadRepr()

    async def defer_once(self, seconds: float) -> str:
        """Defers its first attempt by ``seconds``; completes its second."""
        await anyio.lowlevel.checkpoint()
        if current_job().attempts == 1:
            raise Defer(seconds)
        return "done"


class _BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("secret internals")


class _BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("secret internals")


@asynccontextmanager
async def served(
    max_workers: int = 2,
    queue_size: int = 2,
    *,
    token: str | None = None,
    store: str | None = None,
    **app_options: Any,
) -> AsyncIterator[tuple[JobPool, Jobs, httpx.AsyncClient]]:
    jobs = Jobs()
    async with open_job_pool(
        max_workers, queue_size, store=store, registry=jobs.registry, shutdown_timeout=0
    ) as pool:
        app = create_app(pool, jobs.registry, token=token, **app_options)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield pool, jobs, client
        jobs.release.set()


def error_of(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"] == code
    assert "Traceback" not in body["message"]
    return str(body["message"])


# -- submitting -----------------------------------------------------------------------------


async def test_submit_runs_the_job_and_get_gives_its_result() -> None:
    async with served() as (pool, _, client):
        response = await client.post("/api/v1/jobs", json={"name": "add", "args": [2, 3]})
        assert response.status_code == 202
        body = response.json()
        assert body["status"] == "queued"
        assert response.headers["location"] == f"/api/v1/jobs/{body['job_id']}"
        job = (await client.get(response.headers["location"], params={"wait": 5})).json()
        assert job["status"] == "completed"
        assert job["result"] == 5
        assert job["name"] == "add"
        assert job["attempts"] == 1
        assert job["error"] is None
        assert job["finished_at"] >= job["started_at"] >= job["submitted_at"]
        assert pool.get(body["job_id"]).status == "completed"


async def test_submit_passes_priority_id_timeout_and_retry() -> None:
    async with served(max_workers=1, queue_size=10) as (pool, jobs, client):
        blocker = await client.post("/api/v1/jobs", json={"name": "block", "job_id": "first"})
        assert blocker.status_code == 202
        body = {
            "name": "fail",
            "args": ["boom"],
            "priority": -3,
            "job_id": "mine",
            "timeout": 30,
            "retry": {"max_attempts": 2, "backoff": 0, "jitter": False},
        }
        assert (await client.post("/api/v1/jobs", json=body)).status_code == 202
        handle = pool.get("mine")
        assert handle.priority == -3
        jobs.release.set()
        await handle.wait()
        job = (await client.get("/api/v1/jobs/mine")).json()
        assert job["status"] == "failed"
        assert job["attempts"] == 2
        assert job["priority"] == -3
        assert job["error"] == {"type": "ValueError", "message": "boom"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "'name'"),
        ({"name": 3}, "'name'"),
        ({"name": "add", "args": {"a": 1}}, "'args'"),
        ({"name": "add", "priority": True}, "'priority'"),
        ({"name": "add", "priority": 1.5}, "'priority'"),
        ({"name": "add", "priority": 1e300}, "'priority'"),
        ({"name": "add", "priority": 2**53}, "'priority'"),
        ({"name": "add", "job_id": ""}, "'job_id'"),
        ({"name": "add", "job_id": "x" * 201}, "'job_id'"),
        ({"name": "add", "job_id": "a/b"}, "'job_id'"),
        ({"name": "add", "job_id": "a\nb"}, "'job_id'"),
        ({"name": "add", "job_id": 7}, "'job_id'"),
        ({"name": "add", "job_id": ".."}, "'job_id'"),
        ({"name": "add", "job_id": "a\ud800b"}, "'job_id'"),
        ({"name": "add", "timeout": 10**400}, "'timeout'"),
        ({"name": "add", "timeout": -1}, "'timeout'"),
        ({"name": "add", "timeout": "60"}, "'timeout'"),
        ({"name": "add", "retry": {"max_attempts": 0}}, "'max_attempts'"),
        ({"name": "add", "retry": {"jitter": "yes"}}, "'jitter'"),
        ({"name": "add", "retry": {"tries": 3}}, "'tries'"),
        ({"name": "add", "retry": []}, "'retry'"),
        ({"name": "add", "colour": "red"}, "'colour'"),
        ([1, 2], "JSON object"),
        ({"name": "add", "delay": -1}, "'delay'"),
        ({"name": "add", "delay": "60"}, "'delay'"),
        ({"name": "add", "delay": True}, "'delay'"),
        ({"name": "add", "delay": 10**400}, "'delay'"),
        ({"name": "add", "at": "2999-12-07T10:00:00"}, "'at' must have a UTC offset"),
        ({"name": "add", "at": "2999-12-07T10:00:00.5"}, "'at' must have a UTC offset"),
        ({"name": "add", "at": "tomorrow"}, "'at'"),
        ({"name": "add", "at": 32503680000}, "'at'"),
        ({"name": "add", "at": "2999-12-07"}, "'at'"),
        ({"name": "add", "at": "2999-12-07 10:00:00Z"}, "'at'"),
        ({"name": "add", "at": "2999-12-07T10:00Z"}, "'at'"),
        ({"name": "add", "at": " 2999-12-07T10:00:00Z"}, "'at'"),
        ({"name": "add", "at": "2999-02-30T10:00:00Z"}, "'at'"),
        ({"name": "add", "at": "2999-12-07T24:00:00Z"}, "'at'"),
        ({"name": "add", "at": "2999-12-07T10:00:00+24:00"}, "'at'"),
        ({"name": "add", "at": "2999-12-07T10:00:00+01:60"}, "'at'"),
        ({"name": "add", "at": "0000-01-01T00:00:00Z"}, "'at'"),
        ({"name": "add", "at": "\uff12999-12-07T10:00:00Z"}, "'at'"),  # (a fullwidth digit)
        ({"name": "add", "delay": 5, "at": "2999-12-07T10:00:00Z"}, "'delay' or 'at'"),
    ],
)
async def test_submit_with_a_bad_field_is_422_and_changes_nothing(body: object, field: str) -> None:
    async with served() as (pool, _, client):
        content = json.dumps(body).encode()  # (ASCII: a lone surrogate as its \u escape)
        response = await client.post("/api/v1/jobs", content=content, headers=JSON)
        message = error_of(response, 422, "invalid")
        assert field in message
        assert pool.stats().total_submitted == 0


@pytest.mark.parametrize(
    "content",
    [b"{", b"", b"\xff\xfe", b'{"name": NaN}', b'{"name": "add", "args": [1e999]}', b"[" * 50_000],
)
async def test_submit_of_malformed_json_is_400(content: bytes) -> None:
    async with served() as (pool, _, client):
        response = await client.post("/api/v1/jobs", content=content, headers=JSON)
        error_of(response, 400, "malformed_json")
        assert pool.stats().total_submitted == 0


async def test_submit_of_an_unregistered_name_is_400() -> None:
    async with served() as (pool, _, client):
        message = error_of(
            await client.post("/api/v1/jobs", json={"name": "rm_rf"}), 400, "unknown_job_name"
        )
        assert "rm_rf" in message
        # A job of the pool's registry that the app was not given cannot be run through it.
        app = create_app(pool, JobRegistry())
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test"
        ) as other:
            response = await other.post("/api/v1/jobs", json={"name": "add", "args": [1, 2]})
            error_of(response, 400, "unknown_job_name")
        assert pool.stats().total_submitted == 0


async def test_any_id_can_be_given_and_found_again() -> None:
    async with served() as (_, _, client):
        job_id = "Ⱥ ü?#%20&"
        response = await client.post(
            "/api/v1/jobs", json={"name": "add", "args": [1, 2], "job_id": job_id}
        )
        assert response.status_code == 202
        assert response.json()["job_id"] == job_id
        location = response.headers["location"]
        assert location == "/api/v1/jobs/%C8%BA%20%C3%BC%3F%23%2520%26"
        assert (await client.get(location)).json()["job_id"] == job_id


async def test_a_duplicate_id_is_409() -> None:
    async with served() as (pool, _, client):
        body = {"name": "block", "job_id": "once"}
        assert (await client.post("/api/v1/jobs", json=body)).status_code == 202
        error_of(await client.post("/api/v1/jobs", json=body), 409, "duplicate_job")
        assert pool.stats().total_submitted == 1


async def test_a_full_queue_is_429_with_retry_after() -> None:
    async with served(max_workers=1, queue_size=1, submit_wait=0.01) as (pool, jobs, client):
        for label in ("running", "waiting"):
            body = {"name": "block", "args": [label]}
            assert (await client.post("/api/v1/jobs", json=body)).status_code == 202
        response = await client.post("/api/v1/jobs", json={"name": "block"})
        error_of(response, 429, "queue_full")
        assert 1 <= int(response.headers["retry-after"]) <= 300
        assert pool.stats().total_submitted == 2
        jobs.release.set()


async def test_a_submit_waits_submit_wait_for_room() -> None:
    async with served(max_workers=1, queue_size=0, submit_wait=30) as (pool, jobs, client):
        assert (await client.post("/api/v1/jobs", json={"name": "block"})).status_code == 202
        answers: list[int] = []

        async def submit() -> None:
            response = await client.post("/api/v1/jobs", json={"name": "add", "args": [1, 1]})
            answers.append(response.status_code)

        async with anyio.create_task_group() as tg:
            tg.start_soon(submit)
            await anyio.wait_all_tasks_blocked()
            assert answers == []  # waiting for room, not refused
            jobs.release.set()
        assert answers == [202]
        assert pool.stats().total_submitted == 2


async def test_a_closed_pool_is_503() -> None:
    async with served() as (pool, _, client):
        pool.close()
        error_of(await client.post("/api/v1/jobs", json={"name": "add"}), 503, "pool_closed")
        response = await client.put("/api/v1/jobs/pool/size", json={"max_workers": 3})
        assert response.status_code in (200, 503)  # closed, not yet stopping: resize allowed
        await pool.stop()
        response = await client.put("/api/v1/jobs/pool/size", json={"max_workers": 3})
        error_of(response, 503, "pool_closed")
        assert (await client.get("/healthz")).status_code == 503


async def test_a_body_over_the_cap_is_413_declared_or_streamed() -> None:
    async with served(max_body_bytes=100) as (pool, jobs, client):
        big = json.dumps({"name": "add", "args": ["x" * 200]}).encode()
        response = await client.post("/api/v1/jobs", content=big, headers=JSON)
        error_of(response, 413, "body_too_large")
        # No Content-Length: counted as it arrives, and the rest is never asked for.
        app = create_app(pool, jobs.registry, max_body_bytes=100)
        status, body, asked = await raw_request(app, "POST", "/api/v1/jobs", [b" " * 60] * 10)
        assert (status, json.loads(body)["error"]) == (413, "body_too_large")
        assert asked == 2
        assert pool.stats().total_submitted == 0


async def raw_request(
    app: Any, method: str, path: str, chunks: list[bytes]
) -> tuple[int, bytes, int]:
    """Call ``app`` as an ASGI server would, with a body in ``chunks`` and no Content-Length;
    return the status, the body and how many chunks the app asked for."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"test"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
    }
    asked = 0
    answer: dict[str, Any] = {"body": b""}

    async def receive() -> dict[str, Any]:
        nonlocal asked
        asked += 1
        if asked > len(chunks):
            await anyio.sleep_forever()  # (a disconnect would come here)
        return {"type": "http.request", "body": chunks[asked - 1], "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        else:
            answer["body"] += message.get("body", b"")

    await app(scope, receive, send)
    return answer["status"], answer["body"], asked


# -- reading jobs ---------------------------------------------------------------------------


async def test_get_of_an_unknown_job_is_404() -> None:
    async with served() as (_, _, client):
        error_of(await client.get("/api/v1/jobs/nobody"), 404, "not_found")


async def test_get_with_wait_returns_when_the_job_ends() -> None:
    async with served() as (_, jobs, client):
        await client.post("/api/v1/jobs", json={"name": "block", "args": ["a"], "job_id": "b"})
        await anyio.wait_all_tasks_blocked()  # (the job has started and said how far it got)
        now = (await client.get("/api/v1/jobs/b", params={"wait": 0})).json()
        assert now["status"] == "running"
        assert now["progress"] == 0.25
        assert now["progress_message"] == "waiting a"
        answer: dict[str, Any] = {}

        async def wait() -> None:
            response = await client.get("/api/v1/jobs/b", params={"wait": 60})
            answer.update(response.json())

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await anyio.wait_all_tasks_blocked()
            assert answer == {}
            jobs.release.set()
        assert answer["status"] == "completed"
        assert answer["result"] == "a"


@pytest.mark.parametrize("wait", ["-1", "61", "soon", "nan"])
async def test_a_bad_wait_is_422(wait: str) -> None:
    async with served() as (_, _, client):
        await client.post("/api/v1/jobs", json={"name": "add", "args": [1, 1], "job_id": "j"})
        error_of(await client.get("/api/v1/jobs/j", params={"wait": wait}), 422, "invalid")


async def test_results_json_cannot_hold_are_given_as_repr() -> None:
    async with served() as (pool, _, client):
        for name in ("odd_result", "bad_repr"):
            response = await client.post("/api/v1/jobs", json={"name": name, "job_id": name})
            assert response.status_code == 202
            await pool.get(name).wait()
        assert (await client.get("/api/v1/jobs/odd_result")).json()["result"] == "{1, 2}"
        # A result whose repr raises is shown by its type, in the job and in the list.
        shown = (await client.get("/api/v1/jobs/bad_repr")).json()["result"]
        assert shown.startswith("<_BadRepr instance at ")
        listed = (await client.get("/api/v1/jobs")).json()["jobs"]
        assert {job["result"] for job in listed} == {"{1, 2}", shown}


async def test_errors_whose_text_is_broken_or_huge_are_shown_bounded() -> None:
    async with served() as (pool, _, client):
        for job_id, args in (("broken", []), ("huge", [2_000_000])):
            body = {"name": "bad_error", "args": args, "job_id": job_id}
            assert (await client.post("/api/v1/jobs", json=body)).status_code == 202
            await pool.get(job_id).wait()
        assert (await client.get("/api/v1/jobs/broken")).json()["error"] == {
            "type": "_BadStr",
            "message": "<_BadStr>",
        }
        huge = (await client.get("/api/v1/jobs/huge")).json()["error"]
        assert huge == {"type": "ValueError", "message": "x" * 1000}
        listed = await client.get("/api/v1/jobs")
        assert listed.status_code == 200
        assert len(listed.content) < 10_000


async def test_a_body_may_start_with_a_byte_order_mark() -> None:
    async with served() as (_, _, client):
        body = b"\xef\xbb\xbf" + b'{"name": "add", "args": [1, 2]}'
        assert (await client.post("/api/v1/jobs", content=body, headers=JSON)).status_code == 202


async def test_an_unexpected_error_is_500_without_details(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(handle: object) -> dict[str, Any]:
        raise RuntimeError("secret internals")

    async with served() as (_, _, client):
        await client.post("/api/v1/jobs", json={"name": "add", "args": [1, 1], "job_id": "r"})
        monkeypatch.setattr("trio_jobpool.http.app._job_json", broken)
        with caplog.at_level(logging.ERROR, logger="trio_jobpool.http"):
            response = await client.get("/api/v1/jobs/r")
        message = error_of(response, 500, "internal")
        assert "secret" not in message
        assert "secret internals" in caplog.text  # the server's log has the traceback


async def test_the_list_gives_running_then_waiting_then_ended_jobs() -> None:
    async with served(max_workers=1, queue_size=10) as (pool, jobs, client):
        await client.post("/api/v1/jobs", json={"name": "add", "args": [1, 1], "job_id": "done"})
        await pool.get("done").wait()
        for job_id in ("run", "wait-1", "wait-2"):
            await client.post("/api/v1/jobs", json={"name": "block", "job_id": job_id})
        listed = (await client.get("/api/v1/jobs")).json()["jobs"]
        assert [(j["job_id"], j["status"]) for j in listed] == [
            ("run", "running"),
            ("wait-2", "queued"),
            ("wait-1", "queued"),
            ("done", "completed"),
        ]
        limited = (await client.get("/api/v1/jobs", params={"limit": 2})).json()["jobs"]
        assert [j["job_id"] for j in limited] == ["run", "wait-2"]
        for limit in ("0", "501", "x"):
            response = await client.get("/api/v1/jobs", params={"limit": limit})
            error_of(response, 422, "invalid")
        jobs.release.set()


# -- later jobs ----------------------------------------------------------------------------


async def test_a_job_with_a_delay_is_scheduled_then_runs_when_due() -> None:
    async with served() as (pool, _, client):
        response = await client.post(
            "/api/v1/jobs", json={"name": "add", "args": [1, 2], "job_id": "later", "delay": 3600}
        )
        assert response.status_code == 202
        body = response.json()
        assert list(body) == ["job_id", "status", "scheduled_for"]
        assert (body["job_id"], body["status"]) == ("later", "scheduled")
        # (the pool's wall clock is time.time() when it opened, moved on by its own clock)
        assert body["scheduled_for"] == pytest.approx(time.time() + 3600, abs=1)
        assert response.headers["location"] == "/api/v1/jobs/later"
        job = (await client.get("/api/v1/jobs/later")).json()
        assert (job["status"], job["scheduled_for"]) == ("scheduled", body["scheduled_for"])
        assert (job["attempts"], job["started_at"], job["result"]) == (0, None, None)
        assert (await client.get("/api/v1/jobs/pool/stats")).json()["scheduled_tasks"] == 1

        soon = {"name": "add", "args": [2, 3], "job_id": "soon", "delay": 0.05}
        assert (await client.post("/api/v1/jobs", json=soon)).json()["status"] == "scheduled"
        done = (await client.get("/api/v1/jobs/soon", params={"wait": 10})).json()
        assert (done["status"], done["result"]) == ("completed", 5)
        assert done["started_at"] >= done["scheduled_for"] > done["submitted_at"]
        stats = pool.stats()
        assert (stats.scheduled_tasks, stats.total_completed) == (1, 1)


async def test_cancel_of_a_scheduled_job() -> None:
    async with served() as (pool, _, client):
        body = {"name": "add", "args": [1, 2], "job_id": "later", "delay": 3600}
        assert (await client.post("/api/v1/jobs", json=body)).status_code == 202
        response = await client.post("/api/v1/jobs/later/cancel")
        assert response.json() == {"message": "job cancelled", "job_id": "later"}
        job = (await client.get("/api/v1/jobs/later")).json()
        assert (job["status"], job["attempts"]) == ("cancelled", 0)
        assert job["error"]["type"] == "JobCancelled"
        assert job["scheduled_for"] is not None  # when it was due
        error_of(await client.post("/api/v1/jobs/later/cancel"), 409, "job_ended")
        stats = pool.stats()
        assert (stats.scheduled_tasks, stats.total_cancelled) == (0, 1)
        # Its id is free again.
        assert (await client.post("/api/v1/jobs", json=body)).status_code == 202


async def test_at_names_an_instant_with_its_offset() -> None:
    async with served(max_workers=1, queue_size=10) as (pool, _, client):
        due = datetime.datetime.now(datetime.UTC).replace(microsecond=0) + datetime.timedelta(
            hours=2
        )
        plus_one = due.astimezone(datetime.timezone(datetime.timedelta(hours=1)))
        spellings = {
            "z": due.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "lower": due.strftime("%Y-%m-%dt%H:%M:%Sz"),
            "offset": plus_one.isoformat(),  # 2026-12-07T11:00:00+01:00
            "fraction": due.strftime("%Y-%m-%dT%H:%M:%S.250000123Z"),
        }
        for job_id, at in spellings.items():
            body = {"name": "add", "args": [1, 1], "job_id": job_id, "at": at}
            response = await client.post("/api/v1/jobs", json=body)
            assert response.status_code == 202, response.text
            assert response.json()["status"] == "scheduled"
        for job_id in ("z", "lower", "offset"):
            scheduled = (await client.get(f"/api/v1/jobs/{job_id}")).json()["scheduled_for"]
            assert scheduled == pytest.approx(due.timestamp(), abs=1e-3), job_id
        fraction = (await client.get("/api/v1/jobs/fraction")).json()["scheduled_for"]
        assert fraction == pytest.approx(due.timestamp() + 0.25, abs=1e-3)
        # A leap second is the first second of the next minute.
        leap = {"name": "add", "args": [1, 1], "job_id": "leap", "at": "2999-12-31T23:59:60Z"}
        assert (await client.post("/api/v1/jobs", json=leap)).status_code == 202
        expected = datetime.datetime(3000, 1, 1, tzinfo=datetime.UTC).timestamp()
        leaped = (await client.get("/api/v1/jobs/leap")).json()["scheduled_for"]
        assert leaped == pytest.approx(expected, abs=1e-3)
        assert pool.stats().scheduled_tasks == 5


async def test_a_time_not_in_the_future_submits_at_once() -> None:
    async with served() as (pool, _, client):
        past = "2001-02-03T04:05:06+07:00"
        for job_id, when in (("past", {"at": past}), ("zero", {"delay": 0}), ("null", {})):
            body = {"name": "add", "args": [1, 1], "job_id": job_id, "delay": None, "at": None}
            response = await client.post("/api/v1/jobs", json={**body, **when})
            assert response.json() == {"job_id": job_id, "status": "queued"}
            job = (await client.get(f"/api/v1/jobs/{job_id}", params={"wait": 10})).json()
            assert (job["status"], job["scheduled_for"]) == ("completed", None)
        assert pool.stats().total_completed == 3


async def test_a_scheduled_submit_is_never_429() -> None:
    async with served(max_workers=1, queue_size=1, submit_wait=0.01) as (pool, jobs, client):
        for label in ("running", "waiting"):
            body = {"name": "block", "args": [label]}
            assert (await client.post("/api/v1/jobs", json=body)).status_code == 202
        error_of(await client.post("/api/v1/jobs", json={"name": "block"}), 429, "queue_full")
        at = (datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)).isoformat()
        for when in ({"delay": 3600}, {"at": at}):
            response = await client.post("/api/v1/jobs", json={"name": "block", **when})
            assert (response.status_code, response.json()["status"]) == (202, "scheduled")
        stats = pool.stats()
        assert (stats.total_submitted, stats.queued_tasks, stats.scheduled_tasks) == (4, 1, 2)
        jobs.release.set()


async def test_the_list_filters_the_scheduled_jobs_earliest_due_first() -> None:
    async with served(max_workers=1, queue_size=10) as (_, jobs, client):
        await client.post("/api/v1/jobs", json={"name": "block", "job_id": "run"})
        for job_id, delay in (("c", 300), ("a", 100), ("gone", 50), ("b", 200)):
            body = {"name": "add", "args": [1, 1], "job_id": job_id, "delay": delay}
            assert (await client.post("/api/v1/jobs", json=body)).status_code == 202
        await client.post("/api/v1/jobs/gone/cancel")
        await client.post("/api/v1/jobs", json={"name": "add", "args": [0, 0], "job_id": "wait"})
        listed = (await client.get("/api/v1/jobs", params={"status": "scheduled"})).json()
        assert [(j["job_id"], j["status"]) for j in listed["jobs"]] == [
            ("a", "scheduled"),
            ("b", "scheduled"),
            ("c", "scheduled"),
        ]
        due = [j["scheduled_for"] for j in listed["jobs"]]
        assert due == sorted(due)
        first = await client.get("/api/v1/jobs", params={"status": "scheduled", "limit": 2})
        assert [j["job_id"] for j in first.json()["jobs"]] == ["a", "b"]
        # The recent jobs hold them too, as live jobs (newest first after the running one).
        recent = (await client.get("/api/v1/jobs")).json()["jobs"]
        assert [(j["job_id"], j["status"]) for j in recent[:5]] == [
            ("run", "running"),
            ("wait", "queued"),
            ("b", "scheduled"),
            ("a", "scheduled"),
            ("c", "scheduled"),
        ]
        for status in ("queued", "SCHEDULED", "", "scheduled,queued"):
            response = await client.get("/api/v1/jobs", params={"status": status})
            assert "'status'" in error_of(response, 422, "invalid")
        response = await client.get("/api/v1/jobs", params={"status": "scheduled", "limit": 0})
        error_of(response, 422, "invalid")
        jobs.release.set()


async def test_a_deferred_job_shows_as_scheduled_again() -> None:
    async with served() as (pool, _, client):
        body = {"name": "defer_once", "args": [3600], "job_id": "d"}
        assert (await client.post("/api/v1/jobs", json=body)).json()["status"] == "queued"
        await anyio.wait_all_tasks_blocked()  # (its first attempt has run and deferred)
        job = (await client.get("/api/v1/jobs/d")).json()
        assert (job["status"], job["attempts"], job["error"]) == ("scheduled", 1, None)
        assert job["scheduled_for"] == pytest.approx(time.time() + 3600, abs=60)
        listed = (await client.get("/api/v1/jobs", params={"status": "scheduled"})).json()
        assert [j["job_id"] for j in listed["jobs"]] == ["d"]
        assert pool.stats().scheduled_tasks == 1


async def test_the_job_json_has_the_documented_fields() -> None:
    document = openapi_document(token_required=False, names=["add"], workers=(1, 2))
    schemas = document["components"]["schemas"]
    async with served() as (_, _, client):
        body = {"name": "add", "args": [1, 1], "job_id": "j", "delay": 60}
        accepted = (await client.post("/api/v1/jobs", json=body)).json()
        assert set(accepted) == set(schemas["Accepted"]["properties"])
        job = (await client.get("/api/v1/jobs/j")).json()
        assert list(job) == schemas["Job"]["required"]
        assert job["status"] in schemas["Job"]["properties"]["status"]["enum"]
    submission = schemas["Submission"]["properties"]
    assert submission["delay"]["minimum"] == 0
    assert submission["at"]["format"] == "date-time"
    parameters = document["paths"]["/api/v1/jobs"]["get"]["parameters"]
    assert {p["name"]: p["schema"].get("enum") for p in parameters} == {
        "limit": None,
        "status": ["scheduled"],
    }


# -- cancelling -----------------------------------------------------------------------------


async def test_cancel_of_running_and_waiting_jobs_then_404_and_409() -> None:
    async with served(max_workers=1, queue_size=5) as (pool, _, client):
        for job_id in ("running", "waiting"):
            await client.post("/api/v1/jobs", json={"name": "block", "job_id": job_id})
        for job_id in ("waiting", "running"):
            response = await client.post(f"/api/v1/jobs/{job_id}/cancel")
            assert response.status_code == 200
            assert response.json() == {"message": "job cancelled", "job_id": job_id}
            await pool.get(job_id).wait()
            job = (await client.get(f"/api/v1/jobs/{job_id}")).json()
            assert job["status"] == "cancelled"
            assert job["error"]["type"] == "JobCancelled"
        assert pool.get("waiting").attempts == 0
        message = error_of(await client.post("/api/v1/jobs/running/cancel"), 409, "job_ended")
        assert "cancelled" in message
        error_of(await client.post("/api/v1/jobs/ghost/cancel"), 404, "not_found")


# -- the pool -------------------------------------------------------------------------------


async def test_stats_are_the_pools_own() -> None:
    async with served() as (pool, jobs, client):
        await client.post("/api/v1/jobs", json={"name": "block"})
        await client.post("/api/v1/jobs", json={"name": "add", "args": [1, 2]})
        await anyio.wait_all_tasks_blocked()
        body = (await client.get("/api/v1/jobs/pool/stats")).json()
        assert body == pool.stats().as_dict()
        assert list(body) == list(PoolStats.__dataclass_fields__)
        cluster = await client.get("/api/v1/jobs/pool/stats", params={"cluster": "true"})
        assert cluster.json() == body  # a pool in memory is its own cluster
        bad = await client.get("/api/v1/jobs/pool/stats", params={"cluster": "maybe"})
        error_of(bad, 422, "invalid")
        jobs.release.set()


async def test_resize_changes_the_pool_and_bad_sizes_are_refused() -> None:
    async with served() as (pool, _, client):
        response = await client.put("/api/v1/jobs/pool/size", json={"max_workers": 7})
        assert response.status_code == 200
        assert response.json() == {"max_workers": 7}
        assert pool.max_workers == 7
        too_many = {"max_workers": 1025}  # (max_workers_limit: each worker is a task)
        for body in (
            {"max_workers": 0},
            {"max_workers": -1},
            {"max_workers": "8"},
            too_many,
            {},
            [8],
        ):
            response = await client.put("/api/v1/jobs/pool/size", json=body)
            error_of(response, 422, "invalid")
        bad = await client.put("/api/v1/jobs/pool/size", content=b"{", headers=JSON)
        error_of(bad, 400, "malformed_json")
        assert pool.max_workers == 7


async def test_info_and_health() -> None:
    async with served(token=TOKEN) as (_, _, client):
        info = (await client.get("/api/v1/jobs/pool/info")).json()
        assert info["names"] == [
            "add",
            "bad_error",
            "bad_repr",
            "block",
            "defer_once",
            "fail",
            "odd_result",
        ]
        assert info["store"] == "memory://"
        assert info["token_required"] is True
        assert info["closed"] is False
        health = await client.get("/healthz")
        assert (health.status_code, health.json()) == (200, {"status": "ok"})


async def test_unknown_paths_and_methods() -> None:
    async with served() as (_, _, client):
        error_of(await client.get("/api/v2/jobs"), 404, "not_found")
        error_of(await client.get("/api/v1/jobs/"), 404, "not_found")  # not a redirect
        response = await client.delete("/api/v1/jobs/pool/size")
        error_of(response, 405, "method_not_allowed")
        assert response.headers["allow"] == "PUT"


# -- the token ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}x"},
    ],
)
async def test_changes_need_the_token(headers: dict[str, str]) -> None:
    async with served(token=TOKEN) as (pool, _, client):
        requests: list[Callable[[], Any]] = [
            lambda: client.post("/api/v1/jobs", json={"name": "add"}, headers=headers),
            lambda: client.post("/api/v1/jobs/x/cancel", headers=headers),
            lambda: client.put("/api/v1/jobs/pool/size", json={"max_workers": 9}, headers=headers),
        ]
        for request in requests:
            response = await request()
            error_of(response, 401, "unauthorized")
            assert response.headers["www-authenticate"] == "Bearer"
        assert pool.stats().total_submitted == 0
        assert pool.max_workers == 2
        # Reading needs no token.
        assert (await client.get("/api/v1/jobs/pool/stats")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200


async def test_the_token_lets_changes_through() -> None:
    async with served(token=TOKEN) as (pool, _, client):
        body = {"name": "block", "job_id": "j"}
        assert (await client.post("/api/v1/jobs", json=body, headers=AUTH)).status_code == 202
        assert (await client.post("/api/v1/jobs/j/cancel", headers=AUTH)).status_code == 200
        response = await client.put("/api/v1/jobs/pool/size", json={"max_workers": 4}, headers=AUTH)
        assert response.status_code == 200
        assert pool.max_workers == 4


def test_create_app_checks_its_arguments() -> None:
    registry = JobRegistry()
    with pytest.raises(TypeError, match="pool"):
        create_app(object(), registry)  # type: ignore[arg-type]

    async def check() -> None:
        async with open_job_pool(1) as pool:
            with pytest.raises(TypeError, match="registry"):
                create_app(pool, {})  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="token"):
                create_app(pool, registry, token="")
            with pytest.raises(ValueError, match="max_body_bytes"):
                create_app(pool, registry, max_body_bytes=0)
            for wait in (0, -1, float("nan"), float("inf"), True, "1"):
                with pytest.raises(ValueError, match="submit_wait"):
                    create_app(pool, registry, submit_wait=wait)  # type: ignore[arg-type]  # (True, "1")
            with pytest.raises(ValueError, match="max_workers_limit"):
                create_app(pool, registry, max_workers_limit=0)

    anyio.run(check)


# -- what a browser may be made to send --------------------------------------------------------


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
async def test_a_body_not_declared_json_is_415(content_type: str | None) -> None:
    # A page of another site can POST these without the browser asking the server first.
    async with served() as (pool, _, client):
        headers = {} if content_type is None else {"Content-Type": content_type}
        body = b'{"name": "add", "args": [1, 2]}'
        response = await client.post("/api/v1/jobs", content=body, headers=headers)
        error_of(response, 415, "unsupported_media_type")
        resize = await client.put("/api/v1/jobs/pool/size", content=b'{"max_workers": 9}')
        error_of(resize, 415, "unsupported_media_type")
        ok = {"Content-Type": "application/json; charset=utf-8"}
        assert (await client.post("/api/v1/jobs", content=body, headers=ok)).status_code == 202
        assert pool.stats().total_submitted == 1


async def test_changes_from_a_page_of_another_origin_are_403() -> None:
    async with served(token=TOKEN) as (pool, _, client):
        await client.post("/api/v1/jobs", json={"name": "block", "job_id": "b"}, headers=AUTH)
        for origin in ("http://evil.example", "http://test.evil.example", "null"):
            headers = {**AUTH, "Origin": origin}
            response = await client.post("/api/v1/jobs/b/cancel", headers=headers)
            error_of(response, 403, "cross_origin")
        assert pool.get("b").status == "running"
        malformed = {**AUTH, "Origin": "http://[x"}
        error_of(await client.post("/api/v1/jobs/b/cancel", headers=malformed), 403, "cross_origin")
        # The dashboard's own requests come from the same origin (a default port written or
        # not, the host in any case).
        for origin, host in (("http://test", "test"), ("http://TEST", "test:80")):
            same = {**AUTH, "Origin": origin, "Host": host}
            response = await client.post("/api/v1/jobs/b/cancel", headers=same)
            assert response.status_code in (200, 409), response.text  # (409: the first ended it)
        # Reading is not refused (a browser keeps other origins from reading the answer).
        response = await client.get("/api/v1/jobs/b", headers={"Origin": "http://evil.example"})
        assert response.status_code == 200


async def test_allowed_hosts_refuse_other_host_headers() -> None:
    # DNS rebinding: a page of evil.example whose name now points at 127.0.0.1.
    jobs = Jobs()
    async with open_job_pool(1, registry=jobs.registry) as pool:
        app = create_app(pool, jobs.registry, allowed_hosts=["localhost", "127.0.0.1", "::1"])
        transport = httpx.ASGITransport(app=app)
        for base, status in (
            ("http://127.0.0.1:8000", 200),
            ("http://localhost", 200),
            ("http://[::1]:8000", 200),
            ("http://LOCALHOST:1", 200),
            ("http://evil.example:8000", 400),
            ("http://127.0.0.1.evil.example", 400),
        ):
            async with httpx.AsyncClient(transport=transport, base_url=base) as client:
                response = await client.get("/api/v1/jobs/pool/stats")
                assert response.status_code == status, base
                if status == 400:
                    error_of(response, 400, "bad_host")
        with pytest.raises(ValueError, match="allowed_hosts"):
            create_app(pool, jobs.registry, allowed_hosts=[])
        with pytest.raises(ValueError, match="without a port"):
            create_app(pool, jobs.registry, allowed_hosts=["localhost:8000"])


async def test_the_bearer_scheme_is_case_insensitive() -> None:
    async with served(token=TOKEN) as (_, _, client):
        for scheme in ("Bearer", "bearer", "BEARER"):
            headers = {"Authorization": f"{scheme} {TOKEN}"}
            response = await client.put(
                "/api/v1/jobs/pool/size", json={"max_workers": 3}, headers=headers
            )
            assert response.status_code == 200, scheme


# -- stores ---------------------------------------------------------------------------------


async def test_a_durable_pool_serves_jobs_of_an_earlier_run(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'jobs.db'}"
    async with served(store=store) as (_, _, client):
        response = await client.post(
            "/api/v1/jobs", json={"name": "fail", "args": ["kept"], "job_id": "f"}
        )
        assert response.status_code == 202
        assert (await client.get("/api/v1/jobs/f", params={"wait": 10})).json()["status"] == (
            "failed"
        )
    async with (
        served(store=store, history=0) if False else served(store=store) as (
            _,
            _,
            client,
        )
    ):
        job = (await client.get("/api/v1/jobs/f")).json()
        assert job["status"] == "failed"
        assert job["error"] == {"type": "ValueError", "message": "kept"}
        assert job["name"] == "fail"
        error_of(await client.post("/api/v1/jobs/f/cancel"), 409, "job_ended")
        info = (await client.get("/api/v1/jobs/pool/info")).json()
        assert info["store"] == store


async def test_a_durable_pool_schedules_through_the_app(tmp_path: Path) -> None:
    # (a durable submit goes through `await pool.submit`, not submit_nowait)
    async with served(store=f"sqlite:///{tmp_path / 'jobs.db'}") as (pool, _, client):
        for job_id, delay in (("later", 3600), ("soon", 0.05)):
            body = {"name": "add", "args": [1, 2], "job_id": job_id, "delay": delay}
            response = await client.post("/api/v1/jobs", json=body)
            assert (response.status_code, response.json()["status"]) == (202, "scheduled")
        done = (await client.get("/api/v1/jobs/soon", params={"wait": 10})).json()
        assert (done["status"], done["result"]) == ("completed", 3)
        listed = (await client.get("/api/v1/jobs", params={"status": "scheduled"})).json()
        assert [j["job_id"] for j in listed["jobs"]] == ["later"]
        assert (await client.post("/api/v1/jobs/later/cancel")).status_code == 200
        assert (await client.get("/api/v1/jobs/later")).json()["status"] == "cancelled"
        assert pool.stats().scheduled_tasks == 0


async def test_a_distributed_pool_through_the_app(redis_url: str) -> None:
    store = f"{redis_url}/0?queue=http{uuid.uuid4().hex[:12]}"
    async with served(store=store) as (pool, _, client):
        body = {"name": "add", "args": [20, 22], "job_id": "d1"}
        assert (await client.post("/api/v1/jobs", json=body)).status_code == 202
        job = (await client.get("/api/v1/jobs/d1", params={"wait": 10})).json()
        assert (job["status"], job["result"]) == ("completed", 42)
        await client.post("/api/v1/jobs", json={"name": "block", "job_id": "d2"})
        assert (await client.post("/api/v1/jobs/d2/cancel")).status_code == 200
        await pool.get("d2").wait()
        error_of(await client.post("/api/v1/jobs/d2/cancel"), 409, "job_ended")
        error_of(await client.post("/api/v1/jobs/d3/cancel"), 404, "not_found")
        stats = (await client.get("/api/v1/jobs/pool/stats", params={"cluster": "true"})).json()
        assert stats["total_completed"] >= 1
        response = await client.put("/api/v1/jobs/pool/size", json={"max_workers": 3})
        assert response.json() == {"max_workers": 3}
        assert pool.max_workers == 3


async def test_wait_follows_a_job_of_another_process(redis_url: str) -> None:
    # The app's pool neither submitted nor runs the job: ?wait reads it again until it ends.
    store = f"{redis_url}/0?queue=http{uuid.uuid4().hex[:12]}"
    jobs = Jobs()
    async with (
        open_job_pool(1, 10, store=store, registry=jobs.registry) as runner,
        open_job_pool(0, 10, store=store, registry=jobs.registry) as submitter,
        open_job_pool(0, 10, store=store, registry=jobs.registry) as front,
    ):
        handle: JobHandle[str] = await submitter.submit("block", "far", job_id="far")
        app = create_app(front, jobs.registry)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test"
        ) as client:
            answer: dict[str, Any] = {}

            async def wait() -> None:
                response = await client.get("/api/v1/jobs/far", params={"wait": 30})
                answer.update(response.json())

            async with anyio.create_task_group() as tg:
                tg.start_soon(wait)
                with anyio.fail_after(10):  # (the runner claims it over Redis)
                    await jobs.started.wait()
                assert answer == {}
                jobs.release.set()
            assert (answer["status"], answer["result"]) == ("completed", "far")
        assert await handle.result() == "far"
        assert runner.stats().total_completed == 1


# -- headers that would get around the checks ---------------------------------------------------


async def test_a_host_with_userinfo_is_refused() -> None:
    # urlsplit reads "evil.example@127.0.0.1" as userinfo "evil.example" and host 127.0.0.1.
    jobs = Jobs()
    async with open_job_pool(1, registry=jobs.registry) as pool:
        app = create_app(pool, jobs.registry, allowed_hosts=["localhost", "127.0.0.1", "::1"])
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            for host in (
                "evil.example@127.0.0.1",
                "evil.example@127.0.0.1:8000",
                "evil.example:x@localhost",
                "127.0.0.1/evil.example",
                "127.0.0.1#@evil.example",
                "127.0.0.1\\@evil.example",
            ):
                response = await client.get("/api/v1/jobs/pool/stats", headers={"Host": host})
                assert "malformed Host" in error_of(response, 400, "bad_host"), host
                body = {"name": "add", "args": [1, 2]}
                response = await client.post("/api/v1/jobs", json=body, headers={"Host": host})
                error_of(response, 400, "bad_host")
            assert pool.stats().total_submitted == 0
            two = [("Host", "127.0.0.1"), ("Host", "evil.example")]  # (RFC 9112, 3.2)
            response = await client.get("/api/v1/jobs/pool/stats", headers=two)
            assert "'host'" in error_of(response, 400, "duplicate_header")
            for host in ("127.0.0.1:8000", "[::1]:80", "LOCALHOST"):
                response = await client.get("/api/v1/jobs/pool/stats", headers={"Host": host})
                assert response.status_code == 200, host
    # Without allowed_hosts a malformed Host is refused too (RFC 9112, 3.2), not trusted by
    # the same-origin check.
    async with served() as (pool, _, client):
        headers = {"Host": "evil.example@test", "Origin": "http://test"}
        response = await client.post("/api/v1/jobs", json={"name": "add"}, headers=headers)
        error_of(response, 400, "bad_host")
        assert pool.stats().total_submitted == 0
        assert (await client.get("/healthz")).status_code == 200


@pytest.mark.parametrize("first", [f"Bearer {TOKEN}", "Bearer wrong"])
async def test_two_authorization_headers_are_refused(first: str) -> None:
    # Only the first was compared: a proxy that adds its own header (or a client that sends
    # the token next to another) must not get a request through on the wrong one.
    async with served(token=TOKEN) as (pool, _, client):
        two = [("Authorization", first), ("Authorization", f"Bearer {TOKEN}x")]
        requests: list[Callable[[], Any]] = [
            lambda: client.post("/api/v1/jobs", json={"name": "add"}, headers=two),
            lambda: client.post("/api/v1/jobs/x/cancel", headers=two),
            lambda: client.put("/api/v1/jobs/pool/size", json={"max_workers": 9}, headers=two),
            lambda: client.get("/api/v1/jobs/pool/stats", headers=two),
        ]
        for request in requests:
            message = error_of(await request(), 400, "duplicate_header")
            assert "'authorization'" in message
        assert pool.stats().total_submitted == 0
        assert pool.max_workers == 2
        metrics = (await client.get("/metrics")).text
        assert 'jobpool_http_rejected_total{reason="duplicate_header"} 1.0' in metrics
        # One header, as before.
        one = {"Authorization": f"Bearer {TOKEN}"}
        response = await client.post("/api/v1/jobs", json={"name": "add"}, headers=one)
        assert response.status_code == 202
    async with served() as (pool, _, client):  # no token: still one header at most
        two = [("Authorization", "Bearer a"), ("Authorization", "Bearer b")]
        response = await client.post("/api/v1/jobs", json={"name": "add"}, headers=two)
        error_of(response, 400, "duplicate_header")
        assert pool.stats().total_submitted == 0
