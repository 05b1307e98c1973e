"""RedisStore: where a distributed pool keeps its queue (see docs/distributed.md).

A pool opened with ``store=RedisStore(...)`` (or ``store="redis://..."``) keeps its waiting
jobs in Redis, shared by the pools of any number of processes on any number of hosts; the
pool's own machinery is in ``trio_jobpool._distributed``. This object only holds the settings
and opens the connection, so one ``RedisStore`` may serve several pools one after another.
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from .._errors import StoreError
from ._redis_queue import RedisQueue, redis_errors

__all__ = ["RedisStore"]


class RedisStore:
    """A job queue in Redis (or Redis Cluster), shared by pools in many processes: the store of
    a distributed pool (docs/distributed.md).

    Pass it as ``open_job_pool(store=...)`` (or use the URL form, ``store="redis://..."``).
    Creating it connects to nothing; a pool connects when its block is entered (and one store
    may serve one pool after another). Needs the ``redis`` extra (coredis), imported only then.

    Args:
        url: ``redis://[user:password@]host:port/db`` (``rediss://`` for TLS). Settings may
            also come as query parameters: ``?queue=jobs&lease_timeout=30&max_crashes=3``,
            and ``cluster=1`` for Redis Cluster.
        queue: the queue's name; pools on the same Redis and queue share their jobs. Its keys
            all carry the hash tag ``{queue}``, so that they live on one Cluster node.
        lease_timeout: seconds a process holds a running job without renewing its lease
            (renewed every third of it). When a process dies, its jobs run again elsewhere
            about this long after; a process that cannot renew cancels its jobs before their
            leases lapse (fencing).
        max_crashes: lapsed leases a job survives; one more and it ends ``failed`` as poison.
        cluster: connect to a Redis Cluster (any node's address will do).
        timeout: seconds a connection or command may take before it counts as lost: each
            call to Redis gives up after this long, once (a command that got no answer is
            not sent again: it may have run), except a read (``aget``, ``cluster_stats``)
            whose connection broke, which is sent once more (at most twice the timeout). A
            submit that got no answer raises :class:`~trio_jobpool.StoreOutcomeUnknown`.
        keep_ended: seconds an ended job stays in Redis (its status, result or error, for
            ``aget``) before it expires; ``None``: until deleted by hand. The queue has one
            setting: the pool opened last on it sets it for all. An hour by default: an ended
            job takes about 530 bytes of Redis memory (more with its result or error), and a
            busy queue's Redis holds jobs per second times ``keep_ended`` of them
            (docs/distributed.md, "Sizing Redis").

    Raises:
        ValueError, TypeError: bad settings.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        queue: str = "default",
        lease_timeout: float = 30.0,
        max_crashes: int = 3,
        cluster: bool = False,
        timeout: float = 5.0,
        keep_ended: float | None = 3600.0,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://")):
            raise ValueError(f"a Redis URL starts with redis:// or rediss://, got {url!r}")
        if not isinstance(queue, str) or not queue or any(c in queue for c in "{}:"):
            raise ValueError(
                f"queue must be a non-empty name without '{{', '}}' or ':', got {queue!r}"
            )
        checked = [("lease_timeout", lease_timeout), ("timeout", timeout)]
        if keep_ended is not None:
            checked.append(("keep_ended", keep_ended))
        for name, value in checked:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"{name} must be a number of seconds, got {value!r}")
            if not 0 < value < math.inf:
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        if isinstance(max_crashes, bool) or not isinstance(max_crashes, int) or max_crashes < 0:
            raise ValueError(f"max_crashes must be an int >= 0, got {max_crashes!r}")
        self._url = url
        self.queue = queue
        self.lease_timeout = float(lease_timeout)
        self.max_crashes = max_crashes
        self.cluster = bool(cluster)
        self.timeout = float(timeout)
        self.keep_ended = None if keep_ended is None else float(keep_ended)

    @classmethod
    def from_url(cls, url: str) -> RedisStore:
        """The store a URL names, the settings as a query
        (``?queue=builds&lease_timeout=10&max_crashes=1&cluster=1&timeout=2&keep_ended=3600``).

        Raises:
            ValueError: unknown or bad settings.
        """
        parts = urllib.parse.urlsplit(url)
        query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        settings: dict[str, Any] = {}
        try:
            if "queue" in query:
                settings["queue"] = query.pop("queue")
            for name in ("lease_timeout", "timeout"):
                if name in query:
                    settings[name] = float(query.pop(name))
            if "keep_ended" in query:
                keep = query.pop("keep_ended")
                settings["keep_ended"] = None if keep in ("", "none") else float(keep)
            if "max_crashes" in query:
                settings["max_crashes"] = int(query.pop("max_crashes"))
            if "cluster" in query:
                settings["cluster"] = query.pop("cluster").lower() in ("1", "true", "yes")
        except ValueError as exc:
            raise ValueError(f"bad setting in {url!r}: {exc}") from None
        if query:
            raise ValueError(f"unknown settings {sorted(query)} in {url!r}")
        base = urllib.parse.urlunsplit(parts._replace(query=""))
        return cls(base, **settings)

    @property
    def url(self) -> str:
        """The server's URL without its password, and the queue (for messages)."""
        parts = urllib.parse.urlsplit(self._url)
        if parts.password is None:
            return f"{self._url} (queue {self.queue!r})"
        netloc = f"{parts.username or ''}:***@{parts.hostname}:{parts.port or 6379}"
        return f"{urllib.parse.urlunsplit(parts._replace(netloc=netloc))} (queue {self.queue!r})"

    def __repr__(self) -> str:
        return f"RedisStore({self.url}, lease_timeout={self.lease_timeout})"

    @asynccontextmanager
    async def _connect(self) -> AsyncIterator[RedisQueue]:
        """Connect, check that the server answers, and yield the queue's scripts.

        Raises:
            StoreError: Redis cannot be reached (or refuses the client).
            ImportError: coredis is not installed (the ``redis`` extra).
        """
        try:
            import coredis
        except ImportError as exc:
            raise ImportError(
                f"a pool on {self.url} needs coredis: pip install 'trio-jobpool[redis]'"
            ) from exc

        # No retries by coredis (its default retries a timed-out command twice, tripling the
        # timeout, and sends a write again that may have run): the pool's link and keeper
        # retry on their own, and a caller hears of a lost Redis within one timeout.
        options: dict[str, Any] = {
            "decode_responses": True,
            "connect_timeout": self.timeout,
            "stream_timeout": self.timeout,
            "retry_policy": coredis.retry.NoRetryPolicy(),
        }
        error: StoreError | None = None
        try:
            async with AsyncExitStack() as stack:
                try:
                    client: Any
                    if self.cluster:
                        parts = urllib.parse.urlsplit(self._url)
                        client = coredis.RedisCluster(
                            parts.hostname or "127.0.0.1",
                            parts.port or 6379,
                            username=parts.username and urllib.parse.unquote(parts.username),
                            password=parts.password and urllib.parse.unquote(parts.password),
                            ssl=parts.scheme == "rediss",
                            **options
                            | {
                                # A cluster that is down refused the command: resending is safe.
                                "retry_policy": coredis.retry.ConstantRetryPolicy(
                                    (coredis.exceptions.ClusterDownError,), retries=2, delay=0.1
                                )
                            },
                        )
                    else:
                        client = coredis.Redis.from_url(self._url, **options)
                    await stack.enter_async_context(client)
                    await client.ping()
                    queue = RedisQueue(client, self.queue)
                    await queue.keep_ended(self.keep_ended)
                except redis_errors() as exc:
                    error = StoreError(f"cannot reach Redis at {self.url}: {exc}")
                    raise error from exc
                yield queue
        except BaseExceptionGroup as group:
            # the client's task group wraps our error: raise it as itself
            if error is None or len(group.exceptions) != 1 or group.exceptions[0] is not error:
                raise
        if error is not None:
            raise error
