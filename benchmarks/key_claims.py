"""Redis commands per job of the distributed pool's claims and ends, by claim size, with and
without flow-control keys (issue #17): where the keyed path's extra commands go.

    python benchmarks/key_claims.py              # 2,000 jobs, workers 1, 2, 5, 10
    python benchmarks/key_claims.py --n 5000 --workers 1,10

For each (keyed or not, W workers), on one fresh ``redis-server`` (``tests/servers.py``) and a
fresh queue: a front end (a pool with ``max_workers=0``) submits N no-op jobs first (keyed:
job ``i`` with the key ``k<i % 100>``, each key ``set_limit(max_running=2)``, the limits
never binding with W <= 10); then one pool of W workers (on Trio, in this process) runs them
all. The calls per command (``INFO commandstats``, those run inside scripts included) are
counted from just before that pool opens until ``cluster_stats()`` says all N ended: the
claims and ends, the front end's fetch of the ended jobs for its handles (``FETCH``: about one
``HGETALL`` per job) and the polls of ``cluster_stats()``; the submits are left out. With W
workers a claim takes up to W jobs, so the figures show what depends on the claim's size: the
claim script puts back the jobs it popped with each keyed job it takes and pops again (``ZADD``
grows by (W - 1) / 2 per job).

Bounded: each (keyed, W) has ``TIMEOUT`` seconds; the whole run takes about half a minute.
Prints one line per (keyed, W) and a table of the commands that differ; writes nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import redis
import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers import redis_server  # noqa: E402
from trio_jobpool import JobRegistry, open_job_pool  # noqa: E402

KEYS = 100
LIMIT = 2
TIMEOUT = 60.0  # seconds per (keyed, W)
FRONT_QUEUE = 100  # the front end's queue_size (it waits on none: max_pending=None)


class Ran:
    count = 0


async def noop(i: int) -> None:
    Ran.count += 1


def calls(url: str) -> dict[str, int]:
    """The server's calls per command so far (``info``, this script's own, left out)."""
    client = redis.Redis.from_url(url, socket_timeout=10)
    try:
        stats: dict[str, dict[str, int]] = client.info("commandstats")  # type: ignore[assignment]
    finally:
        client.close()
    found = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
    found.pop("info", None)
    return found


async def measure(url: str, queue: str, n: int, workers: int, keyed: bool) -> dict[str, float]:
    """Calls per job of each command while W workers claim and end N jobs submitted before."""
    registry = JobRegistry()
    registry.register(noop, name="noop")
    store = f"{url}/0?queue={queue}"
    Ran.count = 0
    async with open_job_pool(
        0, FRONT_QUEUE, store=store, registry=registry, max_pending=None
    ) as front:
        if keyed:
            for k in range(KEYS):
                await front.set_limit(f"k{k}", max_running=LIMIT)
        for i in range(n):
            await front.submit("noop", i, key=f"k{i % KEYS}" if keyed else None)
        before = calls(url)
        with trio.fail_after(TIMEOUT):
            async with open_job_pool(workers, 100, store=store, registry=registry) as pool:
                while True:  # bounded by the fail_after
                    stats = await pool.cluster_stats()
                    if stats.total_completed >= n and stats.active_workers == 0:
                        break
                    await trio.sleep(0.01)
                after = calls(url)
    if Ran.count != n:
        raise RuntimeError(f"{Ran.count} jobs ran, not {n}")
    return {name: (count - before.get(name, 0)) / n for name, count in after.items()}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2_000, help="jobs per measurement")
    parser.add_argument("--workers", default="1,2,5,10", help="workers of the running pool")
    args = parser.parse_args(argv)
    sizes = [int(w) for w in args.workers.split(",") if w.strip()]
    results: dict[tuple[bool, int], dict[str, float]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="jobpool-key-claims-") as tmp,
        redis_server(Path(tmp)) as url,
    ):
        for keyed in (False, True):
            for w in sizes:
                queue = f"claims{'k' if keyed else 'p'}{w}"
                per_job = trio.run(measure, url, queue, args.n, w, keyed)
                results[keyed, w] = per_job
                print(
                    f"{'keys' if keyed else 'none'} W={w:>2}: {sum(per_job.values()):6.2f} "
                    f"commands/job (ZADD {per_job.get('zadd', 0):.2f}, ZPOPMIN "
                    f"{per_job.get('zpopmin', 0):.2f})",
                    flush=True,
                )
    names = sorted({name for per_job in results.values() for name in per_job})
    shown = [m for m in names if any(per_job.get(m, 0) >= 0.05 for per_job in results.values())]
    header = [f"{'keys' if k else 'none'} W={w}" for k, w in results]
    print()
    print("| command | " + " | ".join(header) + " |")
    print("|---|" + "---|" * len(header))
    for name in shown:
        row = [f"{per_job.get(name, 0):.2f}" for per_job in results.values()]
        print(f"| `{name.upper()}` | " + " | ".join(row) + " |")
    print("| all | " + " | ".join(f"{sum(p.values()):.2f}" for p in results.values()) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
