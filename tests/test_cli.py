"""The ``trio-jobpool`` command line: ``demo``, ``--help``, bad arguments, missing extras."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from trio_jobpool.cli._output import DOCS_URL

COMMANDS = ("demo", "serve", "worker", "submit", "status", "cancel", "stats", "prune")


def run_cli(
    *args: str, code: str | None = None, columns: int | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m trio_jobpool ARGS`` (or ``python -c CODE ARGS``) in a subprocess (on a
    terminal ``columns`` wide, as ``$COLUMNS`` says)."""
    command = (
        [sys.executable, "-m", "trio_jobpool"] if code is None else [sys.executable, "-c", code]
    )
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    if columns is not None:
        env["COLUMNS"] = str(columns)
    return subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        env=env,
        check=False,
    )


def parse_summary(output: str) -> dict[str, str]:
    """The ``key=value`` pairs of the demo's ``summary:`` line."""
    lines = [line for line in output.splitlines() if line.startswith("summary: ")]
    assert len(lines) == 1, output
    return dict(pair.split("=", 1) for pair in lines[0].removeprefix("summary: ").split())


def test_demo_plain_output_adds_up() -> None:
    result = run_cli("demo", "--jobs", "60", "--no-live", "--seed", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    out = result.stdout
    summary = parse_summary(out)
    counts = {key: int(value) for key, value in summary.items() if value.isdigit()}
    assert counts["submitted"] == 60
    ended = counts["completed"] + counts["failed"] + counts["cancelled"] + counts["timed_out"]
    assert ended == counts["submitted"]
    # The workload has every kind of ending: failures, retries, one timeout, one cancellation.
    assert counts["completed"] > 0
    assert counts["failed"] >= 1
    assert counts["retried"] >= 1
    assert counts["cancelled"] == 1
    assert counts["timed_out"] == 1
    assert float(summary["wall"].removesuffix("s")) < 20
    # The summary table shows the same numbers as the summary line.
    for status in ("completed", "failed", "cancelled", "timed_out", "submitted"):
        row = re.search(rf"^\s*{status}\s+(\d+)\b", out, re.MULTILINE)
        assert row is not None, f"no {status} row in:\n{out}"
        assert int(row.group(1)) == counts[status]
    assert "✓ completed + failed + cancelled + timed_out = 60 = submitted" in out
    # Plain mode logs the notable events as they happen.
    assert "⏱ timed out" in out
    assert "⊘ cancelled build monorepo#" in out
    assert "⇧ resize    pool grown from 8 to 16 workers" in out
    assert "\x1b[" not in out  # no terminal control codes when not on a terminal


def test_demo_live_display_renders() -> None:
    """The live display, drawn to an in-memory terminal, shows the panels and the summary."""
    pytest.importorskip("rich")
    from rich.console import Console

    from trio_jobpool.cli._demo import DemoConfig, run_demo

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=120, height=40, color_system=None)
    code = run_demo(DemoConfig(jobs=30, workers=4, seed=3, live=True), console)
    assert code == 0
    out = buffer.getvalue()
    for text in (
        "trio-jobpool demo: 30 CI jobs on Trio, seed 3",
        "pool.stats()",
        "running now: ",
        "events",
        "every job has ended",
        "✓ completed + failed + cancelled + timed_out = 30 = submitted",
    ):
        assert text in out
    summary = parse_summary(out)
    assert summary["submitted"] == "30"


def test_demo_workload_is_seeded() -> None:
    pytest.importorskip("rich")
    from trio_jobpool.cli._demo import DemoConfig, make_workload

    def shape(seed: int) -> list[tuple[str, int, float, int]]:
        specs = make_workload(DemoConfig(jobs=100, seed=seed))
        return [(s.job_id, s.priority, s.duration, s.fail_attempts) for s in specs]

    assert shape(7) == shape(7)
    assert shape(7) != shape(8)
    specs = make_workload(DemoConfig(jobs=100, seed=7))
    assert len(specs) == 100
    assert len({spec.job_id for spec in specs}) == 100
    assert {spec.priority for spec in specs} == {1, 5, 10}


@pytest.mark.skipif(not hasattr(os, "pipe") or sys.platform == "win32", reason="POSIX pipes")
def test_output_to_a_closed_pipe_is_dropped_and_the_command_ends_as_it_would() -> None:
    # `trio-jobpool demo --no-live | head -1`: the reader is gone before the first line (its
    # end of the pipe is closed at once), so every write fails with EPIPE; the demo still runs
    # to its end and exits 0, with no BrokenPipeError traceback.
    read_end, write_end = os.pipe()
    process = subprocess.Popen(
        [sys.executable, "-m", "trio_jobpool", "demo", "--no-live", "--jobs", "10"],
        stdout=write_end,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    os.close(write_end)
    os.close(read_end)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0
    assert err == b""


def test_help() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    assert "usage: trio-jobpool" in result.stdout
    assert "demo" in result.stdout
    result = run_cli("demo", "--help")
    assert result.returncode == 0
    for option in ("--jobs", "--workers", "--seed", "--no-live"):
        assert option in result.stdout


def test_no_command_prints_the_help() -> None:
    """The bare command is how one asks what it does: its help, on stdout, exit 0 (as for
    --help; a usage error is exit 2)."""
    result = run_cli()
    assert result.returncode == 0
    assert result.stderr == ""
    assert result.stdout == run_cli("--help").stdout
    assert result.stdout.startswith("usage: trio-jobpool ")
    for command in COMMANDS:
        assert re.search(rf"^    {command} ", result.stdout, re.MULTILINE), command


@pytest.mark.parametrize("columns", [60, 80, 200])
def test_help_is_wrapped_to_the_terminal(columns: int) -> None:
    """Every line of every help fits the terminal (at most 100 columns on a wide one); the
    descriptions are wrapped into lines, not printed as one long line each; the exit codes
    keep their layout."""
    width = min(columns, 100)
    for args in [(), *((command,) for command in COMMANDS)]:
        result = run_cli(*args, "--help", columns=columns)
        assert result.returncode == 0, result.stderr
        long = [line for line in result.stdout.splitlines() if len(line) > width]
        assert long == [], (args, long)
        codes = result.stdout.split("\nexit codes:\n")[1].split("\n\n")[0].splitlines()
        assert [line[:5] for line in codes if not line.startswith("     ")] == [
            "  0  ",
            "  1  ",
            "  2  ",
            "  3  ",
        ]
        assert " ".join(" ".join(codes).split()).endswith(
            "2 bad input: usage, JSON, --app, an answer 400/401/422, a missing extra "
            "3 the server cannot be reached, or answered 5xx"
        )
    serve = run_cli("serve", "--help", columns=columns).stdout
    description = serve.split("\n\n")[1]
    assert description.startswith("Open a job pool on STORE with the jobs of a registry")
    assert description.count("\n") >= (2 if columns <= 80 else 1)


def test_help_points_to_the_docs_site() -> None:
    for args in [(), *((command,) for command in COMMANDS)]:
        help_text = run_cli(*args, "--help", columns=100).stdout
        assert f"\ndocumentation: {DOCS_URL}\n" in help_text, args
        assert ".md" not in help_text, args  # the wheel ships no docs/*.md
    assert DOCS_URL in run_cli("serve", "--help", columns=100).stdout.split("options:")[0]


def test_the_docs_url_is_the_one_pyproject_gives_the_package_index() -> None:
    pyproject = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
    assert pyproject["project"]["urls"]["Documentation"] == DOCS_URL


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("frobnicate",), "invalid choice: 'frobnicate'"),
        (("demo", "--jobs", "3"), "must be at least 10"),
        (("demo", "--workers", "many"), "not an integer"),
    ],
)
def test_bad_arguments_exit_non_zero(args: tuple[str, ...], message: str) -> None:
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_without_rich_says_what_to_install() -> None:
    code = (
        "import sys; sys.modules['rich'] = None\n"  # makes `import rich` fail
        "from trio_jobpool.cli import main\n"
        "sys.exit(main(sys.argv[1:]))"
    )
    result = run_cli("demo", "--jobs", "10", code=code)
    assert result.returncode == 2
    assert "pip install 'trio-jobpool[cli]'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("missing", ["starlette", "prometheus_client", "hypercorn"])
def test_serve_without_the_http_packages_says_what_to_install(missing: str) -> None:
    """The command line imports trio_jobpool.http and Hypercorn only as far as they are there:
    without one of them every other command works, and ``serve`` names the extra to install."""
    code = (
        f"import sys; sys.modules[{missing!r}] = None\n"  # makes `import {missing}` fail
        "from trio_jobpool.cli import main\n"
        "sys.exit(main(sys.argv[1:]))"
    )
    assert run_cli("--version", code=code).returncode == 0
    result = run_cli("serve", "--app", "examples.ci_jobs", "--port", "0", code=code)
    assert result.returncode == 2
    assert f"needs the [cli] extra ({missing}" in result.stderr
    assert "pip install 'trio-jobpool[cli]'" in result.stderr
    assert "Traceback" not in result.stderr
