"""Each missing extra is one line that names the extra to install, never a traceback; what
does not need an extra works without it.

Every test runs a subprocess in which the packages of an extra cannot be imported
(tests/_missing.py: a finder that answers ``ModuleNotFoundError``, as for a package that is not
installed).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests._missing import env_without

ROOT = Path(__file__).resolve().parent.parent
DISTRIBUTED = ROOT / "examples" / "distributed"
HTTP_PACKAGES = ("starlette", "prometheus_client", "hypercorn")
EVERY_EXTRA = ("rich", *HTTP_PACKAGES, "coredis")
# A Redis URL nothing listens on: a command that got as far as connecting would fail there.
NO_REDIS = "redis://127.0.0.1:1/0"


def run(tmp_path: Path, missing: tuple[str, ...], *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python ARGS`` from the repository root without the ``missing`` packages."""
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        cwd=ROOT,
        env=env_without(tmp_path / "blocked", *missing),
        check=False,
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line the process wrote to stderr (no traceback, nothing else)."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_the_core_needs_no_extra(tmp_path: Path) -> None:
    code = (
        "import trio, trio_jobpool\n"
        "from trio_jobpool import RedisStore, SqliteStore, open_job_pool\n"
        "async def main():\n"
        "    async with open_job_pool(2) as pool:\n"
        "        handle = await pool.submit(trio.sleep, 0)\n"
        "        await handle.wait()\n"
        "    print(handle.status.value)\n"
        "trio.run(main)\n"
    )
    result = run(tmp_path, EVERY_EXTRA, "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "completed\n"
    assert result.stderr == ""


@pytest.mark.parametrize("missing", ["starlette", "prometheus_client"])
def test_importing_the_http_package_names_the_extra(tmp_path: Path, missing: str) -> None:
    code = (
        "try:\n"
        "    import trio_jobpool.http\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__, exc.name)\n"
        "    print(exc)\n"
    )
    result = run(tmp_path, (missing,), "-c", code)
    assert result.returncode == 0, result.stderr
    kind, message = result.stdout.splitlines()
    assert kind == f"ModuleNotFoundError {missing}"
    assert message == (
        f"trio_jobpool.http needs the [http] extra ({missing} is not installed): "
        "pip install 'trio-jobpool[http]'"
    )
    # Uncaught, the last line of the traceback is that message.
    result = run(tmp_path, (missing,), "-c", "import trio_jobpool.http")
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == f"ModuleNotFoundError: {message}"


def test_demo_no_live_needs_no_extra(tmp_path: Path) -> None:
    result = run(tmp_path, EVERY_EXTRA, "-m", "trio_jobpool", "demo", "--jobs", "20", "--no-live")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    assert "✓ completed + failed + cancelled + timed_out = 20 = submitted" in result.stdout
    assert "\nsummary: submitted=20 " in result.stdout


def test_demo_live_without_rich_is_one_line(tmp_path: Path) -> None:
    result = run(tmp_path, ("rich",), "-m", "trio_jobpool", "demo", "--jobs", "20")
    assert result.returncode == 2
    assert result.stdout == ""
    assert one_line(result) == (
        "trio-jobpool demo: the live display needs the [cli] extra (rich is not installed): "
        "pip install 'trio-jobpool[cli]', or run with --no-live"
    )


@pytest.mark.parametrize("missing", HTTP_PACKAGES)
def test_serve_without_an_http_package_is_one_line(tmp_path: Path, missing: str) -> None:
    result = run(
        tmp_path,
        (missing,),
        *("-m", "trio_jobpool", "serve", "--app", "examples.ci_jobs", "--store", "memory://"),
    )
    assert result.returncode == 2
    assert one_line(result) == (
        f"trio-jobpool serve: needs the [cli] extra ({missing} is not installed): "
        "pip install 'trio-jobpool[cli]'"
    )


@pytest.mark.parametrize("command", ["worker", "serve"])
def test_a_redis_store_without_coredis_is_one_line(tmp_path: Path, command: str) -> None:
    args = ("-m", "trio_jobpool", command, "--app", "examples.ci_jobs", "--store", NO_REDIS)
    port = ("--port", "0") if command == "serve" else ()
    result = run(tmp_path, ("coredis",), *args, *port)
    assert result.returncode == 2, result.stdout + result.stderr
    assert one_line(result) == (
        f"trio-jobpool {command}: a Redis store needs the [redis] extra (coredis): "
        "pip install 'trio-jobpool[redis]'"
    )


@pytest.mark.parametrize("script", ["worker.py", "producer.py"])
def test_the_distributed_example_without_coredis_is_one_line(tmp_path: Path, script: str) -> None:
    result = run(tmp_path, ("coredis",), str(DISTRIBUTED / script), NO_REDIS)
    assert result.returncode == 1
    assert result.stdout == ""
    assert one_line(result) == (
        "this example needs the [redis] extra (coredis is not installed): "
        "pip install 'trio-jobpool[redis]'"
    )
