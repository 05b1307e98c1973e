"""The producer of the distributed example: submits jobs to the shared queue, shows results.

    python examples/distributed/producer.py [REDIS_URL]

Run worker.py first (one or more). This process runs no job itself (``max_workers=0``: a
submit-only client, like a web front end): it submits CI-like jobs with priorities, waits for
every result (whichever process ran the job), and prints the stats of the whole cluster.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))

from jobs import build, registry, require_redis_extra, store_url, test

from trio_jobpool import JobFailed, open_job_pool


async def main(url: str) -> None:
    store = store_url(url)
    async with open_job_pool(0, 100, store=store, registry=registry) as pool:
        handles = {}
        for i in range(6):
            handles[f"build-{i}"] = await pool.submit(build, f"repo-{i}", 0.2, priority=5)
        for repo in ("repo-0", "repo-broken"):  # urgent: they run before the builds waiting
            handles[f"test-{repo}"] = await pool.submit(test, repo, priority=1)
        print(f"submitted {len(handles)} jobs")
        for name, handle in handles.items():
            outcome = await handle.wait()
            try:
                print(f"  {name}: {outcome.unwrap()}")
            except JobFailed as exc:  # the original exception lived in another process
                print(f"  {name}: failed: {exc.type_name}: {exc.message}")
        stats = await pool.cluster_stats()
        print(
            f"cluster: submitted={stats.total_submitted} completed={stats.total_completed} "
            f"failed={stats.total_failed} running={stats.active_workers} "
            f"waiting={stats.queued_tasks} workers={stats.max_workers}"
        )


if __name__ == "__main__":
    require_redis_extra()
    default = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    trio.run(main, sys.argv[1] if len(sys.argv) > 1 else default)
