"""A real server for the tests that need one: tests/http/_server.py in a subprocess."""

from __future__ import annotations

import contextlib
import json
import selectors
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SERVER_SCRIPT = Path(__file__).with_name("_server.py")
START_TIMEOUT = 30.0  # seconds for the server to print its ready line
STOP_TIMEOUT = 10.0  # seconds for it to exit after SIGTERM (then SIGKILL)
HTTP_TIMEOUT = 15.0  # seconds for one request of the test's own


@dataclass
class Server:
    """A running _server.py: its base URL (ending in '/'), its process and its token."""

    url: str
    process: subprocess.Popen[bytes]
    token: str | None

    def api(self, method: str, path: str, body: object = None, *, token: bool = True) -> Any:
        """One request to the API; its JSON answer. A status >= 400 fails the test."""
        status, answer = self.call(method, path, body, token=token)
        assert status < 400, f"{method} {path}: {status} {answer}"
        return answer

    def call(
        self, method: str, path: str, body: object = None, *, token: bool = True
    ) -> tuple[int, Any]:
        """One request to the API: its status and its JSON answer."""
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if token and self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.url + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            with error:
                return error.code, json.load(error)

    def submit(
        self, name: str, *args: object, job_id: str | None = None, delay: float | None = None
    ) -> str:
        body: dict[str, Any] = {"name": name, "args": list(args)}
        if job_id is not None:
            body["job_id"] = job_id
        if delay is not None:
            body["delay"] = delay
        return str(self.api("POST", "api/v1/jobs", body)["job_id"])

    def job(self, job_id: str, wait: float = 0) -> dict[str, Any]:
        path = f"api/v1/jobs/{urllib.parse.quote(job_id, safe='')}?wait={wait}"
        answer: dict[str, Any] = self.api("GET", path)
        return answer

    def stats(self) -> dict[str, Any]:
        answer: dict[str, Any] = self.api("GET", "api/v1/jobs/pool/stats")
        return answer


@contextlib.contextmanager
def run_server(
    log: Path, port: int = 0, *, token: str | None = None, options: tuple[str, ...] = ()
) -> Iterator[Server]:
    """Start _server.py (with ``token``, on ``port``, 0 for any, with the other command line
    ``options`` of _server.py), wait for its ready line, and stop it (SIGTERM, then SIGKILL)
    on the way out; its standard error goes to ``log``."""
    command = [sys.executable, str(SERVER_SCRIPT), "--port", str(port), *options]
    if token is not None:
        command += ["--token", token]
    with log.open("ab") as errors:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors)
    assert process.stdout is not None
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + START_TIMEOUT
            line = b""
            while not line.endswith(b"\n"):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    pytest.fail(f"no ready line within {START_TIMEOUT} s: {log.read_text()}")
                chunk = process.stdout.read1(1024)  # type: ignore[attr-defined]
                if not chunk:
                    pytest.fail(f"the server exited ({process.wait()}): {log.read_text()}")
                line += chunk
        word, url = line.decode().split()
        assert word == "READY", line
        yield Server(url, process, token)
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a server process and wait for it: SIGTERM, then SIGKILL after STOP_TIMEOUT."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()


@contextlib.contextmanager
def checked_server(
    log_dir: Path,
    *,
    backend: str = "trio",
    token: str | None = None,
    options: tuple[str, ...] = (),
) -> Iterator[Server]:
    """:func:`run_server` on ``backend``, its log in ``log_dir``; once it has stopped, nothing
    in its log may be a traceback (a failure while serving or stopping)."""
    log = log_dir / "server.log"
    with run_server(log, token=token, options=(*options, "--backend", backend)) as server:
        yield server
    assert "Traceback" not in log.read_text()
