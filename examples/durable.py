"""A durable pool on SQLite: jobs outlive the pool that accepted them.

A first pool accepts CI-like jobs, then its owner gives up (an exception leaves the block) while
one job runs and three wait. Those jobs are not lost: a pool's shutdown leaves its unfinished jobs
queued in the file, and a second pool on the same file runs them. The second pool also reads the
first one's ended jobs back from disk (a result, and a failure as ``JobFailed``), then prunes
them. Run it with ``python examples/durable.py``; see docs/durability.md.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import trio

from trio_jobpool import JobFailed, JobNotFound, JobRegistry, SqliteStore, open_job_pool

registry = JobRegistry()  # durable pools run registered functions with JSON arguments only
deploy_started = trio.Event()


@registry.job(name="build")
async def build(repo: str) -> str:
    await trio.sleep(0.05)
    return f"built {repo}"


@registry.job(name="test")
async def test(repo: str) -> str:
    await trio.sleep(0.05)
    if "broken" in repo:
        raise RuntimeError("tests are red")
    return f"tested {repo}"


@registry.job(name="deploy")
async def deploy(version: str, workdir: str) -> str:
    """Idempotent: it may run again after a crash, so it checks whether its effect exists.

    A job that was running when its process died (or its pool shut down) runs again from the
    start in the next pool. Here the effect is a marker file written once the deploy is done:
    a second run that finds it does nothing.
    """
    marker = Path(workdir) / f"deployed-{version}"
    if marker.exists():
        return f"{version} was deployed already"
    deploy_started.set()
    await trio.sleep(0.3)  # the real work; the first pool is left during this sleep
    temporary = marker.with_suffix(".tmp")
    temporary.write_text(version)
    temporary.replace(marker)  # atomic: the marker exists only once the work is done
    return f"deployed {version}"


class OwnerGaveUp(Exception):
    """Stands in for whatever ends a process early (an error, a deploy of a new version)."""


async def first_pool(store: SqliteStore, workdir: str) -> None:
    try:
        async with open_job_pool(max_workers=1, store=store, registry=registry) as pool:
            built = await pool.submit(build, "repo-a", job_id="build-repo-a")
            print(f"first pool: build-repo-a -> {await built.result()}")
            broken = await pool.submit(test, "repo-broken", job_id="test-repo-broken")
            await broken.wait()
            print(f"first pool: test-repo-broken -> {broken.status.value} ({broken.error!r})")
            # When submit returns, the job is in the file: nothing accepted is lost from here on.
            await pool.submit(deploy, "v2", workdir, job_id="deploy-v2", priority=1)
            for repo in ("repo-b", "repo-c", "repo-d"):
                await pool.submit(build, repo, job_id=f"build-{repo}")
            await deploy_started.wait()
            waiting = pool.stats().queued_tasks
            print(f"first pool: deploy-v2 is running, {waiting} jobs wait; the owner gives up")
            # Leaving the block by an exception cancels the running job and stops the pool,
            # but in the file the unfinished jobs stay queued for the next pool. A process
            # killed with `kill -9` leaves them the same way (the running one marked running),
            # and the next pool recovers them alike: tests/stores/test_sqlite.py shows it.
            raise OwnerGaveUp
    except OwnerGaveUp:
        print("first pool: left by OwnerGaveUp")


async def second_pool(store: SqliteStore) -> None:
    async with open_job_pool(max_workers=1, store=store, registry=registry) as pool:
        print(f"second pool: resumed {pool.stats().total_submitted} jobs from the file")
        await pool.join()
        # deploy-v2 first (priority 1), then the builds in submission order. deploy-v2 runs
        # as attempt 2: its first attempt was cut short, and a rerun starts from the start.
        for job_id in ("deploy-v2", "build-repo-b", "build-repo-c", "build-repo-d"):
            job = pool.get(job_id)
            print(f"  {job_id}: {await job.result()} (attempt {job.attempts})")

        # Ended jobs of the first pool: read back from the file (this pool never ran them).
        built = pool.get("build-repo-a")
        print(
            f"read back from disk: build-repo-a -> {await built.result()!r} ({built.status.value})"
        )
        try:
            await pool.get("test-repo-broken").result()
        except JobFailed as failure:  # the original exception object is gone; its text is kept
            what = f"{failure.type_name}: {failure.message}"
            print(f"read back from disk: test-repo-broken -> JobFailed: {what}")

        # Ended jobs stay in the file until pruned; keep the SqliteStore object to prune.
        pruned = await store.prune(older_than=0)
        try:
            pool.get("build-repo-a")
        except JobNotFound:
            print(f"pruned {pruned} ended jobs; get('build-repo-a') now raises JobNotFound")


async def main() -> None:
    with tempfile.TemporaryDirectory() as workdir:
        path = Path(workdir) / "jobs.db"
        await first_pool(SqliteStore(path), workdir)
        await second_pool(SqliteStore(path))  # a new store object, the same file


if __name__ == "__main__":
    trio.run(main)
