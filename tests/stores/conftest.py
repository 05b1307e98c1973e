"""Fixtures of the store tests: the same test against every store, and a clean job board."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.durable_app import board, registry
from trio_jobpool.stores._redis_queue import RedisQueue

from .fake_store import MemoryStore

# "fake" is the smallest Store of all (tests/stores/fake_store.py): the suite passing on it
# shows that a pool needs nothing of a store but the protocol;
# "sqlite" commits on the event loop with a start journal (synchronous=NORMAL, the default);
# "sqlite-full" commits in the store's writer thread, and every start waits for its commit;
# "redis" is a distributed pool on a queue of the test's own (the session's redis-server).
LOCAL_STORES = ["memory", "fake", "sqlite", "sqlite-full"]
STORES = [*LOCAL_STORES, "redis"]


def _kwargs(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    if request.param == "redis":
        redis_url = request.getfixturevalue("redis_url")
        queue = f"t{uuid.uuid4().hex[:12]}"
        return {"store": f"{redis_url}/0?queue={queue}&lease_timeout=5", "registry": registry}
    if request.param == "memory":
        return {"registry": registry}
    if request.param == "fake":
        return {"store": MemoryStore(), "registry": registry}
    if request.param == "sqlite-full":
        return {"store": f"sqlite:///{tmp_path / 'jobs.db'}?synchronous=FULL", "registry": registry}
    return {"store": f"sqlite:///{tmp_path / 'jobs.db'}", "registry": registry}


@pytest.fixture(params=STORES)
def pool_kwargs(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """The store-related keyword arguments of ``open_job_pool`` for each store.

    Combined with ``anyio_backend`` (tests/conftest.py), an ``@pytest.mark.anyio`` test that
    takes this fixture runs ten ways: {trio, asyncio} x {memory, fake, sqlite, sqlite-full, redis}.
    """
    return _kwargs(request, tmp_path)


@pytest.fixture(params=LOCAL_STORES)
def local_pool_kwargs(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """As ``pool_kwargs``, for the stores of one process only: for the tests whose contract a
    distributed pool keeps differently (docs/distributed.md); test_redis_pool.py has Redis's."""
    return _kwargs(request, tmp_path)


@pytest.fixture(autouse=True)
def _clean_board() -> Iterator[None]:
    """The conformance jobs' shared board starts empty in every test."""
    board.reset()
    yield
    board.reset()


@pytest.fixture
async def queue(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisQueue]:
    """A Redis queue of the test's own on the session's server (its epoch opened), for the
    tests of the queue's scripts; its keys are deleted afterwards."""
    import coredis

    async with coredis.Redis.from_url(redis_url, decode_responses=True) as client:
        name = redis_prefix.strip("{}")
        queue = RedisQueue(client, name)
        await queue.open_epoch()
        yield queue
        keys = [key async for key in client.scan_iter(match=f"{{{name}}}*")]
        if keys:
            await client.delete(keys)
