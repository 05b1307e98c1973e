"""Measure versions of trio_jobpool side by side: the same workloads, interleaved, in one run.

    python benchmarks/ab.py before=9145353 after=HEAD --only W1 --rounds 20
    python benchmarks/ab.py before=9145353 after=HEAD --only W4 --rounds 3
    python benchmarks/ab.py main=main tuples=/tmp/bench-tuples --only S2,S3 --rounds 10
    python benchmarks/ab.py before=43fce5b after=HEAD --only W1,W3 --rounds 30 \
        --metric W1=us_per_job,W1=cpu_us_per_job,W3=drain_us_per_job,W3=drain_cpu_us_per_job

Each version is ``LABEL=REF``: a git commit-ish of this repository (its ``trio_jobpool/`` is
exported with ``git archive``) or a directory holding a ``trio_jobpool/`` (copied at the start,
so edits during the run do not mix versions). Every measurement is one fresh process of this
tree's ``benchmarks/_one.py``, with ``PYTHONPATH`` starting at one version's copy: the drivers,
job bodies and adapters are the same for every version (they use the public API only, so an
older version runs them as long as it has what the workload calls).

Each round runs every (workload, implementation) pair through every version, one right after
the other, the order of the versions rotated from round to round and the pairs' order rotated
too, so a change in the machine's load lands on all versions alike. The report gives, per pair
and version, the median (min-max) of the headline figure, the ratio of the medians to the first
version's, and the median (min-max) of the per-round ratios (each within one round), which is
the steadier figure on a busy machine, with the number of rounds where the version was slower.
``--metric`` picks the figures (one row each): a metric key for every workload given, or
``KEY=metric`` for one workload; several, comma-separated.
It goes to ``benchmarks/results/<name>.md`` and ``.json`` (``--name``, default ``ab``), and the
load average is noted at the start, at the end and per round.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _report import machine_info, source_digest
from impls import BY_NAME
from run import RESULTS, measure
from workloads import WORKLOADS, Metric

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TIMES = "\N{MULTIPLICATION SIGN}"
DASH = "\N{EN DASH}"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("versions", nargs="+", metavar="LABEL=REF")
    parser.add_argument("--only", default="W1", help="workloads, comma-separated (default W1)")
    parser.add_argument(
        "--impls",
        default="jobpool-trio,jobpool-asyncio",
        help="implementations, comma-separated (default: trio_jobpool on Trio and asyncio)",
    )
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="the workloads' small n")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per measurement")
    parser.add_argument("--name", default="ab", help="report name under benchmarks/results/")
    parser.add_argument(
        "--metric",
        help="the figures to compare, comma-separated, one report row each: a metric key of "
        "every workload given (e.g. cpu_us_per_job), or KEY=metric for workload KEY alone "
        "(e.g. W1=cpu_us_per_job,W3=drain_cpu_us_per_job); default: each workload's headline "
        "figure",
    )
    args = parser.parse_args(argv)
    args.workloads = [w.strip() for w in args.only.split(",") if w.strip()]
    args.impl_names = [i.strip() for i in args.impls.split(",") if i.strip()]
    for key in args.workloads:
        if key not in WORKLOADS:
            parser.error(f"unknown workload {key}; known: {', '.join(WORKLOADS)}")
    args.metrics = {}
    for item in (args.metric or "").split(","):
        key, eq, metric = item.strip().rpartition("=")
        if not metric:
            continue
        for workload in [key] if eq else args.workloads:
            if workload not in args.workloads:
                parser.error(f"--metric {item}: {workload} is not among --only")
            if metric not in {m.key for m in WORKLOADS[workload].metrics}:
                parser.error(f"{workload} has no figure {metric}")
            chosen = args.metrics.setdefault(workload, [])
            if metric not in chosen:
                chosen.append(metric)
    for name in args.impl_names:
        if name not in BY_NAME:
            parser.error(f"unknown implementation {name}; known: {', '.join(BY_NAME)}")
    args.pairs = []
    for version in args.versions:
        label, eq, ref = version.partition("=")
        if not eq or not label or not ref:
            parser.error(f"a version is LABEL=REF, got {version!r}")
        args.pairs.append((label, ref))
    if len({label for label, _ in args.pairs}) != len(args.pairs):
        parser.error("the versions' labels must differ")
    if len(args.pairs) < 2:
        parser.error("give at least two versions")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, check=True)
    return done.stdout.decode().strip()


def export(ref: str, into: Path) -> dict[str, Any]:
    """Put ``ref``'s trio_jobpool/ (a commit-ish, or a directory holding one) into ``into``."""
    into.mkdir(parents=True)
    source = Path(ref)
    if (source / "trio_jobpool").is_dir():
        shutil.copytree(
            source / "trio_jobpool",
            into / "trio_jobpool",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        what = {"ref": ref, "commit": None, "directory": str(source.resolve())}
    else:
        commit = _git("rev-parse", "--short", f"{ref}^{{commit}}")
        archive = subprocess.run(
            ["git", "archive", "--format=tar", commit, "trio_jobpool"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
        what = {"ref": ref, "commit": commit, "directory": None}
    what["source"] = source_digest(into / "trio_jobpool")
    return what


def plan(args: argparse.Namespace) -> list[tuple[int, str, str, list[str]]]:
    """(round, workload, implementation, versions in their order) in run order."""
    pairs = [
        (key, name)
        for key in args.workloads
        for name in args.impl_names
        if WORKLOADS[key].impls is None or name in WORKLOADS[key].impls
    ]
    labels = [label for label, _ in args.pairs]
    steps = []
    for round_ in range(args.rounds):
        shift = round_ % len(pairs)
        turn = round_ % len(labels)
        order = labels[turn:] + labels[:turn]
        steps += [(round_, key, name, order) for key, name in pairs[shift:] + pairs[:shift]]
    return steps


def _metric(key: str, chosen: str | None) -> Metric:
    """Workload ``key``'s figure named ``chosen``, or its headline figure."""
    if chosen is None:
        return WORKLOADS[key].primary
    return next(metric for metric in WORKLOADS[key].metrics if metric.key == chosen)


def _figures(key: str, chosen: dict[str, list[str]] | None) -> list[str]:
    """The figures of workload ``key`` to compare: those chosen for it, or its headline one."""
    return (chosen or {}).get(key) or [WORKLOADS[key].primary.key]


def summarise(
    records: list[dict[str, Any]],
    labels: list[str],
    chosen: dict[str, list[str]] | None = None,
) -> list[dict[str, Any]]:
    """Per (workload, implementation, figure): each version's median, min, max of the figure
    (the headline one, or those ``chosen`` for the workload), and its ratios to the first
    version's (of the medians; per round)."""
    rows = []
    seen = sorted({(r["workload"], r["impl"]) for r in records}, key=lambda p: (p[0], p[1]))
    for (key, impl), metric in [(pair, m) for pair in seen for m in _figures(pair[0], chosen)]:
        by_round: dict[int, dict[str, float]] = {}
        for record in records:
            if (record["workload"], record["impl"]) == (key, impl) and "metrics" in record:
                value = record["metrics"].get(metric)
                if value is not None:
                    by_round.setdefault(record["round"], {})[record["version"]] = value
        row: dict[str, Any] = {"workload": key, "impl": impl, "metric": metric, "versions": {}}
        base = labels[0]
        for label in labels:
            values = [got[label] for got in by_round.values() if label in got]
            ratios = [
                got[label] / got[base] for got in by_round.values() if label in got and base in got
            ]
            if not values:
                continue
            figure: dict[str, Any] = {
                "median": statistics.median(values),
                "min": min(values),
                "max": max(values),
                "values": values,
            }
            if label != base and ratios:
                figure["per_round"] = {
                    "median": statistics.median(ratios),
                    "min": min(ratios),
                    "max": max(ratios),
                    "higher": sum(ratio > 1 for ratio in ratios),
                    "rounds": len(ratios),
                }
            row["versions"][label] = figure
        base_median = row["versions"].get(base, {}).get("median")
        for figure in row["versions"].values():
            if base_median:
                figure["ratio"] = figure["median"] / base_median
        rows.append(row)
    return rows


def render(results: dict[str, Any]) -> str:
    machine = results["machine"]
    labels = [v["label"] for v in results["versions"]]
    described = "; ".join(
        f"{v['label']}: {v['commit'] or v['directory']} (sources {v['source']})"
        for v in results["versions"]
    )
    out = [
        "# trio_jobpool versions side by side",
        "",
        f"- Versions: {described}.",
        f"- Machine: {machine['cpu']}, {machine['cores']} cores; Python {machine['python']}; "
        f"harness at commit {machine['commit']}; {machine['date']}.",
        f"- Load average at start {tuple(round(x, 2) for x in machine['loadavg'])}, at end "
        f"{tuple(round(x, 2) for x in results['loadavg_end'])}; 1-minute load per round "
        f"{DASH} median {statistics.median(results['round_load']):.2f}, "
        f"{min(results['round_load']):.2f}{DASH}{max(results['round_load']):.2f}.",
        f"- {results['rounds']} rounds, versions and pairs interleaved, one fresh process per "
        f"measurement; {results['duration_s'] / 60:.1f} min. Ratios are to {labels[0]}; "
        f'"per round": the median (min{DASH}max) of the ratios each within one round, and in '
        "how many rounds the version's figure was higher.",
        "",
    ]
    head = ["workload", "implementation", "figure"]
    for label in labels:
        head.append(f"{label} (min{DASH}max)")
    for label in labels[1:]:
        head += [f"{label} ÷ {labels[0]}", "per round", "higher"]
    out += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for row in results["summary"]:
        metric = _metric(row["workload"], row["metric"])
        digits = metric.digits
        cells = [row["workload"], BY_NAME[row["impl"]].label, metric.label]
        for label in labels:
            figure = row["versions"].get(label)
            cells.append(
                "n/a"
                if figure is None
                else f"{figure['median']:,.{digits}f} ({figure['min']:,.{digits}f}{DASH}"
                f"{figure['max']:,.{digits}f})"
            )
        for label in labels[1:]:
            figure = row["versions"].get(label, {})
            ratio, per_round = figure.get("ratio"), figure.get("per_round")
            cells.append("" if ratio is None else f"{TIMES}{ratio:.3f}")
            if per_round is None:
                cells += ["", ""]
            else:
                cells.append(
                    f"{TIMES}{per_round['median']:.3f} ({per_round['min']:.2f}{DASH}"
                    f"{per_round['max']:.2f})"
                )
                cells.append(f"{per_round['higher']}/{per_round['rounds']}")
        out.append("| " + " | ".join(cells) + " |")
    problems = [
        f"- {r['version']} {r['workload']} {r['impl']} round {r['round']}: {item}"
        for r in results["records"]
        for item in r.get("metrics", {}).get("problems", [])
        + ([r["error"].strip().splitlines()[-1]] if "error" in r else [])
    ]
    out += ["", "Problems found by the sanity checks:", ""]
    out += problems or ["None."]
    out.append("")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    machine = machine_info()
    labels = [label for label, _ in args.pairs]
    steps = plan(args)
    total = len(steps) * len(labels)
    print(f"{total} measurements; machine: {machine['cpu']}, {machine['cores']} cores")
    started = time.perf_counter()
    records: list[dict[str, Any]] = []
    round_load: list[float] = []
    with tempfile.TemporaryDirectory(prefix="jobpool-ab-") as tmp:
        versions, envs = [], {}
        for label, ref in args.pairs:
            where = Path(tmp) / label
            versions.append({"label": label, **export(ref, where)})
            path = os.pathsep.join(filter(None, [str(where), os.environ.get("PYTHONPATH")]))
            envs[label] = {**os.environ, "PYTHONPATH": path}
        done = 0
        for round_, key, impl, order in steps:
            if len(round_load) == round_:
                round_load.append(os.getloadavg()[0])
            n = WORKLOADS[key].quick_n if args.quick else WORKLOADS[key].n
            for label in order:
                began = time.perf_counter()
                record = measure(impl, key, n, args.timeout, envs[label])
                record.update(round=round_, version=label)
                imported = record.get("trio_jobpool_file")
                if imported and not imported.startswith(str(Path(tmp) / label)):
                    record["error"] = f"imported trio_jobpool from {imported}, not {label}'s copy"
                records.append(record)
                done += 1
                figure = record.get("metrics", {}).get(_figures(key, args.metrics)[0])
                shown = "ERROR" if figure is None else f"{figure:,.3f}"
                print(
                    f"[{done:>4}/{total}] r{round_} {key:<4} {impl:<16} {label:<10} {shown} "
                    f"({time.perf_counter() - began:.1f} s)",
                    flush=True,
                )
    results = {
        "machine": machine,
        "versions": versions,
        "rounds": args.rounds,
        "workloads": args.workloads,
        "impls": args.impl_names,
        "quick": args.quick,
        "duration_s": time.perf_counter() - started,
        "loadavg_end": os.getloadavg(),
        "round_load": round_load,
        "metrics": args.metrics,
        "summary": summarise(records, labels, args.metrics),
        "records": records,
    }
    markdown = render(results)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(results, indent=1) + "\n")
    (RESULTS / f"{args.name}.md").write_text(markdown)
    print()
    print(markdown)
    print(f"written: {RESULTS / args.name}.md and .json")
    return 1 if any("error" in record for record in records) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
