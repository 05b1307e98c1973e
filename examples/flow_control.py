"""Flow control: a tenant's flood shared fairly with the others, and a rate-limited API.

A build service with 8 workers, run in Trio's virtual time (``MockClock``): it takes a fraction
of a second, and every start happens at its exact time.

* Every tenant may run at most 2 builds at once (``key_limit=Limit(max_running=2)``), and with
  ``fair=True`` the tenants take turns: tenant ``acme`` submits 30 builds at once, ``beta`` and
  ``gamma`` 3 each a second later, and theirs start at once: without the limit, acme's flood
  would hold every worker for four minutes.
* Calls to the GitHub API share one key with ``Rate(5, 60)``: at most 5 starts in any 60
  seconds, whichever worker runs them, and a call waiting for the window holds no worker.

Run it with ``python examples/flow_control.py``.
"""

from __future__ import annotations

import collections

import trio
import trio.testing

from trio_jobpool import Limit, Rate, current_job, open_job_pool

starts: list[tuple[float, str, str]] = []  # (time, key, job)
running: collections.Counter[str] = collections.Counter()
most_running: collections.Counter[str] = collections.Counter()


async def build(name: str) -> None:
    job = current_job()
    key = job.key or "-"
    starts.append((trio.current_time(), key, name))
    running[key] += 1
    most_running[key] = max(most_running[key], running[key])
    try:
        await trio.sleep(60)  # a build takes a minute
    finally:
        running[key] -= 1


async def call_github(endpoint: str) -> None:
    starts.append((trio.current_time(), current_job().key or "-", endpoint))
    await trio.sleep(1)


async def main() -> None:
    async with open_job_pool(
        max_workers=8, queue_size=1000, fair=True, key_limit=Limit(max_running=2)
    ) as pool:
        await pool.set_limit("api:github", rate=Rate(5, 60))
        for index in range(30):
            await pool.submit(build, f"acme-{index}", key="tenant:acme")
        for index in range(12):
            await pool.submit(call_github, f"/repos/{index}", key="api:github")
        await trio.sleep(1)
        for tenant in ("beta", "gamma"):
            for index in range(3):
                await pool.submit(build, f"{tenant}-{index}", key=f"tenant:{tenant}")
        print(f"waiting: acme {pool.key_stats('tenant:acme').waiting} builds")
        await pool.join()
        print(f"{pool.stats().total_completed} jobs completed, {pool.delayed_starts} held back")

    first = {}
    for at, key, _ in starts:
        first.setdefault(key, at)
    for key in ("tenant:acme", "tenant:beta", "tenant:gamma"):
        print(f"{key:<13} first start at {first[key]:4.0f} s, at most {most_running[key]} at once")
    github = [at for at, key, _ in starts if key == "api:github"]
    print("api:github starts at (s):", " ".join(f"{at:.0f}" for at in github))
    most_in_a_minute = max(sum(1 for t in github if start <= t < start + 60) for start in github)
    print(f"api:github: at most {most_in_a_minute} starts in any 60 s")


if __name__ == "__main__":
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
