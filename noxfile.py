"""Project tasks: ``nox`` runs lint, typecheck, tests, examples, docs and build; ``nox -s bench``
benchmarks."""

from __future__ import annotations

import glob
import shutil
import tarfile
import zipfile
from pathlib import Path

import nox

nox.options.sessions = ["lint", "typecheck", "tests", "examples", "docs", "build"]
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
    """mypy --strict on the package and the tests (one run: the tests use the package's types).

    The tests' third-party imports are typed by their packages, but PyYAML's: its stubs are
    pinned here with mypy."""
    session.install("-e", ".[test]", "mypy==2.4.1", "types-PyYAML==6.0.12.20261122")
    session.run("mypy", "--strict", "trio_jobpool", "tests")


@nox.session
def examples(session: nox.Session) -> None:
    """Run every script in examples/."""
    session.install("-e", ".[test]")
    for script in sorted(glob.glob("examples/*.py")):
        session.run("python", script)


# The documentation generator, pinned: a new release of any of these may add warnings, and
# warnings fail the build. Sphinx 9.0 is the last series that runs on Python 3.11.
DOCS_REQUIREMENTS = ("sphinx==9.0.4", "myst-parser==5.2.0", "furo==2025.12.19")
BUILD_REQUIREMENTS = ("build==1.6.1", "twine==7.0.0")
ROOT = Path(__file__).resolve().parent


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
def build(session: nox.Session) -> None:
    """Build the sdist and the wheel and check them; smoke-test the wheel in a clean venv.

    ``python -m build`` makes the sdist, then the wheel from the sdist; ``twine check --strict``
    checks their metadata; the sdist must hold the tests, the docs and the examples, the wheel
    the dashboard's files, ``py.typed`` and the license. Then the wheel is installed with
    ``[all]`` in a fresh virtualenv and ``tests/wheel_smoke.py`` runs there from a temporary
    directory, in isolated mode, so that nothing is imported from the source tree: the core on
    both backends, each extra (``http``, ``redis``, ``cli``) and ``trio-jobpool demo``.
    """
    session.install(*BUILD_REQUIREMENTS)
    tmp = Path(session.create_tmp()).resolve()
    dist = tmp / "dist"
    shutil.rmtree(dist, ignore_errors=True)
    session.run("python", "-m", "build", "--outdir", str(dist), str(ROOT))
    (sdist,) = dist.glob("*.tar.gz")
    (wheel,) = dist.glob("*.whl")
    session.run("twine", "check", "--strict", str(sdist), str(wheel))
    licenses = sorted(path.name for path in ROOT.glob("LICEN[CS]E*"))
    problems = [] if licenses else ["the source tree has no LICENSE file"]
    problems += _check_sdist(sdist, licenses) + _check_wheel(wheel, licenses)
    if problems:
        session.error("; ".join(problems))
    session.log(f"{sdist.name} and {wheel.name} hold what they must")
    venv = tmp / "smoke-venv"
    shutil.rmtree(venv, ignore_errors=True)
    session.run("python", "-m", "venv", str(venv))
    python = str(venv / "bin" / "python")
    session.run(python, "-m", "pip", "install", "--quiet", f"{wheel}[all]", "httpx", external=True)
    session.chdir(tmp)
    session.run(python, "-I", str(ROOT / "tests" / "wheel_smoke.py"), str(ROOT), external=True)


def _check_sdist(sdist: Path, licenses: list[str]) -> list[str]:
    """What is wrong with the sdist: it must hold the package, README, pyproject, the license,
    the changelog, and every file of tests/, docs/ (but its build) and examples/ that is in the
    source tree."""
    with tarfile.open(sdist) as archive:
        top = archive.getnames()[0].split("/")[0]
        names = {name.removeprefix(f"{top}/") for name in archive.getnames()}
    required = {
        "pyproject.toml",
        "README.md",
        "CHANGELOG.md",
        *licenses,
        "trio_jobpool/py.typed",
        "docs/conf.py",
        "docs/index.md",
    }
    for folder in ("tests", "docs", "examples", "trio_jobpool/http/dashboard"):
        for path in (ROOT / folder).rglob("*"):
            relative = path.relative_to(ROOT)
            skipped = {"_build", "__pycache__", ".hypothesis"} & set(relative.parts)
            if path.is_file() and not skipped and path.suffix not in {".pyc", ".db"}:
                required.add(relative.as_posix())
    missing = sorted(required - names)
    return [f"{sdist.name} lacks {missing}"] if missing else []


def _check_wheel(wheel: Path, licenses: list[str]) -> list[str]:
    """What is wrong with the wheel: it must hold the dashboard's files, ``py.typed``, the
    license and the command's entry point, and no tests or docs."""
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (dist_info,) = {name.split("/")[0] for name in names if ".dist-info/" in name}
        entry_points = archive.read(f"{dist_info}/entry_points.txt").decode()
        metadata = archive.read(f"{dist_info}/METADATA").decode()
    required = {
        "trio_jobpool/py.typed",
        *(f"{dist_info}/licenses/{name}" for name in licenses),
        *(
            f"trio_jobpool/{path.relative_to(ROOT / 'trio_jobpool').as_posix()}"
            for path in (ROOT / "trio_jobpool/http/dashboard").iterdir()
        ),
    }
    problems = []
    missing = sorted(required - names)
    if missing:
        problems.append(f"{wheel.name} lacks {missing}")
    stray = sorted(name for name in names if name.split("/")[0] in {"tests", "docs", "examples"})
    if stray:
        problems.append(f"{wheel.name} holds {stray[:5]}")
    if "trio-jobpool = trio_jobpool.cli:main" not in entry_points:
        problems.append(f"{wheel.name}: no trio-jobpool command in {entry_points!r}")
    if "License-Expression: MIT" not in metadata:
        problems.append(f"{wheel.name}: its metadata has no License-Expression: MIT")
    for name in licenses:
        if f"License-File: {name}" not in metadata:
            problems.append(f"{wheel.name}: its metadata has no License-File: {name}")
    return problems


@nox.session
def bench(session: nox.Session) -> None:
    """The side-by-side benchmark suite (not part of the default run)."""
    session.install("-e", ".", "aiojobs", "uvloop")
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session(name="bench-distributed")
def bench_distributed(session: nox.Session) -> None:
    """The distributed pool against saq, arq and streaq on one redis-server (not default).

    ``nox -s bench-distributed -- --body redis`` for jobs that do one Redis command, ``--
    --scaling`` for trio_jobpool on 1 to 8 worker processes, ``-- --keys`` for jobs with
    flow-control keys against none (see benchmarks/distributed.py).
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
