"""Lines for the user: the status and error lines of every command go through :func:`write_line`;
the address of the documentation they point to is :data:`DOCS_URL`."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any, Final, TextIO, cast

__all__ = ["DOCS_URL", "DroppingOutput", "dropping_stdout", "print_table", "write_line"]

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
        _to_devnull(out)


def _to_devnull(stream: TextIO) -> None:
    """Point ``stream``'s file descriptor at ``os.devnull``: it can no longer be written (see
    :func:`write_line`). A stream without a file descriptor of its own (``io.StringIO``, a
    wrapper) stays as it is."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, stream.fileno())
        finally:
            os.close(devnull)


class DroppingOutput:
    """``sys.stdout`` while a command runs (:func:`dropping_stdout`): what cannot be written,
    because the reader of a pipe is gone (``trio-jobpool status JOB | head -1``) or the
    terminal closed, is dropped as :func:`write_line` drops it, so the command ends as it
    would have (its exit code is its own) instead of with a ``BrokenPipeError`` traceback.
    Everything else is the stream's."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError:
            _to_devnull(self._stream)
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError:
            _to_devnull(self._stream)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def dropping_stdout() -> Iterator[None]:
    """Run the block with ``sys.stdout`` wrapped in :class:`DroppingOutput` (flushed at the
    end), then restore it."""
    stream = sys.stdout
    wrapped = DroppingOutput(stream)
    sys.stdout = cast(TextIO, wrapped)
    try:
        yield
    finally:
        wrapped.flush()
        sys.stdout = stream


_UNBOUNDED = 1000  # columns of a table where the output is not a terminal


def print_table(
    title: str,
    source: str,
    columns: tuple[str, ...],
    rows: list[tuple[str, ...]],
    right: tuple[str, ...] = (),
) -> None:
    """Print ``rows`` (one cell per column of ``columns``) as the table ``title`` read from
    ``source`` (a URL), ``none`` when there is no row. With rich, a table whose ``right``
    columns are right-justified; no cell is cut short: on a terminal the table wraps to its
    width, elsewhere (a pipe, a file) each row takes one line. Without rich, a line
    ``title (source)``, then one line per row of ``label: cell`` pairs."""
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(f"{title} ({source})")
        if not rows:
            print("  none")
        for row in rows:
            print(
                "  "
                + "  ".join(f"{label}: {cell}" for label, cell in zip(columns, row, strict=True))
            )
        return
    table = Table(title=title, caption=source if rows else f"{source}: none")
    for column in columns:
        table.add_column(column, justify="right" if column in right else "left", overflow="fold")
    for row in rows:
        table.add_row(*row)
    console = Console()
    if not console.is_terminal:  # no width to keep to: one line per row
        console = Console(width=_UNBOUNDED)
    console.print(table)
