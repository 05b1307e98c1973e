"""The dashboard's page as the app serves it, in process: the answers of the first round are
in it (trio_jobpool/http/_dashboard.py), as a JSON data block no job id can break out of."""

from __future__ import annotations

import html.parser
import json
from typing import Any

import anyio
import httpx
import pytest

from trio_jobpool import JobRegistry, Rate, open_job_pool
from trio_jobpool.http import create_app
from trio_jobpool.http._dashboard import FIRST_JOBS, NEXT_DUE, dashboard_bytes

pytestmark = pytest.mark.anyio

# An id that would end the data block, open a comment or an entity, were it written as is.
NASTY_ID = "</script><script>alert(1)</script><!-- &amp; \u2028 ü"


class _Scripts(html.parser.HTMLParser):
    """The ``<script>`` elements of a page: their attributes and text."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self._open: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self._open = dict(attrs)
            self.scripts.append((self._open, ""))

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._open = None


def first_round(page: str) -> Any:
    parser = _Scripts()
    parser.feed(page)
    blocks = [text for attrs, text in parser.scripts if attrs.get("id") == "first-round"]
    assert len(blocks) == 1, parser.scripts
    # Everything else is the page's own script, by URL: nothing the server put in runs.
    others = [attrs for attrs, _ in parser.scripts if attrs.get("id") != "first-round"]
    assert others == [{"src": "static/dashboard.js", "defer": None}]
    return json.loads(blocks[0])


async def test_the_page_carries_its_first_round() -> None:
    registry = JobRegistry()

    @registry.job(name="echo")
    async def echo(value: str) -> str:
        await anyio.lowlevel.checkpoint()
        return value

    async with open_job_pool(2, 10, registry=registry) as pool:
        app = create_app(pool, registry, token="a-token-of-some-length")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            empty = await client.get("/")
            assert empty.status_code == 200
            assert empty.headers["content-type"] == "text/html; charset=utf-8"
            assert "script-src 'self'" in empty.headers["content-security-policy"]
            data = first_round(empty.text)
            assert data["jobs"] == []
            assert data["scheduled"] == []
            assert data["schedules"] == []
            assert data["stats"]["total_submitted"] == 0
            assert data["info"]["token_required"] is True

            generated = await pool.submit(echo, "plain")
            nasty = await pool.submit(echo, NASTY_ID, job_id=NASTY_ID)
            await generated.wait()
            await nasty.wait()
            page = (await client.get("/")).text
            assert "</script><script>alert" not in page
            assert "<!--" not in page.split('id="first-round"')[1]
            data = first_round(page)
            api = {
                "info": (await client.get("/api/v1/jobs/pool/info")).json(),
                "stats": (await client.get("/api/v1/jobs/pool/stats")).json(),
                "jobs": (await client.get(f"/api/v1/jobs?limit={FIRST_JOBS}")).json()["jobs"],
            }
            assert data["info"] == api["info"]
            assert data["jobs"] == api["jobs"]
            assert {job["job_id"] for job in data["jobs"]} == {generated.job_id, NASTY_ID}
            assert [job["result"] for job in data["jobs"] if job["job_id"] == NASTY_ID] == [
                NASTY_ID
            ]
            for key in ("total_submitted", "total_completed", "max_workers", "queued_tasks"):
                assert data["stats"][key] == api["stats"][key]
            assert data["scheduled"] == []


async def test_the_first_round_holds_the_next_due_jobs() -> None:
    registry = JobRegistry()

    @registry.job(name="echo")
    async def echo(value: str) -> str:
        await anyio.lowlevel.checkpoint()
        return value

    async with open_job_pool(2, 10, registry=registry, shutdown_timeout=0) as pool:
        app = create_app(pool, registry)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            # Submitted latest due first: the page lists the NEXT_DUE earliest, in due order.
            for n in range(NEXT_DUE + 2, 0, -1):
                await pool.submit(echo, "later", job_id=f"due-{n}", delay=60 * n)
            await pool.submit(echo, NASTY_ID, job_id=NASTY_ID, delay=1)
            data = first_round((await client.get("/")).text)
            api = await client.get(f"/api/v1/jobs?status=scheduled&limit={NEXT_DUE}")
            assert data["scheduled"] == api.json()["jobs"]
            assert [job["job_id"] for job in data["scheduled"]] == [
                NASTY_ID,
                *(f"due-{n}" for n in range(1, NEXT_DUE)),
            ]
            assert data["stats"]["scheduled_tasks"] == NEXT_DUE + 3


async def test_the_first_round_holds_the_schedules() -> None:
    """As ``GET api/v1/schedules`` lists them (with what the pause toggle declares again), and
    a name that would end the data block stays inside it."""
    registry = JobRegistry()

    @registry.job(name="echo")
    async def echo(value: str) -> str:
        await anyio.lowlevel.checkpoint()
        return value

    async with open_job_pool(2, 10, registry=registry) as pool:
        app = create_app(pool, registry)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            await pool.schedule(NASTY_ID, echo, "x", cron="30 2 * * *", tz="Europe/Berlin")
            await pool.schedule("hourly", echo, "y", every=3600, paused=True, priority=2)
            page = (await client.get("/")).text
            assert "</script><script>alert" not in page
            data = first_round(page)
            api = (await client.get("/api/v1/schedules")).json()
            assert data["schedules"] == api["schedules"]
            assert [s["name"] for s in data["schedules"]] == sorted([NASTY_ID, "hourly"])
            hourly = next(s for s in data["schedules"] if s["name"] == "hourly")
            assert (hourly["job_name"], hourly["args"], hourly["every"]) == ("echo", ["y"], 3600)
            assert (hourly["paused"], hourly["priority"]) == (True, 2)


async def test_the_first_round_holds_the_limits() -> None:
    """As ``GET api/v1/limits`` gives them: the keys' own limits and the limited keys with
    their counts; a key (set in code) that would end the data block stays inside it."""
    registry = JobRegistry()

    @registry.job(name="echo")
    async def echo(value: str) -> str:
        await anyio.lowlevel.checkpoint()
        return value

    async with open_job_pool(2, 10, registry=registry) as pool:
        app = create_app(pool, registry)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            data = first_round((await client.get("/")).text)
            assert data["limits"] == {"limits": {}, "keys": []}
            await pool.set_limit(NASTY_ID, max_running=0)
            await pool.set_limit("api", rate=Rate(10, 60))
            held = await pool.submit(echo, "held", key=NASTY_ID)
            page = (await client.get("/")).text
            assert "</script><script>alert" not in page
            data = first_round(page)
            api = (await client.get("/api/v1/limits")).json()
            assert data["limits"] == api
            assert [k["key"] for k in data["limits"]["keys"]] == sorted([NASTY_ID, "api"])
            nasty = next(k for k in data["limits"]["keys"] if k["key"] == NASTY_ID)
            assert (nasty["running"], nasty["waiting"], nasty["limit"]) == (
                0,
                1,
                {"max_running": 0, "rate": None},
            )
            await pool.set_limit(NASTY_ID)
            await held.wait()


def test_the_shipped_page_has_an_empty_data_block() -> None:
    """Served by anything but the app, the block holds ``null``: the page polls at once."""
    page = dashboard_bytes("index.html").decode()
    assert first_round(page) is None


def test_the_page_asks_for_as_many_jobs_as_it_is_given() -> None:
    script = dashboard_bytes("dashboard.js").decode()
    assert f"const JOBS_LIMIT = {FIRST_JOBS};" in script
    assert f"const DUE_LIMIT = {NEXT_DUE};" in script
