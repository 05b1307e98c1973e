"""Project tasks: ``nox`` runs lint, typecheck, tests, examples and docs; ``nox -s bench``
benchmarks."""

from __future__ import annotations

import glob
import shutil

import nox

nox.options.sessions = ["lint", "typecheck", "tests", "examples", "docs"]
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


# The documentation generator, pinned: a new release of any of these may add warnings, and
# warnings fail the build. Sphinx 9.0 is the last series that runs on Python 3.11.
DOCS_REQUIREMENTS = ("sphinx==9.0.4", "myst-parser==5.2.0", "furo==2025.12.19")


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site, docs/ -> docs/_build/html, with every warning an error.

    Sphinx with MyST (the Markdown pages), autodoc and napoleon (the API reference, from the
    docstrings) and the furo theme; ``-n`` makes every cross-reference that resolves to nothing
    a warning, and MyST warns for a link to a page or heading that does not exist. Offline: no
    extension fetches anything.
    """
    session.install("-e", ".", *DOCS_REQUIREMENTS)
    output = "docs/_build/html"
    shutil.rmtree(output, ignore_errors=True)
    session.run(
        "sphinx-build", "-W", "--keep-going", "-n", "-E", "-q", "-b", "html", "docs", output
    )
    session.log(f"the site is in {output}/index.html")


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
