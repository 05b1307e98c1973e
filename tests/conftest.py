from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import redis_server


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every ``@pytest.mark.anyio`` test runs on Trio and on asyncio."""
    return str(request.param)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis server for the session: ``$REDIS_URL`` if set, else one of its own (see
    tests/servers.py). Tests share it, each with keys of its own (``redis_prefix``)."""
    given = os.environ.get("REDIS_URL")
    if given:
        yield given
        return
    with redis_server(Path(tmp_path_factory.mktemp("redis"))) as url:
        yield url


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix no other test uses (a Redis hash tag, so all of a test's keys share a
    cluster slot)."""
    return f"{{test-{uuid.uuid4().hex[:12]}}}"
