"""Run a child process of the durable-store tests until it says it is ready, then SIGKILL it."""

from __future__ import annotations

import select
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def kill_when_ready(module: str, *args: object, ready_timeout: float = 30) -> float:
    """Run ``python -m module args...`` until it prints ``ready``, then ``kill -9`` it; the
    wall-clock time of the kill. Bounded by ``ready_timeout``; what the child wrote to stderr
    is in the assertion if it never got ready. (Blocking: called before the test has a pool of
    its own.)"""
    child = subprocess.Popen(
        [sys.executable, "-m", module, *map(str, args)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stderr is not None
    try:
        readable, _, _ = select.select([child.stdout], [], [], ready_timeout)
        line = child.stdout.readline() if readable else ""
        assert line == "ready\n", child.stderr.read() if child.poll() is not None else line
        child.send_signal(signal.SIGKILL)
        killed_at = time.time()
    finally:
        child.wait(timeout=30)
        child.stdout.close()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    return killed_at
