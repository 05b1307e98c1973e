"""The app mounted under a prefix, its 405 answers, ``?cluster=`` and the ``/docs`` page.

In process through httpx's ASGI transport (Trio and asyncio), mounted with Starlette's
``Mount`` (FastAPI is not a test dependency: its ``mount`` is Starlette's); then once under a
real Uvicorn server (tests/http/_mounted_app.py), as a client on another host sees it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from tests.servers import free_port
from trio_jobpool import JobRegistry, open_job_pool
from trio_jobpool.http import create_app
from trio_jobpool.http._reference import SWAGGER_UI_FILES

ROOT = Path(__file__).resolve().parent.parent.parent
TOKEN = "mount-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def registry() -> JobRegistry:
    jobs = JobRegistry()

    @jobs.job(name="add")
    async def add(a: int, b: int) -> int:
        await anyio.lowlevel.checkpoint()
        return a + b

    return jobs


@asynccontextmanager
async def client_of(prefix: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app, mounted at ``prefix`` in a Starlette app ("": not mounted)."""
    jobs = registry()
    async with open_job_pool(2, 10, registry=jobs, shutdown_timeout=0) as pool:
        app = create_app(pool, jobs, token=TOKEN)
        outer = Starlette(routes=[Mount(prefix, app=app)]) if prefix else app
        transport = httpx.ASGITransport(app=outer)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


# -- Location and servers under a mount prefix ----------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("prefix", ["/jobs", "/a/b", ""])
async def test_location_and_the_document_honour_the_mount_prefix(prefix: str) -> None:
    async with client_of(prefix) as client:
        body = {"name": "add", "args": [2, 3], "job_id": "a b?c"}
        response = await client.post(f"{prefix}/api/v1/jobs", json=body, headers=AUTH)
        assert response.status_code == 202, response.text
        location = response.headers["location"]
        assert location == f"{prefix}/api/v1/jobs/a%20b%3Fc"
        job = await client.get(location, params={"wait": 5})  # the header leads to the job
        assert (job.status_code, job.json()["result"]) == (200, 5)
        document = (await client.get(f"{prefix}/openapi.json")).json()
        if prefix:
            assert [server["url"] for server in document["servers"]] == [prefix]
        else:
            assert "servers" not in document  # the host's root, as the paths say


# -- 405 and Allow, ?cluster= -----------------------------------------------------------------


@pytest.mark.anyio
async def test_405_lists_every_method_of_the_path() -> None:
    """For every path of the document: a method it does not serve is 405, and ``Allow``
    names exactly the documented methods (and HEAD with GET)."""
    async with client_of("") as client:
        document = (await client.get("/openapi.json")).json()
        assert len(document["paths"]) == 12
        for path, operations in document["paths"].items():
            allowed = {method.upper() for method in operations}
            if "GET" in allowed:
                allowed.add("HEAD")
            url = (
                path.replace("{job_id}", "some-job")
                .replace("{name}", "some-schedule")
                .replace("{key}", "some-key")
            )
            for method in sorted({"GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"} - allowed):
                response = await client.request(method, url, headers=AUTH)
                assert response.status_code == 405, (method, path, response.text)
                assert response.json()["error"] == "method_not_allowed"
                assert response.headers["allow"] == ", ".join(sorted(allowed)), (method, path)
            if "GET" in allowed:  # HEAD is served where GET is
                assert (await client.head(url)).status_code in (200, 404)
        # /api/v1/jobs, which the issue saw answer "Allow: POST"
        response = await client.delete("/api/v1/jobs", headers=AUTH)
        assert response.headers["allow"] == "GET, HEAD, POST"
        assert "DELETE is not allowed here" in response.json()["message"]


@pytest.mark.anyio
async def test_cluster_accepts_exactly_what_the_document_says() -> None:
    async with client_of("") as client:
        document = (await client.get("/openapi.json")).json()
        (parameter,) = document["paths"]["/api/v1/jobs/pool/stats"]["get"]["parameters"]
        assert parameter["name"] == "cluster"
        allowed = parameter["schema"]["enum"]
        assert allowed == ["true", "false"]
        for value in allowed:
            response = await client.get("/api/v1/jobs/pool/stats", params={"cluster": value})
            assert response.status_code == 200, value
        for value in ("1", "0", "TRUE", "False", "yes", ""):
            response = await client.get("/api/v1/jobs/pool/stats", params={"cluster": value})
            assert response.status_code == 422, value
            assert response.json()["error"] == "invalid"
            assert "'cluster'" in response.json()["message"]


# -- /docs ------------------------------------------------------------------------------------


class _Links(HTMLParser):
    """Every URL a page names: src and href attributes, and the reference's data-openapi."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "data-openapi") and value is not None:
                self.urls.append(value)


def links_of(page: str) -> list[str]:
    parser = _Links()
    parser.feed(page)
    return parser.urls


@pytest.mark.anyio
@pytest.mark.parametrize("prefix", ["", "/jobs"])
async def test_docs_is_served_from_this_app_only(prefix: str) -> None:
    async with client_of(prefix) as client:
        page_url = f"http://test{prefix}/docs"
        response = await client.get(page_url)
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        policy = response.headers["content-security-policy"]
        assert "default-src 'self'" in policy
        assert "script-src 'self';" in policy
        urls = [url for url in links_of(response.text) if not url.startswith("data:")]
        assert len(urls) == 5, urls
        loaded = set()
        for url in urls:
            assert not urlsplit(url).netloc, url  # no CDN: no host of its own
            assert not urlsplit(url).scheme, url
            absolute = urljoin(page_url, url)
            assert absolute.startswith(f"http://test{prefix}/"), absolute
            asset = await client.get(absolute)
            assert asset.status_code == 200, absolute
            loaded.add(urlsplit(absolute).path.removeprefix(prefix))
        assert loaded == {
            "/openapi.json",
            "/docs/reference.js",
            *(f"/docs/swagger-ui/{name}" for name in SWAGGER_UI_FILES),
        }
        # The script points Swagger UI at nothing but the page's own document.
        script = (await client.get(f"{prefix}/docs/reference.js")).text
        assert "validatorUrl: null" in script
        assert "://" not in script
        # Only the files the page uses are served from the package.
        for name in ("LICENSE", "swagger-initializer.js", "../__init__.py", "index.css"):
            missing = await client.get(f"{prefix}/docs/swagger-ui/{name}")
            assert missing.status_code == 404, name


@pytest.mark.anyio
async def test_docs_without_swagger_ui_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("trio_jobpool.http.app.swagger_ui_directory", lambda: None)
    async with client_of("") as client:
        response = await client.get("/docs")
        assert response.status_code == 404
        assert "swagger-ui-py" in response.json()["message"]
        assert (await client.get("/docs/swagger-ui/swagger-ui.css")).status_code == 404
        assert (await client.get("/healthz")).status_code == 200


# -- under a real Uvicorn -----------------------------------------------------------------------


@pytest.fixture
def uvicorn_mounted(tmp_path: Path) -> Iterator[str]:
    """``uvicorn tests.http._mounted_app:app`` on a free loopback port: the pool app mounted
    at /jobs in a Starlette app whose lifespan opens it; yields its base URL."""
    port = free_port()
    log = tmp_path / "uvicorn.log"
    env = {**os.environ, "TRIO_JOBPOOL_TOKEN": TOKEN}
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--port", str(port), "tests.http._mounted_app:app"],
            cwd=ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/jobs/healthz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    text = log.read_text()
    assert process.returncode == 0, text
    assert "Traceback" not in text


def test_mounted_under_uvicorn(uvicorn_mounted: str) -> None:
    with httpx.Client(base_url=uvicorn_mounted, timeout=10) as client:
        body = {"name": "add", "args": [20, 22]}
        response = client.post("/jobs/api/v1/jobs", json=body, headers=AUTH)
        assert response.status_code == 202, response.text
        location = response.headers["location"]
        assert location == f"/jobs/api/v1/jobs/{response.json()['job_id']}"
        job = client.get(location, params={"wait": 10})
        assert (job.status_code, job.json()["result"]) == (200, 42)
        document = client.get("/jobs/openapi.json").json()
        assert document["servers"][0]["url"] == "/jobs"
        # A tool resolving the document's paths against its server reaches the app.
        stats = client.get(document["servers"][0]["url"] + "/api/v1/jobs/pool/stats")
        assert stats.status_code == 200
        assert client.get("/api/v1/jobs/pool/stats").status_code == 404  # not at the root
        page = client.get("/jobs/docs")
        assert page.status_code == 200
        for url in links_of(page.text):
            if not url.startswith("data:"):
                absolute = urljoin(f"{uvicorn_mounted}/jobs/docs", url)
                assert client.get(absolute).status_code == 200, absolute
        refused = client.delete("/jobs/api/v1/jobs", headers=AUTH)
        assert refused.headers["allow"] == "GET, HEAD, POST"
