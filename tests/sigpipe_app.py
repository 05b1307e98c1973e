"""The jobs of examples/ci_jobs.py, from a module that restores SIGPIPE's default action (as
many command-line programs do, for ``| head``): a write to a closed pipe would then kill the
process instead of failing with EPIPE."""

from __future__ import annotations

import signal

from examples.ci_jobs import registry

signal.signal(signal.SIGPIPE, signal.SIG_DFL)

__all__ = ["registry"]
