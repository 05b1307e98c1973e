"""Smoke test of an installed trio_jobpool wheel and each of its extras (``nox -s build``).

Run as ``python -I tests/wheel_smoke.py SOURCE_ROOT`` with the interpreter of a fresh virtualenv
into which the wheel was installed with ``[all]`` (and ``httpx``, the HTTP check's client), from
a directory outside the source tree: ``-I`` keeps the script's folder, the working directory
and ``PYTHONPATH`` off ``sys.path``, and the first check fails if ``trio_jobpool`` is imported
from ``SOURCE_ROOT/trio_jobpool`` all the same. Not collected by pytest (its name has no
``test_`` prefix).

What it checks, each step printing one line:

* the package comes from the virtualenv, its metadata's version is ``__version__``, and it
  ships ``py.typed`` and the dashboard's files;
* a pool in memory runs jobs on Trio and on asyncio, and a durable pool on SQLite runs a job;
* ``http``: an app around an open pool answers ``/healthz``, a submit, the job's result,
  ``/metrics``, ``/openapi.json``, the dashboard page and its script, and the API reference
  (``/docs``, its script and Swagger UI's files) (through ``httpx.ASGITransport``, no socket);
* ``redis``: coredis imports and a ``RedisStore`` parses a URL; a distributed pool runs a job on
  a ``redis-server`` started here on a free loopback port, when one is on ``PATH`` (required
  when ``CI`` is set);
* ``cli``: ``trio-jobpool --help`` and ``--version``, and ``trio-jobpool demo --no-live`` on a
  small workload.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.resources
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import anyio.lowlevel
import trio

import trio_jobpool
from trio_jobpool import JobHandle, JobRegistry, JobStatus, RedisStore, open_job_pool

registry = JobRegistry()


@registry.job(name="add")
async def add(a: int, b: int) -> int:
    await anyio.lowlevel.checkpoint()
    return a + b


def step(text: str) -> None:
    print(f"wheel smoke: {text}", flush=True)


def check_installed(source_root: Path) -> None:
    package_dir = Path(trio_jobpool.__file__).resolve().parent
    if package_dir.is_relative_to(source_root / "trio_jobpool"):
        raise SystemExit(f"trio_jobpool was imported from the source tree: {package_dir}")
    if not package_dir.is_relative_to(Path(sys.prefix).resolve()):
        raise SystemExit(f"trio_jobpool is not in this virtualenv ({sys.prefix}): {package_dir}")
    version = importlib.metadata.version("trio-jobpool")
    assert version == trio_jobpool.__version__, (version, trio_jobpool.__version__)
    extras = set(importlib.metadata.metadata("trio-jobpool").get_all("Provides-Extra") or ())
    assert {"http", "cli", "redis", "all"} <= extras, extras
    files = importlib.resources.files("trio_jobpool")
    for name in ("py.typed", "http/dashboard/index.html", "http/dashboard/dashboard.js"):
        assert files.joinpath(name).is_file(), f"{name} is not in the installed package"
    step(f"trio_jobpool {version} installed at {package_dir}, with py.typed and the dashboard")


async def run_jobs() -> int:
    async with open_job_pool(4, 20) as pool:
        handles = [await pool.submit(add, i, i) for i in range(20)]
        total = sum([await handle.result() for handle in handles])
        stats = pool.stats()
    assert stats.total_submitted == stats.total_completed == 20, stats
    return total


def check_core(tmp: Path) -> None:
    assert trio.run(run_jobs) == 380
    assert asyncio.run(run_jobs()) == 380

    async def durable() -> None:
        async with open_job_pool(
            2, 10, store=f"sqlite:///{tmp}/jobs.db", registry=registry
        ) as pool:
            handle: JobHandle[int] = await pool.submit("add", 2, 3)
            assert await handle.result() == 5
            assert handle.status is JobStatus.COMPLETED

    trio.run(durable)
    step("a pool in memory ran 20 jobs on Trio and on asyncio; a pool on SQLite ran one")


def check_http() -> None:
    import httpx

    from trio_jobpool.http import create_app

    async def main() -> None:
        async with open_job_pool(2, 10, registry=registry, shutdown_timeout=0) as pool:
            app = create_app(pool, registry)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                health = await client.get("/healthz")
                assert health.status_code == 200, health.text
                accepted = await client.post("/api/v1/jobs", json={"name": "add", "args": [2, 3]})
                assert accepted.status_code == 202, accepted.text
                job = await client.get(accepted.headers["location"], params={"wait": 5})
                assert job.json()["result"] == 5, job.text
                metrics = await client.get("/metrics")
                assert "jobpool_" in metrics.text, metrics.text[:200]
                document = await client.get("/openapi.json")
                assert "/api/v1/jobs" in document.json()["paths"]
                page = await client.get("/")
                assert page.status_code == 200, page.status_code
                assert "text/html" in page.headers["content-type"]
                script = await client.get("/static/dashboard.js")
                assert script.status_code == 200, script.status_code
                # the API reference: its page and script from the wheel, Swagger UI's files
                # from the installed swagger-ui-py (no CDN)
                for path in (
                    "/docs",
                    "/docs/reference.js",
                    "/docs/swagger-ui/swagger-ui.css",
                    "/docs/swagger-ui/swagger-ui-bundle.js",
                ):
                    answer = await client.get(path)
                    assert answer.status_code == 200, (path, answer.status_code)

    anyio.run(main)
    step(
        "http: /healthz, a submit and its result, /metrics, /openapi.json, the dashboard and"
        " the API reference (/docs)"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def check_redis(tmp: Path) -> None:
    import coredis

    store = RedisStore.from_url("redis://127.0.0.1:1/0?queue=smoke&timeout=2")
    assert "smoke" in store.url, store.url
    server = shutil.which("redis-server")
    if server is None:
        if os.environ.get("CI"):
            raise SystemExit("redis-server is not on PATH (CI is set: it is required)")
        step(f"redis: coredis {coredis.__version__} imports; no redis-server here, no job run")
        return
    port = free_port()
    args = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
    process = subprocess.Popen(
        [*args, "no", "--dir", str(tmp)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise SystemExit("redis-server did not start") from None
                time.sleep(0.05)

        async def main() -> None:
            url = f"redis://127.0.0.1:{port}/0?queue=smoke"
            async with open_job_pool(2, 10, store=url, registry=registry) as pool:
                handle: JobHandle[int] = await pool.submit("add", 4, 5)
                assert await handle.result() == 9
                assert (await pool.cluster_stats()).total_completed == 1

        trio.run(main)
    finally:
        process.terminate()
        process.wait(timeout=10)
    step(f"redis: coredis {coredis.__version__}; a distributed pool ran a job on redis-server")


def check_cli() -> None:
    command = Path(sys.executable).parent / "trio-jobpool"

    def run(*args: str) -> str:
        done = subprocess.run(
            [str(command), *args], capture_output=True, text=True, timeout=120, check=False
        )
        if done.returncode != 0:
            raise SystemExit(f"trio-jobpool {' '.join(args)}: exit {done.returncode}\n{done}")
        return done.stdout

    assert "demo" in run("--help")
    assert trio_jobpool.__version__ in run("--version")
    summary = run("demo", "--jobs", "30", "--no-live")
    assert "submitted=30" in summary, summary
    step("cli: trio-jobpool --help, --version and demo --no-live (30 jobs)")


def main() -> None:
    source_root = Path(sys.argv[1]).resolve()
    check_installed(source_root)
    with tempfile.TemporaryDirectory() as tmp:
        check_core(Path(tmp))
        check_http()
        check_redis(Path(tmp))
    check_cli()
    step("all checks passed")


if __name__ == "__main__":
    main()
