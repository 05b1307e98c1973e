"""``create_pool_app``: an ASGI app that opens its own pool in its lifespan.

In process (httpx's ASGI transport, on Trio and asyncio): the lifespan protocol, serving,
the drain when the lifespan ends, 503 without a lifespan. Then the example
examples/asgi_service.py under real ``uvicorn`` and ``hypercorn`` processes, stopped by SIGINT
or SIGTERM while a job runs: the job completes (read back from the SQLite file), on the event
loop the server runs (asyncio; Trio under ``hypercorn -k trio``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.servers import free_port
from trio_jobpool import JobRegistry, JobStatus, open_job_pool
from trio_jobpool.http import PoolApp, create_pool_app

ROOT = Path(__file__).resolve().parent.parent.parent
JSON = {"Content-Type": "application/json"}


class Jobs:
    def __init__(self) -> None:
        self.registry = JobRegistry()
        self.started = anyio.Event()
        self.registry.register(self.step, name="step")

    async def step(self, label: str) -> str:
        self.started.set()
        await anyio.sleep(0.01)  # (a job cancelled by the exit would end cancelled)
        return label


def client_of(app: PoolApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.mark.anyio
async def test_open_serves_the_pool_and_leaving_it_drains() -> None:
    jobs = Jobs()
    app = create_pool_app(jobs.registry, max_workers=2, shutdown_timeout=None)
    assert app.pool is None
    async with client_of(app) as client:
        response = await client.get("/healthz")
        assert (response.status_code, response.json()["error"]) == (503, "pool_closed")
        async with app.open() as pool:
            app = app  # rebound: mypy keeps the pool narrowed above across calls
            assert app.pool is pool
            body = {"name": "step", "args": ["a"], "job_id": "a"}
            assert (await client.post("/api/v1/jobs", json=body)).status_code == 202
            job = (await client.get("/api/v1/jobs/a", params={"wait": 10})).json()
            assert (job["status"], job["result"]) == ("completed", "a")
            jobs.started = anyio.Event()
            body = {"name": "step", "args": ["b"], "job_id": "b"}
            assert (await client.post("/api/v1/jobs", json=body)).status_code == 202
            await jobs.started.wait()
            with pytest.raises(RuntimeError, match="open already"):
                async with app.open():
                    pass
        assert pool.get("b").status is JobStatus.COMPLETED  # drained, not cancelled
        app = app  # (as above)
        assert app.pool is None
        response = await client.post("/api/v1/jobs", json={"name": "step", "args": ["c"]})
        assert (response.status_code, response.json()["error"]) == (503, "pool_closed")


async def _lifespan(app: PoolApp) -> tuple[list[str], BaseException | None]:
    """Run the ASGI lifespan of ``app`` to its end: the messages the app sent, and what it
    raised."""
    to_app, app_inbox = anyio.create_memory_object_stream[dict[str, Any]](2)
    sent: list[str] = []
    started = anyio.Event()
    error: list[BaseException] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message["type"])
        if message["type"].startswith("lifespan.startup"):
            started.set()

    async def run() -> None:
        try:
            await app({"type": "lifespan", "asgi": {"version": "3.0"}}, app_inbox.receive, send)
        except Exception as exc:
            error.append(exc)
        started.set()

    async with to_app, app_inbox, anyio.create_task_group() as tg:
        tg.start_soon(run)
        await to_app.send({"type": "lifespan.startup"})
        await started.wait()
        if sent == ["lifespan.startup.complete"]:
            assert app.pool is not None
            assert not app.pool.closed
            await to_app.send({"type": "lifespan.shutdown"})
    return sent, error[0] if error else None


@pytest.mark.anyio
async def test_the_asgi_lifespan_opens_and_closes_the_pool(tmp_path: Path) -> None:
    jobs = Jobs()
    app = create_pool_app(jobs.registry)
    sent, error = await _lifespan(app)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert error is None
    assert app.pool is None
    # A startup that fails: reported to the server, then raised.
    bad = create_pool_app(jobs.registry, token="")
    sent, error = await _lifespan(bad)
    assert sent == ["lifespan.startup.failed"]
    assert isinstance(error, ValueError)
    assert "token" in str(error)
    # The SQLite file is held by another pool: the startup fails, nothing is served.
    store = f"sqlite:///{tmp_path / 'jobs.db'}"
    async with open_job_pool(1, 10, store=store, registry=jobs.registry):
        sent, error = await _lifespan(create_pool_app(jobs.registry, store=store))
    assert sent == ["lifespan.startup.failed"]
    assert error is not None
    assert "in use" in str(error)


@pytest.mark.anyio
async def test_mounted_in_another_app_whose_lifespan_opens_it() -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    jobs = Jobs()
    inner = create_pool_app(jobs.registry)
    outer = Starlette(routes=[Mount("/jobs", app=inner)])  # (its lifespan would enter open())
    transport = httpx.ASGITransport(app=outer)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
        inner.open(),
    ):
        body = {"name": "step", "args": ["m"], "job_id": "m"}
        assert (await client.post("/jobs/api/v1/jobs", json=body)).status_code == 202
        job = (await client.get("/jobs/api/v1/jobs/m", params={"wait": 10})).json()
        assert (job["status"], job["result"]) == ("completed", "m")
        assert (await client.get("/jobs/healthz")).status_code == 200


def test_create_pool_app_checks_the_pool_arguments_at_once() -> None:
    registry = JobRegistry()
    with pytest.raises(TypeError, match="registry"):
        create_pool_app({})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_workers"):
        create_pool_app(registry, max_workers=0)
    with pytest.raises(ValueError, match="not supported"):
        create_pool_app(registry, store="postgres://x")


# -- under real servers -------------------------------------------------------------------------

SERVERS = {
    "uvicorn": (["uvicorn", "--timeout-graceful-shutdown", "5", "--port"], "asyncio"),
    "hypercorn": (["hypercorn", "--graceful-timeout", "5", "--bind"], "asyncio"),
    "hypercorn-trio": (["hypercorn", "-k", "trio", "--graceful-timeout", "5", "--bind"], "trio"),
}


@pytest.mark.parametrize(
    ("server", "sig"),
    [
        ("uvicorn", signal.SIGINT),
        ("uvicorn", signal.SIGTERM),
        ("hypercorn", signal.SIGTERM),
        ("hypercorn-trio", signal.SIGINT),
    ],
)
def test_a_signal_to_the_server_drains_the_pool(
    tmp_path: Path, server: str, sig: signal.Signals
) -> None:
    args, loop = SERVERS[server]
    port = free_port()
    where = str(port) if server == "uvicorn" else f"127.0.0.1:{port}"
    store = f"sqlite:///{tmp_path / 'jobs.db'}"
    env = {**os.environ, "TRIO_JOBPOOL_STORE": store, "TRIO_JOBPOOL_TOKEN": ""}
    process = subprocess.Popen(
        [sys.executable, "-m", *args, where, "examples.asgi_service:app"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            deadline = time.monotonic() + 30  # another process starting: poll, bounded
            while True:
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None, "the server exited"
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.05)
            body = {"name": "build", "args": ["repo-x", 2.0], "job_id": "x"}
            assert client.post("/api/v1/jobs", json=body).status_code == 202
            while client.get("/api/v1/jobs/x").json()["status"] != "running":
                assert time.monotonic() < deadline, "the job did not start"
                time.sleep(0.02)
        process.send_signal(sig)  # while the job runs (2 s)
        log, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    # Uvicorn re-raises SIGTERM once it has shut down (the lifespan, so the drain, is done):
    # the process then ends by that signal (143 in a shell). SIGINT ends it with 0.
    graceful = -signal.SIGTERM if (server, sig) == ("uvicorn", signal.SIGTERM) else 0
    assert process.returncode == graceful, log
    assert "Traceback" not in log
    if server == "uvicorn":
        assert "Application shutdown complete." in log

    async def read_back() -> tuple[JobStatus, object]:
        from examples.asgi_service import registry

        async with open_job_pool(1, 10, store=store, registry=registry) as pool:
            handle = pool.get("x")
            return handle.status, (await handle.wait()).unwrap()

    assert anyio.run(read_back) == (JobStatus.COMPLETED, f"built repo-x on {loop}")
