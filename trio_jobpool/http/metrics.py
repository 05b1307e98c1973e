"""Prometheus metrics of one pool, read from the pool at each scrape.

:func:`pool_registry` gives a ``prometheus_client`` ``CollectorRegistry`` of its own for each
pool, so two pools (or two apps) in one process never share or clash over metrics, and nothing is
added to ``prometheus_client``'s global ``REGISTRY``. The values are not kept in
``prometheus_client`` counters that the pool would have to update: a scrape takes
``pool.stats()`` and ``pool.histograms()``, both O(1) in the number of jobs, so the numbers are
exactly the pool's own.

Metric names (``jobpool_`` prefix), all of this process's pool:

* counters ``jobpool_jobs_submitted_total``, ``…_completed_total``, ``…_failed_total``,
  ``…_cancelled_total``, ``…_timed_out_total``, ``…_retried_total``;
* gauges ``jobpool_active_workers``, ``jobpool_max_workers``, ``jobpool_queued_tasks``,
  ``jobpool_scheduled_tasks`` (jobs accepted to run later and not yet due);
* histograms ``jobpool_job_exec_seconds`` (each attempt that ended),
  ``jobpool_job_wait_seconds`` (each attempt that started, from submission, the end of a retry
  backoff or a scheduled job's due time) and ``jobpool_schedule_lag_seconds`` (each start of a
  job that fell due: a schedule's tick, ``delay``/``at``, a ``Defer``; from its due time,
  ``histograms()["due_lag"]``), with the buckets of :data:`trio_jobpool.TIME_BUCKETS`;
* counters ``jobpool_schedule_runs_total{schedule}`` and
  ``jobpool_schedule_skipped_total{schedule}``: each periodic schedule's ``runs`` and
  ``skipped``, one series per schedule that exists. ``pool.schedules()`` is async (a store may
  be read) and a collector is not, so the app reads them before it renders and passes them to
  :func:`render` (:class:`ScheduleCollector`); a registry of :func:`pool_registry` alone has
  no schedule series;
* gauges ``jobpool_cluster_queued_tasks``, ``jobpool_cluster_scheduled_tasks``,
  ``jobpool_cluster_active_workers``, ``jobpool_cluster_max_workers``: the same of the whole
  pool, from ``pool.cluster_stats()`` when the app renders them (a distributed pool's shared
  queue, which every process reports alike; equal to the gauges above for a pool of one
  process);
* gauges ``jobpool_key_running{key}``, ``jobpool_key_waiting{key}`` and
  ``jobpool_key_max_running{key}``, one series each per key of ``pool.limited_keys()``: the keys
  with a limit of their own, and the keys now at their limit with jobs waiting (so bounded by
  the keys given limits and those held back, never one series per key ever seen);
  ``jobpool_key_max_running`` only for a key whose limit has a ``max_running``; and the counter
  ``jobpool_delayed_starts_total`` (``pool.delayed_starts``: jobs that started after a limit
  held them back);
* with an SQLite store: the gauge ``jobpool_store_failing`` (1 from a failed commit to the next
  one that succeeds: a full disk, a deleted database; jobs stay queued meanwhile and submits
  are refused) and the counter ``jobpool_store_failed_commits_total``;
* for a distributed pool, the gauge ``jobpool_cluster_stats_fresh``: 1 when the cluster gauges
  are in the scrape, 0 when Redis did not answer in time and they are left out;
* the counter ``jobpool_http_rejected_total{reason}``: submissions the HTTP app refused, by
  ``reason`` (``queue_full``, ``pool_closed``, ``duplicate_job``, ``unknown_job_name``,
  ``invalid``, ``unauthorized``, ...), which the app counts in a ``Counter`` of its own.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from trio_jobpool import JobPool, PoolStats, Schedule, SqliteStore, TimeHistogram

__all__ = [
    "CONTENT_TYPE",
    "ClusterCollector",
    "PoolCollector",
    "ScheduleCollector",
    "pool_registry",
    "render",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The content type of the Prometheus text format that :func:`render` writes."""

_COUNTERS = (
    ("submitted", "total_submitted", "Jobs accepted by the pool."),
    ("completed", "total_completed", "Jobs that returned a value."),
    ("failed", "total_failed", "Jobs that raised an exception after their last attempt."),
    ("cancelled", "total_cancelled", "Jobs cancelled (by id, by handle or by shutdown)."),
    ("timed_out", "total_timed_out", "Jobs that ran past their timeout."),
    ("retried", "total_retried", "Retries scheduled after a failed attempt."),
)
_GAUGES = (
    ("active_workers", "active_workers", "Jobs running now."),
    ("max_workers", "max_workers", "The pool's target number of workers."),
    ("queued_tasks", "queued_tasks", "Jobs waiting for a worker or waiting out a retry backoff."),
    (
        "scheduled_tasks",
        "scheduled_tasks",
        "Jobs accepted to run later (delay, at, a Defer) and not yet due.",
    ),
)
_HISTOGRAMS = (
    ("job_exec_seconds", "exec_time", "Execution time of each attempt that ended."),
    (
        "job_wait_seconds",
        "wait_time",
        "Time from submission (or a retry's or a scheduled job's due time) to start.",
    ),
    (
        "schedule_lag_seconds",
        "due_lag",
        "Time from a job's due time (a schedule's tick, delay/at, a Defer) to its start.",
    ),
)


class PoolCollector(Collector):
    """A ``prometheus_client`` collector that reads one pool at each scrape."""

    def __init__(self, pool: JobPool, rejections: Counter[str] | None = None) -> None:
        self._pool = pool
        self._rejections = rejections

    def collect(self) -> Iterable[Metric]:
        stats = self._pool.stats()
        for name, field, help_text in _COUNTERS:
            yield CounterMetricFamily(
                f"jobpool_jobs_{name}_total", help_text, value=getattr(stats, field)
            )
        for name, field, help_text in _GAUGES:
            yield GaugeMetricFamily(f"jobpool_{name}", help_text, value=getattr(stats, field))
        histograms = self._pool.histograms()
        for name, key, help_text in _HISTOGRAMS:
            yield _histogram(f"jobpool_{name}", help_text, histograms[key])
        yield from _key_metrics(self._pool)
        store = self._pool.store
        if isinstance(store, SqliteStore):
            yield GaugeMetricFamily(
                "jobpool_store_failing",
                "1 while the store's commits fail (jobs stay queued, submits are refused).",
                value=int(store.failing),
            )
            yield CounterMetricFamily(
                "jobpool_store_failed_commits_total",
                "Commits of the store that failed (each retried with a backoff).",
                value=store.failed_commits,
            )
        if self._rejections is not None:
            rejected = CounterMetricFamily(
                "jobpool_http_rejected_total",
                "Submissions the HTTP app refused, by reason.",
                labels=["reason"],
            )
            for reason, count in sorted(self._rejections.items()):
                rejected.add_metric([reason], count)
            yield rejected


def _key_metrics(pool: JobPool) -> Iterable[Metric]:
    """The gauges of the keys of ``pool.limited_keys()`` (O(those keys)) and the counter of
    delayed starts."""
    running = GaugeMetricFamily(
        "jobpool_key_running",
        "Jobs of a key running now, for each key with a limit of its own or at its limit.",
        labels=["key"],
    )
    waiting = GaugeMetricFamily(
        "jobpool_key_waiting",
        "Jobs of a key waiting (queued) now, for each key with a limit of its own or at its limit.",
        labels=["key"],
    )
    max_running = GaugeMetricFamily(
        "jobpool_key_max_running",
        "The max_running of the limit that applies to a key, for each key with a limit of its "
        "own or at its limit whose limit has one.",
        labels=["key"],
    )
    for stats in pool.limited_keys():
        running.add_metric([stats.key], stats.running)
        waiting.add_metric([stats.key], stats.waiting)
        limit = stats.limit
        if limit is not None and limit.max_running is not None:
            max_running.add_metric([stats.key], limit.max_running)
    yield running
    yield waiting
    yield max_running
    yield CounterMetricFamily(
        "jobpool_delayed_starts_total",
        "Jobs that started after a limit of their key held them back.",
        value=pool.delayed_starts,
    )


def _histogram(name: str, help_text: str, histogram: TimeHistogram) -> HistogramMetricFamily:
    buckets = [
        ("+Inf" if math.isinf(bound) else repr(bound), count)
        for bound, count in zip(histogram.bounds, histogram.counts, strict=True)
    ]
    return HistogramMetricFamily(name, help_text, buckets=buckets, sum_value=histogram.total)


def pool_registry(pool: JobPool, rejections: Counter[str] | None = None) -> CollectorRegistry:
    """A registry of its own holding only ``pool``'s metrics (and the app's ``rejections``:
    refused submissions by reason)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PoolCollector(pool, rejections))
    return registry


class ClusterCollector(Collector):
    """The gauges of a whole (distributed) pool, from one ``cluster_stats()`` snapshot."""

    def __init__(self, stats: PoolStats) -> None:
        self._stats = stats

    def collect(self) -> Iterable[Metric]:
        for name, field, help_text in _GAUGES:
            yield GaugeMetricFamily(
                f"jobpool_cluster_{name}",
                f"{help_text} All processes of the pool.",
                value=getattr(self._stats, field),
            )


class ScheduleCollector(Collector):
    """The counters of the periodic schedules, from one ``await pool.schedules()``: their
    ``runs`` and ``skipped``, labelled by ``schedule`` (a schedule's name). A store keeps these
    for every process, so each process of a distributed pool reports the same values."""

    def __init__(self, schedules: list[Schedule]) -> None:
        self._schedules = schedules

    def collect(self) -> Iterable[Metric]:
        runs = CounterMetricFamily(
            "jobpool_schedule_runs_total",
            "Jobs a periodic schedule submitted, by schedule.",
            labels=["schedule"],
        )
        skipped = CounterMetricFamily(
            "jobpool_schedule_skipped_total",
            "Ticks a periodic schedule skipped (its last job still live, or missed while no "
            "pool could fire them), by schedule.",
            labels=["schedule"],
        )
        for schedule in self._schedules:
            runs.add_metric([schedule.name], schedule.runs)
            skipped.add_metric([schedule.name], schedule.skipped)
        yield runs
        yield skipped


def render(
    registry: CollectorRegistry,
    cluster: PoolStats | None = None,
    fresh: bool | None = None,
    schedules: list[Schedule] | None = None,
) -> bytes:
    """The registry's metrics in the Prometheus text format (:data:`CONTENT_TYPE`), and the
    cluster gauges of ``cluster`` (a ``pool.cluster_stats()``) if given; unless ``fresh`` is
    None, the gauge ``jobpool_cluster_stats_fresh``: 1 if the cluster gauges are in this
    scrape, 0 if the store did not answer for them (they are left out); unless ``schedules``
    (an ``await pool.schedules()``) is None, the schedules' counters
    (:class:`ScheduleCollector`)."""
    text = generate_latest(registry)
    if cluster is None and fresh is None and schedules is None:
        return text
    extra = CollectorRegistry(auto_describe=False)
    if cluster is not None:
        extra.register(ClusterCollector(cluster))
    if fresh is not None:
        extra.register(_Freshness(fresh))
    if schedules is not None:
        extra.register(ScheduleCollector(schedules))
    return text + generate_latest(extra)


class _Freshness(Collector):
    def __init__(self, fresh: bool) -> None:
        self._fresh = fresh

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "jobpool_cluster_stats_fresh",
            "1 if the jobpool_cluster_* gauges are in this scrape, read from the store just "
            "now; 0 if the store did not answer in time (they are left out).",
            value=1.0 if self._fresh else 0.0,
        )
