"""Every script in ``examples/`` runs to completion and prints what it is meant to show."""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from trio_jobpool import RedisStore

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPTS = sorted(EXAMPLES.glob("*.py"))

# For each example, regular expressions that must match somewhere in its output (multiline).
EXPECTED: dict[str, list[str]] = {
    "basic.py": [
        r"^built repo-a$",
        r"^status=completed attempts=1$",
        r'"total_submitted": 1,',
        r'"total_completed": 1,',
        r'"queued_tasks": 0,',
    ],
    "priorities.py": [
        r"^waiting: +6 jobs behind the busy worker$",
        r"1\. urgent-1 \(priority 1\)\n"
        r"\s+2\. urgent-2 \(priority 1\)\n"
        r"\s+3\. normal-1 \(priority 5\)\n"
        r"\s+4\. normal-2 \(priority 5\)\n"
        r"\s+5\. background-1 \(priority 10\)\n"
        r"\s+6\. background-2 \(priority 10\)",
        r"^strict priority, then FIFO within each priority: OK$",
    ],
    "cancel_and_timeout.py": [
        r"^before cancel: running is running, queued is queued$",
        r"^queued +status=cancelled +attempts=0 +error=JobCancelled: ",
        r"^running +status=cancelled +attempts=1 +error=JobCancelled: ",
        r"^too-slow +status=timed_out +attempts=1 +error=JobTimeout: .*timed out after 0\.1 s$",
        r"^  flaky result: deployed on attempt 3$",
        r"^flaky +status=completed +attempts=3 +error=-$",
        r"^broken +status=failed +attempts=3 +error=RuntimeError: tests are red$",
        r"^stats: completed=1 failed=1 cancelled=2 timed_out=1 retried=4$",
    ],
    "durable.py": [
        r"^first pool: deploy-v2 is running, 3 jobs wait; the owner gives up$",
        r"^second pool: resumed 4 jobs from the file$",
        r"^  deploy-v2: deployed v2 \(attempt 2\)$",
        r"^  build-repo-d: built repo-d \(attempt 1\)$",
        r"^read back from disk: build-repo-a -> 'built repo-a' \(completed\)$",
        r"^read back from disk: test-repo-broken -> JobFailed: RuntimeError: tests are red$",
        r"^pruned 6 ended jobs; get\('build-repo-a'\) now raises JobNotFound$",
    ],
    "ci_jobs.py": [
        r"^serving on http://127\.0\.0\.1:\d+ "
        r"\(as trio-jobpool serve --app examples\.ci_jobs:registry\)$",
        r'^POST /api/v1/jobs \{"name": "build", .*\} -> 202 queued$',
        r'^POST /api/v1/jobs \{"name": "publish", .*\} -> 400 unknown_job_name: ',
        r'^GET /api/v1/jobs/build-repo-a\?wait=10 -> 200 completed: "built repo-a"$',
        r"^GET /api/v1/jobs/test-repo-a\?wait=10 -> 200 completed: "
        r'"repo-a: 100 tests passed in 4 shards"$',
        r"^GET /api/v1/jobs/deploy-staging\?wait=10 -> 200 failed: "
        r'"RuntimeError: deploy to staging failed: health check timed out"$',
        r"^GET /api/v1/jobs/pool/stats -> 200 submitted=4 completed=3 failed=1 queued_tasks=0$",
        r"^stopped: served, drained, closed$",
    ],
    "starlette_lifespan.py": [
        r"^lifespan started: the pool is open$",
        r'^POST /jobs \{"repo": "repo-a", "priority": 1\} -> 202$',
        r"^POST /jobs \(id of a live job\) -> 409$",
        r'"status": "completed".*"result": "built repo-a"',
        r'"job_id": "broken", "status": "failed".*"error": "RuntimeError: ',
        r"^GET /jobs/nope -> 404$",
        r'^  \{"total_submitted": 2, "total_completed": 1, "total_failed": 1,',
        r"^lifespan ended: the pool was drained and closed$",
    ],
    "flow_control.py": [
        r"^waiting: acme 28 builds$",
        r"^48 jobs completed, \d+ held back$",
        # each tenant at most 2 at once; the small tenants start within seconds of the flood
        r"^tenant:acme +first start at +0 s, at most 2 at once$",
        r"^tenant:beta +first start at +1 s, at most 2 at once$",
        r"^tenant:gamma +first start at +1 s, at most 2 at once$",
        r"^api:github starts at \(s\): 0 0 0 0 0 6\d( \d+){6}$",
        r"^api:github: at most 5 starts in any 60 s$",
    ],
    "schedules.py": [
        r"^nightly next runs at 02:30 Berlin \(CET\)$",
        r"^webhook is scheduled, due in 10 min$",
        r"^scheduled jobs: 2$",
        r"^00:00 UTC  artifact-812: build-812 not ready, deferred 20 min\n"
        r"00:10 UTC  webhook-77: webhook to https://example.test/hook delivered\n"
        r"00:20 UTC  artifact-812: build-812 not ready, deferred 20 min\n"
        r"00:40 UTC  artifact-812: build-812 ready after 3 looks\n"
        r"01:30 UTC  nightly@\d{4}-\d\d-\d\dT01:30:00Z: nightly build of main\n"
        r"06:00 UTC  health@\d{4}-\d\d-\d\dT06:00:00Z: health check\n"
        r"09:00 UTC  release-v1\.4\.0: released v1\.4\.0\n"
        r"12:00 UTC  health@\d{4}-\d\d-\d\dT12:00:00Z: health check\n"
        r"18:00 UTC  health@\d{4}-\d\d-\d\dT18:00:00Z: health check$",
        r"^schedule health: runs=3 skipped=0$",
        r"^schedule nightly: runs=1 skipped=0$",
        r"^stats: completed=8 failed=0 scheduled=0$",
    ],
    "asgi_service.py": [
        r"^uvicorn serves asgi_service:app; the lifespan opened the pool$",
        r'^POST /api/v1/jobs \{"name": "build", .*"job_id": "quick"\} -> 202 queued$',
        r"^GET /api/v1/jobs/quick\?wait=10 -> 200 completed: 'built repo-a on asyncio'$",
        r"^SIGTERM while 'slow' runs$",
        r"^uvicorn stopped: ended by SIGTERM after its shutdown, lifespan shutdown complete: True$",
        r"^read back from jobs\.db: slow -> completed: 'built repo-b on asyncio'$",
    ],
}


# Examples that need a package beyond the [http] extra say "skipped: ..." without it.
_MAY_SKIP = frozenset({"starlette_lifespan.py", "asgi_service.py"})


def run_example(script: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    return subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        cwd=EXAMPLES.parent,
        env=env,
        check=False,
    )


def test_examples_exist() -> None:
    assert {script.name for script in SCRIPTS} >= set(EXPECTED)


@pytest.mark.parametrize("script", SCRIPTS, ids=[script.name for script in SCRIPTS])
def test_example_runs(script: Path) -> None:
    assert script.name in EXPECTED, f"add the expected output of {script.name} to EXPECTED"
    result = run_example(script)
    assert result.returncode == 0, result.stdout + result.stderr
    # An example prints no warning and no traceback.
    assert result.stderr == "", result.stderr
    if script.name in _MAY_SKIP and result.stdout.startswith("skipped:"):
        pytest.skip(result.stdout.strip())
    for pattern in EXPECTED[script.name]:
        assert re.search(pattern, result.stdout, re.MULTILINE), (
            f"{pattern!r} not in the output of {script.name}:\n{result.stdout}"
        )


def distributed_jobs() -> ModuleType:
    """examples/distributed/jobs.py, imported under a name of its own."""
    spec = importlib.util.spec_from_file_location(
        "distributed_example_jobs", EXAMPLES / "distributed" / "jobs.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://h/0", "redis://h/0?queue=example&lease_timeout=10"),
        # A query already there is kept: the example's settings are added to it.
        ("redis://h/0?timeout=2", "redis://h/0?timeout=2&queue=example&lease_timeout=10"),
        (
            "rediss://user:p%40ss@h:6380/1?timeout=2&keep_ended=",
            "rediss://user:p%40ss@h:6380/1?timeout=2&keep_ended=&queue=example&lease_timeout=10",
        ),
        # A setting the URL names itself is its own.
        ("redis://h/0?queue=mine", "redis://h/0?queue=mine&lease_timeout=10"),
    ],
)
def test_the_distributed_example_builds_its_store_url(url: str, expected: str) -> None:
    built = distributed_jobs().store_url(url)
    assert built == expected
    store = RedisStore.from_url(built)  # what open_job_pool makes of it
    assert store.queue == ("mine" if "queue=mine" in url else "example")
    assert store.lease_timeout == 10
    assert store.timeout == (2 if "timeout=2" in url else 5)


def test_the_distributed_example_in_three_processes(tmp_path: Path) -> None:
    """examples/distributed/: two workers and a producer, on a Redis server of the test's own;
    the producer's URL has a query of its own, which the example keeps."""
    from tests.servers import redis_server

    folder = EXAMPLES / "distributed"
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    with redis_server(tmp_path) as url:
        workers = [
            subprocess.Popen(
                [sys.executable, str(folder / "worker.py"), f"{url}/0", "--workers", "2"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for _ in range(2)
        ]
        try:
            for worker in workers:  # each says when its pool is open
                assert worker.stdout is not None
                assert "Ctrl+C to stop" in worker.stdout.readline()
            producer = subprocess.run(
                [sys.executable, str(folder / "producer.py"), f"{url}/0?timeout=5"],
                capture_output=True,
                text=True,
                timeout=60,
                env=env,
                check=False,
            )
        finally:
            for worker in workers:
                worker.send_signal(signal.SIGTERM)  # a graceful stop
            outputs = [worker.communicate(timeout=30) for worker in workers]
    assert producer.returncode == 0, producer.stdout + producer.stderr
    assert producer.stderr == ""
    for i in range(6):
        assert re.search(rf"^  build-{i}: built repo-{i} in process \d+$", producer.stdout, re.M)
    assert "  test-repo-0: tested repo-0\n" in producer.stdout
    assert "  test-repo-broken: failed: RuntimeError: tests are red\n" in producer.stdout
    assert "cluster: submitted=8 completed=7 failed=1 running=0 waiting=0 workers=4" in (
        producer.stdout
    )
    completed = failed = 0
    for worker, (out, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err
        assert err == ""
        done = re.search(r"done, (\d+) completed, (\d+) failed", out)
        assert done is not None, out
        completed += int(done.group(1))
        failed += int(done.group(2))
    assert (completed, failed) == (7, 1)  # between them, the workers ran every job once
