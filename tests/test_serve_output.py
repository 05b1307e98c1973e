"""``trio-jobpool serve`` whose output goes nowhere: ``serve ... 2>&1 | tee log``, then Ctrl+C,
where ``tee`` dies first. Status output never decides whether the pool drains: the jobs that
run when the signal comes complete, and the exit code is the pool's (0).

A real ``python -m trio_jobpool serve`` subprocess, its stdout and stderr one pipe that the
test closes before it sends SIGINT; the jobs' ends are read back from the SQLite file.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio

from tests.servers import free_port
from trio_jobpool import JobHandle, JobStatus, open_job_pool

ROOT = Path(__file__).resolve().parent.parent
JOB_SECONDS = 2.0  # each job runs this long: the signal comes while they run


@pytest.mark.skipif(not hasattr(signal, "SIGPIPE"), reason="POSIX pipes and signals")
@pytest.mark.parametrize(
    "app",
    [
        "examples.ci_jobs:registry",  # SIGPIPE ignored (Python's default): writes fail, EPIPE
        "tests.sigpipe_app:registry",  # the app restored SIGPIPE's default action (death)
    ],
)
def test_serve_drains_when_its_output_pipe_is_closed(tmp_path: Path, app: str) -> None:
    store = f"sqlite:///{tmp_path / 'jobs.db'}"
    options = ["--store", store, "--port", str(free_port()), "--workers", "3"]
    process = subprocess.Popen(
        [sys.executable, "-m", "trio_jobpool", "serve", "--app", app, *options],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,  # 2>&1
        env={**os.environ, "PYTHONIOENCODING": "utf-8", "TRIO_JOBPOOL_TOKEN": ""},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        found = re.match(r"serving on (http://\S+) ", line)
        assert found, line
        url = found.group(1)
        ids = ["p1", "p2", "p3"]
        with httpx.Client(base_url=url, timeout=10) as client:
            for job_id in ids:
                body = {"name": "sleep", "args": [JOB_SECONDS], "job_id": job_id}
                assert client.post("/api/v1/jobs", json=body).status_code == 202
            # Another process's jobs starting: poll their status, bounded in time.
            deadline = time.monotonic() + 10
            while any(client.get(f"/api/v1/jobs/{i}").json()["status"] != "running" for i in ids):
                assert time.monotonic() < deadline, "the jobs did not start"
                time.sleep(0.02)
        process.stdout.close()  # `tee` is gone: nobody reads the pipe any more
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert code == 0

    async def read_back() -> dict[str, JobStatus]:
        from examples.ci_jobs import registry

        async with open_job_pool(1, 10, store=store, registry=registry) as pool:
            return {job_id: pool.get(job_id).status for job_id in ids}

    # The three jobs that ran when the signal came completed (none is left to run again).
    assert trio.run(read_back) == dict.fromkeys(ids, JobStatus.COMPLETED)


@pytest.mark.skipif(not hasattr(signal, "SIGPIPE"), reason="POSIX pipes and signals")
def test_worker_drains_when_its_output_pipe_is_closed(redis_url: str) -> None:
    """The same for ``trio-jobpool worker`` on Redis: the jobs it runs when SIGINT comes
    complete (their submitter sees the results), and it exits 0."""
    from examples.ci_jobs import registry

    store = f"{redis_url}/0?queue=pipe{uuid.uuid4().hex[:12]}"
    options = ["--app", "examples.ci_jobs:registry", "--store", store, "--workers", "2"]
    process = subprocess.Popen(
        [sys.executable, "-m", "trio_jobpool", "worker", *options],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    try:
        assert process.stdout is not None
        assert b"Ctrl+C to stop" in process.stdout.readline()

        async def submit_then_stop_the_worker() -> tuple[int, list[object]]:
            async with open_job_pool(0, 10, store=store, registry=registry) as pool:
                handles: list[JobHandle[float]] = [
                    await pool.submit("sleep", JOB_SECONDS) for _ in range(2)
                ]
                with trio.fail_after(10):  # another process's jobs starting: poll, bounded
                    for handle in handles:
                        while (await pool.aget(handle.job_id)).status != JobStatus.RUNNING:
                            await trio.sleep(0.02)
                assert process.stdout is not None
                process.stdout.close()
                process.send_signal(signal.SIGINT)
                code = await trio.to_thread.run_sync(partial(process.wait, 30))
                if code != 0:  # (its jobs wait for another worker now)
                    return code, []
                with trio.fail_after(10):
                    return code, [(await handle.wait()).unwrap() for handle in handles]

        code, results = trio.run(submit_then_stop_the_worker)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert code == 0
    assert results == [JOB_SECONDS, JOB_SECONDS]  # (what the job returns)
