"""The job service as a plain ASGI app: ``uvicorn examples.asgi_service:app`` (or ``hypercorn
examples.asgi_service:app``; ``hypercorn -k trio ...`` runs the pool on Trio).

``create_pool_app`` opens its own pool in the app's ASGI lifespan, so the server's shutdown
(SIGINT or SIGTERM) drains it: the server stops taking connections, waits for the requests
under way, then the pool lets its running jobs finish (up to ``shutdown_timeout``) before the
process exits. From the repository root::

    TRIO_JOBPOOL_STORE=sqlite:///jobs.db uvicorn examples.asgi_service:app \\
        --timeout-graceful-shutdown 5
    curl localhost:8000/api/v1/jobs -H 'Content-Type: application/json' \\
         -d '{"name": "build", "args": ["repo-a"]}'

The endpoints are those of ``trio-jobpool serve`` (docs/service.md). ``$TRIO_JOBPOOL_STORE``
(default ``sqlite:///trio-jobpool.db``) and ``$TRIO_JOBPOOL_TOKEN`` configure it.

Run as a script (``python examples/asgi_service.py``), it starts Uvicorn on this module in a
child process, submits jobs over HTTP, sends SIGTERM while
one runs, and reads that job back from the SQLite file once the server has exited.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import anyio
import sniffio

from trio_jobpool import JobRegistry, current_job

registry = JobRegistry()


@registry.job(name="build")
async def build(repo: str, seconds: float = 1.0) -> str:
    """Pretend to build ``repo`` in four steps; says which event loop ran it."""
    job = current_job()
    for step in range(4):
        job.set_progress(step / 4, f"step {step + 1} of 4")
        await anyio.sleep(seconds / 4)
    return f"built {repo} on {sniffio.current_async_library()}"


try:
    from trio_jobpool.http import create_pool_app
except ImportError as exc:  # pragma: no cover - depends on the environment
    if __name__ != "__main__":
        raise
    print(f"skipped: this example needs the [http] extra ({exc.name} is not installed)")
    raise SystemExit(0) from None

app = create_pool_app(
    registry,
    store=os.environ.get("TRIO_JOBPOOL_STORE", "sqlite:///trio-jobpool.db"),
    max_workers=4,
    queue_size=100,
    shutdown_timeout=30.0,  # below Hypercorn's lifespan shutdown_timeout (60 s)
    token=os.environ.get("TRIO_JOBPOOL_TOKEN") or None,
    allowed_hosts=["localhost", "127.0.0.1", "::1"],  # served on loopback
)


# -- run as a script ---------------------------------------------------------------------------


def _call(url: str, method: str = "GET", body: object = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def main() -> None:
    try:
        import uvicorn  # noqa: F401
    except ImportError:
        print("skipped: running this example needs uvicorn (pip install uvicorn)")
        return
    port = _free_port()
    base = f"http://127.0.0.1:{port}/api/v1/jobs"
    with tempfile.TemporaryDirectory() as folder:
        store = f"sqlite:///{Path(folder) / 'jobs.db'}"
        here = Path(__file__).resolve().parent
        options = ["--app-dir", str(here), "--port", str(port), "--timeout-graceful-shutdown", "5"]
        command = [sys.executable, "-m", "uvicorn", "asgi_service:app", *options]
        env = {**os.environ, "TRIO_JOBPOOL_STORE": store, "TRIO_JOBPOOL_TOKEN": ""}
        server = subprocess.Popen(
            command, cwd=here, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        try:
            deadline = time.monotonic() + 30
            while True:  # until the server answers (bounded)
                try:
                    _call(f"http://127.0.0.1:{port}/healthz")
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise RuntimeError("uvicorn did not start") from None
                    time.sleep(0.05)
            print("uvicorn serves asgi_service:app; the lifespan opened the pool")
            body = {"name": "build", "args": ["repo-a", 0.2], "job_id": "quick"}
            status, answer = _call(base, "POST", body)
            print(f"POST /api/v1/jobs {json.dumps(body)} -> {status} {answer['status']}")
            status, job = _call(f"{base}/quick?wait=10")
            print(f"GET /api/v1/jobs/quick?wait=10 -> {status} {job['status']}: {job['result']!r}")
            body = {"name": "build", "args": ["repo-b", 2.0], "job_id": "slow"}
            status, answer = _call(base, "POST", body)
            print(f"POST /api/v1/jobs {json.dumps(body)} -> {status} {answer['status']}")
            deadline = time.monotonic() + 30
            while _call(f"{base}/slow")[1]["status"] != "running":  # (bounded)
                if time.monotonic() > deadline:
                    raise RuntimeError("the job did not start")
                time.sleep(0.02)
            server.send_signal(signal.SIGTERM)
            print("SIGTERM while 'slow' runs")
            log, _ = server.communicate(timeout=60)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
        drained = "Application shutdown complete" in log
        # Uvicorn re-raises SIGTERM once it has shut down: the process ends by that signal.
        code = server.returncode
        if code < 0:
            ended = f"ended by {signal.Signals(-code).name} after its shutdown"
        else:
            ended = f"exit {code}"
        print(f"uvicorn stopped: {ended}, lifespan shutdown complete: {drained}")

        async def read_back() -> str:
            from trio_jobpool import open_job_pool

            async with open_job_pool(1, 10, store=store, registry=registry) as pool:
                handle = pool.get("slow")
                return f"{handle.status.value}: {(await handle.wait()).unwrap()!r}"

        print(f"read back from {store.rpartition('/')[2]}: slow -> {anyio.run(read_back)}")


if __name__ == "__main__":
    main()
