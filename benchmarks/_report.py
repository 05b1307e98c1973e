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
from workloads import (
    D_TARGET,
    S1_GOAL_BYTES,
    S2_GOAL_RATIO,
    W6_GOAL_RATIO,
    W6_KEYS,
    WORKLOADS,
    Metric,
)

__all__ = [
    "durable_verdicts",
    "machine_info",
    "render_markdown",
    "source_digest",
    "subset",
    "summarise",
]

TIMES = "\N{MULTIPLICATION SIGN}"
_US = "\N{MICRO SIGN}s"
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
        twin = median(BY_NAME[name].memory_twin)
        row["ratio_to_limit"] = None if mine is None or not limit else mine / limit
        row["ratio_to_aiojobs"] = None if mine is None or not peer else mine / peer
        row["ratio_to_memory"] = None if mine is None or not twin else mine / twin


def subset(results: dict[str, Any], section: str) -> dict[str, Any] | None:
    """The part of a run's results for the workloads of one section (``Workload.section``:
    the in-memory ones, the durable ones, the later-job ones); ``None`` if the run measured
    none of them."""
    keys = [key for key in results["config"]["workloads"] if WORKLOADS[key].section == section]
    if not keys:
        return None
    config = {**results["config"], "workloads": keys}
    config["n"] = {key: results["config"]["n"][key] for key in keys}
    return {
        **results,
        "config": config,
        "summary": {key: rows for key, rows in results["summary"].items() if key in keys},
        "records": [r for r in results["records"] if r["workload"] in keys],
    }


def durable_verdicts(summary: dict[str, Any]) -> list[str]:
    """One line per durable workload and backend: both figures, the ratio, target met or not."""
    lines = []
    for key, rows in summary.items():
        workload = WORKLOADS[key]
        if not workload.durable:
            continue
        metric = workload.primary
        for name, row in rows.items():
            impl = BY_NAME[name]
            twin = rows.get(impl.memory_twin) if impl.memory_twin else None
            if twin is None:
                continue
            ratio = row.get("ratio_to_memory")
            mine, theirs = _cell(row, metric), _cell(twin, metric)
            if ratio is None:
                verdict = "no ratio (a measurement failed)"
            elif impl.store != "sqlite" or not workload.durable_target:
                verdict = f"{ratio:.1%} of in-memory (a figure; the target is D3's, NORMAL)"
            else:
                met = "met" if ratio >= D_TARGET else "MISSED"
                verdict = f"{ratio:.1%} of in-memory: target (>= {D_TARGET:.0%}) {met}"
            label = impl.backend if impl.store == "sqlite" else f"{impl.backend}+FULL"
            lines.append(
                f"{key} {label:<12} durable {mine} {metric.label}, "
                f"in-memory {theirs} {metric.label}: {verdict}"
            )
    return lines


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


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


def _durable_pairs(rows: dict[str, Any]) -> list[tuple[str, dict[str, Any] | None, dict[str, Any]]]:
    """(backend, in-memory row, durable row) for each durable implementation measured."""
    pairs = []
    for impl in IMPLS:
        if impl.memory_twin is not None and impl.name in rows:
            label = impl.backend if impl.store == "sqlite" else f"{impl.backend}, FULL"
            pairs.append((label, rows.get(impl.memory_twin), rows[impl.name]))
    return pairs


def _durable_summary_table(summary: dict[str, Any]) -> list[str]:
    head = ["workload", "backend", "in memory", "SQLite store", "durable ÷ in-memory"]
    head.append(f"target ≥ {D_TARGET:.0%}")
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for key, rows in summary.items():
        workload = WORKLOADS[key]
        if not workload.durable:
            continue
        metric = workload.primary
        for backend, memory, durable in _durable_pairs(rows):
            ratio = durable.get("ratio_to_memory")
            verdict = "" if ratio is None else "met" if ratio >= D_TARGET else "**missed**"
            if not workload.durable_target or backend.endswith("FULL"):
                verdict = "(figure only)"  # the target: D3, with the default synchronous=NORMAL
            cells = [workload.title, backend]
            cells += [
                f"{_cell(memory, metric)} {metric.label}",
                f"{_cell(durable, metric)} {metric.label}",
            ]
            cells += [_percent(ratio), verdict]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _durable_detail_table(key: str, rows: dict[str, Any]) -> list[str]:
    workload = WORKLOADS[key]
    head = ["implementation", f"{workload.primary.label} (min{DASH}max)", "durable ÷ in-memory"]
    head += [metric.label for metric in workload.metrics[1:]]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    # Each in-memory pool, then the same pool on a store.
    ordered = [impl for impl in IMPLS if impl.memory_twin is None]
    ordered = [
        twin
        for impl in ordered
        for twin in [impl, *(i for i in IMPLS if i.memory_twin == impl.name)]
    ]
    for impl in ordered:
        row = rows.get(impl.name)
        if row is None:
            continue
        cells = [impl.label, _cell(row, workload.primary, spread=True)]
        cells.append(_percent(row.get("ratio_to_memory")))
        cells += [_cell(row, metric) for metric in workload.metrics[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


# -- later jobs (issue #16) --------------------------------------------------------------------


def _per_round_ratios(
    records: list[dict[str, Any]], impl: str, key: str, reference: str, metric: str
) -> list[float]:
    """``key``'s figure over ``reference``'s, for ``impl``, each within one round."""
    by_round: dict[int, dict[str, float]] = {}
    for record in records:
        if record["impl"] == impl and record["workload"] in (key, reference):
            value = record.get("metrics", {}).get(metric)
            if value is not None:
                by_round.setdefault(record.get("round", 0), {})[record["workload"]] = value
    return [got[key] / got[reference] for got in by_round.values() if len(got) == 2]


def _median_of(rows: dict[str, Any] | None, impl: str, metric: str) -> float | None:
    figure = (rows or {}).get(impl, {}).get("metrics", {}).get(metric)
    return None if figure is None else float(figure["median"])


def _later_summary(results: dict[str, Any]) -> list[str]:
    """The later-job workloads against the goals of issue #16, one table per goal."""
    summary, records = results["summary"], results["records"]
    impls = [impl for impl in IMPLS if any(impl.name in summary.get(k, {}) for k in summary)]
    out: list[str] = []
    if "S1" in summary and "S1W" in summary:
        out += [
            f"Memory (S1 beside S1W, W4's driver at the same n): goal, a scheduled job costs at "
            f"most a waiting job + {S1_GOAL_BYTES} B.",
            "",
            "| backend | scheduled B/job | waiting B/job | scheduled minus waiting | goal |",
            "| --- | --- | --- | --- | --- |",
        ]
        for impl in impls:
            mine = _median_of(summary["S1"], impl.name, "bytes_per_job")
            theirs = _median_of(summary["S1W"], impl.name, "bytes_per_job")
            if mine is None or theirs is None:
                continue
            extra = mine - theirs
            verdict = "met" if extra <= S1_GOAL_BYTES else "**missed**"
            out.append(
                f"| {impl.backend} | {mine:,.1f} | {theirs:,.1f} | {extra:+,.1f} B | "
                f"{verdict} (≤ +{S1_GOAL_BYTES}) |"
            )
        out.append("")
    if "S2" in summary and "S2W" in summary:
        out += [
            f"Submit cost (S2 beside S2W): goal, `submit(delay=)` at most {TIMES}{S2_GOAL_RATIO} "
            f"a plain `submit`. Per round: the median (min{DASH}max) of the ratios each within "
            "one round, of wall time and of the process's CPU time (which other work on the "
            "machine inflates less).",
            "",
            f"| backend | submit(delay=) {_US}/call | submit() {_US}/call | ratio of medians | "
            "per round, wall | per round, CPU | goal |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for impl in impls:
            mine = _median_of(summary["S2"], impl.name, "submit_us_per_job")
            theirs = _median_of(summary["S2W"], impl.name, "submit_us_per_job")
            if mine is None or not theirs:
                continue
            cells = [impl.backend, f"{mine:.2f}", f"{theirs:.2f}", f"{TIMES}{mine / theirs:.2f}"]
            verdicts = []
            for metric in ("submit_us_per_job", "cpu_us_per_job"):
                ratios = _per_round_ratios(records, impl.name, "S2", "S2W", metric)
                if not ratios:
                    cells.append("")
                    continue
                per_round = statistics.median(ratios)
                verdicts.append(per_round <= S2_GOAL_RATIO)
                spread = f" ({min(ratios):.2f}{DASH}{max(ratios):.2f})" if len(ratios) > 1 else ""
                cells.append(f"{TIMES}{per_round:.2f}{spread}")
            verdict = "met" if verdicts and all(verdicts) else "**missed**"
            cells.append(f"{verdict} (≤ {TIMES}{S2_GOAL_RATIO})")
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    if "S3" in summary:
        n = results["config"]["n"]["S3"]
        out += [
            f"Due lag (S3, {n:,} jobs due at one instant, 10 workers): from the due time to "
            "each job's start as its body saw it; the first start shows the timer and the "
            "hand-over of the whole burst, the rest is the pool draining it; no goal in memory "
            "(the issue's is against arq and saq on Redis).",
            "",
            "| backend | p50 ms | p99 ms | max ms | first start ms | pool's own p50 / p99 ms |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for impl in impls:
            row = summary["S3"].get(impl.name)
            if row is None:
                continue
            metrics = {metric.key: metric for metric in WORKLOADS["S3"].metrics}
            cells = [impl.backend] + [
                _cell(row, metrics[key], spread=True)
                for key in ("p50_ms", "p99_ms", "max_ms", "first_ms")
            ]
            cells.append(
                f"{_cell(row, metrics['pool_p50_ms'])} / {_cell(row, metrics['pool_p99_ms'])}"
            )
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return out


# -- flow control (issue #17) ------------------------------------------------------------------


def _ratio_cell(ratios: list[float]) -> str:
    """The median (min-max) of per-round ratios."""
    if not ratios:
        return ""
    spread = f" ({min(ratios):.2f}{DASH}{max(ratios):.2f})" if len(ratios) > 1 else ""
    return f"{TIMES}{statistics.median(ratios):.3f}{spread}"


def _flow_summary(results: dict[str, Any]) -> list[str]:
    """The flow-control workloads against the goal of issue #17 (W6 at most 1.5x W1's µs per
    job), what the keys cost (against W6N), and the fairness figures."""
    summary, records = results["summary"], results["records"]
    impls = [impl for impl in IMPLS if any(impl.name in summary.get(k, {}) for k in summary)]
    keyed = [key for key in ("W6", "W6F", "W6Q", "W6N") if key in summary]
    out: list[str] = []
    if keyed:
        out += [
            f"Throughput: goal, W6's {_US} per job at most {TIMES}{W6_GOAL_RATIO} W1's (W6R, "
            f"the same run). Per round: the median (min{DASH}max) of the ratios each within one "
            "round, of wall time and of the process's CPU time; against W6N (W6's jobs without "
            "keys): what the keys themselves cost.",
            "",
            f"| backend | workload | {_US}/job | CPU {_US}/job | {TIMES} W1 per round, wall | "
            f"{TIMES} W1 per round, CPU | {TIMES} W6N per round, CPU | goal |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for impl in impls:
            for key in ["W6R", *keyed]:
                row = summary.get(key, {}).get(impl.name)
                if row is None:
                    continue
                metrics = {metric.key: metric for metric in WORKLOADS[key].metrics}
                cells = [impl.backend, f"{key} ({WORKLOADS[key].title.split(' ', 1)[1]})"]
                cells += [
                    _cell(row, metrics["us_per_job"], spread=True),
                    _cell(row, metrics["cpu_us_per_job"], spread=True),
                ]
                verdicts = []
                for metric in ("us_per_job", "cpu_us_per_job"):
                    ratios = (
                        []
                        if key == "W6R"
                        else _per_round_ratios(records, impl.name, key, "W6R", metric)
                    )
                    cells.append(_ratio_cell(ratios))
                    if ratios:
                        verdicts.append(statistics.median(ratios) <= W6_GOAL_RATIO)
                plain = (
                    []
                    if key in ("W6R", "W6N")
                    else _per_round_ratios(records, impl.name, key, "W6N", "cpu_us_per_job")
                )
                cells.append(_ratio_cell(plain))
                if key in ("W6", "W6F") and verdicts:
                    met = "met" if all(verdicts) else "**missed**"
                    cells.append(f"{met} (≤ {TIMES}{W6_GOAL_RATIO})")
                else:
                    cells.append("")
                out.append("| " + " | ".join(cells) + " |")
        out += [
            "",
            f"Fairness: the most starts (of other keys' jobs) between two consecutive starts of "
            f"one key, over all {W6_KEYS:,} keys and the whole run (median, min{DASH}max over "
            "rounds); its 99th percentile over every such pair; the most over the pairs that "
            "begin after the submit loop returned (then every key with jobs left has one "
            "waiting); and the starts that a key's limit held back (`delayed_starts`).",
            "",
            "| backend | workload | max starts between two of one key | p99 | max after the "
            "submit loop | delayed starts |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for impl in impls:
            for key in keyed:
                row = summary[key].get(impl.name)
                if row is None:
                    continue
                metrics = {metric.key: metric for metric in WORKLOADS[key].metrics}
                cells = [impl.backend, f"{key} ({WORKLOADS[key].title.split(' ', 1)[1]})"]
                cells += [
                    _cell(row, metrics["max_gap"], spread=True),
                    _cell(row, metrics["p99_gap"], spread=True),
                    _cell(row, metrics["max_gap_drain"], spread=True),
                    _cell(row, metrics["delayed"], spread=True),
                ]
                out.append("| " + " | ".join(cells) + " |")
        out.append("")
    return out


def _later_detail_table(key: str, rows: dict[str, Any]) -> list[str]:
    workload = WORKLOADS[key]
    head = ["implementation", f"{workload.primary.label} (min{DASH}max)"]
    head += [metric.label for metric in workload.metrics[1:]]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for impl in IMPLS:
        row = rows.get(impl.name)
        if row is None:
            continue
        cells = [impl.label, _cell(row, workload.primary, spread=True)]
        cells += [_cell(row, metric) for metric in workload.metrics[1:]]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


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
    durable = [key for key in summary if WORKLOADS[key].durable]
    later = [key for key in summary if WORKLOADS[key].later]
    flow = [key for key in summary if WORKLOADS[key].flow]
    others = [key for key in summary if WORKLOADS[key].section == "results"]
    notes = [
        f"- Machine: {_machine_line(machine)}.",
        f"- Load average at start {load_start}, at end {load_end}.",
        f"- {config['rounds']} round(s), implementations interleaved, one fresh process per "
        f"measurement; medians (min{DASH}max over rounds). Total run time "
        f"{results['duration_s'] / 60:.1f} min.",
    ]
    if others:
        notes.append(
            f"- {TIMES} Trio loop: ratio of the median to the hand-written Trio loop's (\"the "
            f'limit"); {TIMES} aiojobs: to aiojobs on the same event loop. Lower is better.'
        )
    if durable:
        notes.append(
            "- Durable workloads: jobs per second (higher is better); durable ÷ in-memory: the "
            "SQLite-store pool's median ÷ the in-memory pool's on the same backend, in the same "
            f"run; the target is ≥ {D_TARGET:.0%}."
        )
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
    ]
    if others:
        out += ["## Summary", "", *_summary_table(summary), ""]
    if durable:
        out += ["## Durable store: summary", "", *_durable_summary_table(summary), ""]
    if later:
        out += ["## Later jobs: against the goals of issue #16", "", *_later_summary(results)]
    if flow:
        out += ["## Flow control: against the goals of issue #17", "", *_flow_summary(results)]
    for key, rows in summary.items():
        workload = WORKLOADS[key]
        n = config["n"][key]
        out += [f"## {workload.title}: {n:,} jobs", "", f"{workload.what}.", ""]
        if key == "FLAT":
            out += _flat_table(rows)
        elif workload.durable:
            out += _durable_detail_table(key, rows)
        elif workload.later or workload.flow:
            out += _later_detail_table(key, rows)
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
        text = (
            "None: every pool ran (or cancelled) exactly the jobs it was given, trio_jobpool's "
            "counters add up"
        )
        if durable:
            text += ", every job of a durable pool ended `completed` on disk"
        if flow:
            text += ", no key ran two jobs at once"
        out.append(text + ", and no pool started a job out of priority order.")
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
