"""The workloads, each written once against the interface in :mod:`impls`.

A driver takes an :class:`impls.Env` and a job count ``n`` and returns its metrics (plus a list of
``problems`` found by its sanity checks). Every load loop is ``for ... in range(n)``. Times are
``time.perf_counter()`` wall time.

This module imports no async library: the runner reads the registry (:data:`WORKLOADS`) from here.
"""

from __future__ import annotations

import datetime
import functools
import gc
import math
import os
import random
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "D_TARGET",
    "S1_GOAL_BYTES",
    "S2_GOAL_RATIO",
    "W6_GOAL_RATIO",
    "W6_KEYS",
    "WORKLOADS",
    "Metric",
    "Workload",
    "count_inversions",
    "lag_figures",
    "tenant_figures",
    "tenant_keys",
]

clock = time.perf_counter
# CPU time of this process: on a machine busy with other work, the wall time of a measurement
# also holds the time others ran; its CPU time much less so (the drivers are single-threaded).
cpu_clock = time.process_time

W1_WORKERS, W1_QUEUE = 10, 100
W2_WORKERS, W2_QUEUE, W2_SLEEP = 100, 100, 0.001
W3_SEED = 20_240_601
W4_WORKERS = 10
FLAT_SAMPLE_AT = 100_000
D_WORKERS, D_QUEUE, D_SUBMITTERS = 10, 100, 16
D_TARGET = 0.25  # the durable pool's throughput ÷ the in-memory pool's, at least
S_SEED = 20_261_206
S_HORIZON = 3600.0  # S1, S2: delays drawn uniformly from [0, S_HORIZON) seconds
S_WORKERS = 10
S3_AHEAD = 1.0  # S3: the common due time, seconds after the submit loop starts
S1_GOAL_BYTES = 64  # issue #16: a scheduled job costs at most a waiting job + 64 B
S2_GOAL_RATIO = 1.3  # issue #16: submit(delay=) costs at most 1.3x a plain submit
LATER_IMPLS = ("jobpool-trio", "jobpool-asyncio")
W6_KEYS = 1_000  # W6: the tenants, one flow-control key each
W6_SEED = 20_261_207  # W6: each job's tenant, drawn uniformly at random
W6_WORKERS = 10
W6_GOAL_RATIO = 1.5  # issue #17: W6's µs per job at most 1.5x W1's
FLOW_IMPLS = ("jobpool-trio", "jobpool-asyncio")
DURABLE_IMPLS = (
    "jobpool-trio",
    "jobpool-trio-sqlite",
    "jobpool-trio-sqlite-full",
    "jobpool-asyncio",
    "jobpool-asyncio-sqlite",
)


# -- helpers -----------------------------------------------------------------------------------


def rss_bytes() -> int:
    """Resident set size of this process now (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def wait_started(jobs: Any, started: list[int], count: int) -> None:
    """Yield until ``count`` blocker jobs run (bounded: a pool that never starts them fails)."""
    for _ in range(10_000):
        if len(started) >= count:
            return
        await jobs.checkpoint()
    raise RuntimeError(f"only {len(started)} of {count} blocker jobs started")


def check_counts(pool: Any, problems: list[str], **expected: int) -> None:
    """Compare the pool's own counters (if it keeps any) with what the workload did."""
    counts = pool.counts()
    if counts is None:
        return
    for key, value in expected.items():
        if counts[key] != value:
            problems.append(f"{key}: expected {value}, pool says {counts[key]}")
    if "submitted" in counts:  # trio_jobpool: the stats invariant, once everything ended
        ended = counts["completed"] + counts["failed"] + counts["cancelled"] + counts["timed_out"]
        total = ended + counts["queued"] + counts["active"] + counts.get("scheduled", 0)
        if counts["submitted"] != total or counts["queued"] or counts["active"]:
            problems.append(f"stats invariant broken after the pool stopped: {counts}")


def check_stored(pool: Any, problems: list[str], **expected: int) -> None:
    """Compare the rows of a durable pool's file (after the pool closed) with what the workload
    did: every job on disk, ended, in the expected status."""
    stored = pool.stored()
    if stored is None:
        return
    if stored != expected:
        problems.append(f"the store holds {stored}, expected {expected}")


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def count_inversions(order: list[int], priorities: list[int]) -> tuple[int, int]:
    """Count jobs that started while a strictly more urgent job was waiting, and FIFO breaks.

    ``order``: job indices in the order they started; all of them were submitted before the
    first one started. A job is an inversion if some job started after it has a lower (more
    urgent) priority. A FIFO break is a job that started before an earlier-submitted job of the
    same priority.
    """
    inversions = 0
    best_later = math.inf
    for index in reversed(order):
        priority = priorities[index]
        if priority > best_later:
            inversions += 1
        best_later = min(best_later, priority)
    fifo_breaks = 0
    last_index: dict[int, int] = {}
    for index in order:
        priority = priorities[index]
        if last_index.get(priority, -1) > index:
            fifo_breaks += 1
        last_index[priority] = max(index, last_index.get(priority, -1))
    return inversions, fifo_breaks


# -- the drivers -------------------------------------------------------------------------------


async def w1_throughput(env: Any, n: int) -> dict[str, Any]:
    """n no-op jobs, 10 workers, queue 100: submit loop + drain, wall time / n."""
    noop = env.jobs.noop
    problems: list[str] = []
    async with env.open_pool("plain", W1_WORKERS, W1_QUEUE) as pool:
        submit = pool.submit
        start, cpu_start = clock(), cpu_clock()
        for _ in range(n):
            await submit(noop)
    elapsed, cpu = clock() - start, cpu_clock() - cpu_start
    check_counts(pool, problems, completed=n)
    return {
        "us_per_job": elapsed / n * 1e6,
        "cpu_us_per_job": cpu / n * 1e6,
        "wall_s": elapsed,
        "problems": problems,
    }


async def w1_latency(env: Any, n: int) -> dict[str, Any]:
    """Like W1; per job, the time from just before the submit call to the end of the job body."""
    stamped = env.jobs.stamped
    submitted = [0.0] * n
    done = [0.0] * n
    problems: list[str] = []
    async with env.open_pool("plain", W1_WORKERS, W1_QUEUE) as pool:
        submit = pool.submit
        start = clock()
        for i in range(n):
            submitted[i] = clock()
            await submit(stamped, done, i)
    elapsed = clock() - start
    check_counts(pool, problems, completed=n)
    if done.count(0.0):
        problems.append(f"{done.count(0.0)} jobs never ran")
    latencies = sorted(end - begin for end, begin in zip(done, submitted, strict=True))
    return {
        "p50_us": percentile(latencies, 0.50) * 1e6,
        "p99_us": percentile(latencies, 0.99) * 1e6,
        "max_us": latencies[-1] * 1e6,
        "us_per_job": elapsed / n * 1e6,
        "problems": problems,
    }


async def w2_sleep(env: Any, n: int) -> dict[str, Any]:
    """n jobs of sleep(1 ms), 100 workers, queue 100: wall time / ideal (n / 100 * 1 ms)."""
    sleep_1ms = env.jobs.sleep_1ms
    problems: list[str] = []
    async with env.open_pool("plain", W2_WORKERS, W2_QUEUE) as pool:
        submit = pool.submit
        start = clock()
        for _ in range(n):
            await submit(sleep_1ms)
    elapsed = clock() - start
    check_counts(pool, problems, completed=n)
    ideal = n / W2_WORKERS * W2_SLEEP
    return {"x_ideal": elapsed / ideal, "wall_s": elapsed, "problems": problems}


async def w3_priorities(env: Any, n: int) -> dict[str, Any]:
    """n jobs with random priorities 1..10 queued behind one blocked worker, then released."""
    jobs = env.jobs
    record = jobs.record
    rng = random.Random(W3_SEED)
    priorities = [rng.randint(1, 10) for _ in range(n)]
    order: list[int] = []
    release, started = jobs.Event(), []
    problems: list[str] = []
    async with env.open_pool("priority", 1, None) as pool:
        submit = pool.submit
        await submit(jobs.blocker, release, started)
        await wait_started(jobs, started, 1)
        start = clock()
        for i in range(n):
            await submit(record, order, i, priority=priorities[i])
        released, cpu_released = clock(), cpu_clock()
        release.set()
    drained, cpu_drained = clock(), cpu_clock()
    check_counts(pool, problems, completed=n + 1)
    inversions, fifo_breaks = count_inversions(order, priorities)
    if len(order) != n or len(set(order)) != n:
        problems.append(f"{len(order)} starts recorded ({len(set(order))} distinct) for {n} jobs")
    if inversions or fifo_breaks:
        problems.append(f"{inversions} priority inversions, {fifo_breaks} FIFO breaks")
    return {
        "drain_us_per_job": (drained - released) / n * 1e6,
        "drain_cpu_us_per_job": (cpu_drained - cpu_released) / n * 1e6,
        "submit_us_per_job": (released - start) / n * 1e6,
        "inversions": inversions,
        "fifo_breaks": fifo_breaks,
        "problems": problems,
    }


async def w4_memory(env: Any, n: int) -> dict[str, Any]:
    """n no-op jobs queued behind 10 blocked workers (unbounded queue): bytes per queued job."""
    jobs = env.jobs
    noop = jobs.noop
    release, started = jobs.Event(), []
    async with env.open_pool("plain", W4_WORKERS, None) as pool:
        submit = pool.submit
        for _ in range(W4_WORKERS):
            await submit(jobs.blocker, release, started)
        await wait_started(jobs, started, W4_WORKERS)
        gc.collect()
        rss_before = rss_bytes()
        tracemalloc.start()
        traced_before = tracemalloc.get_traced_memory()[0]
        overhead_before = tracemalloc.get_tracemalloc_memory()
        for _ in range(n):
            await submit(noop)
        traced_after = tracemalloc.get_traced_memory()[0]
        overhead_after = tracemalloc.get_tracemalloc_memory()
        rss_after = rss_bytes()
        tracemalloc.stop()
        release.set()  # teardown only: the pool cancels its queued jobs, or runs them out if
        await pool.abort()  # that is faster
    # RSS also grew by tracemalloc's own tables; take those out.
    rss_growth = rss_after - rss_before - (overhead_after - overhead_before)
    return {
        "bytes_per_job": (traced_after - traced_before) / n,
        "rss_bytes_per_job": rss_growth / n,
        "problems": [],
    }


async def w5_cancel(env: Any, n: int) -> dict[str, Any]:
    """n jobs queued behind one blocked worker, then each cancelled by id."""
    jobs = env.jobs
    noop = jobs.noop
    release, started = jobs.Event(), []
    handles: list[Any] = []
    append = handles.append
    problems: list[str] = []
    async with env.open_pool("cancel", 1, None) as pool:
        submit = pool.submit
        await submit(jobs.blocker, release, started)
        await wait_started(jobs, started, 1)
        start = clock()
        for _ in range(n):
            append(await submit(noop))
        submitted = clock()
        ids = [pool.job_id(handle) for handle in handles]
        cancel_start = clock()
        await pool.cancel_many(ids)
        cancelled = clock()
        release.set()
    drained = clock()
    check_counts(pool, problems, completed=1, cancelled=n)
    untimed = cancel_start - submitted  # collecting the ids is not part of any figure
    return {
        "cancel_us_per_job": (cancelled - cancel_start) / n * 1e6,
        "submit_us_per_job": (submitted - start) / n * 1e6,
        "total_us_per_job": (drained - start - untimed) / n * 1e6,
        "problems": problems,
    }


async def flat_memory(env: Any, n: int) -> dict[str, Any]:
    """W1's pool with n no-op jobs; RSS after the first 100k (or n/10) jobs and at the end."""
    noop = env.jobs.noop
    sample_at = min(FLAT_SAMPLE_AT, n // 10)
    rss_sample = 0
    problems: list[str] = []
    async with env.open_pool("plain", W1_WORKERS, W1_QUEUE) as pool:
        submit = pool.submit
        start = clock()
        for i in range(n):
            await submit(noop)
            if i + 1 == sample_at:
                rss_sample = rss_bytes()
        rss_end = rss_bytes()
    elapsed = clock() - start
    rss_after_stop = rss_bytes()
    check_counts(pool, problems, completed=n)
    return {
        "rss_delta_mb": (rss_end - rss_sample) / 2**20,
        "rss_sample_mb": rss_sample / 2**20,
        "rss_end_mb": rss_end / 2**20,
        "rss_after_stop_mb": rss_after_stop / 2**20,
        "sample_at": sample_at,
        "us_per_job": elapsed / n * 1e6,
        "problems": problems,
    }


async def d1_submit_one(env: Any, n: int) -> dict[str, Any]:
    """n no-op jobs submitted by one task, one after the other, while every worker is held by a
    job of its own (unbounded queue): only the submit loop is timed. Then drained, untimed."""
    noop = env.jobs.noop
    problems: list[str] = []
    async with env.open_pool("durable", D_WORKERS, None) as pool:
        await pool.hold_workers(D_WORKERS)
        submit = pool.submit
        start = clock()
        for _ in range(n):
            await submit(noop)
        elapsed = clock() - start
        pool.release_workers()
    check_counts(pool, problems, completed=n + D_WORKERS)
    check_stored(pool, problems, completed=n + D_WORKERS)
    return {"jobs_per_s": n / elapsed, "us_per_job": elapsed / n * 1e6, "problems": problems}


def _shares(n: int, parts: int) -> list[int]:
    """``n`` split into ``parts`` near-equal whole shares."""
    each, extra = divmod(n, parts)
    return [each + (i < extra) for i in range(parts)]


async def d2_submit_many(env: Any, n: int) -> dict[str, Any]:
    """As D1, but 16 tasks submit at once (n/16 jobs each): the case group commit is for.
    Timed from before the submitters start until the last of them returned."""
    noop = env.jobs.noop
    problems: list[str] = []
    async with env.open_pool("durable", D_WORKERS, None) as pool:
        await pool.hold_workers(D_WORKERS)
        submit = pool.submit

        async def submitter(count: int) -> None:
            for _ in range(count):
                await submit(noop)

        submitters = [functools.partial(submitter, k) for k in _shares(n, D_SUBMITTERS)]
        start = clock()
        await env.gather(submitters)
        elapsed = clock() - start
        pool.release_workers()
    check_counts(pool, problems, completed=n + D_WORKERS)
    check_stored(pool, problems, completed=n + D_WORKERS)
    return {"jobs_per_s": n / elapsed, "us_per_job": elapsed / n * 1e6, "problems": problems}


async def d3_end_to_end(env: Any, n: int) -> dict[str, Any]:
    """n no-op jobs submitted by 16 tasks (n/16 each) into W1's pool (10 workers, queue 100),
    run to completion: from before the submitters start until the pool has drained (and, with a
    store, committed and closed its file)."""
    noop = env.jobs.noop
    problems: list[str] = []
    async with env.open_pool("durable", D_WORKERS, D_QUEUE) as pool:
        submit = pool.submit

        async def submitter(count: int) -> None:
            for _ in range(count):
                await submit(noop)

        submitters = [functools.partial(submitter, k) for k in _shares(n, D_SUBMITTERS)]
        start = clock()
        await env.gather(submitters)
    elapsed = clock() - start
    check_counts(pool, problems, completed=n)
    check_stored(pool, problems, completed=n)
    return {"jobs_per_s": n / elapsed, "us_per_job": elapsed / n * 1e6, "problems": problems}


# -- later jobs (issue #16) --------------------------------------------------------------------


def random_delays(n: int) -> list[float]:
    """S1, S2: n delays drawn uniformly from the next hour, the same in every run."""
    rng = random.Random(S_SEED)
    return [rng.uniform(0.0, S_HORIZON) for _ in range(n)]


async def _hold_workers(env: Any, pool: Any, count: int) -> Any:
    """Submit ``count`` blocker jobs and return once all of them run; set the returned event
    to let them end."""
    jobs = env.jobs
    release, started = jobs.Event(), []
    for _ in range(count):
        await pool.submit(jobs.blocker, release, started)
    await wait_started(jobs, started, count)
    return release


async def s1_memory(env: Any, n: int) -> dict[str, Any]:
    """W4 with every job scheduled: n no-op jobs submitted with ``delay=`` random in the next
    hour (seeded) behind 10 busy workers: bytes per scheduled job (tracemalloc). S1W is W4's
    driver at the same n, for the waiting job next to it."""
    noop = env.jobs.noop
    delays = random_delays(n)
    problems: list[str] = []
    async with env.open_pool("plain", S_WORKERS, None) as pool:
        submit = pool.submit
        release = await _hold_workers(env, pool, S_WORKERS)
        gc.collect()
        rss_before = rss_bytes()
        tracemalloc.start()
        traced_before = tracemalloc.get_traced_memory()[0]
        overhead_before = tracemalloc.get_tracemalloc_memory()
        for delay in delays:
            await submit(noop, delay=delay)
        traced_after = tracemalloc.get_traced_memory()[0]
        overhead_after = tracemalloc.get_tracemalloc_memory()
        rss_after = rss_bytes()
        tracemalloc.stop()
        counts = pool.counts()  # the earliest delays may have come due meanwhile
        if counts["scheduled"] + counts["queued"] != n:
            problems.append(f"{counts['scheduled']} jobs scheduled, {counts['queued']} due")
        release.set()  # teardown: the pool's stop cancels the scheduled jobs
        await pool.abort()
    rss_growth = rss_after - rss_before - (overhead_after - overhead_before)
    return {
        "bytes_per_job": (traced_after - traced_before) / n,
        "rss_bytes_per_job": rss_growth / n,
        "problems": problems,
    }


async def _submit_cost(env: Any, n: int, *, delayed: bool) -> dict[str, Any]:
    """n no-op jobs submitted behind 10 blocked workers into an unbounded queue, each with
    ``delay=`` random in the next hour (S2) or none (S2W): the submit loop's wall time / n."""
    noop = env.jobs.noop
    delays = random_delays(n)
    problems: list[str] = []
    async with env.open_pool("plain", S_WORKERS, None) as pool:
        submit = pool.submit
        release = await _hold_workers(env, pool, S_WORKERS)
        gc.collect()
        if delayed:
            start, cpu_start = clock(), cpu_clock()
            for delay in delays:
                await submit(noop, delay=delay)
            elapsed, cpu = clock() - start, cpu_clock() - cpu_start
        else:
            start, cpu_start = clock(), cpu_clock()
            for _delay in delays:  # the same loop, without the argument
                await submit(noop)
            elapsed, cpu = clock() - start, cpu_clock() - cpu_start
        counts = pool.counts()  # (the earliest delays may have come due meanwhile)
        if counts["scheduled"] + counts["queued"] != n:
            problems.append(f"{counts['scheduled']} jobs scheduled, {counts['queued']} queued")
        release.set()
        await pool.abort()
    return {
        "submit_us_per_job": elapsed / n * 1e6,
        "cpu_us_per_job": cpu / n * 1e6,
        "problems": problems,
    }


async def s2_submit_later(env: Any, n: int) -> dict[str, Any]:
    """S2: ``submit(noop, delay=random in the next hour)``, µs per call."""
    return await _submit_cost(env, n, delayed=True)


async def s2_submit_plain(env: Any, n: int) -> dict[str, Any]:
    """S2W: ``submit(noop)`` into the waiting room, µs per call (S2's reference)."""
    return await _submit_cost(env, n, delayed=False)


def lag_figures(due: float, starts: list[float]) -> dict[str, float]:
    """The lag of jobs that all fell due at ``due`` and started at ``starts`` (the same clock,
    seconds), in ms: p50, p99 (nearest rank), max, and the first start's (the timer's own lag
    and the hand-over of the burst): the figures ``distributed.py --lag`` gives on Redis, for
    any pool's driver."""
    lags = sorted(start - due for start in starts)
    return {
        "p50_ms": percentile(lags, 0.50) * 1e3,
        "p99_ms": percentile(lags, 0.99) * 1e3,
        "max_ms": lags[-1] * 1e3,
        "first_ms": lags[0] * 1e3,
    }


async def s3_due_lag(env: Any, n: int) -> dict[str, Any]:
    """S3: n no-op jobs submitted with the same ``at=`` (S3_AHEAD seconds after the submit loop
    starts, wall clock), 10 workers: from the due time to each job's start, as the job body
    sees it (``time.time()`` first thing in the body) and as the pool records it
    (``started_at - scheduled_for``)."""
    stamped = env.jobs.wall_stamped
    starts = [0.0] * n
    problems: list[str] = []
    async with env.open_pool("plain", S_WORKERS, None) as pool:
        submit = pool.submit
        at = datetime.datetime.fromtimestamp(time.time() + S3_AHEAD, datetime.UTC)
        due = at.timestamp()
        start = clock()
        handles = [await submit(stamped, starts, i, at=at) for i in range(n)]
        submit_s = clock() - start
        if time.time() >= due:
            problems.append(f"the submit loop took {submit_s:.3f} s, past the due time")
        # Jobs falling due together start in the order they were submitted: once the last has
        # ended, the others have started; leaving the block drains them.
        await pool.wait_ended(handles[-1])
    check_counts(pool, problems, completed=n)
    if starts.count(0.0):
        problems.append(f"{starts.count(0.0)} jobs never started")
        return {"p50_ms": math.nan, "problems": problems}
    figures = lag_figures(due, starts)
    if figures["first_ms"] < 0:
        problems.append(f"a job started {-figures['first_ms']:.3f} ms before its due time")
    pool_lags = sorted(pool.due_lags(handles))
    if pool_lags[0] < 0:
        problems.append(f"the pool started a job {-pool_lags[0] * 1e3:.3f} ms early")
    return {
        **figures,
        "pool_p50_ms": percentile(pool_lags, 0.50) * 1e3,
        "pool_p99_ms": percentile(pool_lags, 0.99) * 1e3,
        "submit_us_per_job": submit_s / n * 1e6,
        "problems": problems,
    }


# -- flow control (issue #17) ------------------------------------------------------------------


def tenant_keys(n: int) -> list[int]:
    """W6: each of n jobs' tenant, 0 to W6_KEYS - 1, drawn uniformly at random, the same in
    every run. (Not round-robin: in a strict cycle the order of submission is already a fair
    round-robin, and ``fair=True`` could not be told from FIFO.)"""
    rng = random.Random(W6_SEED)
    return [rng.randrange(W6_KEYS) for _ in range(n)]


def tenant_figures(events: list[int], keys: int, drain_from: int = 0) -> dict[str, int]:
    """From the starts (``k``) and ends (``~k``) of jobs of keys ``0..keys-1`` in the order they
    happened: ``max_gap``, the most starts (of other keys' jobs) between two consecutive starts
    of one key, over all keys; ``p99_gap`` (nearest rank over every such pair);
    ``max_gap_drain``, ``max_gap`` over the pairs whose first start is at ``events[drain_from]``
    or later (once every job was submitted, a key with jobs left always has one waiting);
    ``overlaps``, starts of a key that had a job running; ``starts``."""
    last = [-1] * keys
    running = [0] * keys
    gaps: list[int] = []
    starts = overlaps = max_gap_drain = 0
    drain_starts = sum(1 for event in events[:drain_from] if event >= 0)
    for event in events:
        if event >= 0:
            if running[event]:
                overlaps += 1
            running[event] += 1
            previous = last[event]
            if previous >= 0:
                gap = starts - previous - 1
                gaps.append(gap)
                if previous >= drain_starts and gap > max_gap_drain:
                    max_gap_drain = gap
            last[event] = starts
            starts += 1
        else:
            running[~event] -= 1
    gaps.sort()
    return {
        "max_gap": gaps[-1] if gaps else 0,
        "p99_gap": int(percentile(gaps, 0.99)) if gaps else 0,
        "max_gap_drain": max_gap_drain,
        "overlaps": overlaps,
        "starts": starts,
    }


async def _tenants(env: Any, n: int, *, kind: str, queue: int | None) -> dict[str, Any]:
    """n jobs of W6_KEYS tenants (``tenant_keys``), W6_WORKERS workers, a queue of ``queue``
    (``None``: unbounded): the submit loop + drain, wall and CPU time / n; each job records its
    start and end (``Jobs.keyed``) for the fairness figures. ``kind``: ``"plain"`` submits
    without ``key=`` (W6N), ``"keys"`` and ``"keys-fair"`` with ``key="tenant:<k>"`` into a pool
    whose every key has ``max_running=1``, the second with ``fair=True``."""
    body = env.jobs.keyed
    tenants = tenant_keys(n)
    names = [f"tenant:{k}" for k in range(W6_KEYS)]
    events: list[int] = []
    problems: list[str] = []
    async with env.open_pool(kind, W6_WORKERS, queue) as pool:
        submit = pool.submit
        if kind == "plain":
            start, cpu_start = clock(), cpu_clock()
            for k in tenants:
                await submit(body, events, k)
        else:
            start, cpu_start = clock(), cpu_clock()
            for k in tenants:
                await submit(body, events, k, key=names[k])
        submitted = len(events)
    elapsed, cpu = clock() - start, cpu_clock() - cpu_start
    check_counts(pool, problems, completed=n)
    figures = tenant_figures(events, W6_KEYS, submitted)
    if figures["starts"] != n or len(events) != 2 * n:
        problems.append(f"{figures['starts']} starts and {len(events) - figures['starts']} ends")
    if kind != "plain" and figures["overlaps"]:
        problems.append(f"{figures['overlaps']} starts of a key with max_running=1 already running")
    return {
        "us_per_job": elapsed / n * 1e6,
        "cpu_us_per_job": cpu / n * 1e6,
        "max_gap": figures["max_gap"],
        "p99_gap": figures["p99_gap"],
        "max_gap_drain": figures["max_gap_drain"],
        "drain_starts": n - sum(1 for event in events[:submitted] if event >= 0),
        "delayed": (pool.counts() or {}).get("delayed", 0),
        "problems": problems,
    }


async def w6_tenants(env: Any, n: int) -> dict[str, Any]:
    """W6: every key ``max_running=1``, unbounded queue."""
    return await _tenants(env, n, kind="keys", queue=None)


async def w6_tenants_fair(env: Any, n: int) -> dict[str, Any]:
    """W6F: W6 with ``fair=True``."""
    return await _tenants(env, n, kind="keys-fair", queue=None)


async def w6_tenants_plain(env: Any, n: int) -> dict[str, Any]:
    """W6N: W6's jobs and pool without keys (what the keys cost: W6 against W6N)."""
    return await _tenants(env, n, kind="plain", queue=None)


async def w6_tenants_w1_shape(env: Any, n: int) -> dict[str, Any]:
    """W6Q: W6 in W1's shape: queue 100 (``max_pending=0``), so the submit loop waits."""
    return await _tenants(env, n, kind="keys", queue=W1_QUEUE)


# -- the registry ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    digits: int = 1


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    what: str
    driver: Callable[[Any, int], Awaitable[dict[str, Any]]]
    n: int
    quick_n: int
    metrics: tuple[Metric, ...]  # the first one is the headline figure
    impls: tuple[str, ...] | None = None  # None: every in-memory implementation
    durable: bool = False  # a durable workload: jobs/s (higher is better), durable ÷ in-memory
    # The durable target (D_TARGET) is about the no-op throughput, end to end (D3); D1 and D2
    # set a submit's wait for its commit against an in-memory enqueue of 2-3 µs: figures only.
    durable_target: bool = False
    later: bool = False  # a later-job workload (issue #16): its own report section
    flow: bool = False  # a flow-control workload (issue #17): its own report section

    @property
    def section(self) -> str:
        """Which part of docs/performance.md its report goes to (see run.py)."""
        if self.durable:
            return "durable"
        return "later" if self.later else "flow" if self.flow else "results"

    @property
    def primary(self) -> Metric:
        return self.metrics[0]


US = "\N{MICRO SIGN}s"

WORKLOADS: dict[str, Workload] = {
    w.key: w
    for w in (
        Workload(
            "W1",
            "W1 throughput",
            "no-op jobs, 10 workers, queue 100; submit loop + drain",
            w1_throughput,
            100_000,
            5_000,
            (Metric("us_per_job", f"{US}/job", 2), Metric("cpu_us_per_job", f"CPU {US}/job", 2)),
        ),
        Workload(
            "W1L",
            "W1 latency",
            "as W1; per job, from just before submit to the end of the job body",
            w1_latency,
            100_000,
            5_000,
            (
                Metric("p50_us", f"p50 {US}", 0),
                Metric("p99_us", f"p99 {US}", 0),
                Metric("us_per_job", f"{US}/job", 2),
            ),
        ),
        Workload(
            "W2",
            "W2 sleep(1 ms)",
            "sleep(1 ms) jobs, 100 workers, queue 100; wall time / ideal (n/100 ms)",
            w2_sleep,
            20_000,
            2_000,
            (Metric("x_ideal", "\N{MULTIPLICATION SIGN} ideal", 2), Metric("wall_s", "wall s", 3)),
        ),
        Workload(
            "W3",
            "W3 priorities",
            "random priorities 1..10 behind 1 blocked worker, unbounded queue; drain after release",
            w3_priorities,
            100_000,
            5_000,
            (
                Metric("drain_us_per_job", f"drain {US}/job", 2),
                Metric("submit_us_per_job", f"submit {US}/job", 2),
                Metric("inversions", "inversions", 0),
                Metric("fifo_breaks", "FIFO breaks", 0),
                Metric("drain_cpu_us_per_job", f"drain CPU {US}/job", 2),
            ),
        ),
        Workload(
            "W4",
            "W4 memory",
            "no-op jobs queued behind 10 blocked workers, unbounded queue; tracemalloc and RSS",
            w4_memory,
            200_000,
            10_000,
            (Metric("bytes_per_job", "bytes/job", 0), Metric("rss_bytes_per_job", "RSS B/job", 0)),
        ),
        Workload(
            "W5",
            "W5 cancel",
            "jobs queued behind 1 blocked worker, then each cancelled by id",
            w5_cancel,
            100_000,
            5_000,
            (
                Metric("cancel_us_per_job", f"cancel {US}/job", 2),
                Metric("submit_us_per_job", f"submit {US}/job", 2),
                Metric("total_us_per_job", f"total {US}/job", 2),
            ),
        ),
        Workload(
            "FLAT",
            "Memory flatness",
            "no-op jobs through W1's pool (trio_jobpool on Trio); RSS after the first 100,000 "
            "jobs (n/10 if fewer) and at the end",
            flat_memory,
            1_000_000,
            150_000,  # the sample must come after the pool's history (10,000 jobs) is full
            (
                Metric("rss_delta_mb", "RSS delta MB", 1),
                Metric("rss_sample_mb", "RSS after 100k MB", 1),
                Metric("rss_end_mb", "RSS at end MB", 1),
                Metric("us_per_job", f"{US}/job", 2),
            ),
            impls=("jobpool-trio",),
        ),
        Workload(
            "D1",
            "D1 durable submits, one task",
            f"no-op jobs submitted by one task while the {D_WORKERS} workers are held, unbounded "
            "queue; the submit loop is timed",
            d1_submit_one,
            20_000,
            2_000,
            (Metric("jobs_per_s", "jobs/s", 0), Metric("us_per_job", f"{US}/submit", 1)),
            impls=DURABLE_IMPLS,
            durable=True,
        ),
        Workload(
            "D2",
            "D2 durable submits, 16 tasks",
            f"no-op jobs submitted by {D_SUBMITTERS} concurrent tasks while the {D_WORKERS} "
            "workers are held, unbounded queue; the submitters are timed",
            d2_submit_many,
            20_000,
            2_000,
            (Metric("jobs_per_s", "jobs/s", 0), Metric("us_per_job", f"{US}/submit", 1)),
            impls=DURABLE_IMPLS,
            durable=True,
        ),
        Workload(
            "D3",
            "D3 durable end to end",
            f"no-op jobs submitted by {D_SUBMITTERS} concurrent tasks into {D_WORKERS} workers, "
            f"queue {D_QUEUE}, run to completion; timed until the pool has drained and closed",
            d3_end_to_end,
            20_000,
            2_000,
            (Metric("jobs_per_s", "jobs/s", 0), Metric("us_per_job", f"{US}/job", 1)),
            impls=DURABLE_IMPLS,
            durable=True,
            durable_target=True,
        ),
        Workload(
            "S1",
            "S1 scheduled memory",
            f"no-op jobs submitted with delay= random in the next hour behind {S_WORKERS} busy "
            "workers; tracemalloc and RSS",
            s1_memory,
            100_000,
            10_000,
            (Metric("bytes_per_job", "bytes/job", 0), Metric("rss_bytes_per_job", "RSS B/job", 0)),
            impls=LATER_IMPLS,
            later=True,
        ),
        Workload(
            "S1W",
            "S1W waiting memory (S1's reference)",
            f"W4 at S1's n: no-op jobs queued behind {S_WORKERS} busy workers, unbounded queue",
            w4_memory,
            100_000,
            10_000,
            (Metric("bytes_per_job", "bytes/job", 0), Metric("rss_bytes_per_job", "RSS B/job", 0)),
            impls=LATER_IMPLS,
            later=True,
        ),
        Workload(
            "S2",
            "S2 scheduled submit",
            f"submit(noop, delay=random in the next hour) behind {S_WORKERS} blocked workers; "
            "the submit loop's wall time / n",
            s2_submit_later,
            100_000,
            5_000,
            (
                Metric("submit_us_per_job", f"{US}/submit", 2),
                Metric("cpu_us_per_job", f"CPU {US}/submit", 2),
            ),
            impls=LATER_IMPLS,
            later=True,
        ),
        Workload(
            "S2W",
            "S2W plain submit (S2's reference)",
            f"submit(noop) into an unbounded queue behind {S_WORKERS} blocked workers; the "
            "submit loop's wall time / n",
            s2_submit_plain,
            100_000,
            5_000,
            (
                Metric("submit_us_per_job", f"{US}/submit", 2),
                Metric("cpu_us_per_job", f"CPU {US}/submit", 2),
            ),
            impls=LATER_IMPLS,
            later=True,
        ),
        Workload(
            "S3",
            "S3 due lag",
            f"no-op jobs all due at one instant (at=, {S3_AHEAD:g} s ahead), {S_WORKERS} "
            "workers; due time to the start of each job, as its body sees it (time.time()) "
            "and as the pool records it",
            s3_due_lag,
            10_000,
            2_000,
            (
                Metric("p50_ms", "p50 ms", 1),
                Metric("p99_ms", "p99 ms", 1),
                Metric("max_ms", "max ms", 1),
                Metric("first_ms", "first ms", 2),
                Metric("pool_p50_ms", "pool p50 ms", 1),
                Metric("pool_p99_ms", "pool p99 ms", 1),
                Metric("submit_us_per_job", f"submit {US}/job", 2),
            ),
            impls=LATER_IMPLS,
            later=True,
        ),
        Workload(
            "W6R",
            "W6R W1, as W6's reference",
            "W1 as it is: no-op jobs, 10 workers, queue 100; submit loop + drain",
            w1_throughput,
            100_000,
            5_000,
            (Metric("us_per_job", f"{US}/job", 2), Metric("cpu_us_per_job", f"CPU {US}/job", 2)),
            impls=FLOW_IMPLS,
            flow=True,
        ),
        *(
            Workload(
                key,
                title,
                what,
                driver,
                100_000,
                5_000,
                (
                    Metric("us_per_job", f"{US}/job", 2),
                    Metric("cpu_us_per_job", f"CPU {US}/job", 2),
                    Metric("max_gap", "max starts between two of one key", 0),
                    Metric("p99_gap", "p99 of those", 0),
                    Metric("max_gap_drain", "max of those after the submit loop", 0),
                    Metric("drain_starts", "starts after the submit loop", 0),
                    Metric("delayed", "starts delayed by a limit", 0),
                ),
                impls=FLOW_IMPLS,
                flow=True,
            )
            for key, title, what, driver in (
                (
                    "W6",
                    "W6 tenants",
                    f"jobs of {W6_KEYS:,} keys (each job's key drawn at random, seeded), every key "
                    f"max_running=1 (key_limit=), {W6_WORKERS} workers, unbounded queue; submit "
                    "loop + drain; each job notes its start and end",
                    w6_tenants,
                ),
                (
                    "W6F",
                    "W6F tenants, fair",
                    "as W6, with fair=True",
                    w6_tenants_fair,
                ),
                (
                    "W6N",
                    "W6N tenants without keys",
                    "W6's jobs, bodies and pool, submitted without key= (no limits): W6 against "
                    "it is what the keys cost",
                    w6_tenants_plain,
                ),
                (
                    "W6Q",
                    "W6Q tenants in W1's shape",
                    "as W6, with W1's queue of 100 (max_pending=0): the submit loop waits",
                    w6_tenants_w1_shape,
                ),
            )
        ),
    )
}
