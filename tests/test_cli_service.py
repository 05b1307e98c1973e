"""The ``trio-jobpool`` commands beyond ``demo``: ``serve``, ``worker``, ``submit``, ``status``,
``cancel``, ``stats``, ``prune``; their errors and exit codes.

The client commands run in this process (``main([...])``) against ``trio-jobpool serve`` started
as a real subprocess (``python -m trio_jobpool serve``) on the example registry,
examples/ci_jobs.py, from the repository root, as a newcomer would.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.servers import free_port
from trio_jobpool import JobHandle, JobStatus, open_job_pool
from trio_jobpool.cli import main, parse_duration

ROOT = Path(__file__).resolve().parent.parent
APP = "examples.ci_jobs:registry"
TOKEN = "s3cret"
START_TIMEOUT = 30.0  # seconds for a subprocess to print its readiness line
STOP_TIMEOUT = 30.0  # seconds for it to exit after SIGTERM


class Process:
    """A ``python -m trio_jobpool ...`` subprocess whose stdout lines are read as they come."""

    def __init__(self, *args: str) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "trio_jobpool", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            env={**os.environ, "PYTHONIOENCODING": "utf-8", "TRIO_JOBPOOL_TOKEN": ""},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stdout: list[str] = []
        self.stderr = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.put(line)

    def expect(self, pattern: str, timeout: float = START_TIMEOUT) -> re.Match[str]:
        """The next stdout line that matches ``pattern`` (waiting at most ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(remaining, 0))
            except queue.Empty:
                self.stop()
                raise AssertionError(
                    f"no line matching {pattern!r} within {timeout} s; stdout: {self.stdout}, "
                    f"stderr: {self.stderr}"
                ) from None
            self.stdout.append(line)
            found = re.search(pattern, line)
            if found:
                return found

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send ``sig`` if it still runs, wait for the exit (SIGKILL if it takes too long) and
        collect the rest of its output; returns the exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        try:
            self.popen.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
        self._reader.join(timeout=STOP_TIMEOUT)
        while not self.lines.empty():
            self.stdout.append(self.lines.get_nowait())
        assert self.popen.stderr is not None
        if not self.popen.stderr.closed:
            self.stderr = self.popen.stderr.read()
            self.popen.stderr.close()
        assert self.popen.stdout is not None
        self.popen.stdout.close()
        return self.popen.returncode

    @property
    def output(self) -> str:
        return "".join(self.stdout)


@contextlib.contextmanager
def serving(*args: str) -> Iterator[tuple[Process, str]]:
    """``trio-jobpool serve --app examples.ci_jobs:registry ARGS``; yields it and its URL once it
    says it is serving; stopped (SIGTERM) and waited for afterwards."""
    process = Process("serve", "--app", APP, *args)
    try:
        url = process.expect(r"^serving on (http://\S+) ").group(1)
        yield process, url
    finally:
        process.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """One server for the client tests of this module (token TOKEN): (URL, its SQLite file)."""
    db = tmp_path_factory.mktemp("serve") / "jobs.db"
    port = str(free_port())
    with serving("--port", port, "--store", f"sqlite:///{db}", "--token", TOKEN) as (_, url):
        assert url == f"http://127.0.0.1:{port}"
        yield url, db


@pytest.fixture
def url(server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> str:
    """The server's URL, also in $TRIO_JOBPOOL_URL; $TRIO_JOBPOOL_TOKEN unset."""
    monkeypatch.setenv("TRIO_JOBPOOL_URL", server[0])
    monkeypatch.delenv("TRIO_JOBPOOL_TOKEN", raising=False)
    return server[0]


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``trio-jobpool ARGS`` in this process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def job_status(
    capsys: pytest.CaptureFixture[str], job_id: str, url: str | None = None
) -> dict[str, object]:
    code, out, _ = run(capsys, "status", job_id, *(("--url", url) if url else ()))
    assert code == 0
    job: dict[str, object] = json.loads(out)
    return job


def wait_until_running(capsys: pytest.CaptureFixture[str], job_id: str, url: str) -> None:
    deadline = time.monotonic() + 10
    # Another process's job starting: poll its status, bounded in time.
    while job_status(capsys, job_id, url)["status"] != "running":
        assert time.monotonic() < deadline, f"{job_id} did not start"
        time.sleep(0.02)


# -- every endpoint, end to end ---------------------------------------------------------------


def test_every_endpoint_of_a_served_pool(url: str) -> None:
    """The endpoints and error codes of docs/service.md against ``trio-jobpool serve`` (in
    process, on both backends, tests/http/test_app.py goes through each in detail)."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    json_auth = {**auth, "Content-Type": "application/json"}
    with httpx.Client(base_url=url, timeout=30) as http:

        def error(response: httpx.Response) -> tuple[int, str]:
            assert "Traceback" not in response.text
            return response.status_code, response.json()["error"]

        submit = {"name": "sleep", "args": [60], "job_id": "e2e-long"}
        answer = http.post("/api/v1/jobs", json=submit, headers=auth)
        assert (answer.status_code, answer.json()) == (
            202,
            {"job_id": "e2e-long", "status": "queued"},
        )
        assert answer.headers["location"] == "/api/v1/jobs/e2e-long"
        assert error(http.post("/api/v1/jobs", json=submit)) == (401, "unauthorized")
        assert error(http.post("/api/v1/jobs", json=submit, headers=auth)) == (409, "duplicate_job")
        assert error(http.post("/api/v1/jobs", content=b"{", headers=json_auth)) == (
            400,
            "malformed_json",
        )
        unknown = {"name": "publish"}
        assert error(http.post("/api/v1/jobs", json=unknown, headers=auth)) == (
            400,
            "unknown_job_name",
        )
        bad = {"name": "lint", "priority": "high"}
        assert error(http.post("/api/v1/jobs", json=bad, headers=auth)) == (422, "invalid")
        huge = b'{"name": "lint", "args": ["' + b"x" * 70_000 + b'"]}'
        assert error(http.post("/api/v1/jobs", content=huge, headers=json_auth)) == (
            413,
            "body_too_large",
        )

        quick = {"name": "lint", "args": ["repo-e2e", 0], "job_id": "e2e-quick"}
        assert http.post("/api/v1/jobs", json=quick, headers=auth).status_code == 202
        job = http.get("/api/v1/jobs/e2e-quick", params={"wait": 10}).json()
        assert (job["status"], job["result"], job["name"]) == (
            "completed",
            "repo-e2e: no lint errors",
            "lint",
        )
        assert error(http.get("/api/v1/jobs/e2e-nobody")) == (404, "not_found")
        listed = [
            j["job_id"] for j in http.get("/api/v1/jobs", params={"limit": 500}).json()["jobs"]
        ]
        assert {"e2e-long", "e2e-quick"} <= set(listed)

        assert error(http.post("/api/v1/jobs/e2e-long/cancel")) == (401, "unauthorized")
        cancelled = http.post("/api/v1/jobs/e2e-long/cancel", headers=auth)
        assert (cancelled.status_code, cancelled.json()["message"]) == (200, "job cancelled")
        assert (
            http.get("/api/v1/jobs/e2e-long", params={"wait": 10}).json()["status"] == "cancelled"
        )
        assert error(http.post("/api/v1/jobs/e2e-long/cancel", headers=auth)) == (409, "job_ended")
        assert error(http.post("/api/v1/jobs/e2e-nobody/cancel", headers=auth)) == (
            404,
            "not_found",
        )

        stats = http.get("/api/v1/jobs/pool/stats").json()
        assert stats["total_submitted"] >= 2
        workers = stats["max_workers"]  # (put back afterwards: the server is the module's)
        size = http.put("/api/v1/jobs/pool/size", json={"max_workers": workers + 2}, headers=auth)
        assert (size.status_code, size.json()) == (200, {"max_workers": workers + 2})
        assert http.get("/api/v1/jobs/pool/stats").json()["max_workers"] == workers + 2
        size = http.put("/api/v1/jobs/pool/size", json={"max_workers": workers}, headers=auth)
        assert size.json() == {"max_workers": workers}
        assert error(http.put("/api/v1/jobs/pool/size", json={"max_workers": 0}, headers=auth)) == (
            422,
            "invalid",
        )
        assert error(http.put("/api/v1/jobs/pool/size", json={"max_workers": 6})) == (
            401,
            "unauthorized",
        )
        assert error(http.delete("/api/v1/jobs/pool/size", headers=auth)) == (
            405,
            "method_not_allowed",
        )
        assert error(http.get("/api/v9")) == (404, "not_found")

        info = http.get("/api/v1/jobs/pool/info").json()
        assert (info["token_required"], info["names"]) == (
            True,
            ["build", "deploy", "lint", "sleep", "test"],
        )
        assert info["store"].startswith("sqlite:///")
        assert http.get("/healthz").json() == {"status": "ok"}
        # DNS rebinding: a name that is not loopback's is refused by a server on loopback.
        rebound = http.get("/healthz", headers={"Host": "evil.example"})
        assert error(rebound) == (400, "bad_host")
        cross = http.post(
            "/api/v1/jobs/x/cancel", headers={**auth, "Origin": "http://evil.example"}
        )
        assert error(cross) == (403, "cross_origin")
        plain = http.post("/api/v1/jobs", content=b'{"name": "lint"}', headers=auth)
        assert error(plain) == (415, "unsupported_media_type")
        metrics = http.get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        assert "jobpool_jobs_cancelled_total" in metrics.text
        document = http.get("/openapi.json").json()
        assert document["openapi"].startswith("3.1")
        assert "/api/v1/jobs/{job_id}/cancel" in document["paths"]
        page = http.get("/")
        assert page.headers["content-type"].startswith("text/html")
        assert "static/dashboard.js" in page.text
        assert http.get("/static/dashboard.js").status_code == 200
        assert http.get("/static/nothing.js").status_code == 404


def test_later_jobs_of_a_served_pool(url: str) -> None:
    """``delay`` and ``at`` of ``POST /api/v1/jobs``, every error of theirs, ``scheduled_for``,
    the list of scheduled jobs, their count in the stats and the metrics, and their cancel,
    against ``trio-jobpool serve`` on SQLite."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    hour = datetime.datetime.now(datetime.UTC).replace(microsecond=0) + datetime.timedelta(hours=2)
    with httpx.Client(base_url=url, timeout=30, headers=auth) as http:

        def submit(job_id: str, **when: object) -> httpx.Response:
            body = {"name": "lint", "args": ["repo-later", 0], "job_id": job_id, **when}
            return http.post("/api/v1/jobs", json=body)

        def invalid(response: httpx.Response) -> str:
            assert (response.status_code, response.json()["error"]) == (422, "invalid")
            return str(response.json()["message"])

        answer = submit("later-delay", delay=3600)
        body = answer.json()
        assert (answer.status_code, body["job_id"], body["status"]) == (
            202,
            "later-delay",
            "scheduled",
        )
        assert body["scheduled_for"] == pytest.approx(time.time() + 3600, abs=5)
        assert answer.headers["location"] == "/api/v1/jobs/later-delay"
        offset = hour.astimezone(datetime.timezone(datetime.timedelta(hours=-5, minutes=-30)))
        answer = submit("later-at", at=offset.isoformat())  # 2026-12-07T04:30:00-05:30
        assert answer.json()["scheduled_for"] == pytest.approx(hour.timestamp(), abs=1e-3)
        # 401 without the token, as any submit.
        unauthorized = http.post(
            "/api/v1/jobs",
            json={"name": "lint", "delay": 5},
            headers={"Authorization": "Bearer wrong"},
        )
        assert unauthorized.status_code == 401

        naive = hour.replace(tzinfo=None).isoformat()
        assert "'at' must have a UTC offset" in invalid(submit("bad", at=naive))
        assert "'delay' or 'at'" in invalid(submit("bad", delay=1, at=hour.isoformat()))
        for when in ({"delay": -1}, {"delay": "1h"}, {"delay": True}):
            assert "'delay'" in invalid(submit("bad", **when))
        for at in ("tomorrow", "2026-13-01T00:00:00Z", 1796041000):
            assert "'at'" in invalid(submit("bad", at=at))
        assert http.get("/api/v1/jobs/bad").status_code == 404  # none was accepted

        past = submit("later-past", at="2001-02-03T04:05:06Z")
        assert past.json() == {"job_id": "later-past", "status": "queued"}
        soon = submit("later-soon", delay=0.2).json()
        assert soon["status"] == "scheduled"
        done = http.get("/api/v1/jobs/later-soon", params={"wait": 10}).json()
        assert (done["status"], done["result"]) == ("completed", "repo-later: no lint errors")
        assert done["started_at"] >= done["scheduled_for"] == soon["scheduled_for"]

        job = http.get("/api/v1/jobs/later-delay").json()
        assert (job["status"], job["scheduled_for"]) == ("scheduled", body["scheduled_for"])
        listed = http.get("/api/v1/jobs", params={"status": "scheduled", "limit": 500}).json()
        mine = [j["job_id"] for j in listed["jobs"] if j["job_id"].startswith("later-")]
        assert mine == ["later-delay", "later-at"]  # earliest due first
        assert {j["status"] for j in listed["jobs"]} == {"scheduled"}
        assert "'status'" in invalid(http.get("/api/v1/jobs", params={"status": "running"}))
        scheduled = http.get("/api/v1/jobs/pool/stats").json()["scheduled_tasks"]
        assert scheduled == len(listed["jobs"]) >= 2
        metrics = http.get("/metrics").text
        assert f"\njobpool_scheduled_tasks {float(scheduled)}\n" in metrics
        assert "# HELP jobpool_cluster_scheduled_tasks " in metrics
        document = http.get("/openapi.json").json()
        assert {"delay", "at"} <= set(document["components"]["schemas"]["Submission"]["properties"])

        for job_id in ("later-delay", "later-at"):
            cancelled = http.post(f"/api/v1/jobs/{job_id}/cancel")
            assert (cancelled.status_code, cancelled.json()["message"]) == (200, "job cancelled")
            assert http.get(f"/api/v1/jobs/{job_id}").json()["status"] == "cancelled"
            assert http.post(f"/api/v1/jobs/{job_id}/cancel").json()["error"] == "job_ended"
        after = http.get("/api/v1/jobs/pool/stats").json()["scheduled_tasks"]
        assert after == scheduled - 2


# -- the client against a real server ---------------------------------------------------------


def test_submit_prints_the_id_and_status_shows_the_job(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "submit", "lint", '["repo-a", 0]', "--token", TOKEN)
    assert (code, err) == (0, "")
    job_id = out.strip()
    assert re.fullmatch(r"[0-9a-f]{32}", job_id)
    code, out, _ = run(capsys, "status", job_id, "--wait")
    assert code == 0
    job = json.loads(out)
    assert job["job_id"] == job_id
    assert job["name"] == "lint"
    assert job["status"] == "completed"
    assert job["result"] == "repo-a: no lint errors"


def test_submit_wait_shows_progress_then_prints_the_result(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["submit", "build", '["repo-a", 0.4]', "--priority", "1", "--job-id", "b-1"]
    code, out, err = run(capsys, *args, "--wait", "--token", TOKEN)
    assert code == 0, err
    assert out == '"built repo-a"\n'  # the result, as JSON, alone on stdout
    assert "submitted build as b-1" in err
    # Not a terminal: rich draws the bar once, as it ends.
    assert re.search(r"build .*━+ 100% .*completed: built", err), err
    assert job_status(capsys, "b-1")["priority"] == 1


def test_submit_wait_on_a_terminal_draws_a_live_bar(
    url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich: draw as on a terminal
    monkeypatch.setenv("TTY_INTERACTIVE", "1")
    monkeypatch.setenv("TRIO_JOBPOOL_TOKEN", TOKEN)
    code, out, err = run(capsys, "submit", "test", '["repo-a", 3, 0.3]', "--wait")
    assert code == 0, err
    assert out == '"repo-a: 75 tests passed in 3 shards"\n'
    assert "\x1b[" in err  # redrawn in place
    assert "completed: 3 shards passed" in err


def test_the_progress_bar_shows_square_brackets_as_text(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from trio_jobpool.cli._client import _progress

    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    with _progress("job [/x]") as display:  # (markup, this would raise MarkupError)
        display.update({"status": "failed", "name": "[/bold]", "progress_message": "to [/tmp]"})
    err = capsys.readouterr().err
    assert "job [/x]" in err
    assert "failed: to [/tmp]" in err


def test_submit_wait_of_a_failing_job_exits_1(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["submit", "deploy", '["prod", 1, 0.05]', "--wait", "--token", TOKEN]
    code, out, err = run(capsys, *args)
    assert code == 1
    assert out == ""
    assert re.search(
        r"^job [0-9a-f]{32} failed: RuntimeError: deploy to prod failed: health check timed out$",
        err,
        re.MULTILINE,
    ), err
    # A timeout is not a completion either.
    args = ["submit", "sleep", "[5]", "--timeout", "0.1", "--wait", "--token", TOKEN]
    code, out, err = run(capsys, *args)
    assert code == 1
    assert " timed_out: JobTimeout: " in err


def test_submit_delay_and_at_schedule_the_job(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``--delay`` and ``--at``: the id alone on stdout (for scripts), ``scheduled NAME as ID,
    due at TIME`` on stderr (in this machine's zone); ``status`` and ``cancel`` of the job."""
    code, out, err = run(
        capsys, "submit", "lint", '["repo-a", 0]', "--delay", "2h", "--token", TOKEN
    )
    assert code == 0, err
    job_id = out.strip()
    assert re.fullmatch(r"[0-9a-f]{32}\n", out)
    found = re.fullmatch(rf"scheduled lint as {job_id}, due at (\S+)\n", err)
    assert found, err
    due = datetime.datetime.fromisoformat(found.group(1))
    assert due.utcoffset() is not None  # with its offset
    job = job_status(capsys, job_id)
    assert job["status"] == "scheduled"
    scheduled_for = job["scheduled_for"]
    assert isinstance(scheduled_for, float)
    assert abs(scheduled_for - due.timestamp()) <= 0.5  # (shown to the nearest second)
    assert scheduled_for == pytest.approx(time.time() + 7200, abs=5)
    assert run(capsys, "cancel", job_id, "--token", TOKEN)[:2] == (0, f"job cancelled: {job_id}\n")
    assert job_status(capsys, job_id)["status"] == "cancelled"

    at = datetime.datetime(2999, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    args = ["submit", "lint", "--job-id", "cli-at", "--at", "2999-01-02T03:04:05Z"]
    code, out, err = run(capsys, *args, "--token", TOKEN)
    assert (code, out) == (0, "cli-at\n")
    shown = re.fullmatch(r"scheduled lint as cli-at, due at (\S+)\n", err)
    assert shown, err
    assert datetime.datetime.fromisoformat(shown.group(1)) == at
    scheduled_for = job_status(capsys, "cli-at")["scheduled_for"]
    assert scheduled_for == pytest.approx(at.timestamp(), abs=1e-3)
    assert run(capsys, "cancel", "cli-at", "--token", TOKEN)[0] == 0

    # A time without its offset: the server's one line, exit 2, nothing submitted.
    args = ["submit", "lint", "--job-id", "cli-naive", "--at", "2999-01-02T03:04:05"]
    code, out, err = run(capsys, *args, "--token", TOKEN)
    assert (code, out) == (2, "")
    assert err.startswith("trio-jobpool submit: 'at' must have a UTC offset"), err
    assert err.endswith(" (422 invalid)\n"), err
    assert err.count("\n") == 1, err
    assert run(capsys, "status", "cli-naive")[0] == 1  # 404


def test_submit_delay_wait_shows_the_job_scheduled_then_its_result(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["submit", "lint", '["repo-b", 0]', "--job-id", "cli-soon", "--delay", "0.3"]
    code, out, err = run(capsys, *args, "--wait", "--token", TOKEN)
    assert code == 0, err
    assert out == '"repo-b: no lint errors"\n'
    assert re.search(r"^scheduled lint as cli-soon, due at \S+$", err, re.MULTILINE), err
    assert "submitted lint" not in err
    assert "completed" in err
    job = job_status(capsys, "cli-soon")
    assert job["started_at"] >= job["scheduled_for"] > job["submitted_at"]  # type: ignore[operator]


def test_cancel(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    job_id = f"sleepy-{uuid.uuid4().hex[:8]}"
    code, _, _ = run(capsys, "submit", "sleep", "[60]", "--job-id", job_id, "--token", TOKEN)
    assert code == 0
    code, out, err = run(capsys, "cancel", job_id, "--token", TOKEN)
    assert (code, err) == (0, "")
    assert out == f"job cancelled: {job_id}\n"
    assert job_status(capsys, job_id)["status"] == "cancelled"
    code, out, err = run(capsys, "cancel", job_id, "--token", TOKEN)  # it has ended: 409
    assert (code, out) == (1, "")
    assert "(409 job_ended)" in err
    code, out, err = run(capsys, "cancel", "no-such-job", "--token", TOKEN)  # 404
    assert (code, out) == (1, "")
    assert err == "trio-jobpool cancel: no job 'no-such-job' (404 not_found)\n"


def test_stats_table_and_json(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "stats", "--json")
    assert code == 0
    stats = json.loads(out)
    ended = sum(stats[f"total_{name}"] for name in ("completed", "failed", "cancelled"))
    ended += stats["total_timed_out"]
    waiting = stats["queued_tasks"] + stats["scheduled_tasks"]
    assert stats["total_submitted"] == ended + waiting + stats["active_workers"]
    assert stats["max_workers"] == 4
    code, out, _ = run(capsys, "stats")
    assert code == 0
    assert "pool stats" in out
    assert url in out
    labels = ("submitted", "completed", "failed", "running", "waiting", "scheduled")
    for label in (*labels, "run time p95"):
        assert re.search(rf"│ {label} +│ +[0-9.]+( ms| s)? │", out), out
    assert re.search(r"│ workers +│ +4 │", out)


def test_a_token_is_needed_to_change_state(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "submit", "lint", '["repo-a", 0]')
    assert (code, out) == (2, "")
    assert "(401 unauthorized)" in err
    assert "--token or $TRIO_JOBPOOL_TOKEN" in err
    code, _, err = run(capsys, "submit", "lint", '["repo-a", 0]', "--token", "wrong")
    assert code == 2
    code, _, err = run(capsys, "cancel", "anything")
    assert code == 2
    assert "(401 unauthorized)" in err
    assert run(capsys, "stats")[0] == 0  # reading needs none


def test_refusals_and_their_exit_codes(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "submit", "publish", "--token", TOKEN)
    assert (code, out) == (2, "")
    assert "(400 unknown_job_name)" in err
    code, _, err = run(capsys, "submit", "lint", "--priority", str(2**60), "--token", TOKEN)
    assert code == 2
    assert "(422 invalid)" in err
    job_id = f"dup-{uuid.uuid4().hex[:8]}"
    sleep = ["submit", "sleep", "[60]", "--job-id", job_id, "--token", TOKEN]
    assert run(capsys, *sleep)[0] == 0
    code, _, err = run(capsys, *sleep)  # a live job has this id
    assert code == 1
    assert "(409 duplicate_job)" in err
    assert run(capsys, "cancel", job_id, "--token", TOKEN)[0] == 0
    code, _, err = run(capsys, "status", "no-such-job")
    assert code == 1
    assert "(404 not_found)" in err


def test_prune_refuses_a_store_in_use(
    server: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "prune", "--store", f"sqlite:///{server[1]}", "--older-than", "0")
    assert (code, out) == (1, "")
    assert "is in use by another pool" in err
    assert "stop the server or worker that uses it first" in err


# -- serve: starting, stopping, draining ------------------------------------------------------


def test_sigterm_stops_serving_and_drains_the_running_jobs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = f"sqlite:///{tmp_path / 'jobs.db'}"
    args = ("--port", str(free_port()), "--store", store, "--workers", "2")
    with serving(*args) as (process, url):
        assert f"(store: {store}, workers: 2)" in process.output
        for job_id in ("d1", "d2"):
            code, _, _ = run(capsys, "submit", "sleep", "[1.5]", "--job-id", job_id, "--url", url)
            assert code == 0
        code, _, _ = run(capsys, "submit", "lint", '["a", 0]', "--job-id", "d3", "--url", url)
        assert code == 0
        for job_id in ("d1", "d2"):
            wait_until_running(capsys, job_id, url)
        assert process.stop(signal.SIGTERM) == 0
    assert "Traceback" not in process.stderr
    assert process.stderr == ""
    output = process.output
    assert "SIGTERM: stopping" in output
    assert "draining: 2 running, " in output  # d3 may still wait for a worker
    assert "stopped: 3 completed, 0 failed, 0 cancelled, 0 timed out here" in output
    # No longer served.
    code, _, err = run(capsys, "stats", "--url", url)
    assert code == 3
    assert "cannot reach" in err

    # The jobs that were running when the signal came have completed, in the file.
    async def read_back() -> dict[str, JobStatus]:
        from examples.ci_jobs import registry

        async with open_job_pool(1, 10, store=store, registry=registry) as pool:
            return {job_id: pool.get(job_id).status for job_id in ("d1", "d2", "d3")}

    assert trio.run(read_back) == dict.fromkeys(("d1", "d2", "d3"), JobStatus.COMPLETED)


def test_serve_on_port_0_prints_the_port_it_got(capsys: pytest.CaptureFixture[str]) -> None:
    with serving("--port", "0", "--store", "memory://", "--no-dashboard") as (process, url):
        port = int(url.rsplit(":", 1)[1])
        assert port > 0
        assert "(store: memory://, workers: 4)" in process.output
        assert run(capsys, "stats", "--url", url)[0] == 0
        assert process.stop(signal.SIGINT) == 0  # Ctrl+C: the same graceful stop
    assert "SIGINT: stopping" in process.output
    assert process.stderr == ""


def test_serve_reports_an_address_in_use(tmp_path: Path) -> None:
    with serving("--port", "0", "--store", "memory://") as (_, url):
        port = url.rsplit(":", 1)[1]
        process = Process("serve", "--app", APP, "--port", port, "--store", "memory://")
        assert process.popen.wait(timeout=START_TIMEOUT) == 1
        process.stop()
    assert process.stderr.startswith(f"trio-jobpool serve: cannot listen on 127.0.0.1:{port}: ")
    assert "Traceback" not in process.stderr


def test_serve_max_pending_adds_overflow_room(capsys: pytest.CaptureFixture[str]) -> None:
    """--max-pending N: queue-size + N jobs wait before a submission is refused (429)."""
    args = ("--port", "0", "--store", "memory://", "--workers", "1", "--queue-size", "1")
    with (
        serving(*args, "--max-pending", "2", "--shutdown-timeout", "0") as (_, url),
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        for n in range(4):  # 1 running, then 1 + 2 waiting
            body = {"name": "sleep", "args": [60], "job_id": f"p{n}"}
            assert client.post("/api/v1/jobs", json=body).status_code == 202, n
            if n == 0:
                wait_until_running(capsys, "p0", url)
        refused = client.post("/api/v1/jobs", json={"name": "sleep", "args": [60]})
        assert refused.status_code == 429
        stats = client.get("/api/v1/jobs/pool/stats").json()
        assert (stats["active_workers"], stats["queued_tasks"]) == (1, 3)
    # 'none' is no bound; a negative room is a usage error.
    from trio_jobpool.cli import build_parser

    common = ["serve", "--app", APP]
    assert build_parser().parse_args([*common, "--max-pending", "none"]).max_pending is None
    assert build_parser().parse_args(common).max_pending == 0
    code, _, err = run(capsys, *common, "--max-pending", "-1")
    assert code == 2
    assert "must be at least 0" in err


def test_jobs_cut_off_by_the_shutdown_timeout_stay_queued_and_are_resumed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A job longer than --shutdown-timeout: each stop cuts it off and leaves it queued in the
    store (not counted as cancelled), each start says it resumed the jobs and logs that the
    long one starts over, with its attempt count."""
    store = f"sqlite:///{tmp_path / 'jobs.db'}"
    args = ("--port", "0", "--store", store, "--workers", "1", "--shutdown-timeout", "0.3")
    with serving(*args) as (process, url):
        for job_id in ("long", "next"):
            code, _, _ = run(capsys, "submit", "sleep", "[60]", "--job-id", job_id, "--url", url)
            assert code == 0
        code, _, _ = run(capsys, "submit", "lint", '["a", 0]', "--job-id", "quick", "--url", url)
        assert code == 0
        wait_until_running(capsys, "long", url)
        assert "resumed" not in process.output  # a new store: nothing to resume
        assert process.stop(signal.SIGTERM) == 0
    assert "draining: 1 running, 2 waiting here" in process.output
    stop_line = (
        "stopped: 0 completed, 0 failed, 0 cancelled, 0 timed out here; "
        "3 left queued in the store for the next start"
    )
    assert stop_line in process.output, process.output
    for attempt in (2, 3):
        with serving(*args) as (process, url):
            wait_until_running(capsys, "long", url)
            with httpx.Client(base_url=url, timeout=10) as client:
                job = client.get("/api/v1/jobs/long").json()
            assert (job["status"], job["attempts"]) == ("running", attempt)
            assert process.stop(signal.SIGTERM) == 0
        assert f"resumed 3 jobs from {store} (left queued or running by an earlier run)" in (
            process.output
        )
        assert (
            f"job 'long' (sleep) starts again from the beginning, attempt {attempt}: earlier "
            f"attempts were cut short ({attempt - 1} by a pool's shutdown); a job that runs "
            "longer than the shutdown_timeout starts over at every restart"
        ) in process.stderr, process.stderr
        assert "'next'" not in process.stderr  # never started: nothing starts over
        assert stop_line in process.output


def test_a_scheduled_submit_is_never_refused_for_room(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A full pool refuses an ordinary submission (429) and accepts a scheduled one; the stop
    does not wait for the scheduled job, and the store keeps it (not counted as cancelled)."""
    store = f"sqlite:///{tmp_path / 'jobs.db'}"
    args = ("--port", "0", "--store", store, "--workers", "1", "--queue-size", "1")
    with serving(*args, "--shutdown-timeout", "0.2") as (process, url):
        for job_id in ("f1", "f2"):  # 1 running, 1 waiting: full
            assert run(capsys, "submit", "sleep", "[60]", "--job-id", job_id, "--url", url)[0] == 0
            if job_id == "f1":
                wait_until_running(capsys, "f1", url)
        code, out, err = run(capsys, "submit", "sleep", "[60]", "--url", url)
        assert (code, out) == (1, "")
        assert "(429 queue_full)" in err
        later = ("submit", "sleep", "[60]", "--job-id", "f3", "--delay", "1h", "--url", url)
        code, out, err = run(capsys, *later)
        assert (code, out) == (0, "f3\n")
        assert err.startswith("scheduled sleep as f3, due at ")
        with httpx.Client(base_url=url, timeout=10) as client:
            stats = client.get("/api/v1/jobs/pool/stats").json()
            assert (stats["active_workers"], stats["queued_tasks"], stats["scheduled_tasks"]) == (
                1,
                1,
                1,
            )
            # Over HTTP too, with at.
            body = {"name": "sleep", "args": [1], "at": "2999-01-01T00:00:00+01:00"}
            assert client.post("/api/v1/jobs", json=body).json()["status"] == "scheduled"
            assert client.post("/api/v1/jobs", json={"name": "lint"}).status_code == 429
        assert process.stop(signal.SIGTERM) == 0
    assert (
        "draining: 1 running, 1 waiting here; waiting up to 0.2 s; not for the 2 scheduled"
    ) in process.output, process.output
    assert (
        "stopped: 0 completed, 0 failed, 0 cancelled, 0 timed out here; "
        "4 left queued or scheduled in the store for the next start"
    ) in process.output, process.output


def test_in_memory_jobs_cut_off_are_cancelled(capsys: pytest.CaptureFixture[str]) -> None:
    """Without a store, the jobs the stop cuts off are gone: they count as cancelled."""
    args = ("--port", "0", "--store", "memory://", "--workers", "1", "--shutdown-timeout", "0")
    with serving(*args) as (process, url):
        for job_id in ("m1", "m2"):
            code, _, _ = run(capsys, "submit", "sleep", "[60]", "--job-id", job_id, "--url", url)
            assert code == 0
        wait_until_running(capsys, "m1", url)
        later = ("submit", "sleep", "[60]", "--job-id", "m3", "--delay", "60", "--url", url)
        assert run(capsys, *later)[0] == 0
        assert process.stop(signal.SIGTERM) == 0
    # The scheduled job too: an in-memory pool's stop cancels it.
    assert "draining: 1 running, 1 waiting here; waiting up to 0 s; not for the 1 scheduled" in (
        process.output
    )
    assert "stopped: 0 completed, 0 failed, 3 cancelled, 0 timed out here\n" in process.output


# -- worker, on Redis ---------------------------------------------------------------------


def test_worker_runs_the_jobs_of_a_redis_store(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A worker process runs what a pool that only submits puts in the queue; so does it for a
    `serve --workers 0` front end."""
    from examples.ci_jobs import registry

    store = f"{redis_url}/0?queue=cli{uuid.uuid4().hex[:12]}"
    worker = Process("worker", "--app", APP, "--store", store, "--workers", "2")
    try:
        worker.expect(r"^worker \d+: 2 workers on redis://.*Ctrl\+C to stop$")

        async def submit_only() -> str:
            async with open_job_pool(0, 10, store=store, registry=registry) as pool:
                handle: JobHandle[Any] = await pool.submit("build", "repo-x", 0.1)
                return str(await handle.result())

        assert trio.run(submit_only) == "built repo-x"
        front = ("--port", "0", "--store", store, "--workers", "0")
        with serving(*front) as (process, url):
            assert "workers: 0)" in process.output
            code, out, err = run(capsys, "submit", "lint", '["repo-y", 0]', "--wait", "--url", url)
            assert code == 0, err
            assert out == '"repo-y: no lint errors"\n'
    finally:
        code = worker.stop(signal.SIGTERM)
    assert code == 0, worker.stderr
    assert worker.stderr == ""
    assert "stopped: 2 completed, 0 failed, 0 cancelled, 0 timed out here" in worker.output


def test_worker_reports_a_redis_it_cannot_reach(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    store = f"redis://127.0.0.1:{free_port()}/0?timeout=2"  # nothing listens there
    code, out, err = run(capsys, "worker", "--app", APP, "--store", store)
    assert (code, out) == (1, "")
    assert err.startswith("trio-jobpool worker: cannot use the store: cannot reach Redis at ")


# -- prune ---------------------------------------------------------------------------------


def test_prune_deletes_old_ended_jobs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from examples.ci_jobs import registry

    store = f"sqlite:///{tmp_path / 'jobs.db'}"

    async def fill() -> None:
        async with open_job_pool(2, 10, store=store, registry=registry) as pool:
            for repo in ("a", "b", "c"):
                await pool.submit("lint", repo, 0, job_id=f"lint-{repo}")
            await pool.join()

    trio.run(fill)
    code, out, err = run(capsys, "prune", "--store", store, "--older-than", "7d")
    assert (code, out, err) == (0, f"pruned 0 ended jobs from {store}\n", "")
    code, out, err = run(capsys, "prune", "--store", store, "--older-than", "0s")
    assert (code, out, err) == (0, f"pruned 3 ended jobs from {store}\n", "")


@pytest.mark.parametrize(
    ("store", "message"),
    [
        ("redis://127.0.0.1:6379/0", "a Redis store needs no pruning: ended jobs expire"),
        ("memory://", "expected sqlite:///path/jobs.db"),
        ("sqlite:///{tmp}/missing.db", "no such file: "),
    ],
)
def test_prune_bad_stores(
    store: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = store.format(tmp=tmp_path)
    code, out, err = run(capsys, "prune", "--store", store, "--older-than", "1h")
    assert (code, out) == (2, "")
    assert message in err
    assert not (tmp_path / "missing.db").exists()


# -- bad input: exit code 2, a message, no traceback, nothing started ------------------------


def test_bad_json_args(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # never asked: the input is refused first
    code, out, err = run(capsys, "submit", "build", "repo-a", "--url", url)
    assert (code, out) == (2, "")
    assert "ARGS is not JSON" in err
    assert """'["repo-a", 3]'""" in err
    code, _, err = run(capsys, "submit", "build", '{"repo": "a"}', "--url", url)
    assert code == 2
    assert "ARGS must be a JSON array" in err


def test_no_server(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for args in (("stats",), ("submit", "lint"), ("cancel", "x"), ("status", "x")):
        code, out, err = run(capsys, *args, "--url", url)
        assert (code, out) == (3, "")
        assert f"cannot reach {url}: " in err
        assert "is 'trio-jobpool serve' running there?" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("frobnicate",), "invalid choice: 'frobnicate'"),
        (("serve",), "the following arguments are required: --app"),
        (("submit",), "the following arguments are required: NAME"),
        (("submit", "x", "--priority", "high"), "invalid int value: 'high'"),
        (("submit", "x", "--timeout", "-1"), "a duration must be finite and >= 0"),
        (("submit", "x", "--delay", "-5"), "a duration must be finite and >= 0"),
        (("submit", "x", "--delay", "soon"), "not a duration: 'soon'"),
        (
            ("submit", "x", "--delay", "1", "--at", "2999-01-01T00:00:00Z"),
            "argument --at: not allowed with argument --delay",
        ),
        (("prune", "--store", "sqlite:///x.db", "--older-than", "7w"), "not a duration: '7w'"),
        (("serve", "--app", APP, "--port", "70000"), "not a TCP port: 70000"),
        (("worker", "--app", APP, "--store", "redis://h", "--workers", "0"), "at least 1"),
    ],
)
def test_usage_errors(
    args: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, *args)
    assert (code, out) == (2, "")
    assert err.startswith("usage: trio-jobpool")
    assert message in err


@pytest.mark.parametrize(
    ("app", "message"),
    [
        ("no_such_module:registry", "no module named 'no_such_module' here"),
        ("examples.ci_jobs:jobs", "examples.ci_jobs has no attribute 'jobs' (its registries: "),
        ("examples.ci_jobs:build", "build is a function, not a trio_jobpool.JobRegistry"),
        ("examples/missing.py:registry", "no such file: examples/missing.py"),
        ("examples.ci_jobs:", "expected MODULE:ATTRIBUTE or FILE.py"),
    ],
)
@pytest.mark.parametrize("command", ["serve", "worker"])
def test_bad_app(
    command: str,
    app: str,
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(ROOT)
    code, out, err = run(capsys, command, "--app", app, "--store", "redis://127.0.0.1:1/0")
    assert (code, out) == (2, "")
    assert err.startswith(f"trio-jobpool {command}: --app {app!r}: ")
    assert message in err


def test_an_app_that_fails_to_import_shows_its_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "broken_jobs.py").write_text("registry = 1 / 0\n")
    capsys.readouterr()
    code = main(["serve", "--app", f"{tmp_path / 'broken_jobs.py'}:registry"])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert "importing it failed:\nTraceback" in err  # the user's own code: its traceback helps
    assert "ZeroDivisionError: division by zero" in err


def test_an_app_given_as_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from trio_jobpool.cli._running import load_registry

    monkeypatch.chdir(tmp_path)  # not the repository: the file path finds it all the same
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "modules", dict(sys.modules))
    registry = load_registry(str(ROOT / "examples" / "ci_jobs.py"))  # ":registry" by default
    assert set(registry) == {"build", "test", "lint", "deploy", "sleep"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--store", "memory://", "--workers", "0"), "--workers 0 (a process that only submits)"),
        (("--store", "postgres://db"), "is not supported"),
        (("--store", "sqlite:///x.db?synchronous=SOMETIMES"), "synchronous must be"),
        (("--token", ""), "an empty token is not allowed"),
    ],
)
def test_bad_serve_options(
    args: tuple[str, ...],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(ROOT)
    code, out, err = run(capsys, "serve", "--app", APP, *args)
    assert (code, out) == (2, "")
    assert message in err
    assert not (ROOT / "x.db").exists()


def test_worker_needs_a_store_other_processes_can_share(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    code, _, err = run(capsys, "worker", "--app", APP, "--store", "memory://")
    assert code == 2
    assert "a worker runs the jobs of a shared store" in err


def test_bad_url(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "stats", "--url", "localhost:8000")
    assert code == 2
    assert "expected http://host:port" in err


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90.0), ("90s", 90.0), ("1.5m", 90.0), ("12h", 43200.0), ("7d", 604800.0), ("0", 0.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "d", "7w", "-1s", "inf", "nan", "1e400"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_help_lists_the_commands_and_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    commands = ("demo", "serve", "worker", "submit", "status", "cancel", "stats", "schedules")
    for command in (*commands, "prune"):
        assert command in out
    assert "exit codes:" in out
    code, out, _ = run(capsys, "schedules", "set", "--help")
    assert code == 0
    for option in ("--cron", "--every", "--tz", "--overlap", "--misfire", "--paused", "--token"):
        assert option in out
    code, out, _ = run(capsys, "serve", "--help")
    assert code == 0
    for option in ("--app", "--store", "--host", "--port", "--workers", "--queue-size"):
        assert option in out
    for option in ("--token", "--shutdown-timeout"):
        assert option in out
