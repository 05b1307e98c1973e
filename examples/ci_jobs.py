"""CI-like jobs for ``trio-jobpool serve``: a registry to serve and ``curl`` at once.

From the repository root (with ``pip install -e '.[cli]'``)::

    trio-jobpool serve --app examples.ci_jobs:registry
    # serving on http://127.0.0.1:8000 (store: sqlite:///trio-jobpool.db, workers: 4)

and in another terminal::

    curl localhost:8000/api/v1/jobs -H 'Content-Type: application/json' \\
         -d '{"name": "build", "args": ["repo-a"]}'
    trio-jobpool submit test '["repo-a", 8]' --wait     # a progress bar, then the result
    trio-jobpool stats

(``--app examples/ci_jobs.py:registry``, a file path, works from any directory.) The jobs, by
name, with their JSON arguments:

* ``build(repo, seconds=3.0)``: four steps, reporting progress; returns ``"built <repo>"``.
* ``test(repo, shards=4, seconds_per_shard=1.0)``: runs the shards one after the other,
  reporting progress per shard; a repo whose name contains ``broken`` fails its second shard.
* ``lint(repo, seconds=0.5)``: quick.
* ``deploy(env, fail_rate=0.2, seconds=2.0)``: fails its health check with probability
  ``fail_rate`` (``1`` always fails, ``0`` never).
* ``sleep(seconds)``: does nothing for that long (to watch a cancel, a drain, a full queue).

The jobs use ``anyio.sleep``, so they run on Trio and on asyncio alike.

Run as a script (``python examples/ci_jobs.py``), it does what ``serve`` does on a port of its
own, submits a few jobs over HTTP with the standard library, prints the answers, and stops.
"""

from __future__ import annotations

import json
import random
import urllib.error
import urllib.request
from functools import partial
from typing import Any, cast

import anyio

from trio_jobpool import JobRegistry, current_job

registry = JobRegistry()


@registry.job(name="build")
async def build(repo: str, seconds: float = 3.0) -> str:
    """Pretend to build ``repo`` in four steps."""
    job = current_job()
    steps = ("checkout", "install dependencies", "compile", "package")
    for done, step in enumerate(steps):
        job.set_progress(done / len(steps), step)
        await anyio.sleep(seconds / len(steps))
    job.set_progress(1.0, "built")
    return f"built {repo}"


@registry.job(name="test")
async def run_tests(repo: str, shards: int = 4, seconds_per_shard: float = 1.0) -> str:
    """Run ``repo``'s tests in ``shards`` shards, one after the other."""
    job = current_job()
    for shard in range(1, shards + 1):
        job.set_progress((shard - 1) / shards, f"shard {shard} of {shards}")
        await anyio.sleep(seconds_per_shard)
        if "broken" in repo and shard == min(2, shards):
            raise RuntimeError(f"{repo}: 3 tests failed in shard {shard} of {shards}")
    job.set_progress(1.0, f"{shards} shards passed")
    return f"{repo}: {25 * shards} tests passed in {shards} shards"


@registry.job(name="lint")
async def lint(repo: str, seconds: float = 0.5) -> str:
    """Lint ``repo``: always clean."""
    await anyio.sleep(seconds)
    return f"{repo}: no lint errors"


@registry.job(name="deploy")
async def deploy(env: str, fail_rate: float = 0.2, seconds: float = 2.0) -> str:
    """Deploy to ``env``; the health check fails with probability ``fail_rate``."""
    job = current_job()
    steps = ("upload", "migrate", "switch traffic", "health check")
    for done, step in enumerate(steps):
        job.set_progress(done / len(steps), step)
        await anyio.sleep(seconds / len(steps))
    if random.random() < fail_rate:
        raise RuntimeError(f"deploy to {env} failed: health check timed out")
    job.set_progress(1.0, "healthy")
    return f"deployed to {env}"


@registry.job(name="sleep")
async def sleep(seconds: float) -> float:
    """Sleep for ``seconds``, reporting progress at most four times a second."""
    job = current_job()
    steps = max(1, min(int(seconds * 4), 10_000))
    for done in range(steps):
        job.set_progress(done / steps, f"{seconds - done * seconds / steps:.1f} s to go")
        await anyio.sleep(seconds / steps)
    job.set_progress(1.0)
    return seconds


# -- python examples/ci_jobs.py: the app on a port of its own, driven over HTTP ---------------


def call(base: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One request with the standard library; returns (status, JSON answer)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def tour(base: str) -> None:
    """What a client sees: submits, an error, long polls for the ends, the stats."""
    submits: list[dict[str, Any]] = [
        {"name": "build", "args": ["repo-a", 0.2], "job_id": "build-repo-a", "priority": 1},
        {"name": "test", "args": ["repo-a", 4, 0.05], "job_id": "test-repo-a"},
        {"name": "lint", "args": ["repo-a", 0.05], "job_id": "lint-repo-a"},
        {"name": "deploy", "args": ["staging", 1.0, 0.1], "job_id": "deploy-staging"},
        {"name": "publish", "args": ["repo-a"]},
    ]
    for body in submits:
        code, answer = call(base, "POST", "/api/v1/jobs", body)
        shown = answer.get("status") or f"{answer['error']}: {answer['message']}"
        print(f"POST /api/v1/jobs {json.dumps(body)} -> {code} {shown}")
    for body in submits[:-1]:
        path = f"/api/v1/jobs/{body['job_id']}?wait=10"  # returns as soon as the job ends
        code, job = call(base, "GET", path)
        error = job["error"] and f"{job['error']['type']}: {job['error']['message']}"
        print(f"GET {path} -> {code} {job['status']}: {json.dumps(job['result'] or error)}")
    code, stats = call(base, "GET", "/api/v1/jobs/pool/stats")
    counts = " ".join(
        f"{key.removeprefix('total_')}={stats[key]}"
        for key in ("total_submitted", "total_completed", "total_failed", "queued_tasks")
    )
    print(f"GET /api/v1/jobs/pool/stats -> {code} {counts}")


async def main() -> None:
    import trio
    from hypercorn.config import Config
    from hypercorn.trio import serve
    from hypercorn.typing import ASGIFramework

    from trio_jobpool import open_job_pool
    from trio_jobpool.http import create_app

    config = Config()
    config.bind = ["127.0.0.1:0"]  # any free port
    config.loglevel = "WARNING"
    stop = trio.Event()
    pool_block = open_job_pool(max_workers=4, queue_size=100, registry=registry)
    async with pool_block as pool, trio.open_nursery() as nursery:
        # A Starlette app is an ASGI app: Starlette types the messages loosely, Hypercorn exactly.
        app = cast(ASGIFramework, create_app(pool, registry))
        binds = await nursery.start(partial(serve, app, config, shutdown_trigger=stop.wait))
        print(f"serving on {binds[0]} (as trio-jobpool serve --app examples.ci_jobs:registry)")
        await trio.to_thread.run_sync(tour, binds[0])
        stop.set()  # the server stops; then leaving the pool's block drains it
    print("stopped: served, drained, closed")


if __name__ == "__main__":
    try:
        import hypercorn  # noqa: F401
        import starlette  # noqa: F401
    except ImportError as exc:
        print(f"skipped: this example needs the [cli] extra ({exc.name} is not installed)")
        print("  pip install -e '.[cli]'")
        raise SystemExit(0) from None
    import trio

    trio.run(main)
