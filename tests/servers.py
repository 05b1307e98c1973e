"""Real servers for the tests that need one: started here, on loopback ports chosen here.

A test that needs Redis gets it from :func:`redis_server`: a ``redis-server`` process of its own
on a free port of 127.0.0.1 (nothing on disk, nothing kept), stopped and waited for afterwards;
or, if ``$REDIS_URL`` is set, that server (then the tests keep to keys of their own and delete
nothing else). Without a ``redis-server`` binary the test is skipped, except under ``CI=true``,
where a missing server is a failure.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = [
    "free_port",
    "redis_binary",
    "redis_cluster",
    "redis_server",
    "redis_server_process",
]

START_TIMEOUT = 10.0  # seconds for a server to answer PING
STOP_TIMEOUT = 10.0  # seconds for it to exit after SIGTERM (then SIGKILL)
CLUSTER_TIMEOUT = 60.0  # seconds for three nodes to form a cluster (about 1-2 s when idle)


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_cluster_port() -> int:
    """A free port for a cluster node, its bus port (+10000) free too: both below Linux's
    ephemeral range (32768 and up), where an outgoing connection could take one meanwhile."""
    for _ in range(200):  # bounded: ports are taken only rarely
        port = random.randrange(20_000, 22_768)
        if _bindable(port) and _bindable(port + 10_000):
            return port
    raise RuntimeError("no free pair of loopback ports for a cluster node")


def redis_binary() -> str:
    """The ``redis-server`` to start: skips the test if there is none, fails it under CI."""
    found = shutil.which("redis-server")
    if found is None:
        message = "redis-server is not installed (.ci/run installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return found


def _ping(port: int) -> bool:
    """Whether a Redis server on ``port`` answers PING (one short attempt)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_server(workdir: Path, *extra: str) -> Iterator[str]:
    """A ``redis-server`` of this test's own; yields its URL (``redis://127.0.0.1:<port>``).

    ``extra`` arguments go to the server (``--cluster-enabled yes``, ...). It runs in
    ``workdir`` (where a cluster keeps its nodes file), is stopped with SIGTERM when the block
    ends (SIGKILL if it does not exit in time), and always waited for.
    """
    with redis_server_process(workdir, *extra) as (url, _):
        yield url


@contextlib.contextmanager
def redis_server_process(
    workdir: Path, *extra: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """As :func:`redis_server`, also yielding the server's process (to pause it, say)."""
    binary = redis_binary()
    port = free_cluster_port() if "--cluster-enabled" in extra else free_port()
    command = [
        binary,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(workdir),
        *extra,
    ]  # fmt: skip
    log = (workdir / f"redis-{port}.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        # Another process coming up: poll it, bounded in time.
        while not _ping(port):
            if process.poll() is not None or time.monotonic() > deadline:
                log.flush()
                output = (workdir / f"redis-{port}.log").read_text(errors="replace")
                raise RuntimeError(f"redis-server on port {port} did not start:\n{output}")
            time.sleep(0.01)
        yield f"redis://127.0.0.1:{port}", process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGCONT)  # (a test may have paused it)
            process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@contextlib.contextmanager
def redis_cluster(workdir: Path, nodes: int = 3) -> Iterator[list[str]]:
    """A Redis Cluster of ``nodes`` masters (no replicas) on loopback ports of its own; yields
    the nodes' URLs once the cluster says it is ``ok``. Stopped like :func:`redis_server`."""
    with contextlib.ExitStack() as stack:
        urls = []
        for index in range(nodes):
            directory = workdir / f"node{index}"
            directory.mkdir()
            urls.append(
                stack.enter_context(
                    redis_server(
                        directory, "--cluster-enabled", "yes", "--cluster-node-timeout", "2000"
                    )
                )
            )
        addresses = [url.removeprefix("redis://") for url in urls]
        cli = shutil.which("redis-cli") or str(Path(redis_binary()).with_name("redis-cli"))
        try:
            subprocess.run(
                [
                    cli,
                    "--cluster",
                    "create",
                    *addresses,
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],
                check=True,
                capture_output=True,
                timeout=CLUSTER_TIMEOUT,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            logs = "\n".join(
                log.read_text(errors="replace")[-2000:] for log in workdir.glob("node*/redis-*.log")
            )
            raise RuntimeError(
                f"the cluster was not created ({exc}); the nodes said:\n{logs}"
            ) from None
        host, port = addresses[0].split(":")
        deadline = time.monotonic() + CLUSTER_TIMEOUT
        # The nodes agreeing on the slots: poll, bounded in time.
        while True:
            info = subprocess.run(
                [cli, "-h", host, "-p", port, "cluster", "info"],
                capture_output=True,
                text=True,
                timeout=START_TIMEOUT,
                check=False,
            ).stdout
            if "cluster_state:ok" in info:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster did not come up:\n{info}")
            time.sleep(0.05)
        yield urls
