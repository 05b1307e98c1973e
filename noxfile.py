"""Project tasks: ``nox`` runs lint, typecheck, tests and examples; ``nox -s bench`` benchmarks."""

from __future__ import annotations

import glob

import nox

nox.options.sessions = ["lint", "typecheck", "tests", "examples"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_external_run = True


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite on both backends (trio and asyncio)."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check, ruff format --check, and lint-imports (the contracts of [tool.importlinter])."""
    session.install("-e", ".", "ruff==0.17.6", "import-linter==2.17")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("lint-imports")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package."""
    session.install("-e", ".[test]", "mypy==2.4.1")
    session.run("mypy", "--strict", "trio_jobpool")


@nox.session
def examples(session: nox.Session) -> None:
    """Run every script in examples/."""
    session.install("-e", ".[test]")
    for script in sorted(glob.glob("examples/*.py")):
        session.run("python", script)


@nox.session
def bench(session: nox.Session) -> None:
    """The side-by-side benchmark suite (not part of the default run)."""
    session.install("-e", ".", "aiojobs", "uvloop")
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session(name="bench-distributed")
def bench_distributed(session: nox.Session) -> None:
    """The distributed pool against saq, arq and streaq on one redis-server (not default).

    ``nox -s bench-distributed -- --body redis`` for jobs that do one Redis command, ``--
    --scaling`` for trio_jobpool on 1 to 8 worker processes (see benchmarks/distributed.py).
    ``redis`` is the harness's own client (INFO, the redis body's counter); ``pytest`` is
    imported by tests/servers.py, which starts the redis-servers.
    """
    session.install("-e", ".[redis]", "saq", "arq", "streaq", "redis", "pytest")
    session.run("python", "benchmarks/distributed.py", *session.posargs)


@nox.session(name="bench-http")
def bench_http(session: nox.Session) -> None:
    """The HTTP service's submits against a bare Starlette app, driven by wrk (not default)."""
    session.install("-e", ".[http]")
    session.run("python", "benchmarks/http_bench.py", *session.posargs)
