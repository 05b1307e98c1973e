"""The test servers (tests/servers.py): a real redis-server per session, on a port of its own."""

from __future__ import annotations

from pathlib import Path

import coredis
import pytest

from tests.servers import _ping, redis_binary, redis_server


@pytest.mark.anyio
async def test_the_redis_server_answers_on_both_backends(redis_url: str, redis_prefix: str) -> None:
    key = f"{redis_prefix}:greeting"
    async with coredis.Redis.from_url(redis_url, decode_responses=True) as client:
        assert await client.ping() == "PONG"
        try:
            await client.set(key, "hello")
            async with client.pipeline(transaction=False) as pipe:
                pipe.get(key)
                pipe.strlen(key)
            assert pipe.results == ("hello", 5)
        finally:
            await client.delete([key])


def test_a_server_of_its_own_is_stopped_afterwards(tmp_path: Path) -> None:
    with redis_server(tmp_path) as url:
        port = int(url.rsplit(":", 1)[1])
        assert _ping(port)
    assert not _ping(port)  # stopped and waited for: nothing answers on its port


@pytest.mark.parametrize(
    ("ci", "outcome"), [("true", pytest.fail.Exception), ("", pytest.skip.Exception)]
)
def test_a_missing_redis_server_fails_under_ci_and_skips_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ci: str, outcome: type[BaseException]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a directory with no redis-server in it
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="redis-server is not installed"):
        redis_binary()
