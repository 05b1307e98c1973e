"""The exit codes of ``trio-jobpool`` and :class:`CliError`, the expected failure of a command.

Exit codes (``docs/cli.md``): 0 success; 1 the job or the request failed for a reason other than
bad input (a job that did not complete, 404, 409, 429, 503; a store in use, a port taken);
2 bad input (usage, JSON, ``--app``, a 400/401/422 answer, a missing extra); 3 the server cannot
be reached or answered 5xx; 130 interrupted.
"""

from __future__ import annotations

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "CliError",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """An expected failure of a command: ``message`` goes to stderr, ``code`` is the exit code."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
