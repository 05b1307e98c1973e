"""``/metrics``: the pool's exact numbers, one registry per pool, and the alert rules in docs/
that use them."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import anyio
import httpx
import prometheus_client
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from trio_jobpool import TIME_BUCKETS, JobRegistry, Limit, Rate, open_job_pool
from trio_jobpool.http import create_app, pool_registry

from .test_app import Jobs, served

pytestmark = pytest.mark.anyio

ALERTS = Path(__file__).parents[2] / "docs" / "prometheus" / "alerts.yml"


async def scrape(
    client: httpx.AsyncClient, path: str = "/metrics"
) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """``/metrics`` as {sample name: {labels: value}}."""
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[labels] = sample.value
    return samples


def value(samples: dict[str, Any], name: str, **labels: str) -> float:
    return float(samples[name][tuple(sorted(labels.items()))])


async def test_counters_and_gauges_are_the_pools_stats() -> None:
    async with served(max_workers=2, queue_size=10) as (pool, jobs, client):
        retry = {"max_attempts": 2, "backoff": 0}
        for body in (
            {"name": "add", "args": [1, 2]},
            {"name": "fail", "args": ["x"], "retry": retry},
            {"name": "block", "job_id": "cancel-me"},
            {"name": "block", "timeout": 0},
            {"name": "block"},
            {"name": "block"},
            {"name": "block"},
        ):
            assert (await client.post("/api/v1/jobs", json=body)).status_code == 202
        await client.post("/api/v1/jobs/cancel-me/cancel")
        await anyio.wait_all_tasks_blocked()
        samples = await scrape(client)
        stats = pool.stats()
        for field in ("submitted", "completed", "failed", "cancelled", "timed_out", "retried"):
            assert value(samples, f"jobpool_jobs_{field}_total") == getattr(stats, f"total_{field}")
        assert (stats.total_submitted, stats.total_cancelled) == (7, 1)
        for gauge in ("active_workers", "max_workers", "queued_tasks", "scheduled_tasks"):
            assert value(samples, f"jobpool_{gauge}") == getattr(stats, gauge)
            assert value(samples, f"jobpool_cluster_{gauge}") == getattr(stats, gauge)
        assert stats.active_workers == 2
        jobs.release.set()


async def test_the_scheduled_gauge_counts_jobs_not_yet_due() -> None:
    async with served() as (pool, _, client):
        for job_id, delay in (("a", 60), ("b", 3600), ("now", 0)):
            body = {"name": "add", "args": [1, 1], "job_id": job_id, "delay": delay}
            assert (await client.post("/api/v1/jobs", json=body)).status_code == 202
        await client.post("/api/v1/jobs/a/cancel")
        await pool.get("now").wait()
        response = await client.get("/metrics")
        assert (
            "# HELP jobpool_scheduled_tasks Jobs accepted to run later (delay, at, a Defer) and "
            "not yet due.\n# TYPE jobpool_scheduled_tasks gauge\njobpool_scheduled_tasks 1.0\n"
        ) in response.text
        samples = await scrape(client)
        assert value(samples, "jobpool_cluster_scheduled_tasks") == 1
        assert value(samples, "jobpool_queued_tasks") == 0
        stats = pool.stats()
        assert (stats.total_submitted, stats.total_cancelled, stats.total_completed) == (3, 1, 1)


async def test_histograms_count_every_attempt() -> None:
    async with served(max_workers=3, queue_size=10) as (pool, _, client):
        for n in range(5):
            await client.post("/api/v1/jobs", json={"name": "add", "args": [n, n]})
        retry = {"max_attempts": 3, "backoff": 0}
        failing = await client.post(
            "/api/v1/jobs", json={"name": "fail", "args": ["x"], "retry": retry}
        )
        await client.post("/api/v1/jobs", json={"name": "block"})
        for job in pool.recent_jobs(10):
            if job.name != "block":
                await job.wait()
        assert pool.get(failing.json()["job_id"]).attempts == 3
        samples = await scrape(client)
        # exec: 5 adds + 3 attempts of fail; the blocked job has not ended an attempt.
        # wait: the same 8 attempts started, and the blocked one's.
        for name, count in (("jobpool_job_exec_seconds", 8), ("jobpool_job_wait_seconds", 9)):
            buckets = samples[f"{name}_bucket"]
            bounds = sorted(buckets, key=lambda labels: float(dict(labels)["le"]))
            counts = [buckets[b] for b in bounds]
            assert [float(dict(b)["le"]) for b in bounds] == [*TIME_BUCKETS, math.inf]
            assert counts == sorted(counts)  # cumulative
            assert counts[-1] == count
            assert value(samples, f"{name}_count") == count
        histogram = pool.histograms()["exec_time"]
        assert value(samples, "jobpool_job_exec_seconds_sum") == pytest.approx(histogram.total)
        assert histogram.count == 8


def test_each_pool_has_a_registry_of_its_own() -> None:
    async def main() -> None:
        registry = JobRegistry()
        registry.register(Jobs().add, name="add")
        async with open_job_pool(1) as first, open_job_pool(1) as second:
            a, b = create_app(first, registry), create_app(second, registry)
            await (await first.submit(Jobs().add, 1, 1)).wait()
            for app, submitted in ((a, 1), (b, 0)):
                async with httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://t"
                ) as client:
                    samples = await scrape(client)
                    assert value(samples, "jobpool_jobs_submitted_total") == submitted
        # Nothing reached prometheus_client's global registry.
        names = {metric.name for metric in prometheus_client.REGISTRY.collect()}
        assert not {name for name in names if name.startswith("jobpool")}

    anyio.run(main)


async def test_pool_registry_alone_has_the_keys_of_limited_keys() -> None:
    """The key gauges and the delayed starts come from the pool at each scrape (no app
    needed): one series per key of ``pool.limited_keys()`` (its own limit, or held at the
    pool's ``key_limit``), ``jobpool_key_max_running`` only where the limit has one."""
    jobs = Jobs()
    async with open_job_pool(
        4, 20, registry=jobs.registry, key_limit=Limit(max_running=1), shutdown_timeout=0
    ) as pool:
        registry = pool_registry(pool)

        def scraped() -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
            found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
            text = prometheus_client.generate_latest(registry).decode()
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    labels = tuple(sorted(sample.labels.items()))
                    found.setdefault(sample.name, {})[labels] = sample.value
            return found

        assert "jobpool_key_running" not in scraped()
        assert scraped()["jobpool_delayed_starts_total"] == {(): 0.0}
        await pool.set_limit("api", rate=Rate(100, 60))
        for key in ("held", "held", "free"):
            await pool.submit(jobs.block, key, key=key)
        await anyio.wait_all_tasks_blocked()
        samples = scraped()
        assert samples["jobpool_key_running"] == {
            (("key", "api"),): 0.0,
            (("key", "held"),): 1.0,
        }
        assert samples["jobpool_key_waiting"] == {
            (("key", "api"),): 0.0,
            (("key", "held"),): 1.0,
        }
        assert samples["jobpool_key_max_running"] == {(("key", "held"),): 1.0}
        await pool.set_limit("held", max_running=2)  # releases the held job: a delayed start
        assert scraped()["jobpool_delayed_starts_total"] == {(): 1.0}
        jobs.release.set()


async def test_refused_submissions_are_counted_by_reason() -> None:
    async with served(max_workers=1, queue_size=0, submit_wait=0.01, token="tok") as (
        _,
        jobs,
        client,
    ):
        auth = {"Authorization": "Bearer tok"}
        await client.post("/api/v1/jobs", json={"name": "block"}, headers=auth)
        for body, headers in (
            ({"name": "block"}, auth),  # queue full
            ({"name": "block"}, auth),
            ({"name": "nope"}, auth),
            ({"name": 1}, auth),
            ({"name": "add"}, {}),  # no token
        ):
            await client.post("/api/v1/jobs", json=body, headers=headers)
        samples = await scrape(client)
        rejected = samples["jobpool_http_rejected_total"]
        assert rejected == {
            (("reason", "invalid"),): 1,
            (("reason", "queue_full"),): 2,
            (("reason", "unauthorized"),): 1,
            (("reason", "unknown_job_name"),): 1,
        }
        jobs.release.set()


async def test_refusals_are_counted_when_the_app_is_mounted() -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    jobs = Jobs()
    async with open_job_pool(1, registry=jobs.registry) as pool:
        outer = Starlette(routes=[Mount("/jp", app=create_app(pool, jobs.registry, token="t"))])
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=outer), base_url="http://t"
        ) as client:
            response = await client.post("/jp/api/v1/jobs", json={"name": "add"})
            assert response.status_code == 401
            samples = await scrape(client, "/jp/metrics")
    assert samples["jobpool_http_rejected_total"] == {(("reason", "unauthorized"),): 1}


async def test_a_distributed_pools_metrics_show_the_shared_queue(redis_url: str) -> None:
    import uuid

    store = f"{redis_url}/0?queue=metrics{uuid.uuid4().hex[:12]}"
    jobs = Jobs()
    async with open_job_pool(0, 10, store=store, registry=jobs.registry) as front:
        app = create_app(front, jobs.registry)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as client:
            for _ in range(3):
                assert (await client.post("/api/v1/jobs", json={"name": "add"})).status_code == 202
            samples = await scrape(client)
    assert value(samples, "jobpool_cluster_queued_tasks") == 3  # waiting in Redis
    assert value(samples, "jobpool_queued_tasks") == 0  # none waits in this process
    assert value(samples, "jobpool_jobs_submitted_total") == 3


# -- the alert rules ----------------------------------------------------------------------------


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    (group,) = document["groups"]
    return list(group["rules"])


def test_the_alert_rules_are_well_formed() -> None:
    rules = alert_rules()
    assert {rule["alert"] for rule in rules} >= {
        "JobQueueBacklog",
        "HighJobFailureRate",
        "HighWorkerUtilization",
        "ScheduleSkippingTicks",
        "KeyAtLimit",
    }
    for rule in rules:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"])
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]
        assert rule["annotations"]["description"]
        expr = rule["expr"]
        assert expr.count("(") == expr.count(")"), rule["alert"]
        for window in re.findall(r"\[([^\]]+)\]", expr):
            assert re.fullmatch(r"\d+[smh]", window)


async def test_the_alert_rules_use_only_metrics_the_app_exports() -> None:
    async with served() as (_, _, client):
        # A schedule, so that the schedule counters have a series each.
        body = {"name": "add", "args": [1, 1], "every": 3600}
        assert (await client.put("/api/v1/schedules/s", json=body)).status_code == 201
        # A key with a limit of its own, so that the key gauges have a series each.
        assert (await client.put("/api/v1/limits/k", json={"max_running": 1})).status_code == 200
        exported = set(await scrape(client)) | {"jobpool_http_rejected_total"}
        families = {n.removesuffix(s) for n in exported for s in ("_bucket", "_sum", "_count")}
    used = set()
    for rule in alert_rules():
        used |= set(re.findall(r"\bjobpool_[a-z_]+", rule["expr"]))
    assert used
    assert used <= exported | families, used - exported - families


def test_promtool_checks_and_unit_tests_the_alert_rules() -> None:
    """``promtool check rules`` and ``promtool test rules`` (docs/prometheus/alerts_test.yml:
    each rule fires in its case, and not in the case next to it). Skipped without promtool,
    except with ``CI=true`` (.ci/run takes it from Debian's prometheus package)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is not installed (.ci/run puts it in .ci/bin)", pytrace=False)
        pytest.skip("promtool is not installed")
    for command in (["check", "rules", ALERTS.name], ["test", "rules", "alerts_test.yml"]):
        result = subprocess.run(
            [promtool, *command], cwd=ALERTS.parent, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stdout + result.stderr
