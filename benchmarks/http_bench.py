"""The HTTP service's submit throughput, against the framework's floor, driven by ``wrk``.

    python benchmarks/http_bench.py                 # 5 rounds of 10 s per server
    python benchmarks/http_bench.py --quick         # 1 round of 3 s: a smoke test
    python benchmarks/http_bench.py --rounds 3 --only pool-trio,floor-trio
    python benchmarks/http_bench.py --render benchmarks/results/http.json

(Not ``http.py``: a script's directory is first on ``sys.path``, so a ``benchmarks/http.py``
would stand in for the standard library's ``http`` package in every script run from here,
Starlette's imports and ``distributed.py``'s ``redis`` included.)

Four servers (``benchmarks/http_servers.py``), one at a time, each a fresh process on a free
loopback port: trio_jobpool's ``create_app`` around an in-memory pool on Hypercorn's trio worker
(``pool-trio``) and on its asyncio worker (``pool-asyncio``), and a bare Starlette app that only
parses the JSON body and answers 202 (``floor-trio``, ``floor-asyncio``). Each round runs every
server, in an order rotated from round to round; per server: one checked submit (202 and a job
id), a warm-up run of wrk, then the measured run, every request a ``POST /api/v1/jobs`` of
``{"name": "noop"}`` (a new job each: no ``job_id``). The report gives the median requests per
second over the rounds and the ratios pool ÷ floor on each backend, and writes
``benchmarks/results/http.md`` and ``.json`` (``http-quick.*`` for ``--quick``).

The sanity checks: wrk's non-2xx/3xx responses and socket errors must be 0, and after the run
the pool must have accepted exactly the jobs wrk's requests submitted (give or take the
requests in flight when wrk stopped) and failed none.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Final

from _report import machine_info, source_digest
from run import snapshot

HERE: Final = Path(__file__).resolve().parent
PACKAGE: Final = HERE.parent / "trio_jobpool"
RESULTS: Final = HERE / "results"
SERVERS: Final = HERE / "http_servers.py"
KINDS: Final = ("pool-trio", "floor-trio", "pool-asyncio", "floor-asyncio")
PAIRS: Final = (("pool-trio", "floor-trio"), ("pool-asyncio", "floor-asyncio"))
LABELS: Final = {
    "pool-trio": "trio_jobpool `create_app`, Hypercorn trio",
    "pool-asyncio": "trio_jobpool `create_app`, Hypercorn asyncio (AnyIO)",
    "floor-trio": "bare Starlette (the floor), Hypercorn trio",
    "floor-asyncio": "bare Starlette (the floor), Hypercorn asyncio",
}
PATH: Final = "/api/v1/jobs"
BODY: Final = '{"name": "noop"}'
READY_TIMEOUT: Final = 30.0  # seconds for a server to print its ready line
STOP_TIMEOUT: Final = 10.0  # seconds for a server to exit after SIGTERM (then SIGKILL)
VERSIONS: Final = ("trio-jobpool", "trio", "anyio", "hypercorn", "starlette", "h11")
TIMES: Final = "\N{MULTIPLICATION SIGN}"
DASH: Final = "\N{EN DASH}"
CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")

# wrk: every request the same POST; at the end one line of JSON with wrk's own summary
# (errors.status counts the responses with a status above 399: wrk's "Non-2xx or 3xx").
LUA: Final = f"wrk.body = '{BODY}'\n" + (
    """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %.0f, "duration_us": %.0f, "bytes": %.0f, "connect": %.0f, ' ..
    '"read": %.0f, "write": %.0f, "status": %.0f, "timeout": %.0f, ' ..
    '"latency_p50_us": %.0f, "latency_p99_us": %.0f, "latency_max_us": %.0f}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
"""
)


# -- one server --------------------------------------------------------------------------------


def free_port() -> int:
    """A port the system has just handed out on 127.0.0.1 (free unless someone takes it now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(server: subprocess.Popen[str], timeout: float) -> str:
    """The server's ready line (``READY <url> <trio_jobpool file>``); bounded by ``timeout``."""
    assert server.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(server.stdout, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            if not selector.select(left):
                break
            line = server.stdout.readline()
            if line.startswith("READY "):
                return line.strip()
            if not line:  # the server exited
                break
    raise RuntimeError(f"no ready line within {timeout:g} s (exit status {server.poll()})")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process (Linux ``/proc/<pid>/stat``)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def post_once(url: str) -> dict[str, Any]:
    """One submit by hand: it must be answered 202 with a job id."""
    request = urllib.request.Request(
        url + PATH.lstrip("/"),
        data=BODY.encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        status = response.status
        answer: dict[str, Any] = json.loads(response.read())
    if status != 202 or not isinstance(answer.get("job_id"), str):
        raise RuntimeError(f"the check submit was answered {status} {answer}")
    return answer


def pool_stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "api/v1/jobs/pool/stats", timeout=10) as response:
        stats: dict[str, Any] = json.loads(response.read())
    return stats


def run_wrk(args: argparse.Namespace, lua: Path, url: str, seconds: int) -> dict[str, Any]:
    """One wrk run against ``url``; wrk's summary, its output, and its CPU time."""
    command = [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{seconds}s",  # (whole seconds: wrk refuses 0.5s)
        "--timeout",
        "10s",
        "-s",
        str(lua),
        url + PATH.lstrip("/"),
    ]
    cpu_before = children_cpu_seconds()
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    cpu = children_cpu_seconds() - cpu_before
    found = re.search(r"^RESULT (\{.*\})$", done.stdout, re.MULTILINE)
    if done.returncode or not found:
        tail = (done.stdout + done.stderr).strip()[-2000:]
        raise RuntimeError(f"wrk exited with status {done.returncode}, no summary:\n{tail}")
    summary: dict[str, Any] = json.loads(found.group(1))
    summary["cpu_s"] = cpu
    summary["output"] = done.stdout[: found.start()].strip()
    return summary


def measure(
    kind: str, args: argparse.Namespace, lua: Path, env: dict[str, str], snapshot_dir: str
) -> dict[str, Any]:
    """Start the server ``kind``, check one submit, warm up, measure; always returns a record."""
    record: dict[str, Any] = {"kind": kind, "loadavg_1m": os.getloadavg()[0]}
    port = free_port()
    began = time.monotonic()
    with tempfile.TemporaryFile("w+") as stderr:
        server = subprocess.Popen(
            [sys.executable, str(SERVERS), kind, str(port)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=env,
        )
        try:
            ready = wait_ready(server, READY_TIMEOUT)
            url, imported = ready.split()[1:3]
            if not imported.startswith(snapshot_dir):
                raise RuntimeError(f"the server imported {imported}, not the snapshot")
            post_once(url)
            warm = run_wrk(args, lua, url, args.warmup) if args.warmup else None
            server_cpu = cpu_seconds(server.pid)
            wrk = run_wrk(args, lua, url, args.duration)
            server_cpu = cpu_seconds(server.pid) - server_cpu
            record.update(_figures(wrk, server_cpu))
            record["problems"] = _problems(wrk, warm)
            if kind.startswith("pool-"):
                record["problems"] += _pool_problems(pool_stats(url), wrk, warm, args)
        except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            _stop(server)
            stderr.seek(0)
            errors = stderr.read().strip()
        if "error" in record and errors:
            record["error"] += "\nserver stderr:\n" + "\n".join(errors.splitlines()[-15:])
    record["measurement_s"] = time.monotonic() - began
    return record


def _stop(server: subprocess.Popen[str]) -> None:
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(STOP_TIMEOUT)
    if server.stdout is not None:
        server.stdout.close()


def _figures(wrk: dict[str, Any], server_cpu: float) -> dict[str, Any]:
    seconds = wrk["duration_us"] / 1e6
    requests = wrk["requests"]
    return {
        "requests_per_s": requests / seconds,
        "requests": requests,
        "seconds": seconds,
        "non_2xx_3xx": wrk["status"],
        "socket_errors": {key: wrk[key] for key in ("connect", "read", "write", "timeout")},
        "latency_p50_ms": wrk["latency_p50_us"] / 1000,
        "latency_p99_ms": wrk["latency_p99_us"] / 1000,
        "server_cpu_percent": 100 * server_cpu / seconds,
        "server_cpu_us_per_request": 1e6 * server_cpu / requests if requests else None,
        "wrk_cpu_percent": 100 * wrk["cpu_s"] / seconds,
        "wrk_output": wrk["output"],
    }


def _problems(wrk: dict[str, Any], warm: dict[str, Any] | None) -> list[str]:
    problems = []
    for name, run in (("measured", wrk), ("warm-up", warm)):
        if run is None:
            continue
        if run["status"]:
            problems.append(f"{name} run: {run['status']} responses not 2xx/3xx")
        errors = {key: run[key] for key in ("connect", "read", "write", "timeout") if run[key]}
        if errors:
            problems.append(f"{name} run: socket errors {errors}")
    return problems


def _pool_problems(
    stats: dict[str, Any],
    wrk: dict[str, Any],
    warm: dict[str, Any] | None,
    args: argparse.Namespace,
) -> list[str]:
    """Every request wrk counted submitted one job; a request still in flight when wrk
    stopped (at most one per connection and run) may have submitted one more."""
    counted = 1 + wrk["requests"] + (warm["requests"] if warm else 0)  # 1: the check submit
    slack = args.connections * (2 if warm else 1)
    submitted = stats["total_submitted"]
    problems = []
    if not counted <= submitted <= counted + slack:
        problems.append(f"the pool accepted {submitted} jobs for {counted} counted requests")
    if stats["total_failed"] or stats["total_timed_out"]:
        problems.append(f"jobs failed or timed out: {stats}")
    return problems


# -- the run -----------------------------------------------------------------------------------


def plan(kinds: list[str], rounds: int) -> list[tuple[int, str]]:
    """(round, kind) in run order: every kind each round, the order rotated by one each round."""
    steps = []
    for round_ in range(rounds):
        shift = round_ % len(kinds)
        steps += [(round_, kind) for kind in kinds[shift:] + kinds[:shift]]
    return steps


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per server: medians, min, max; per backend: pool ÷ floor of the medians, and the
    range of the same ratio within each round."""
    rows: dict[str, Any] = {}
    for kind in KINDS:
        mine = [r for r in records if r["kind"] == kind]
        if not mine:
            continue
        ok = [r for r in mine if "requests_per_s" in r]
        rows[kind] = {
            "runs": len(ok),
            "errors": [r["error"] for r in mine if "error" in r],
            "problems": sorted({p for r in ok for p in r["problems"]}),
            "non_2xx_3xx": sum(r["non_2xx_3xx"] for r in ok),
            **{
                key: _stats([r[key] for r in ok if r.get(key) is not None])
                for key in (
                    "requests_per_s",
                    "latency_p50_ms",
                    "latency_p99_ms",
                    "server_cpu_percent",
                    "server_cpu_us_per_request",
                    "wrk_cpu_percent",
                )
            },
        }
    ratios: dict[str, Any] = {}
    for pool, floor in PAIRS:
        if pool not in rows or floor not in rows:
            continue
        pool_rps, floor_rps = rows[pool]["requests_per_s"], rows[floor]["requests_per_s"]
        if pool_rps is None or floor_rps is None:
            continue
        per_round = [
            a["requests_per_s"] / b["requests_per_s"]
            for a in records
            for b in records
            if a["kind"] == pool
            and b["kind"] == floor
            and a["round"] == b["round"]
            and "requests_per_s" in a
            and "requests_per_s" in b
        ]
        ratios[pool] = {
            "floor": floor,
            "ratio_of_medians": pool_rps["median"] / floor_rps["median"],
            "per_round": _stats(per_round),
        }
    return {"rows": rows, "ratios": ratios}


def _stats(values: list[float]) -> dict[str, Any] | None:
    if not values:
        return None
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "values": values,
    }


# -- the report --------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 0) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def _spread(figure: dict[str, Any] | None, digits: int = 0) -> str:
    if figure is None:
        return ""
    text = _num(figure["median"], digits)
    if len(figure["values"]) > 1:
        text += f" ({_num(figure['min'], digits)}{DASH}{_num(figure['max'], digits)})"
    return text


def _median(figure: dict[str, Any] | None, digits: int = 0) -> str:
    return "" if figure is None else _num(figure["median"], digits)


def render_markdown(results: dict[str, Any]) -> str:
    config, machine = results["config"], results["machine"]
    rows, ratios = results["summary"]["rows"], results["summary"]["ratios"]
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items() if v)
    commit = machine["commit"] or "?"
    if machine["trio_jobpool_dirty"]:
        commit += " with uncommitted changes to trio_jobpool/"
    loads = [r["loadavg_1m"] for r in results["records"]]
    lines = [
        "# HTTP service: submit throughput",
        "",
        f"`POST {PATH}` of `{BODY}` (a new job each time), driven by `wrk -t{config['threads']} "
        f"-c{config['connections']} -d{config['duration_s']:g}s` after a "
        f"{config['warmup_s']:g} s warm-up, one server at a time, each a fresh process; "
        f"{config['rounds']} round(s), servers rotated from round to round; medians "
        f"(min{DASH}max). Method: `benchmarks/http_bench.py`.",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores (shared by wrk and the server); "
        f"{machine['implementation']} {machine['python']}; {versions}; "
        f"{machine.get('wrk', 'wrk ?')}; commit {commit}; {machine['date']}.",
        "",
        f"Load average (1 min) before each measurement: {min(loads):.2f}{DASH}"
        f"{max(loads):.2f} (median {statistics.median(loads):.2f}).",
        "",
        "| server | requests/s | ÷ floor | latency p50 / p99 ms | server CPU µs/request "
        "| server CPU | wrk CPU | non-2xx/3xx |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for kind, row in rows.items():
        ratio = ratios.get(kind)
        to_floor = f"{TIMES}{ratio['ratio_of_medians']:.2f}" if ratio else ""
        lines.append(
            f"| {LABELS[kind]} | {_spread(row['requests_per_s'])} | {to_floor} | "
            f"{_median(row['latency_p50_ms'], 1)} / {_median(row['latency_p99_ms'], 1)} | "
            f"{_median(row['server_cpu_us_per_request'])} | "
            f"{_median(row['server_cpu_percent'])}% | {_median(row['wrk_cpu_percent'])}% | "
            f"{row['non_2xx_3xx']} |"
        )
    lines += [
        "",
        "Pool ÷ floor: the ratio of the medians; in brackets, the same ratio within each round "
        f"(median, min{DASH}max).",
        "",
    ]
    for kind, ratio in ratios.items():
        per_round = ratio["per_round"]
        spread = ""
        if per_round:
            spread = (
                f" (per round {TIMES}{per_round['median']:.2f}, "
                f"{per_round['min']:.2f}{DASH}{per_round['max']:.2f})"
            )
        lines.append(
            f"- `{kind}` ÷ `{ratio['floor']}`: {TIMES}{ratio['ratio_of_medians']:.2f}{spread}"
        )
    lines += [
        "",
        "Server CPU: the server process's CPU time over the measured run ÷ its length (100% is "
        "one core, all a one-process Python server can use); wrk CPU: the same for wrk.",
        "",
        "## Problems found by the sanity checks",
        "",
    ]
    problems = [
        f"- `{kind}`: {text}"
        for kind, row in rows.items()
        for text in row["problems"] + [e.splitlines()[0] for e in row["errors"]]
    ]
    lines += problems or [
        "None: every response was 2xx, no socket errors, and each pool accepted one job per "
        "request and failed none."
    ]
    return "\n".join(lines) + "\n"


# -- main --------------------------------------------------------------------------------------


def _machine() -> dict[str, Any]:
    from importlib import metadata

    machine = machine_info()
    versions: dict[str, str | None] = {}
    for name in VERSIONS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    machine["versions"] = versions
    done = subprocess.run(["wrk", "--version"], capture_output=True, text=True, timeout=10)
    machine["wrk"] = " ".join((done.stdout + done.stderr).split()[:2])
    return machine


def _progress(step: int, total: int, record: dict[str, Any]) -> str:
    where = f"[{step:>2}/{total}] {record['kind']:<14}"
    if "error" in record:
        return f"{where} ERROR: {record['error'].splitlines()[0]}"
    line = (
        f"{where} {record['requests_per_s']:>8,.0f} requests/s  "
        f"(server CPU {record['server_cpu_percent']:.0f}%, wrk CPU "
        f"{record['wrk_cpu_percent']:.0f}%, p50 {record['latency_p50_ms']:.1f} ms, "
        f"non-2xx {record['non_2xx_3xx']})  ({record['measurement_s']:.1f} s)"
    )
    if record["problems"]:
        line += "  PROBLEMS: " + "; ".join(record["problems"])
    return line


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1 round of 3 s (smoke test)")
    parser.add_argument("--rounds", type=int, help="rounds (default 5, or 1 with --quick)")
    parser.add_argument("--duration", type=int, help="seconds per wrk run (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up seconds (default 2)")
    parser.add_argument("--connections", type=int, default=50, help="wrk -c (default 50)")
    parser.add_argument("--threads", type=int, default=1, help="wrk -t (default 1)")
    parser.add_argument("--only", help=f"servers, comma-separated: {','.join(KINDS)}")
    parser.add_argument("--render", metavar="JSON", help="measure nothing: re-render a run")
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.quick else 5
    if args.duration is None:
        args.duration = 3 if args.quick else 10
    picked = [k.strip() for k in (args.only or ",".join(KINDS)).split(",") if k.strip()]
    unknown = [kind for kind in picked if kind not in KINDS]
    if unknown:
        parser.error(f"unknown server(s): {', '.join(unknown)}; known: {', '.join(KINDS)}")
    args.kinds = [kind for kind in KINDS if kind in picked]
    if args.rounds < 1 or args.duration <= 0 or args.warmup < 0 or not args.kinds:
        parser.error("--rounds and --duration must be at least 1, --warmup at least 0")
    if args.connections < args.threads or args.threads < 1:
        parser.error("wrk needs --threads >= 1 and --connections >= --threads")
    return args


def write_report(results: dict[str, Any], stem: str) -> None:
    markdown = render_markdown(results)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(results, indent=1) + "\n")
    (RESULTS / f"{stem}.md").write_text(markdown)
    print(markdown)
    print(f"written: {RESULTS / stem}.md and .json")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.render:
        saved = Path(args.render)
        results = json.loads(saved.read_text())
        results["summary"] = summarise(results["records"])
        write_report(results, saved.stem)
        return 0
    if shutil.which("wrk") is None:
        sys.exit(
            "wrk is not installed: this benchmark drives the servers with it "
            "(Debian/Ubuntu: apt-get install wrk; macOS: brew install wrk)"
        )
    steps = plan(args.kinds, args.rounds)
    machine = _machine()
    total_s = len(steps) * (args.duration + args.warmup + 2)
    print(f"{len(steps)} measurements, about {total_s / 60:.0f} min; {machine['cpu']}")
    started = time.monotonic()
    records = []
    with tempfile.TemporaryDirectory(prefix="jobpool-http-bench-") as tmp:
        env = snapshot(Path(tmp))
        source = source_digest(Path(tmp) / "trio_jobpool")
        lua = Path(tmp) / "submit.lua"
        lua.write_text(LUA)
        for step, (round_, kind) in enumerate(steps, 1):
            record = measure(kind, args, lua, env, tmp)
            record["round"] = round_
            records.append(record)
            print(_progress(step, len(steps), record), flush=True)
    results = {
        "machine": machine,
        "config": {
            "quick": args.quick,
            "rounds": args.rounds,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "threads": args.threads,
            "kinds": args.kinds,
            "body": BODY,
            "lua": LUA,
        },
        "source": source,
        "source_changed": source_digest(PACKAGE) != source,
        "duration_s": time.monotonic() - started,
        "loadavg_end": os.getloadavg(),
        "summary": summarise(records),
        "records": records,
    }
    print()
    write_report(results, "http-quick" if args.quick else "http")
    return 1 if any("error" in r or r.get("problems") for r in records) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
