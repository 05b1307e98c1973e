"""trio_jobpool's distributed pool with flow-control keys (issue #17), against the same jobs
without keys, alternated in one run.

    python benchmarks/distributed.py --keys              # 5 rounds (about 10 minutes)
    python benchmarks/distributed.py --keys --quick      # fewer jobs, 1 round: a smoke test
    python benchmarks/distributed.py --keys --rounds 3 --procs 1,2 --only-impls jobpool-trio
    python benchmarks/distributed.py --render benchmarks/results/distributed-keys.json

Every measurement is one of the scaling mode's (``distributed.py``, ``--scaling``: a fresh
``redis-server``; P worker processes of 10 workers each, idle; a front end, a pool with
``max_workers=0``, submits N jobs from 50 concurrent tasks while they run; jobs/s from the
first job's start to the last job's end; Redis commands per job from ``INFO commandstats``,
those run inside scripts included, from just before the submits until the store confirmed all
N jobs ended: submits, claims and ends all count), for one of four variants:

* ``plain``: N no-op jobs without a key (the scaling mode's own workload).
* ``keyed``: the same N no-op jobs, job ``i`` with the key ``k<i % 100>``, each of the 100 keys
  limited to ``max_running=2`` by ``set_limit`` (the front end calls it on each key before it
  says "ready": outside the counts). 100 keys x 2 = 200 slots, more than the P x 10 workers, so
  the limits never hold a job back: the pair measures what the keyed path costs.
* ``bind-free``: ``BIND_N`` jobs of the ``hold`` body (a sleep of ``--hold-ms``, 5 ms by
  default, between two stamps of the monotonic clock), job ``i`` with the key ``k<i % 10>``,
  no limit, through ``BIND_PROCS`` (4) worker processes of ``--bind-concurrency`` (4) workers:
  16 workers for 10 keys.
* ``bind-limited``: the same, each of the 10 keys limited to ``max_running=1``: at most 10 of
  the 16 workers can run a job at once, so the limits hold jobs back all the time, and since
  one process has fewer workers than the 10 slots, they bind across processes. Its jobs/s
  is bounded by 10 keys x 1 / the hold (2,000 jobs/s at 5 ms); the report gives the share of
  that bound reached, and the gap between the end of a key's job and the start of its next
  one (the slot's hand-over: the end script, the claim, the worker's wake-up).

The limit held: each worker process sends the ``(i, start, end)`` of every ``hold`` job it ran;
a body runs inside its claim (after the claim script counted it running, before the end script
freed its slot), so two bodies of one key overlapping in time means Redis let the key run both.
The harness sweeps each key's intervals for the most that overlapped ("most at once, one key";
for ``bind-free`` it shows that the check sees overlaps where nothing prevents them), and over
all keys. After the run (all N ended), Redis must hold no key state: ``{q}:krun`` (running
counts), ``{q}:khead``, ``{q}:kwaiting``, ``{q}:kwait``, ``{q}:krate`` and the keys' sets
``{q}:kq:*`` empty; anything left is a problem (a leaked slot).

The order of (implementation, variant, P) is rotated from round to round; each measurement
has the scaling mode's hard timeout (``--timeout``) and its processes their watchdogs. The
report (``benchmarks/results/distributed-keys[-quick].md`` and ``.json``) gives medians
(min-max) over the rounds, the ratio keyed / plain of the medians and its value in each round,
and per Redis command the calls per job without and with keys.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from _report import source_digest
from distributed import (
    ARROW,
    CONCURRENCY,
    DASH,
    ENQUEUE_TASKS,
    PACKAGE,
    TIMES,
    Children,
    _in_fresh_processes,
    _load_line,
    _machine,
    _machine_line,
    _num,
    _run_scaling,
    _snapshot,
    _spread,
    _stats,
    write_report,
)
from distributed_impls import JOBPOOLS, key_name

KEYS = 100  # keyed: keys, job i has key_name(i % KEYS)
KEY_LIMIT = 2  # keyed: max_running of each key
BIND_KEYS = 10  # bind-*: keys
BIND_LIMIT = 1  # bind-limited: max_running of each key
BIND_PROCS = 4  # bind-*: worker processes
# bind-*: workers per process; BIND_PROCS x this = 16 > BIND_KEYS x BIND_LIMIT slots, and more
# slots than one process has workers, so that the limits bind across processes: with 10
# workers per process, the process whose job ends claims its key's next job in the same script
# (its own worker is the one freed), and one process ran every job of a quick run
BIND_CONCURRENCY = 4
BIND_N = 5_000  # bind-*: jobs per measurement
QUICK_BIND_N = 1_000
HOLD_MS = 5.0  # the hold body's sleep
ROUNDS = 5
PROCS = "1,4"  # plain and keyed: worker processes


@dataclass(frozen=True)
class Variant:
    body: str
    keys: int  # 0: jobs without a key
    limit: int  # max_running of each key (0: none set)
    bind: bool  # a bind-* variant: BIND_PROCS, BIND_N, the spans checked
    what: str


VARIANTS = {
    "plain": Variant("noop", 0, 0, False, "no-op jobs, no key"),
    "keyed": Variant(
        "noop", KEYS, KEY_LIMIT, False, f"no-op jobs over {KEYS} keys, max_running={KEY_LIMIT}"
    ),
    "bind-free": Variant("hold", BIND_KEYS, 0, True, f"hold jobs over {BIND_KEYS} keys, no limit"),
    "bind-limited": Variant(
        "hold",
        BIND_KEYS,
        BIND_LIMIT,
        True,
        f"hold jobs over {BIND_KEYS} keys, max_running={BIND_LIMIT}",
    ),
}
PAIRS = (("plain", "keyed"), ("bind-free", "bind-limited"))  # (reference, keyed) in the report
FLOW_KEYS = ("krun", "khead", "kwaiting", "kwait", "krate")  # the queue's key state in Redis


# -- one measurement -----------------------------------------------------------------------------


def measure_keys(
    impl: str,
    variant: str,
    procs: int,
    n: int,
    hold_ms: float,
    concurrency: int,
    timeout: float,
    env: dict[str, str],
    snapshot_dir: str,
) -> dict[str, Any]:
    """One measurement of ``variant`` (see the module): P processes of ``concurrency``
    workers, in fresh processes on a fresh redis-server; always returns a record (a failure is
    its ``error``)."""
    v = VARIANTS[variant]

    def run(
        record: dict[str, Any], children: Children, url: str, queue_name: str, deadline: float,
        budget: str,
    ) -> None:  # fmt: skip
        workers = [
            children.spawn(
                f"worker{k}", "work", impl, url, queue_name, str(concurrency), budget,
                "--body", v.body, "--hold-ms", str(hold_ms),
            )
            for k in range(procs)
        ]  # fmt: skip
        front = children.spawn(
            "front", "front", impl, url, queue_name, str(n), str(ENQUEUE_TASKS), budget,
            "--body", v.body, "--keys", str(v.keys), "--limit", str(v.limit),
        )  # fmt: skip
        _run_scaling(record, children, front, workers, url, n, deadline)
        record["flow_state_after"] = flow_state(url, queue_name)  # (after the counts)

    record = _in_fresh_processes(impl, procs, n, timeout, env, snapshot_dir, v.body, run)
    record["variant"] = variant
    record["concurrency"] = concurrency
    record["keys"] = v.keys
    record["limit"] = v.limit
    calls = record.get("redis_calls")
    if calls:
        record["script_calls_per_job"] = calls.get("evalsha", 0) / n
    problems: list[str] = record.get("problems", [])
    left = {k: s for k, s in record.get("flow_state_after", {}).items() if s}
    if left:
        problems.append(f"key state left in Redis after every job ended: {left}")
    spans: list[list[float]] = []
    for final in record.get("worker_finals", []):
        spans += final.pop("spans", [])
    if v.bind and "error" not in record:
        check_spans(record, spans, v.keys, v.limit, hold_ms, problems)
    if problems:
        record["problems"] = problems
    return record


def flow_state(url: str, queue_name: str) -> dict[str, Any]:
    """What Redis holds of the queue's key state: per FLOW_KEYS entry its size (``krun``: its
    fields, the running count per key), and ``kq`` the number of the keys' sets left."""
    prefix = f"{{{queue_name}}}"
    client = redis.Redis.from_url(url, socket_timeout=10, decode_responses=True)
    try:
        state: dict[str, Any] = {
            "krun": client.hgetall(f"{prefix}:krun"),
            "khead": client.hlen(f"{prefix}:khead"),
            "kwaiting": int(client.get(f"{prefix}:kwaiting") or 0),  # type: ignore[arg-type]
            "kwait": client.scard(f"{prefix}:kwait"),
            "krate": client.zcard(f"{prefix}:krate"),
            # (a fresh server holds this queue alone: KEYS is cheap here)
            "kq": len(client.keys(f"{prefix}:kq:*")),  # type: ignore[arg-type]
        }
    finally:
        client.close()
    return state


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most intervals ``(start, end)`` that overlap at one instant (one ending at the
    instant another starts does not overlap it)."""
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])  # ends first
    most = running = 0
    for _, step in events:
        running += step
        most = max(most, running)
    return most


def check_spans(
    record: dict[str, Any],
    spans: list[list[float]],
    keys: int,
    limit: int,
    hold_ms: float,
    problems: list[str],
) -> None:
    """The bind-* figures from the hold jobs' ``[i, start, end]`` (key: ``i % keys``): the most
    jobs of one key at once, of all keys at once, the keys over ``limit`` (if set: a problem),
    the actual hold and, per key, the gaps from a job's end to the next start."""
    if len(spans) != record["n"]:
        problems.append(f"{len(spans)} spans reported for {record['n']} jobs")
    by_key: dict[int, list[tuple[float, float]]] = defaultdict(list)
    for i, start, end in spans:
        by_key[int(i) % keys].append((start, end))
    most = {k: most_at_once(v) for k, v in by_key.items()}
    record["most_at_once_one_key"] = max(most.values(), default=0)
    record["most_at_once"] = most_at_once([(s, e) for _, s, e in spans])
    record["hold_ms_median"] = statistics.median((e - s) * 1000 for _, s, e in spans)
    if limit:
        over = {key_name(k): m for k, m in sorted(most.items()) if m > limit}
        record["keys_over_limit"] = len(over)
        if over:
            problems.append(f"keys over their max_running={limit} (most at once): {over}")
        record["slots"] = keys * limit
        record["bound_jobs_per_s"] = keys * limit / (hold_ms / 1000)
        record["share_of_bound"] = record["jobs_per_s"] / record["bound_jobs_per_s"]
        if limit == 1:  # a key's jobs one after the other: the slot's hand-over
            gaps = []
            for intervals in by_key.values():
                intervals.sort()
                gaps += [b[0] - a[1] for a, b in itertools.pairwise(intervals)]
            gaps.sort()
            if gaps:
                record["gap_ms_median"] = statistics.median(gaps) * 1000
                record["gap_ms_p99"] = gaps[min(len(gaps) - 1, int(0.99 * len(gaps)))] * 1000


# -- the run, the summary, the report ------------------------------------------------------------


def plan(
    impls: list[str], procs: list[int], rounds: int, bind: bool
) -> list[tuple[int, str, str, int]]:
    """(round, implementation, variant, P) in run order, rotated from round to round."""
    cells = [(impl, v, p) for p in procs for impl in impls for v in ("plain", "keyed")]
    if bind:
        cells += [(impl, v, BIND_PROCS) for impl in impls for v in ("bind-free", "bind-limited")]
    steps = []
    for round_ in range(rounds):
        shift = round_ % len(cells)
        steps += [(round_, *cell) for cell in cells[shift:] + cells[:shift]]
    return steps


METRICS = (
    "jobs_per_s",
    "submit_jobs_per_s",
    "redis_commands_per_job",
    "script_calls_per_job",
    "redis_cpu_us_per_job",
    "worker_cpu_us_per_job",
    "front_cpu_us_per_job",
    "start_lag_s",
    "most_at_once_one_key",
    "most_at_once",
    "keys_over_limit",
    "hold_ms_median",
    "share_of_bound",
    "gap_ms_median",
    "gap_ms_p99",
)


def cell_name(impl: str, variant: str, procs: int) -> str:
    return f"{impl} {variant} P={procs}"


def summarise(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per (implementation, variant, P): the metrics' medians, min, max, the calls per job of
    each Redis command (medians); per pair of PAIRS: the ratios of the second to the first."""
    cells: dict[str, Any] = {}
    for impl, variant, procs in sorted({(r["impl"], r["variant"], r["procs"]) for r in records}):
        mine = [
            r for r in records if (r["impl"], r["variant"], r["procs"]) == (impl, variant, procs)
        ]
        ok = [r for r in mine if "jobs_per_s" in r]
        commands = sorted({c for r in ok for c in r.get("redis_calls", {})})
        cells[cell_name(impl, variant, procs)] = {
            "per_worker_last": ok[-1].get("per_worker") if ok else None,
            "impl": impl,
            "variant": variant,
            "procs": procs,
            "runs": len(ok),
            "errors": [r["error"] for r in mine if "error" in r],
            "problems": sorted({p for r in mine for p in r.get("problems", [])}),
            **{m: _stats([r[m] for r in ok if m in r]) for m in METRICS},
            "calls_per_job": {
                c: statistics.median(r.get("redis_calls", {}).get(c, 0) / r["n"] for r in ok)
                for c in commands
            },
        }
    ratios = {}
    for ref, keyed in PAIRS:
        for impl, procs in sorted({(r["impl"], r["procs"]) for r in records}):
            a = cells.get(cell_name(impl, ref, procs))
            b = cells.get(cell_name(impl, keyed, procs))
            if not a or not b:
                continue
            ratios[cell_name(impl, keyed, procs)] = {
                m: _ratios(records, impl, procs, ref, keyed, m, a, b)
                for m in ("jobs_per_s", "redis_commands_per_job", "redis_cpu_us_per_job",
                          "worker_cpu_us_per_job")
            }  # fmt: skip
    return {"cells": cells, "ratios": ratios}


def _ratios(
    records: list[dict[str, Any]],
    impl: str,
    procs: int,
    ref: str,
    keyed: str,
    metric: str,
    a: dict[str, Any],
    b: dict[str, Any],
) -> dict[str, Any] | None:
    """keyed / ref: of the medians, and in each round where both were measured."""
    if a[metric] is None or b[metric] is None:
        return None
    by_round: dict[int, dict[str, float]] = defaultdict(dict)
    for r in records:
        if r["impl"] == impl and r["procs"] == procs and metric in r:
            by_round[r["round"]][r["variant"]] = r[metric]
    rounds = [v[keyed] / v[ref] for v in by_round.values() if keyed in v and ref in v and v[ref]]
    return {
        "of_medians": b[metric]["median"] / a[metric]["median"],
        "per_round": _stats(rounds),
    }


def _r(value: float | None) -> str:
    return "" if value is None else f"{TIMES}{value:.2f}"


def _ratio_cells(ratio: dict[str, Any] | None) -> list[str]:
    if ratio is None:
        return ["", ""]
    rounds = ratio["per_round"]
    text = ""
    if rounds:
        text = _r(rounds["median"])
        if len(rounds["values"]) > 1:
            text += f" ({_r(rounds['min'])}{DASH}{_r(rounds['max'])})"
    return [_r(ratio["of_medians"]), text]


def _med(cell: dict[str, Any] | None, metric: str, digits: int = 0) -> str:
    if cell is None or cell.get(metric) is None:
        return ""
    return _num(cell[metric]["median"], digits)


def _pair(a: dict[str, Any] | None, b: dict[str, Any] | None, metric: str, digits: int = 0) -> str:
    """A metric's medians without and with keys: ``a -> b``."""
    return f"{_med(a, metric, digits)} {ARROW} {_med(b, metric, digits)}"


def _backend(impl: str) -> str:
    return {"jobpool-trio": "Trio", "jobpool-asyncio": "asyncio"}.get(impl, impl)


def render(results: dict[str, Any]) -> str:
    """The --keys report."""
    config, summary = results["config"], results["summary"]
    cells, ratios = summary["cells"], summary["ratios"]
    lines = [
        "# trio_jobpool on one Redis with flow-control keys (issue #17)",
        "",
        "Each measurement is one of `distributed.py --scaling`'s: P worker processes "
        f"({config['concurrency']} workers each) idle on a fresh redis-server, then a front end "
        f"(`max_workers=0`) submits the jobs from {config['enqueue_tasks']} concurrent tasks "
        "while they run. jobs/s = N / (last job's end - first job's start). Redis commands "
        "(those inside scripts included), Redis CPU and the worker processes' CPU: from just "
        "before the submits until Redis confirmed all N ended (submits, claims and ends). "
        f"{config['rounds']} round(s), every (backend, variant, P) once per round in an order "
        f"rotated from round to round; medians (min{DASH}max). Method: "
        "`benchmarks/distributed_keys.py` (`python benchmarks/distributed.py --keys`).",
        "",
        "Variants:",
        "",
        f"- `plain`: {config['n']:,} no-op jobs, no key.",
        f"- `keyed`: the same jobs, job i with key `k<i % {KEYS}>`, each key "
        f"`set_limit(key, max_running={KEY_LIMIT})`: {KEYS * KEY_LIMIT} slots for at most "
        f"{max(config['procs']) * config['concurrency']} workers, so no limit ever holds a "
        "job back: the cost of the keyed path.",
        f"- `bind-free`: {config['bind_n']:,} jobs that sleep {config['hold_ms']:g} ms (the "
        f"`hold` body), job i with key `k<i % {BIND_KEYS}>`, no limit; P={BIND_PROCS} processes "
        f"of {_bind_workers(config)} workers each ({BIND_PROCS * _bind_workers(config)} "
        "workers).",
        f"- `bind-limited`: the same with `max_running={BIND_LIMIT}` on each key: at most "
        f"{BIND_KEYS * BIND_LIMIT} jobs at once, the limits hold jobs back all the time.",
        "",
        f"Machine: {_machine_line(results['machine'])}.",
        "",
    ]
    load = _load_line(results)
    if load:
        lines += [load, ""]
    lines += [
        "## Keys that never bind: 100 keys at max_running=2 against no keys",
        "",
        "| backend | P | no key jobs/s | 100 keys jobs/s | keyed / plain (of medians) "
        "| keyed / plain per round | submit jobs/s no key | with keys |",
        "|---|---|---|---|---|---|---|---|",
    ]
    pairs = sorted(
        {(c["impl"], c["procs"]) for c in cells.values() if not c["variant"].startswith("bind")}
    )
    order = {name: k for k, name in enumerate(JOBPOOLS)}
    pairs.sort(key=lambda ip: (order.get(ip[0], 99), ip[1]))
    both = []
    for impl, procs in pairs:
        a = cells.get(cell_name(impl, "plain", procs))
        b = cells.get(cell_name(impl, "keyed", procs))
        ratio = ratios.get(cell_name(impl, "keyed", procs), {})
        both.append((impl, procs, a, b, ratio))
        lines.append(
            "| "
            + " | ".join(
                [
                    _backend(impl),
                    str(procs),
                    _spread(a and a["jobs_per_s"]) or "error",
                    _spread(b and b["jobs_per_s"]) or "error",
                    *_ratio_cells(ratio.get("jobs_per_s")),
                    _spread(a and a["submit_jobs_per_s"]),
                    _spread(b and b["submit_jobs_per_s"]),
                ]
            )
            + " |"
        )
    lines += [
        "",
        "What a job costs, no key " + ARROW + " 100 keys (medians; the ratios: keyed / plain "
        "in each round, median (min" + DASH + "max)). The ceiling is 1 s / the Redis CPU per "
        "job: the jobs/s at which one Redis core would be busy all the time.",
        "",
        "| backend | P | Redis commands/job | script calls/job | Redis CPU µs/job "
        "| Redis CPU keyed / plain | Redis ceiling jobs/s | worker CPU µs/job "
        "| worker CPU keyed / plain | front end CPU µs/job |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for impl, procs, a, b, ratio in both:
        ceilings = [
            _num(1e6 / c["redis_cpu_us_per_job"]["median"]) if c and c["redis_cpu_us_per_job"]
            else ""
            for c in (a, b)
        ]  # fmt: skip
        lines.append(
            "| "
            + " | ".join(
                [
                    _backend(impl),
                    str(procs),
                    _pair(a, b, "redis_commands_per_job", 2),
                    _pair(a, b, "script_calls_per_job", 3),
                    _pair(a, b, "redis_cpu_us_per_job"),
                    _ratio_cells(ratio.get("redis_cpu_us_per_job"))[1],
                    f"{ceilings[0]} {ARROW} {ceilings[1]}",
                    _pair(a, b, "worker_cpu_us_per_job"),
                    _ratio_cells(ratio.get("worker_cpu_us_per_job"))[1],
                    _pair(a, b, "front_cpu_us_per_job"),
                ]
            )
            + " |"
        )
    lines += ["", *_command_table(cells, pairs)]
    lines += _bind_section(cells, ratios, config)
    problems = [
        f"- {name}: {text}"
        for name, cell in cells.items()
        for text in cell["problems"] + [e.strip().splitlines()[-1] for e in cell["errors"]]
    ]
    lines += ["", "Problems:", "", *(problems or ["- none"])]
    return "\n".join(lines) + "\n"


def _command_table(cells: dict[str, Any], pairs: list[tuple[str, int]]) -> list[str]:
    """Per Redis command, calls per job without and with keys (medians), where they differ by
    at least 0.05 per job in some (backend, P); largest difference first."""
    columns = []
    for impl, procs in pairs:
        a = cells.get(cell_name(impl, "plain", procs))
        b = cells.get(cell_name(impl, "keyed", procs))
        if a and b:
            columns.append((impl, procs, a, b))
    if not columns:
        return []
    names = sorted({c for *_, a, b in columns for c in (*a["calls_per_job"], *b["calls_per_job"])})

    def diff(name: str, a: dict[str, Any], b: dict[str, Any]) -> float:
        return float(b["calls_per_job"].get(name, 0.0) - a["calls_per_job"].get(name, 0.0))

    shown = [n for n in names if any(abs(diff(n, a, b)) >= 0.05 for _, _, a, b in columns)]
    shown.sort(key=lambda n: -max(abs(diff(n, a, b)) for _, _, a, b in columns))
    lines = [
        "Redis commands per job by command, no key " + ARROW + " 100 keys "
        "(medians; those that differ by 0.05 per job or more somewhere):",
        "",
        "| command | " + " | ".join(f"{_backend(i)} P={p}" for i, p, _, _ in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for name in shown:
        row = [
            f"{a['calls_per_job'].get(name, 0.0):.2f} {ARROW} "
            f"{b['calls_per_job'].get(name, 0.0):.2f} ({diff(name, a, b):+.2f})"
            for _, _, a, b in columns
        ]
        lines.append(f"| `{name.upper()}` | " + " | ".join(row) + " |")
    total = [
        f"{sum(a['calls_per_job'].values()):.2f} {ARROW} {sum(b['calls_per_job'].values()):.2f}"
        for _, _, a, b in columns
    ]
    lines.append("| all | " + " | ".join(total) + " |")
    return lines


def _bind_section(
    cells: dict[str, Any], ratios: dict[str, Any], config: dict[str, Any]
) -> list[str]:
    bind = [c for c in cells.values() if c["variant"].startswith("bind")]
    if not bind:
        return []
    bound = BIND_KEYS * BIND_LIMIT / (config["hold_ms"] / 1000)
    lines = [
        "",
        f"## Limits that bind: {BIND_KEYS} keys at max_running={BIND_LIMIT}, "
        f"{BIND_PROCS * _bind_workers(config)} workers in {BIND_PROCS} processes",
        "",
        f"The bound of `bind-limited`: {BIND_KEYS} slots / {config['hold_ms']:g} ms = "
        f"{bound:,.0f} jobs/s (every slot always running a job). Most at once: from the jobs' own "
        "start and end stamps (a body runs within its claim, so two bodies of a key overlapping "
        "would mean Redis let the key run both); for `bind-free` it shows what the same check "
        "finds without a limit. Hand-over: from the end of a key's job to the start of its "
        "next one (bind-limited).",
        "",
        "| backend | variant | P | jobs/s | limited / free (of medians) | limited / free per round "
        "| share of the bound | most at once, one key: max (median) | most at once, all keys "
        "| keys over their limit | hold ms (actual) | hand-over ms median | hand-over ms p99 "
        "| Redis commands/job | Redis CPU µs/job | worker CPU µs/job | jobs per process (last) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    order = {name: k for k, name in enumerate(JOBPOOLS)}
    bind.sort(key=lambda c: (order.get(c["impl"], 99), c["procs"], c["variant"]))
    for c in bind:
        ratio = ratios.get(cell_name(c["impl"], "bind-limited", c["procs"]), {})
        limited = c["variant"] == "bind-limited"
        most = c["most_at_once_one_key"]
        lines.append(
            "| "
            + " | ".join(
                [
                    _backend(c["impl"]),
                    f"`{c['variant']}`",
                    str(c["procs"]),
                    _spread(c["jobs_per_s"]) or "error",
                    *(_ratio_cells(ratio.get("jobs_per_s")) if limited else ["", ""]),
                    _spread(c["share_of_bound"], 2) if limited else "",
                    f"{most['max']:.0f} (median {most['median']:.0f})" if most else "",
                    _spread(c["most_at_once"]),
                    _med(c, "keys_over_limit") if limited else "",
                    _med(c, "hold_ms_median", 2),
                    _spread(c["gap_ms_median"], 2),
                    _spread(c["gap_ms_p99"], 2),
                    _med(c, "redis_commands_per_job", 2),
                    _med(c, "redis_cpu_us_per_job"),
                    _med(c, "worker_cpu_us_per_job"),
                    "/".join(str(k) for k in c.get("per_worker_last") or []),
                ]
            )
            + " |"
        )
    return lines


def _bind_workers(config: dict[str, Any]) -> int:
    return int(config.get("bind_concurrency", config["concurrency"]))


def main_keys(args: argparse.Namespace) -> int:
    """The --keys run (``args`` from ``distributed.parse_args``)."""
    bind_n = args.bind_n or (QUICK_BIND_N if args.quick else BIND_N)
    bind_concurrency = args.bind_concurrency or BIND_CONCURRENCY
    steps = plan(args.impls, args.procs_list, args.rounds, not args.no_bind)
    machine = _machine()
    print(
        f"{len(steps)} measurements (keys) of {args.n:,} jobs (bind: {bind_n:,}); "
        f"{machine['cpu']}, {machine['cores']} cores"
    )
    started = time.monotonic()
    records = []
    with _snapshot() as (env, copy):
        source = source_digest(Path(copy) / "trio_jobpool")
        for step, (round_, impl, variant, procs) in enumerate(steps, 1):
            bind = VARIANTS[variant].bind
            n, concurrency = (bind_n, bind_concurrency) if bind else (args.n, CONCURRENCY)
            record = measure_keys(
                impl, variant, procs, n, args.hold_ms, concurrency, args.timeout, env, copy
            )
            record["round"] = round_
            records.append(record)
            print(_progress(step, len(steps), record), flush=True)
    results = {
        "machine": machine,
        "config": {
            "mode": "keys",
            "body": "noop",
            "quick": args.quick,
            "rounds": args.rounds,
            "n": args.n,
            "bind_n": bind_n,
            "procs": args.procs_list,
            "bind_procs": BIND_PROCS,
            "bind_concurrency": bind_concurrency,
            "impls": args.impls,
            "variants": {name: v.what for name, v in VARIANTS.items()},
            "keys": KEYS,
            "key_limit": KEY_LIMIT,
            "bind_keys": BIND_KEYS,
            "bind_limit": BIND_LIMIT,
            "hold_ms": args.hold_ms,
            "concurrency": CONCURRENCY,
            "enqueue_tasks": ENQUEUE_TASKS,
            "timeout_s": args.timeout,
        },
        "source": source,
        "source_changed": source_digest(PACKAGE) != source,
        "duration_s": time.monotonic() - started,
        "loadavg_end": os.getloadavg(),
        "summary": summarise(records),
        "records": records,
    }
    print()
    write_report(results, "distributed-keys" + ("-quick" if args.quick else ""), render)
    return 1 if any("error" in r or r.get("problems") for r in records) else 0


def _progress(step: int, total: int, record: dict[str, Any]) -> str:
    where = f"{record['impl']:<16} {record['variant']:<13} P={record['procs']}"
    if "jobs_per_s" in record:
        value = (
            f"{record['jobs_per_s']:>7,.0f} jobs/s  {record['redis_commands_per_job']:6.2f} "
            f"commands/job  {record.get('script_calls_per_job', 0):.3f} scripts/job"
        )
        if "most_at_once_one_key" in record:
            value += (
                f"  most at once: {record['most_at_once_one_key']} of one key, "
                f"{record['most_at_once']} in all"
            )
        if record.get("problems"):
            value += "  PROBLEMS: " + "; ".join(record["problems"])
    else:
        value = "ERROR: " + record.get("error", "?").strip().splitlines()[0]
    return f"[{step:>3}/{total}] {where} {value}  ({record['measurement_s']:.1f} s)"


if __name__ == "__main__":
    from distributed import main

    sys.exit(main(["--keys", *sys.argv[1:]]))
