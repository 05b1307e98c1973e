"""``trio-jobpool serve`` with a job that ignores its cancellation: the shutdown waits
``--shutdown-timeout`` and then ``--shutdown-grace``, abandons the job (one log line naming it),
and the process exits 1 instead of waiting for the job forever; on SQLite the job stays
``running`` in the file and the next pool runs it again.

A real ``python -m trio_jobpool serve`` subprocess; the job's state is read back from the file.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import trio

from tests.servers import free_port
from trio_jobpool import JobRegistry, open_job_pool

ROOT = Path(__file__).resolve().parent.parent


def test_serve_abandons_a_job_that_ignores_its_cancellation_and_exits(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'jobs.db'}"
    options = ["--store", store, "--port", str(free_port()), "--workers", "2"]
    options += ["--shutdown-timeout", "0.2", "--shutdown-grace", "0.3"]
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
            body = {"name": "stubborn", "job_id": "s1"}
            assert client.post("/api/v1/jobs", json=body).status_code == 202
            deadline = time.monotonic() + 10  # another process's job starting: bounded poll
            while client.get("/api/v1/jobs/s1").json()["status"] != "running":
                assert time.monotonic() < deadline, "the job did not start"
                time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        # Before abandoning existed, serve waited for the job's hour: this wait timed out.
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 1, (out, err)
    assert "job 's1' was still running 0.3 s after the pool's shutdown cancelled it" in err
    assert "1 job(s) did not end when cancelled and were abandoned ('s1')" in err
    assert "Traceback" not in err

    again = JobRegistry()  # the next deploy: "stubborn" fixed, it returns at once

    @again.job(name="stubborn")
    async def fixed() -> str:
        return "ran again"

    async def rerun() -> tuple[str, int]:
        async with open_job_pool(1, 10, store=store, registry=again) as pool:
            handle = pool.get("s1")  # running when the process ended: a crash, run again
            with trio.fail_after(10):
                return await handle.result(), handle.attempts

    assert trio.run(rerun) == ("ran again", 2)
