"""``trio-jobpool serve`` with a job that ignores its cancellation: the shutdown waits
``--shutdown-timeout`` and then ``--shutdown-grace``, abandons the job (one log line naming it),
and the process exits 1 instead of waiting for the job forever; on SQLite the job stays
``running`` in the file and the next pool runs it again.

A real ``python -m trio_jobpool serve`` subprocess (the jobs of tests/stubborn_app.py); the
jobs' state is read back from the file.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import trio

from tests.servers import free_port
from trio_jobpool import JobRegistry, open_job_pool

ROOT = Path(__file__).resolve().parent.parent


def _serve_then_stop(
    db: Path, jobs: dict[str, str], options: list[str], before_signal: Callable[[], object]
) -> tuple[int, str, str]:
    """Serve on ``db``, submit ``jobs`` (id: name) and wait until they run, call
    ``before_signal``, send SIGTERM; (exit code, stdout, stderr) once the process ended."""
    options = ["--store", f"sqlite:///{db}", "--port", str(free_port()), *options]
    process = subprocess.Popen(
        [sys.executable, "-m", "trio_jobpool", "serve", "--app", "tests.stubborn_app", *options],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONIOENCODING": "utf-8", "TRIO_JOBPOOL_TOKEN": ""},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        found = re.match(r"serving on (http://\S+) ", line)
        assert found, line
        with httpx.Client(base_url=found.group(1), timeout=10) as client:
            for job_id, name in jobs.items():
                body = {"name": name, "job_id": job_id}
                assert client.post("/api/v1/jobs", json=body).status_code == 202
            for job_id in jobs:
                deadline = time.monotonic() + 10  # another process's job starting: bounded poll
                while client.get(f"/api/v1/jobs/{job_id}").json()["status"] != "running":
                    assert time.monotonic() < deadline, f"{job_id} did not start"
                    time.sleep(0.02)
        before_signal()
        process.send_signal(signal.SIGTERM)
        # Before abandoning existed, serve waited for the job's hour: this wait timed out.
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, out, err


def test_serve_abandons_a_job_that_ignores_its_cancellation_and_exits(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    options = ["--workers", "2", "--shutdown-timeout", "0.2", "--shutdown-grace", "0.3"]
    code, out, err = _serve_then_stop(db, {"s1": "stubborn"}, options, lambda: None)
    assert code == 1, (out, err)
    assert "job 's1' was still running 0.3 s after the pool's shutdown cancelled it" in err
    assert "1 job(s) did not end when cancelled and were abandoned ('s1')" in err
    assert "Traceback" not in err

    again = JobRegistry()  # the next deploy: "stubborn" fixed, it returns at once

    @again.job(name="stubborn")
    async def fixed() -> str:
        return "ran again"

    async def rerun() -> tuple[str, int]:
        async with open_job_pool(1, 10, store=f"sqlite:///{db}", registry=again) as pool:
            handle = pool.get("s1")  # running when the process ended: a crash, run again
            with trio.fail_after(10):
                return await handle.result(), handle.attempts

    assert trio.run(rerun) == ("ran again", 2)


def test_serve_exits_when_the_block_fails_after_abandoning_a_job(tmp_path: Path) -> None:
    """Also when leaving the pool's block raised: here the database was deleted under the
    pool, so the end of ``e1``, written at the shutdown, fails and closing the store raises."""
    db = tmp_path / "jobs.db"
    options = ["--workers", "2", "--shutdown-timeout", "0", "--shutdown-grace", "0.3"]
    jobs = {"s1": "stubborn", "e1": "ends_when_cancelled"}
    code, out, err = _serve_then_stop(db, jobs, options, db.unlink)
    assert code == 1, (out, err)
    assert "1 job(s) did not end when cancelled and were abandoned ('s1')" in err
    assert "was deleted or moved" in err  # the store's error is reported too
