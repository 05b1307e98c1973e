"""Lines for the user: the status and error lines of every command go through :func:`write_line`;
the address of the documentation they point to is :data:`DOCS_URL`."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Final, TextIO

__all__ = ["DOCS_URL", "write_line"]

DOCS_URL: Final = "https://trio-jobpool.readthedocs.io/"
"""The documentation site: the one place the package names it (``[project.urls]`` in
pyproject.toml repeats it for the package index; tests/test_cli.py checks that they agree)."""


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
