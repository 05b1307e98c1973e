"""The ``trio-jobpool demo`` workload: a simulated CI system on a Trio job pool, shown live.

A few hundred CI-like jobs (builds, tests, lints, docs, deploys) of varied length and priority go
through one pool. Some fail, some flaky tests are retried with a :class:`RetryPolicy`, a deploy
times out, a long monorepo build is cancelled by id while it runs, and the pool is resized half
way through. A ``rich`` live display shows the progress, the pool's stats, the running jobs with
the progress they report through ``current_job().set_progress()``, and the notable events; a
summary follows.

Only the public API is used. The live display needs ``rich`` (the ``[cli]`` extra); the plain
output (``live=False``: progress lines, events and the summary as text, for logs and pipes)
needs nothing beyond the package. Neither is needed to import this module: without ``rich``,
:func:`run_demo` raises ``ImportError`` for a live display, and the ``demo`` command says what to
install before calling it.
"""

from __future__ import annotations

import collections
import itertools
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import trio

from trio_jobpool import (
    JobHandle,
    JobPool,
    JobStatus,
    PoolStats,
    RetryPolicy,
    current_job,
    open_job_pool,
)

try:
    from rich import box
    from rich.console import Console, Group, RenderableType
    from rich.panel import Panel
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text
except ImportError as exc:  # no [cli] extra: every name above is used only by the live display
    _rich_missing: ImportError | None = exc
else:
    _rich_missing = None

__all__ = ["DemoConfig", "run_demo"]

_REPOS = ("api", "web", "worker", "mobile", "billing", "auth", "search", "infra")
_ENVIRONMENTS = ("staging", "canary", "eu-west", "us-east")
_STATUS_STYLES = {
    JobStatus.COMPLETED: "green",
    JobStatus.FAILED: "red",
    JobStatus.CANCELLED: "yellow",
    JobStatus.TIMED_OUT: "magenta",
}
# How often the live display redraws and, without it, how often a progress line is printed.
_LIVE_INTERVAL = 0.125
_PLAIN_INTERVAL = 1.0
# Rows of running jobs and of events the live display shows.
_RUNNING_ROWS = 13
_EVENT_ROWS = 7
_MIDDLE_HEIGHT = _RUNNING_ROWS + 2
_PRIORITY_STYLES = {1: "bold red", 5: "default", 10: "dim"}
# Jobs report progress this often (seconds).
_TICK = 0.05


@dataclass(frozen=True, slots=True)
class DemoConfig:
    """What ``trio-jobpool demo`` runs: how many jobs, how many workers, which seed, how shown."""

    jobs: int = 300
    """How many jobs to submit (at least 10)."""
    workers: int = 8
    """Workers at the start; the pool is resized to twice as many half way through."""
    seed: int = 1
    """Seed of the random workload (kinds, lengths, priorities, failures)."""
    live: bool = True
    """A live ``rich`` display; ``False``: plain progress lines (for logs and pipes)."""
    queue_size: int = 64
    """The pool's ``queue_size``: the submitter feels backpressure beyond it."""


class _Failure(Exception):
    """A simulated job failure (compile error, failing test, lost runner...)."""


@dataclass(slots=True)
class _Spec:
    """One simulated CI job."""

    job_id: str
    kind: str
    priority: int
    duration: float
    steps: tuple[str, ...]
    fail_attempts: int = 0  # the first ``fail_attempts`` attempts fail
    failure: str = ""
    retry: RetryPolicy | None = None
    timeout: float | None = None
    started: trio.Event | None = None  # set when an attempt starts (the job to cancel)


_KINDS: tuple[tuple[str, int, float, float, tuple[str, ...], float], ...] = (
    # kind, priority, shortest, longest (seconds), steps, share of the workload
    ("build", 5, 0.20, 0.40, ("checkout", "resolve deps", "compile", "upload artifacts"), 0.30),
    ("test", 5, 0.15, 0.40, ("set up", "unit tests", "integration tests", "report"), 0.35),
    ("lint", 10, 0.02, 0.10, ("ruff", "mypy"), 0.18),
    ("docs", 10, 0.05, 0.20, ("sphinx", "publish"), 0.07),
    ("deploy", 1, 0.15, 0.30, ("plan", "apply", "smoke test"), 0.10),
)

_FLAKY_RETRY = RetryPolicy(max_attempts=3, backoff=0.05, max_backoff=0.4)
_COMPILE_ERRORS = (
    "error[E0308]: mismatched types in src/handlers.rs:88",
    "TS2345: argument of type 'string' is not assignable",
    "undefined reference to `ssl_ctx_new'",
)
_TEST_FAILURES = (
    "3 tests failed: test_checkout_total, test_refund, test_invoice_pdf",
    "AssertionError: expected 200, got 503",
    "snapshot mismatch in ProfileCard.test.tsx",
)
_FLAKES = (
    "runner lost connection to the coordinator",
    "docker pull: TLS handshake timeout",
    "port 5432 already in use",
)


def make_workload(config: DemoConfig) -> list[_Spec]:
    """The jobs of one demo run, in submission order (deterministic for a seed)."""
    rng = random.Random(config.seed)
    kinds = [kind for kind, *_ in _KINDS]
    weights = [share for *_, share in _KINDS]
    table = {kind: (priority, low, high, steps) for kind, priority, low, high, steps, _ in _KINDS}
    specs: list[_Spec] = []
    # Flaky tests fail their first 1, 2, 1 and 3 attempts, in that order, over and over.
    flaky_failures = itertools.cycle((1, 2, 1, 3))
    for index in range(config.jobs):
        kind = rng.choices(kinds, weights)[0]
        priority, low, high, steps = table[kind]
        number = 100 + index
        target = rng.choice(_ENVIRONMENTS) if kind == "deploy" else rng.choice(_REPOS)
        spec = _Spec(
            job_id=f"{kind} {target}#{number}",
            kind=kind,
            priority=priority,
            duration=rng.uniform(low, high),
            steps=steps,
        )
        roll = rng.random()
        if kind == "build" and roll < 0.05:
            spec.fail_attempts, spec.failure = 1, rng.choice(_COMPILE_ERRORS)
        elif kind == "test" and roll < 0.05:
            spec.fail_attempts, spec.failure = 1, rng.choice(_TEST_FAILURES)
        elif kind == "test" and roll < 0.17:
            # Flaky: retried; most recover on the second or third attempt, some never do.
            spec.retry = _FLAKY_RETRY
            spec.fail_attempts = next(flaky_failures)
            spec.failure = rng.choice(_FLAKES)
        specs.append(spec)

    # Two special jobs, urgent so that they start at once: a deploy that hangs past its
    # timeout, and a long monorepo build that the operator cancels while it runs.
    hang = _Spec(
        job_id=f"deploy production#{100 + config.jobs}",
        kind="deploy",
        priority=1,
        duration=30.0,
        steps=("plan", "apply", "waiting for health checks"),
        timeout=0.6,
    )
    long_build = _Spec(
        job_id=f"build monorepo#{101 + config.jobs}",
        kind="build",
        priority=1,
        duration=4.0,
        steps=("checkout", "resolve deps", "compile 4,000 crates", "link"),
        started=trio.Event(),
    )
    # They replace two ordinary jobs (the total stays ``config.jobs``) and are submitted early,
    # but not first, so that the display is already busy.
    del specs[-2:]
    specs.insert(config.jobs // 10, long_build)
    specs.insert(config.jobs // 5, hang)
    return specs


# A piece of an event's text and its Rich style ("" for none): the live display styles it, the
# plain output prints the text alone. Nothing is Rich markup, so no text needs escaping.
_Segment = tuple[str, str]


@dataclass(slots=True)
class _State:
    """What the display needs besides ``pool.stats()``: with ``console``, the live display
    draws there; without, the plain output goes to ``out``."""

    config: DemoConfig
    start: float
    console: Console | None = None
    out: TextIO = field(default_factory=lambda: sys.stdout)
    handles: list[JobHandle[Any]] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)  # job id -> kind
    ended: collections.Counter[JobStatus] = field(default_factory=collections.Counter)
    events: collections.deque[tuple[float, tuple[_Segment, ...]]] = field(
        default_factory=lambda: collections.deque(maxlen=_EVENT_ROWS)
    )
    resized: bool = False
    done: trio.Event = field(default_factory=trio.Event)
    end: float | None = None

    @property
    def ended_total(self) -> int:
        return sum(self.ended.values())

    def elapsed(self) -> float:
        return (trio.current_time() if self.end is None else self.end) - self.start

    @property
    def live(self) -> bool:
        return self.console is not None

    def print(self, line: str) -> None:
        """Print a line of the plain output."""
        print(line, file=self.out, flush=True)

    def event(self, *segments: _Segment) -> None:
        """Record a notable event (shown in the live panel, or printed at once)."""
        elapsed = self.elapsed()
        self.events.append((elapsed, segments))
        if not self.live:
            self.print(f"{elapsed:6.2f}s  {''.join(text for text, _ in segments)}")


# -- the jobs --------------------------------------------------------------------------------


async def _ci_job(state: _State, spec: _Spec) -> str:
    """Simulate one CI job: walk through its steps, report progress, maybe fail."""
    job = current_job()
    attempt = job.attempts
    if attempt > 1:
        limit = spec.retry.max_attempts if spec.retry else attempt
        state.event(
            ("↻ retry     ", "cyan"),
            (spec.job_id, "bold"),
            (f" attempt {attempt} of {limit} ", ""),
            (f"(after: {spec.failure})", "dim"),
        )
    if spec.started is not None:
        spec.started.set()
    steps = spec.steps
    # A failing attempt breaks somewhere along the way, not necessarily at the end.
    failing = attempt <= spec.fail_attempts
    stop_at = spec.duration * ((attempt * 7) % 10 + 1) / 10 if failing else spec.duration
    done = 0.0
    while done < stop_at:
        step = steps[min(len(steps) - 1, int(done / spec.duration * len(steps)))]
        job.set_progress(done / spec.duration, step)
        tick = min(_TICK, stop_at - done)
        await trio.sleep(tick)
        done += tick
    if failing:
        raise _Failure(spec.failure)
    job.set_progress(1.0, "done")
    return f"{spec.job_id}: ok"


async def _watch(state: _State, pool: JobPool, spec: _Spec, handle: JobHandle[Any]) -> None:
    """Wait for one job to end; log the notable endings; resize the pool half way."""
    await handle.wait()
    status = handle.status
    state.ended[status] += 1
    if status is JobStatus.FAILED:
        attempts = f"{handle.attempts} attempt{'s' if handle.attempts > 1 else ''}"
        state.event(
            ("✗ failed    ", "red"),
            (spec.job_id, "bold"),
            (f" after {attempts}: {handle.error}", ""),
        )
    elif status is JobStatus.TIMED_OUT:
        state.event(("⏱ timed out ", "magenta"), (spec.job_id, "bold"), (f" ({handle.error})", ""))
    elif status is JobStatus.CANCELLED:
        state.event(
            ("⊘ cancelled ", "yellow"),
            (spec.job_id, "bold"),
            (f" at {handle.progress:.0%} ({handle.progress_message or ''})", ""),
        )
    elif handle.attempts > 1:
        state.event(
            ("✓ recovered ", "green"), (spec.job_id, "bold"), (f" on attempt {handle.attempts}", "")
        )
    ended = state.ended_total
    if not state.resized and ended >= state.config.jobs // 2:
        state.resized = True
        before = pool.max_workers
        pool.resize(before * 2)
        state.event(
            ("⇧ resize    ", "blue"), (f"pool grown from {before} to {before * 2} workers", "")
        )
    if ended == state.config.jobs:
        state.end = trio.current_time()
        state.done.set()


async def _cancel_when_running(state: _State, pool: JobPool, spec: _Spec) -> None:
    """The operator cancels the long monorepo build by id, a while after it started."""
    assert spec.started is not None
    await spec.started.wait()
    state.event(("▶ started   ", "dim"), (spec.job_id, "bold"), (" (will be cancelled by id)", ""))
    await trio.sleep(1.5)
    handle = pool.get(spec.job_id)
    if handle.status is JobStatus.RUNNING:
        pool.cancel(spec.job_id)


async def _submit_all(
    state: _State, pool: JobPool, specs: Sequence[_Spec], nursery: trio.Nursery
) -> None:
    """Submit every job (waiting when the pool is full) and start a watcher for each."""
    for spec in specs:
        handle = await pool.submit(
            _ci_job,
            state,
            spec,
            job_id=spec.job_id,
            priority=spec.priority,
            timeout=spec.timeout,
            retry=spec.retry,
        )
        state.handles.append(handle)
        state.kinds[handle.job_id] = spec.kind
        nursery.start_soon(_watch, state, pool, spec, handle)
        if spec.started is not None:
            nursery.start_soon(_cancel_when_running, state, pool, spec)


# -- the display -----------------------------------------------------------------------------


def _stats_panel(state: _State, stats: PoolStats) -> Panel:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(justify="right")
    busy = stats.active_workers
    grid.add_row("workers", f"[cyan]{busy}[/] busy of {stats.max_workers}")
    grid.add_row("queued", str(stats.queued_tasks))
    grid.add_row("submitted", f"{stats.total_submitted} of {state.config.jobs}")
    grid.add_row("completed", f"[green]{stats.total_completed}[/]")
    grid.add_row("failed", f"[red]{stats.total_failed}[/]")
    grid.add_row("cancelled", f"[yellow]{stats.total_cancelled}[/]")
    grid.add_row("timed out", f"[magenta]{stats.total_timed_out}[/]")
    grid.add_row("retries", f"[cyan]{stats.total_retried}[/]")
    grid.add_row("", "")
    grid.add_row("exec avg", _ms(stats.average_exec_time))
    grid.add_row("exec p50", _ms(stats.exec_time_p50))
    grid.add_row("exec p95", _ms(stats.exec_time_p95))
    grid.add_row("wait avg", _ms(stats.average_wait_time))
    return Panel(
        grid, title="pool.stats()", border_style="blue", box=box.ROUNDED, height=_MIDDLE_HEIGHT
    )


def _running_panel(state: _State, width: int) -> Panel:
    """The running jobs, oldest first, with the progress they report (fits ``width``)."""
    running = [h for h in state.handles if h.status is JobStatus.RUNNING]
    running.sort(key=lambda h: h.started_at or 0.0)
    # Columns to show: a narrow terminal drops the elapsed time, then the step.
    wide, medium = width >= 115, width >= 95
    bar_width = 20 if wide else 12 if medium else 10
    now = time.time()
    table = Table.grid(padding=(0, 1), expand=True)
    table.add_column(no_wrap=True, min_width=22)  # job id
    table.add_column(justify="right", no_wrap=True, width=3)  # priority
    table.add_column(width=bar_width, no_wrap=True)  # bar
    table.add_column(justify="right", width=4, no_wrap=True)  # percent
    if medium:
        table.add_column(no_wrap=True, overflow="ellipsis", ratio=1)  # step
    if wide:
        table.add_column(justify="right", no_wrap=True, width=6)  # elapsed
    for handle in running[:_RUNNING_ROWS]:
        attempt = f" [cyan]try {handle.attempts}[/]" if handle.attempts > 1 else ""
        started = handle.started_at
        cells: list[RenderableType] = [
            f"[bold]{handle.job_id}[/]{attempt}",
            Text(f"p{handle.priority}", style=_PRIORITY_STYLES.get(handle.priority, "default")),
            ProgressBar(total=1.0, completed=handle.progress, width=bar_width),
            f"{handle.progress:.0%}",
        ]
        if medium:
            cells.append(Text(handle.progress_message or "", style="dim"))
        if wide:
            cells.append(Text("" if started is None else f"{now - started:.2f}s", style="dim"))
        table.add_row(*cells)
    if not running and state.done.is_set():
        table.add_row("[dim]every job has ended[/]")
    extra = len(running) - _RUNNING_ROWS
    return Panel(
        table,
        title=f"running now: {len(running)}",
        subtitle=f"…and {extra} more" if extra > 0 else None,
        border_style="cyan",
        box=box.ROUNDED,
        height=_MIDDLE_HEIGHT,
    )


def _events_panel(state: _State) -> Panel:
    lines = Text()
    rows = list(state.events)
    for index, (at, segments) in enumerate(rows):
        if index:
            lines.append("\n")
        lines.append(f"{at:5.2f}s  ", style="dim")
        for text, style in segments:
            lines.append(text, style=style or None)
    for _ in range(len(rows), _EVENT_ROWS):
        lines.append("\n")
    lines.no_wrap = True
    lines.overflow = "ellipsis"
    return Panel(lines, title="events", border_style="dim", box=box.ROUNDED)


def _header(state: _State, stats: PoolStats) -> Panel:
    ended = state.ended_total
    submitted = stats.total_submitted
    elapsed = state.elapsed()
    rate = ended / elapsed if elapsed > 0 else 0.0
    bar = ProgressBar(total=max(submitted, 1), completed=ended)
    grid = Table.grid(padding=(0, 2), expand=True)
    grid.add_column(no_wrap=True)
    grid.add_column(ratio=1)
    grid.add_column(no_wrap=True, justify="right")
    grid.add_row(
        "[bold]ended / submitted[/]",
        bar,
        f"[bold]{ended}[/]/{submitted}  {elapsed:5.1f}s  {rate:4.0f} jobs/s",
    )
    title = (
        f"[bold]trio-jobpool demo[/]: {state.config.jobs} CI jobs on Trio, seed {state.config.seed}"
    )
    return Panel(grid, title=title, border_style="bright_blue", box=box.ROUNDED)


def _render(state: _State, console: Console, pool: JobPool) -> RenderableType:
    stats = pool.stats()
    middle = Table.grid(padding=(0, 1), expand=True)
    middle.add_column(width=30)
    middle.add_column(ratio=1)
    middle.add_row(_stats_panel(state, stats), _running_panel(state, console.width))
    return Group(_header(state, stats), middle, _events_panel(state))


def _plain_line(state: _State, pool: JobPool) -> str:
    s = pool.stats()
    return (
        f"{state.elapsed():6.2f}s  ended {state.ended_total}/{s.total_submitted} "
        f"(of {state.config.jobs})  running {s.active_workers}/{s.max_workers}  "
        f"queued {s.queued_tasks}  completed {s.total_completed}  failed {s.total_failed}  "
        f"retries {s.total_retried}"
    )


async def _display(state: _State, pool: JobPool) -> None:
    """Redraw the live display (or print a progress line) until every job has ended."""
    console = state.console
    if console is None:
        while not state.done.is_set():
            with trio.move_on_after(_PLAIN_INTERVAL):
                await state.done.wait()
            if not state.done.is_set():
                state.print(_plain_line(state, pool))
        return
    from rich.live import Live

    with Live(
        _render(state, console, pool),
        console=console,
        auto_refresh=False,  # redrawn from this task: the pool is never touched from a thread
        transient=False,
    ) as live:
        while not state.done.is_set():
            with trio.move_on_after(_LIVE_INTERVAL):
                await state.done.wait()
            live.update(_render(state, console, pool), refresh=True)


# -- the summary -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _SummaryTable:
    """A table of the summary, drawn by Rich after the live display (:func:`_rich_table`) or
    as text in the plain output (:func:`_plain_table`)."""

    title: str
    columns: tuple[str, ...]
    right: tuple[bool, ...]  # which columns are justified to the right
    rows: list[tuple[_Segment, ...]]
    section: int | None = None  # a rule before the row of this index


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _summary_tables(state: _State, stats: PoolStats) -> list[_SummaryTable]:
    """The end-of-run tables: outcome counts, timings, and a per-kind table."""
    return [
        _outcome_table(stats),
        _timing_table(state, stats, state.elapsed()),
        _kinds_table(state),
    ]


def _ended_counts(stats: PoolStats) -> dict[JobStatus, int]:
    """How many jobs ended in each end status."""
    return {
        JobStatus.COMPLETED: stats.total_completed,
        JobStatus.FAILED: stats.total_failed,
        JobStatus.CANCELLED: stats.total_cancelled,
        JobStatus.TIMED_OUT: stats.total_timed_out,
    }


def _plain_cells(*cells: str) -> tuple[_Segment, ...]:
    return tuple((cell, "") for cell in cells)


def _outcome_table(stats: PoolStats) -> _SummaryTable:
    """Jobs and their share by end status, then the submitted total and the retries."""
    jobs = stats.total_submitted
    rows: list[tuple[_Segment, ...]] = []
    for status, count in _ended_counts(stats).items():
        share = count / jobs if jobs else 0.0
        rows.append(
            ((status.value, _STATUS_STYLES[status]), (str(count), ""), (f"{share:.1%}", ""))
        )
    section = len(rows)
    rows.append((("submitted", "bold"), (str(jobs), "bold"), ("", "")))
    rows.append(_plain_cells("retries", str(stats.total_retried), ""))
    return _SummaryTable(
        "outcome", ("status", "jobs", "share"), (False, True, True), rows, section=section
    )


def _timing_table(state: _State, stats: PoolStats, wall: float) -> _SummaryTable:
    """``wall`` time, throughput, execution and wait times, and the workers before and after."""
    throughput = stats.total_submitted / wall if wall > 0 else 0.0
    rows = [
        _plain_cells("wall time", f"{wall:.2f} s"),
        _plain_cells("throughput", f"{throughput:.1f} jobs/s"),
        _plain_cells("exec avg", _ms(stats.average_exec_time)),
        _plain_cells("exec p50", _ms(stats.exec_time_p50)),
        _plain_cells("exec p95", _ms(stats.exec_time_p95)),
        _plain_cells("exec p99", _ms(stats.exec_time_p99)),
        _plain_cells("wait avg", _ms(stats.average_wait_time)),
        _plain_cells("workers", f"{state.config.workers} → {stats.max_workers}"),
    ]
    return _SummaryTable("timing", ("measure", "value"), (False, True), rows)


def _kinds_table(state: _State) -> _SummaryTable:
    """For each kind of job, in the order of ``_KINDS``: jobs, completed, not completed and
    their average execution time."""
    by_kind: dict[str, list[JobHandle[Any]]] = collections.defaultdict(list)
    for handle in state.handles:
        by_kind[state.kinds[handle.job_id]].append(handle)
    rows: list[tuple[_Segment, ...]] = []
    for kind, _, _, _, _, _ in _KINDS:
        handles = by_kind.get(kind, [])
        ok = sum(1 for h in handles if h.status is JobStatus.COMPLETED)
        times = [h.exec_time for h in handles if h.exec_time is not None]
        average = sum(times) / len(times) if times else 0.0
        rows.append(
            (
                (kind, ""),
                (str(len(handles)), ""),
                (str(ok), "green"),
                (str(len(handles) - ok), ""),
                (_ms(average), ""),
            )
        )
    columns = ("kind", "jobs", "ok", "not ok", "exec avg")
    return _SummaryTable("by kind", columns, (False, True, True, True, True), rows)


def _check_line(state: _State, stats: PoolStats) -> tuple[_Segment, ...]:
    """✓ if every submitted job ended and as many were submitted as configured, else ✗."""
    jobs = stats.total_submitted
    ended = sum(_ended_counts(stats).values())
    if ended == jobs == state.config.jobs:
        return (
            ("✓", "green"),
            (f" completed + failed + cancelled + timed_out = {ended} = submitted", ""),
        )
    return ((f"✗ counts do not add up: {ended} ended, {jobs} submitted", "red"),)


def _summary_line(stats: PoolStats, wall: float) -> str:
    """The ``summary: key=value ...`` line, plain text for logs and scripts."""
    return (
        f"summary: submitted={stats.total_submitted} completed={stats.total_completed} "
        f"failed={stats.total_failed} cancelled={stats.total_cancelled} "
        f"timed_out={stats.total_timed_out} retried={stats.total_retried} "
        f"wall={wall:.2f}s"
    )


def _rich_table(table: _SummaryTable) -> Table:
    drawn = Table(title=table.title, box=box.SIMPLE_HEAD, title_justify="left")
    for column, right in zip(table.columns, table.right, strict=True):
        drawn.add_column(column, justify="right" if right else "left")
    for index, row in enumerate(table.rows):
        if index == table.section:
            drawn.add_section()
        drawn.add_row(*(Text(text, style=style) for text, style in row))
    return drawn


def _plain_table(table: _SummaryTable) -> list[str]:
    """The table as lines of text: its title, then its columns (two spaces apart) under a rule
    of dashes, indented by two spaces; a rule also before the row ``section``."""
    texts = [table.columns, *(tuple(text for text, _ in row) for row in table.rows)]
    widths = [max(len(row[column]) for row in texts) for column in range(len(table.columns))]

    def line(cells: Sequence[str]) -> str:
        laid = (
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width, right in zip(cells, widths, table.right, strict=True)
        )
        return ("  " + "  ".join(laid)).rstrip()

    rule = line(["-" * width for width in widths])
    lines = [table.title, line(table.columns), rule]
    for index, row in enumerate(texts[1:]):
        if index == table.section:
            lines.append(rule)
        lines.append(line(row))
    return lines


def _print_summary(state: _State, stats: PoolStats) -> None:
    """Print the summary: with Rich after the live display (the three tables side by side from
    a width of 110 columns, else the per-kind table below the other two), else as text."""
    tables = _summary_tables(state, stats)
    check = _check_line(state, stats)
    line = _summary_line(stats, state.elapsed())
    console = state.console
    if console is None:
        for table in tables:
            state.print("")
            for text in _plain_table(table):
                state.print(text)
        state.print("")
        state.print("".join(text for text, _ in check))
        state.print(line)
        return
    drawn = [_rich_table(table) for table in tables]
    grid = Table.grid(padding=(0, 4))
    if console.width >= 110:
        grid.add_row(*drawn)
        parts: list[RenderableType] = [grid]
    else:
        grid.add_row(*drawn[:2])
        parts = [grid, *drawn[2:]]
    console.print()
    for part in parts:
        console.print(part)
    console.print(Text.assemble(*check), soft_wrap=True)
    console.print(Text(line, style="dim"), soft_wrap=True)


# -- entry point -----------------------------------------------------------------------------


async def _main(config: DemoConfig, console: Console | None, out: TextIO) -> int:
    specs = make_workload(config)
    state = _State(config=config, start=trio.current_time(), console=console, out=out)
    if console is None:
        state.print(
            f"trio-jobpool demo: {config.jobs} CI jobs on Trio, {config.workers} workers "
            f"(→ {config.workers * 2} half way), seed {config.seed}"
        )
    async with open_job_pool(
        max_workers=config.workers,
        queue_size=config.queue_size,
        job_timeout=10.0,
        shutdown_timeout=5.0,
    ) as pool:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_display, state, pool)
            await _submit_all(state, pool, specs, nursery)
            await state.done.wait()
        stats = pool.stats()
    _print_summary(state, stats)
    ended = (
        stats.total_completed + stats.total_failed + stats.total_cancelled + stats.total_timed_out
    )
    return 0 if ended == stats.total_submitted == config.jobs else 1


def run_demo(config: DemoConfig, console: Console | None = None, out: TextIO | None = None) -> int:
    """Run the demo workload on Trio and print its summary; return the exit code (0: OK).

    With ``config.live``, the live display and the summary are drawn on ``console`` (a new
    ``rich`` :class:`~rich.console.Console` by default); else plain lines go to ``out``
    (``sys.stdout`` by default), and ``rich`` is not used.

    Raises:
        ImportError: ``config.live`` and ``rich`` is not installed (before anything runs).
        ValueError: ``config.jobs < 10`` or ``config.workers < 1``.
        KeyboardInterrupt: interrupted (every job is cancelled first).
    """
    if config.live and _rich_missing is not None:
        raise _rich_missing
    if config.jobs < 10:
        raise ValueError(f"the demo needs at least 10 jobs, got {config.jobs}")
    if config.workers < 1:
        raise ValueError(f"the demo needs at least 1 worker, got {config.workers}")
    if not config.live:
        console = None
    elif console is None:
        console = Console()
    try:
        return trio.run(_main, config, console, sys.stdout if out is None else out)
    except BaseExceptionGroup as group:
        # Ctrl-C arrives wrapped by the demo's nursery: give the caller a plain interrupt.
        interrupt, rest = group.split(KeyboardInterrupt)
        if interrupt is not None and rest is None:
            raise KeyboardInterrupt from None
        raise
