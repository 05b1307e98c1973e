"""Lines for the user: the status and error lines of every command go through :func:`write_line`."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import TextIO

__all__ = ["write_line"]


def write_line(text: str, stream: TextIO | None = None) -> None:
    """Write ``text`` and a newline to ``stream`` (default: ``sys.stdout``), flushed.

    A stream that cannot be written (a pipe whose reader is gone, as after ``serve | tee log``
    and Ctrl+C: ``EPIPE``, since SIGPIPE is ignored; ``EIO`` of a closed terminal) drops the
    line, and its file descriptor is pointed at ``os.devnull`` so that later lines and the
    flush at exit drop theirs too. Output never decides what a command does, nor its exit
    code. Never raises ``OSError``.
    """
    out = sys.stdout if stream is None else stream
    try:
        print(text, file=out, flush=True)
    except OSError:
        # A stream without a file descriptor of its own (io.StringIO, a wrapper) stays as it is.
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, out.fileno())
            finally:
                os.close(devnull)
