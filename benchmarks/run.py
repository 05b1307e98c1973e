"""Run every workload through trio_jobpool and its reference points, side by side.

    python benchmarks/run.py                  # 5 rounds, full size (about 10-15 minutes)
    python benchmarks/run.py --quick          # small n, 1 round: a smoke test
    python benchmarks/run.py --rounds 3 --only W1,W3 --impls trio-loop,jobpool-trio
    python benchmarks/run.py --rounds 3 --only D1,D2,D3   # the durable store against memory
    python benchmarks/run.py --rounds 5 --only S1,S1W,S2,S2W,S3   # later jobs (issue #16)
    python benchmarks/run.py --rounds 15 --only W6R,W6N,W6,W6F,W6Q   # flow control (#17)

Each measurement is one fresh process (``_one.py <impl> <workload> <n>``). Every round runs each
selected workload through every implementation, in an order rotated from round to round, so
that drift in the machine's load is spread over all of them. The report (markdown and JSON) goes
to ``benchmarks/results/latest.*`` (``quick.*`` for ``--quick``, ``durable.*`` for a run of the
durable workloads D1-D3 alone, ``later.*`` for the later-job workloads S1-S3 alone, ``flow.*``
for the flow-control workloads W6* alone); ``--update-docs`` also puts the tables into
``docs/performance.md`` (the durable workloads' into its "Durable store" section, the later
jobs' into "Later jobs", the flow-control ones' into "Flow control").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _report import (
    durable_verdicts,
    machine_info,
    render_markdown,
    source_digest,
    subset,
    summarise,
)
from impls import BY_NAME, IMPLS
from workloads import WORKLOADS

HERE = Path(__file__).resolve().parent
PACKAGE = HERE.parent / "trio_jobpool"
RESULTS = HERE / "results"
DOCS = HERE.parent / "docs" / "performance.md"
# Where --update-docs puts the report: the in-memory workloads', the durable ones' (D1-D3), the
# later jobs' (S1-S3) and flow control's (W6*) each between their own markers
# (``Workload.section``), so a run of one group leaves the others' figures alone.
DOCS_MARKERS = {
    section: (f"<!-- {section}:begin -->", f"<!-- {section}:end -->")
    for section in ("results", "durable", "later", "flow")
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small n, 1 round (smoke test)")
    parser.add_argument("--rounds", type=int, help="rounds (default 5, or 1 with --quick)")
    parser.add_argument("--only", help=f"workloads, comma-separated: {','.join(WORKLOADS)}")
    parser.add_argument("--impls", help=f"implementations: {','.join(BY_NAME)}")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per measurement")
    parser.add_argument("--update-docs", action="store_true", help="write docs/performance.md")
    parser.add_argument(
        "--name", help="the report's name under benchmarks/results/ (default: see above)"
    )
    parser.add_argument(
        "--render", metavar="JSON", help="measure nothing: rewrite the report of a saved run"
    )
    args = parser.parse_args(argv)
    args.workloads = _pick(args.only, WORKLOADS, "workload")
    args.impl_names = _pick(args.impls, BY_NAME, "implementation")
    if args.rounds is None:
        args.rounds = 1 if args.quick else 5
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def _pick(text: str | None, known: dict[str, Any], what: str) -> list[str]:
    if not text:
        return list(known)
    picked = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [item for item in picked if item not in known]
    if unknown:
        sys.exit(f"unknown {what}(s): {', '.join(unknown)}; known: {', '.join(known)}")
    return [item for item in known if item in picked]  # registry order


def plan(args: argparse.Namespace) -> list[tuple[int, str, str]]:
    """(round, workload, implementation) in run order; n/a pairs are left out."""
    steps = []
    for round_ in range(args.rounds):
        for key in args.workloads:
            allowed = WORKLOADS[key].impls
            names = [
                impl.name
                for impl in IMPLS
                if impl.name in args.impl_names
                and (impl.name in allowed if allowed is not None else impl.store is None)
            ]
            shift = round_ % len(names) if names else 0
            steps += [(round_, key, name) for name in names[shift:] + names[:shift]]
    return steps


def snapshot(into: Path) -> dict[str, str]:
    """Copy trio_jobpool into ``into`` and return the environment that imports that copy.

    Other people may edit (or check out) the tree during a run of several minutes; every
    measurement then still sees the same version. ``PYTHONPATH`` comes before an editable or
    regular install of the package.
    """
    shutil.copytree(PACKAGE, into / "trio_jobpool", ignore=shutil.ignore_patterns("__pycache__"))
    path = os.pathsep.join(filter(None, [str(into), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def measure(
    impl: str, key: str, n: int, timeout: float, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run one measurement in a fresh process; always returns a record."""
    if key in BY_NAME[impl].unsupported:
        return {"impl": impl, "workload": key, "n": n, "na": "not supported"}
    command = [sys.executable, str(HERE / "_one.py"), impl, key, str(n)]
    base = {"impl": impl, "workload": key, "n": n}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {**base, "error": f"timed out after {timeout:g} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        return {**base, "error": f"exit status {done.returncode}, no result:\n{tail}"}
    record: dict[str, Any] = json.loads(lines[-1])
    if done.returncode and "error" not in record:
        record["error"] = f"exit status {done.returncode}"
    return record


def _progress(step: int, total: int, record: dict[str, Any], seconds: float) -> str:
    workload = WORKLOADS[record["workload"]]
    if "metrics" in record:
        metric = workload.primary
        value = f"{record['metrics'][metric.key]:,.{metric.digits}f} {metric.label}"
        if record["metrics"].get("problems"):
            value += f"  PROBLEMS: {record['metrics']['problems']}"
    elif "na" in record:
        value = "n/a"
    else:
        value = "ERROR: " + record["error"].strip().splitlines()[-1]
    where = f"{record['workload']:<4} {record['impl']:<22}"
    return f"[{step:>3}/{total}] {where} {value}  ({seconds:.1f} s)"


def write_docs(results: dict[str, Any]) -> None:
    """Put the report of each group of workloads the run measured (below its title) between
    that group's markers in docs/performance.md."""
    text = DOCS.read_text()
    for section, (marker_begin, marker_end) in DOCS_MARKERS.items():
        part = subset(results, section)
        if part is None:
            continue
        begin, end = text.find(marker_begin), text.find(marker_end)
        if begin < 0 or end < begin:
            sys.exit(f"{DOCS} has no {marker_begin} ... {marker_end} markers")
        markdown = render_markdown(part)
        body = markdown.split("\n", 1)[1].strip().replace("\n## ", "\n### ")
        text = text[: begin + len(marker_begin)] + "\n" + body + "\n" + text[end:]
    DOCS.write_text(text)


def write_report(results: dict[str, Any], stem: str, update_docs: bool) -> None:
    markdown = render_markdown(results)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=1) + "\n")
    (RESULTS / f"{stem}.md").write_text(markdown)
    if update_docs:
        write_docs(results)
    print(markdown)
    verdicts = durable_verdicts(results["summary"])
    if verdicts:
        print("Durable store (the SQLite pool's throughput against the in-memory pool's):")
        print("\n".join(f"  {line}" for line in verdicts))
        print()
    print(f"written: {RESULTS / stem}.md and .json")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.render:
        saved = Path(args.render)
        results = json.loads(saved.read_text())
        results["summary"] = summarise(results["records"])
        write_report(results, saved.stem, args.update_docs)
        return 0
    sizes = {key: (w.quick_n if args.quick else w.n) for key, w in WORKLOADS.items()}
    steps = plan(args)
    machine = machine_info()
    print(f"{len(steps)} measurements; machine: {machine['cpu']}, {machine['cores']} cores")
    started = time.perf_counter()
    records = []
    with tempfile.TemporaryDirectory(prefix="jobpool-bench-") as tmp:
        env = snapshot(Path(tmp))
        source = source_digest(Path(tmp) / "trio_jobpool")
        for step, (round_, key, impl) in enumerate(steps, 1):
            began = time.perf_counter()
            record = measure(impl, key, sizes[key], args.timeout, env)
            record["round"] = round_
            imported = record.get("trio_jobpool_file")
            if imported and not imported.startswith(tmp):
                record["error"] = f"imported trio_jobpool from {imported}, not the snapshot"
            records.append(record)
            print(_progress(step, len(steps), record, time.perf_counter() - began), flush=True)
    results = {
        "machine": machine,
        "config": {
            "quick": args.quick,
            "rounds": args.rounds,
            "workloads": args.workloads,
            "impls": args.impl_names,
            "n": {key: sizes[key] for key in args.workloads},
        },
        "source": source,
        "source_changed": source_digest(PACKAGE) != source,
        "duration_s": time.perf_counter() - started,
        "loadavg_end": os.getloadavg(),
        "summary": summarise(records),
        "records": records,
    }
    print()
    sections = {WORKLOADS[key].section for key in args.workloads}
    if args.name:
        stem = args.name
    elif args.quick:
        stem = "quick"
    elif len(sections) == 1 and sections != {"results"}:
        # a run of the durable (later-job, flow-control) workloads alone leaves the full run's
        # report
        stem = sections.pop()
    else:
        stem = "latest"
    write_report(results, stem, args.update_docs)
    return 1 if any("error" in record for record in records) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
