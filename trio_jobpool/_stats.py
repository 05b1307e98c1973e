"""Counters, the latency window and the :class:`PoolStats` snapshot.

Every counter is updated in place as jobs move, so taking a snapshot never walks the jobs.
Percentiles come from a fixed-size window of the most recent execution times, sorted at most once
per snapshot that follows new samples.
"""

from __future__ import annotations

import dataclasses
import math
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, Final

__all__ = ["TIME_BUCKETS", "Counters", "LatencyWindow", "PoolStats", "TimeHistogram"]

TIME_BUCKETS: Final[tuple[float, ...]] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
)  # fmt: skip
"""The upper bounds (seconds) of the buckets of :class:`TimeHistogram`, before ``inf``: fixed, so
that histograms of several processes or pools add up bucket by bucket."""


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A consistent snapshot of a pool's counters, returned by :meth:`JobPool.stats`.

    Invariant, whenever no task is in the middle of a step::

        total_submitted == total_completed + total_failed + total_cancelled
                           + total_timed_out + queued_tasks + scheduled_tasks
                           + active_workers

    A job a shutdown abandoned (see :meth:`JobPool.stop`) counts in ``total_cancelled`` from
    the moment it is abandoned, and its execution time (up to then) in the averages; its code
    may still run, but no longer counts in ``active_workers``.

    All times are in seconds; averages and percentiles are ``0.0`` while there is no sample.

    Attributes:
        total_submitted: jobs accepted.
        total_completed: jobs that ended ``COMPLETED``.
        total_failed: jobs that ended ``FAILED``.
        total_cancelled: jobs that ended ``CANCELLED``.
        total_timed_out: jobs that ended ``TIMED_OUT``.
        total_retried: retries scheduled.
        active_workers: jobs running now.
        max_workers: the current target number of workers.
        queued_tasks: jobs waiting for a worker or waiting out a retry backoff.
        scheduled_tasks: jobs accepted to run later (``delay=``, ``at=``, a ``Defer``) and not
            yet due.
        average_exec_time: mean execution time over every attempt that ended (completed,
            failed, retried, timed out, or cancelled while running).
        average_wait_time: mean wait over every attempt that started, from acceptance (or
            re-entry after a backoff) to the start.
        exec_time_p50: nearest-rank median of the execution times of the last 1,024 attempts
            that ended.
        exec_time_p95: the same window's 95th percentile.
        exec_time_p99: the same window's 99th percentile.
    """

    total_submitted: int
    total_completed: int
    total_failed: int
    total_cancelled: int
    total_timed_out: int
    total_retried: int
    active_workers: int
    max_workers: int
    queued_tasks: int
    scheduled_tasks: int
    average_exec_time: float
    average_wait_time: float
    exec_time_p50: float
    exec_time_p95: float
    exec_time_p99: float

    def as_dict(self) -> dict[str, Any]:
        """The snapshot as a JSON-ready ``dict`` whose keys are exactly the field names, in
        field order."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}


@dataclass(frozen=True, slots=True)
class TimeHistogram:
    """Every sample of one kind of time (execution or wait) since the pool opened, in buckets,
    as :meth:`JobPool.histograms` returns them.

    ``counts[i]`` is how many samples were ``<= bounds[i]`` (cumulative, as Prometheus has
    them); the last bound is ``math.inf``, so ``counts[-1]`` is the number of samples.
    """

    bounds: tuple[float, ...]
    """Upper bounds of the buckets in seconds, ascending (:data:`TIME_BUCKETS`, then ``inf``)."""
    counts: tuple[int, ...]
    """Cumulative counts, one per bound."""
    total: float
    """The sum of the samples, in seconds."""

    @property
    def count(self) -> int:
        """How many samples there are."""
        return self.counts[-1]

    @classmethod
    def of(cls, buckets: list[int], total: float) -> TimeHistogram:
        """The histogram of per-bucket (not cumulative) ``buckets`` counts and their sum."""
        return cls((*TIME_BUCKETS, math.inf), tuple(accumulate(buckets)), total)


class LatencyWindow:
    """The last :attr:`SIZE` samples; percentiles by nearest rank.

    ``add`` is the bound ``append`` of a bounded deque (one C call per sample, the oldest
    dropped); the sorted samples are kept for as long as the caller's count of samples
    added (``version``) stays the same.
    """

    SIZE = 1024
    __slots__ = ("_samples", "_sorted", "_version", "add")

    def __init__(self) -> None:
        self._samples: deque[float] = deque(maxlen=self.SIZE)
        self.add: Callable[[float], None] = self._samples.append
        self._sorted: list[float] = []
        self._version = 0

    def percentiles(self, version: int, *quantiles: float) -> tuple[float, ...]:
        """Nearest-rank percentiles (``0.0`` for each while the window is empty); ``version``:
        how many samples were added so far."""
        if version != self._version:
            self._sorted = sorted(self._samples)
            self._version = version
        ordered = self._sorted
        if not ordered:
            return tuple(0.0 for _ in quantiles)
        n = len(ordered)
        return tuple(ordered[min(n, max(1, math.ceil(q * n))) - 1] for q in quantiles)


class Counters:
    """The pool's running totals. The pool updates the fields directly (hot path)."""

    __slots__ = (
        "submitted",
        "completed",
        "failed",
        "cancelled",
        "timed_out",
        "retried",
        "running",
        "queued",
        "scheduled",
        "exec_total",
        "exec_count",
        "wait_total",
        "wait_count",
        "window",
        "exec_buckets",
        "wait_buckets",
        "lag_buckets",
        "lag_total",
    )

    def __init__(self) -> None:
        self.submitted = 0
        self.completed = 0
        self.failed = 0
        self.cancelled = 0
        self.timed_out = 0
        self.retried = 0
        self.running = 0
        self.queued = 0
        self.scheduled = 0
        self.exec_total = 0.0
        self.exec_count = 0
        self.wait_total = 0.0
        self.wait_count = 0
        self.window = LatencyWindow()
        # samples per bucket of TIME_BUCKETS (the last: beyond them), for the histograms
        self.exec_buckets = [0] * (len(TIME_BUCKETS) + 1)
        self.wait_buckets = [0] * (len(TIME_BUCKETS) + 1)
        self.lag_buckets = [0] * (len(TIME_BUCKETS) + 1)
        self.lag_total = 0.0

    def record_exec(self, seconds: float) -> None:
        self.exec_total += seconds
        self.exec_count += 1
        self.exec_buckets[bisect_left(TIME_BUCKETS, seconds)] += 1
        self.window.add(seconds)

    def exec_percentiles(self) -> tuple[float, float, float]:
        """p50, p95 and p99 of the last :attr:`LatencyWindow.SIZE` execution times."""
        p50, p95, p99 = self.window.percentiles(self.exec_count, 0.50, 0.95, 0.99)
        return p50, p95, p99

    def record_wait(self, seconds: float) -> None:
        self.wait_total += seconds
        self.wait_count += 1
        self.wait_buckets[bisect_left(TIME_BUCKETS, seconds)] += 1

    def record_lag(self, seconds: float) -> None:
        """A job that fell due (``delay``, ``at``, ``Defer``, a schedule's tick) started
        ``seconds`` after its due time."""
        self.lag_total += seconds
        self.lag_buckets[bisect_left(TIME_BUCKETS, seconds)] += 1

    def forget_wait(self, seconds: float, *, lagged: bool = False) -> None:
        """Take back a wait recorded for a start that did not happen (its write failed), and
        with ``lagged`` its lag."""
        self.wait_total -= seconds
        self.wait_count -= 1
        bucket = bisect_left(TIME_BUCKETS, seconds)
        self.wait_buckets[bucket] -= 1
        if lagged:
            self.lag_total -= seconds
            self.lag_buckets[bucket] -= 1

    def histograms(self) -> dict[str, TimeHistogram]:
        return {
            "exec_time": TimeHistogram.of(self.exec_buckets, self.exec_total),
            "wait_time": TimeHistogram.of(self.wait_buckets, self.wait_total),
            "due_lag": TimeHistogram.of(self.lag_buckets, self.lag_total),
        }

    def snapshot(self, max_workers: int) -> PoolStats:
        p50, p95, p99 = self.exec_percentiles()
        return PoolStats(
            total_submitted=self.submitted,
            total_completed=self.completed,
            total_failed=self.failed,
            total_cancelled=self.cancelled,
            total_timed_out=self.timed_out,
            total_retried=self.retried,
            active_workers=self.running,
            max_workers=max_workers,
            queued_tasks=self.queued,
            scheduled_tasks=self.scheduled,
            average_exec_time=self.exec_total / self.exec_count if self.exec_count else 0.0,
            average_wait_time=self.wait_total / self.wait_count if self.wait_count else 0.0,
            exec_time_p50=p50,
            exec_time_p95=p95,
            exec_time_p99=p99,
        )
