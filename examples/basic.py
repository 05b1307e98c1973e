"""The README example: open a pool, submit one job, print its result and the pool's stats.

Run it with ``python examples/basic.py``.
"""

from __future__ import annotations

import json

import trio

from trio_jobpool import open_job_pool


async def build(repo: str) -> str:
    """A stand-in for real work: 'build' a repository."""
    await trio.sleep(0.1)
    return f"built {repo}"


async def main() -> None:
    async with open_job_pool(max_workers=10, queue_size=100) as pool:
        handle = await pool.submit(build, "repo-a", priority=1)
        print(await handle.result())  # "built repo-a"
        print(f"status={handle.status.value} attempts={handle.attempts}")
        print(json.dumps(pool.stats().as_dict(), indent=2))


if __name__ == "__main__":
    trio.run(main)
