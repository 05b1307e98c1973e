"""Slow clients: a body read timeout, a cap on the bodies read at once, and a real ``serve``
whose file descriptors run out while 200 clients trickle their bodies.

The one time bound asserted (``/healthz`` under 1 s while the slow clients hold on) is the
correctness bound the service promises, with a generous margin; nothing else is timed.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import resource
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest

from trio_jobpool import JobRegistry, open_job_pool
from trio_jobpool.http import create_app

ROOT = Path(__file__).resolve().parents[2]

registry = JobRegistry()


@registry.job(name="add")
async def add(a: int, b: int) -> int:
    return a + b


def _client(app: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")  # type: ignore[arg-type]


async def _stalled_body(started: anyio.Event, release: anyio.Event) -> AsyncIterator[bytes]:
    """A submission's body that stops half-way until ``release`` is set; ``started`` is set
    once the app asks for more than its first half (it is reading the body)."""
    yield b'{"name": "add", '
    started.set()
    await release.wait()
    yield b'"args": [1, 2]}'


JSON = {"Content-Type": "application/json"}


@pytest.mark.anyio
async def test_a_body_that_does_not_arrive_in_time_is_answered_408() -> None:
    async with open_job_pool(1, 10, registry=registry) as pool:
        app = create_app(pool, registry, body_timeout=0.2)
        started, release = anyio.Event(), anyio.Event()
        async with _client(app) as client:
            response = await client.post(
                "/api/v1/jobs", content=_stalled_body(started, release), headers=JSON
            )
            assert response.status_code == 408
            assert response.json()["error"] == "body_timeout"
            assert response.headers["connection"] == "close"
            assert pool.stats().total_submitted == 0


@pytest.mark.anyio
async def test_bodies_beyond_max_bodies_are_refused_at_once() -> None:
    async with open_job_pool(1, 10, registry=registry) as pool:
        app = create_app(pool, registry, max_bodies=1)
        started, release = anyio.Event(), anyio.Event()
        answers: list[httpx.Response] = []
        async with _client(app) as client:
            async with anyio.create_task_group() as tg:

                async def slow() -> None:
                    body = _stalled_body(started, release)
                    answers.append(await client.post("/api/v1/jobs", content=body, headers=JSON))

                tg.start_soon(slow)
                await started.wait()  # one body is being read: no room for another
                refused = await client.post("/api/v1/jobs", json={"name": "add", "args": [3, 4]})
                assert refused.status_code == 503
                assert refused.json()["error"] == "too_many_bodies"
                assert refused.headers["retry-after"] == "1"
                release.set()
            assert answers[0].status_code == 202  # the slow one, once it came whole
            again = await client.post("/api/v1/jobs", json={"name": "add", "args": [3, 4]})
            assert again.status_code == 202  # its place is free again
        assert pool.stats().total_submitted == 2


@pytest.mark.anyio
async def test_body_options_are_checked() -> None:
    async with open_job_pool(1, 10, registry=registry) as pool:
        for bad in ({"body_timeout": 0}, {"body_timeout": float("inf")}, {"max_bodies": 0}):
            with pytest.raises(ValueError, match=next(iter(bad))):
                create_app(pool, registry, **bad)


# -- a real serve, out of file descriptors -----------------------------------------------------

FILES = 128  # the server's limit of open files (soft and hard): reached with 200 clients
SLOW_CLIENTS = 200
TRICKLE_FOR = 3.0  # seconds the slow clients keep sending, one byte each per round
ROUND = 0.5  # seconds between two rounds
BODY_TIMEOUT = 2.0  # the server's --body-timeout: shorter than the trickle
HEALTHZ_BOUND = 1.0  # seconds: /healthz answers within this while the slow clients hold on
START_TIMEOUT = 30.0


def _few_files() -> None:  # (in the child, before exec: serve cannot raise its limit again)
    resource.setrlimit(resource.RLIMIT_NOFILE, (FILES, FILES))


def _healthz(port: int) -> tuple[int, float]:
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/healthz")
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()
    return response.status, time.monotonic() - started


def _listen_backlog(port: int) -> int:
    """The backlog of the socket listening on ``port``, as ``ss`` shows it (Send-Q)."""
    ss = shutil.which("ss")
    if ss is None:
        message = "ss (iproute2) is not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    output = subprocess.run(
        [ss, "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    return int(output.split()[2])


def test_slow_bodies_do_not_starve_a_real_server(tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    command = [
        sys.executable, "-m", "trio_jobpool", "serve", "--app", "examples.ci_jobs:registry",
        "--store", "memory://", "--port", "0", "--body-timeout", str(BODY_TIMEOUT),
        "--backlog", "300",
    ]  # fmt: skip
    with log.open("w") as errors:
        server = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            preexec_fn=_few_files,
            env={**os.environ, "TRIO_JOBPOOL_TOKEN": ""},
        )
    assert server.stdout is not None
    clients: list[socket.socket] = []
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(server.stdout, selectors.EVENT_READ)
            assert selector.select(START_TIMEOUT), f"serve did not start: {log.read_text()}"
        line = server.stdout.readline()
        found = re.search(r"serving on http://127\.0\.0\.1:(\d+) ", line)
        assert found, (line, log.read_text())
        port = int(found.group(1))
        somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
        assert _listen_backlog(port) == min(300, somaxconn)

        head = (
            f"POST /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        ).encode()
        for _ in range(SLOW_CLIENTS):  # all at once: more than the server has files for
            client = socket.socket()
            clients.append(client)
            client.setblocking(False)
            client.connect_ex(("127.0.0.1", port))
        with selectors.DefaultSelector() as selector:
            for client in clients:
                selector.register(client, selectors.EVENT_WRITE)
            waiting = len(clients)
            while waiting:  # each connected (in the backlog, if not accepted yet)
                ready = selector.select(10)
                assert ready, "connections not established within 10 s"
                for key, _ in ready:
                    selector.unregister(key.fileobj)
                    waiting -= 1
        for client in clients:
            with contextlib.suppress(OSError):  # (answered and closed already: fine)
                client.send(head)
        health = []
        deadline = time.monotonic() + TRICKLE_FOR
        while time.monotonic() < deadline:  # bounded: TRICKLE_FOR / ROUND rounds
            for client in clients:
                with contextlib.suppress(OSError):  # (answered and closed: fine)
                    client.send(b" ")  # one byte of 1,000, and again next round
            health.append(_healthz(port))
            time.sleep(ROUND)
        assert all(status == 200 for status, _ in health), health
        assert max(took for _, took in health) < HEALTHZ_BOUND, health
        # Every slow client was answered: refused at once (too many bodies), or timed out.
        answers: Counter[str] = Counter()
        for client in clients:
            client.setblocking(True)
            client.settimeout(10)
            try:
                first = client.recv(64).split(b"\r\n")[0].decode()
            except OSError as exc:
                first = type(exc).__name__
            answers[first] += 1
        assert set(answers) <= {"HTTP/1.1 503 ", "HTTP/1.1 408 "}, answers
        assert answers["HTTP/1.1 408 "] >= 1, answers
        for client in clients:
            client.close()
        clients.clear()

        # Out of file descriptors for sure: connections that send nothing, held open until
        # the server has failed to accept a few times (it tries every 0.1 s), then closed.
        for _ in range(FILES + 50):
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        deadline = time.monotonic() + 10
        while "EMFILE" not in log.read_text():  # bounded: the log file is all there is to watch
            assert time.monotonic() < deadline, "the server never ran out of files"
            time.sleep(0.05)
        time.sleep(2 * ROUND)  # (a few more failed accepts, each once logged with a traceback)
        for client in clients:
            client.close()
        clients.clear()
        assert _healthz(port)[0] == 200  # and it recovers
    finally:
        for client in clients:
            client.close()
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        server.stdout.close()
    text = log.read_text()
    assert "Traceback" not in text, text[:3000]
    assert text.count("EMFILE") == 1, text[:3000]  # one line per condition
