"""Later and periodic jobs: ``delay=``, ``at=``, ``Defer``, cron and interval schedules.

A simulated day of a small CI service (the next 12 January: winter time in Berlin), run in
Trio's virtual time (``MockClock``): it takes a fraction of a second, and every job starts
exactly when it is due.

* a nightly build at 02:30 Berlin time (``cron="30 2 * * *", tz="Europe/Berlin"``);
* a health check every 6 hours (``every=6 * 3600``);
* a webhook delivery that failed and is tried again in 10 minutes (``delay=600``);
* a release at a fixed time (``at=``);
* a job that waits for an external build by deferring itself (``raise Defer(...)``): each
  deferral frees its worker and does not count as a failure.

Run it with ``python examples/schedules.py``.
"""

from __future__ import annotations

import datetime
import zoneinfo

import trio
import trio.testing

from trio_jobpool import Defer, current_job, open_job_pool

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
log: list[str] = []


def clock_time() -> str:
    """The pool's wall-clock time of the running job, in UTC."""
    started = current_job().started_at
    assert started is not None
    return datetime.datetime.fromtimestamp(started, datetime.UTC).strftime("%H:%M UTC")


async def nightly_build(branch: str) -> None:
    log.append(f"{clock_time()}  {current_job().job_id}: nightly build of {branch}")


async def health_check() -> None:
    log.append(f"{clock_time()}  {current_job().job_id}: health check")


async def deliver_webhook(url: str) -> None:
    log.append(f"{clock_time()}  {current_job().job_id}: webhook to {url} delivered")


async def release(version: str) -> None:
    log.append(f"{clock_time()}  {current_job().job_id}: released {version}")


async def wait_for_artifact(build: str) -> None:
    job = current_job()
    if job.attempts < 3:  # the external build is not done yet: look again in 20 minutes
        log.append(f"{clock_time()}  {job.job_id}: {build} not ready, deferred 20 min")
        raise Defer(20 * 60)
    log.append(f"{clock_time()}  {job.job_id}: {build} ready after {job.attempts} looks")


async def main() -> None:
    async with open_job_pool(max_workers=4) as pool:
        # Start the simulated day at midnight UTC of the next 12 January (virtual time jumps
        # there at once).
        probe = pool.submit_nowait(trio.sleep, 0)
        await probe.wait()
        now = datetime.datetime.fromtimestamp(probe.submitted_at, datetime.UTC)
        midnight = datetime.datetime(now.year + 1, 1, 12, tzinfo=datetime.UTC)
        await trio.sleep((midnight - now).total_seconds() + 0.001)  # just past midnight

        nightly = await pool.schedule(
            "nightly", nightly_build, "main", cron="30 2 * * *", tz="Europe/Berlin"
        )
        await pool.schedule("health", health_check, every=6 * 3600)
        webhook = await pool.submit(
            deliver_webhook, "https://example.test/hook", job_id="webhook-77", delay=600
        )
        at = midnight + datetime.timedelta(hours=9)
        await pool.submit(release, "v1.4.0", job_id="release-v1.4.0", at=at)
        await pool.submit(wait_for_artifact, "build-812", job_id="artifact-812")

        print(f"day starts {midnight:%Y-%m-%d %H:%M} UTC")
        next_run = datetime.datetime.fromtimestamp(nightly.next_run, BERLIN)
        print(f"nightly next runs at {next_run:%H:%M} Berlin ({next_run:%Z})")
        print(f"webhook is {webhook.status.value}, due in 10 min")
        print(f"scheduled jobs: {pool.stats().scheduled_tasks}")

        await trio.sleep(24 * 3600 - 1)  # the rest of the day, in virtual time
        for line in log:
            print(line)
        for schedule in await pool.schedules():
            print(f"schedule {schedule.name}: runs={schedule.runs} skipped={schedule.skipped}")
        stats = pool.stats()
        print(
            f"stats: completed={stats.total_completed} failed={stats.total_failed} "
            f"scheduled={stats.scheduled_tasks}"
        )


if __name__ == "__main__":
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
