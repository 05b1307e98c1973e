"""Summaries, the machine description, and the markdown report."""

from __future__ import annotations

import datetime
import hashlib
import os
import platform
import statistics
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from impls import BY_NAME, IMPLS, LIMIT, peer_of
from workloads import WORKLOADS, Metric

__all__ = ["machine_info", "render_markdown", "source_digest", "summarise"]

TIMES = "\N{MULTIPLICATION SIGN}"
DASH = "\N{EN DASH}"
ROOT = Path(__file__).resolve().parent.parent


# -- the machine -------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def source_digest(package: Path) -> str:
    """A short hash of a package's Python sources."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def machine_info() -> dict[str, Any]:
    dirty = _git("status", "--porcelain", "--", "trio_jobpool")
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "versions": {
            name: _version(name)
            for name in ("trio-jobpool", "trio", "anyio", "outcome", "aiojobs", "uvloop")
        },
        "commit": _git("rev-parse", "--short", "HEAD"),
        "trio_jobpool_dirty": bool(dirty),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "loadavg": os.getloadavg(),
        "executable": sys.executable,
    }


# -- summaries ---------------------------------------------------------------------------------


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians, min and max per workload, implementation and metric, and the ratios."""
    summary: dict[str, Any] = {}
    for key, workload in WORKLOADS.items():
        rows: dict[str, Any] = {}
        for impl in IMPLS:
            mine = [r for r in records if r["workload"] == key and r["impl"] == impl.name]
            if mine:
                rows[impl.name] = _summarise_one(mine, workload.metrics)
        if rows:
            summary[key] = rows
            _add_ratios(rows, workload.primary.key)
    return summary


def _summarise_one(records: list[dict[str, Any]], metrics: tuple[Metric, ...]) -> dict[str, Any]:
    ok = [r for r in records if "metrics" in r]
    row: dict[str, Any] = {
        "runs": len(ok),
        "na": next((r["na"] for r in records if "na" in r), None),
        "errors": [r["error"] for r in records if "error" in r],
        "problems": sorted({p for r in ok for p in r["metrics"].get("problems", [])}),
        "metrics": {},
    }
    for metric in metrics:
        values = [r["metrics"][metric.key] for r in ok if metric.key in r["metrics"]]
        if values:
            row["metrics"][metric.key] = {
                "median": statistics.median(values),
                "min": min(values),
                "max": max(values),
                "values": values,
            }
    return row


def _add_ratios(rows: dict[str, Any], primary: str) -> None:
    def median(name: str | None) -> float | None:
        if name is None or name not in rows:
            return None
        figure = rows[name]["metrics"].get(primary)
        return None if figure is None else float(figure["median"])

    limit = median(LIMIT)
    for name, row in rows.items():
        mine = median(name)
        peer = median(peer_of(BY_NAME[name]))
        row["ratio_to_limit"] = None if mine is None or not limit else mine / limit
        row["ratio_to_aiojobs"] = None if mine is None or not peer else mine / peer


# -- markdown ----------------------------------------------------------------------------------


def _number(value: float | None, digits: int) -> str:
    if value is None:
        return "n/a"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def _ratio(value: float | None) -> str:
    if value is None:
        return ""
    if value >= 100:
        return f"{TIMES}{value:.0f}"
    return f"{TIMES}{value:.2f}" if value >= 0.1 else f"{TIMES}{value:.3f}"


def _cell(row: dict[str, Any] | None, metric: Metric, *, spread: bool = False) -> str:
    if row is None:
        return ""
    if row["na"] is not None:
        return "n/a"
    figure = row["metrics"].get(metric.key)
    if figure is None:
        return "error" if row["errors"] else ""
    text = _number(figure["median"], metric.digits)
    if spread and row["runs"] > 1:
        low, high = _number(figure["min"], metric.digits), _number(figure["max"], metric.digits)
        text += f" ({low}{DASH}{high})"
    return text


def _summary_table(summary: dict[str, Any]) -> list[str]:
    columns = [key for key in ("W1", "W1L", "W2", "W3", "W4", "W5") if key in summary]
    head = ["implementation"]
    for key in columns:
        workload = WORKLOADS[key]
        if key == "W1L":
            head.append(f"W1 latency p50 / p99 {workload.metrics[0].label.split()[-1]}")
        else:
            head.append(f"{key} {workload.primary.label}")
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for impl in IMPLS:
        cells = [impl.label]
        present = False
        for key in columns:
            row = summary[key].get(impl.name)
            present = present or row is not None
            workload = WORKLOADS[key]
            if row is not None and key == "W1L" and row["na"] is None:
                p50, p99 = workload.metrics[0], workload.metrics[1]
                cells.append(f"{_cell(row, p50)} / {_cell(row, p99)}")
            else:
                text = _cell(row, workload.primary)
                if row is not None and row.get("ratio_to_limit") and impl.name != LIMIT:
                    text += f" ({_ratio(row['ratio_to_limit'])})"
                cells.append(text)
        if present:
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _detail_table(key: str, rows: dict[str, Any]) -> list[str]:
    workload = WORKLOADS[key]
    head = ["implementation", f"{workload.primary.label} (min{DASH}max)"]
    head += [f"{TIMES} Trio loop", f"{TIMES} aiojobs"]
    head += [metric.label for metric in workload.metrics[1:]]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for impl in IMPLS:
        row = rows.get(impl.name)
        if row is None:
            continue
        cells = [impl.label, _cell(row, workload.primary, spread=True)]
        cells += [_ratio(row.get("ratio_to_limit")), _ratio(row.get("ratio_to_aiojobs"))]
        cells += [_cell(row, metric) for metric in workload.metrics[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _machine_line(machine: dict[str, Any]) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
    commit = machine["commit"] or "?"
    if machine["trio_jobpool_dirty"]:
        commit += " with uncommitted changes to trio_jobpool/"
    return (
        f"{machine['cpu']}, {machine['cores']} cores; {machine['implementation']} "
        f"{machine['python']} on {machine['platform']}; {versions}; commit {commit}; "
        f"{machine['date']}"
    )


def render_markdown(results: dict[str, Any]) -> str:
    """The report: machine, summary table, one detail table per workload, any problems."""
    machine, config, summary = results["machine"], results["config"], results["summary"]
    load_start = tuple(round(x, 2) for x in machine["loadavg"])
    load_end = tuple(round(x, 2) for x in results["loadavg_end"])
    notes = [
        f"- Machine: {_machine_line(machine)}.",
        f"- Load average at start {load_start}, at end {load_end}.",
        f"- {config['rounds']} round(s), implementations interleaved, one fresh process per "
        f"measurement; medians (min{DASH}max over rounds). Total run time "
        f"{results['duration_s'] / 60:.1f} min.",
        f"- {TIMES} Trio loop: ratio of the median to the hand-written Trio loop's (\"the "
        f'limit"); {TIMES} aiojobs: to aiojobs on the same event loop. Lower is better.',
    ]
    if config["quick"]:
        notes.append("- **Quick smoke run: small n, one round; not for comparison.**")
    if results["source_changed"]:
        notes.append(
            "- trio_jobpool's sources in the tree changed during the run; every measurement "
            f"used the snapshot taken at its start (sources {results['source']})."
        )
    out = [
        "# trio_jobpool benchmarks",
        "",
        *notes,
        "",
        "## Summary",
        "",
        *_summary_table(summary),
        "",
    ]
    for key, rows in summary.items():
        workload = WORKLOADS[key]
        n = config["n"][key]
        out += [f"## {workload.title}: {n:,} jobs", "", f"{workload.what}.", ""]
        if key == "FLAT":
            out += _flat_table(rows)
        else:
            out += _detail_table(key, rows)
        out.append("")
    problems = [
        (key, name, item)
        for key, rows in summary.items()
        for name, row in rows.items()
        for item in row["problems"] + [e.strip().splitlines()[-1] for e in row["errors"]]
    ]
    out += ["## Problems found by the sanity checks", ""]
    if problems:
        out += [f"- {key} {BY_NAME[name].label}: {item}" for key, name, item in problems]
    else:
        out.append(
            "None: every pool ran (or cancelled) exactly the jobs it was given, trio_jobpool's "
            "counters add up, and no pool started a job out of priority order."
        )
    out.append("")
    return "\n".join(out)


def _flat_table(rows: dict[str, Any]) -> list[str]:
    metrics = WORKLOADS["FLAT"].metrics
    head = ["implementation"] + [metric.label for metric in metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for impl in IMPLS:
        row = rows.get(impl.name)
        if row is not None:
            cells = [impl.label] + [_cell(row, metric, spread=True) for metric in metrics]
            lines.append("| " + " | ".join(cells) + " |")
    return lines
