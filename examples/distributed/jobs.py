"""What the producer and the worker of the distributed example share: the jobs' registry, the
store's URL and the check that the ``[redis]`` extra is installed.

Every process on a queue must register the same names (a job travels through Redis by name,
with JSON arguments), so the registry lives in a module of its own.
"""

from __future__ import annotations

import os
import sys
import urllib.parse

import anyio

from trio_jobpool import JobRegistry, current_job

QUEUE_SETTINGS = {"queue": "example", "lease_timeout": "10"}
"""The store settings of the example's processes, added to the Redis URL's query."""

registry = JobRegistry()


def store_url(redis_url: str) -> str:
    """``redis_url`` with :data:`QUEUE_SETTINGS` added to its query. A query the URL has
    already is kept (``redis://host/0?timeout=2`` works), and a setting it names itself wins
    over the example's."""
    parts = urllib.parse.urlsplit(redis_url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    named = {key for key, _ in query}
    query += [(key, value) for key, value in QUEUE_SETTINGS.items() if key not in named]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def require_redis_extra() -> None:
    """Exit (status 1) with one line naming the extra to install if coredis is missing."""
    try:
        import coredis  # noqa: F401
    except ImportError:
        sys.exit(
            "this example needs the [redis] extra (coredis is not installed): "
            "pip install 'trio-jobpool[redis]'"
        )


@registry.job(name="build")
async def build(repo: str, seconds: float) -> str:
    """Pretend to build ``repo``, reporting progress; say which process did it."""
    job = current_job()
    for step in range(1, 5):
        await anyio.sleep(seconds / 4)
        job.set_progress(step / 4, f"step {step} of 4")
    return f"built {repo} in process {os.getpid()}"


@registry.job(name="test")
async def test(repo: str) -> str:
    await anyio.sleep(0.05)
    if "broken" in repo:
        raise RuntimeError("tests are red")
    return f"tested {repo}"
