"""Flow control's public side: ``set_limit``, ``limits``, ``key_stats`` and the views of keys,
over the pool's :class:`~trio_jobpool._flow_room.FlowRoom` (what a key's limit does to the
order of jobs is that module's), and the store that keeps the limits of a durable pool."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from ._config import PoolConfig
from ._journal import Journal
from ._limits import KeyStats, Limit, Rate, check_key, limit_from_json, stored_limit
from ._periodic import Periodic
from ._runtime import Runtime, TaskGroupLike

__all__ = ["FlowControl", "LimitBook"]


@runtime_checkable
class LimitBook(Protocol):
    """A store that keeps its pool's limits (``SqliteStore``): the pool takes its store for
    that when it has these methods."""

    def stored_limits(self) -> dict[str, dict[str, Any]]:
        """The limits the store held when it was opened, by key, in their JSON form
        (:meth:`Limit.to_json`)."""
        ...

    async def put_limit(self, key: str, limit: dict[str, Any] | None) -> None:
        """Keep ``limit`` (JSON form) as the key's, or remove the key's (``None``); durable
        when it returns.

        Raises:
            StoreError: the write failed (nothing changed).
        """
        ...


class FlowControl(Periodic):
    """Per-key limits, their store, and the views of keys (see the module docstring)."""

    def __init__(
        self,
        config: PoolConfig,
        runtime: Runtime,
        nursery: TaskGroupLike,
        journal: Journal | None = None,
    ) -> None:
        super().__init__(config, runtime, nursery, journal)
        store: object = None if journal is None else journal.store
        self._limit_book: LimitBook | None = store if isinstance(store, LimitBook) else None
        if self._shared_queue:
            return
        if config.fair or config.aging is not None or config.key_limit is not None:
            self._use_flow()
        if self._limit_book is not None:
            stored = self._limit_book.stored_limits()
            if stored:
                flow = self._use_flow()
                for key, data in stored.items():
                    flow.set_limit(key, limit_from_json(data))

    async def set_limit(
        self, key: str, *, max_running: int | None = None, rate: Rate | None = None
    ) -> None:
        """Set the limit of the flow-control ``key``: at most ``max_running`` of its jobs
        running at once, at most ``rate.count`` starts in any ``rate.per`` seconds; with
        neither, remove the key's own limit (the pool's ``key_limit`` applies again).

        Takes effect before it returns: a raised limit hands the key's waiting jobs to idle
        workers at once; a lowered ``max_running`` cancels nothing (the key's running jobs
        finish) and holds the key's next starts until it is under the new limit; a rate keeps
        the starts already counted. On a durable pool the limit is written to the store first
        (it outlives the pool); on a distributed pool it is kept in Redis and applies to every
        process at their next claim.

        Cancellation: a checkpoint before anything is done; once a store write has begun, it
        finishes (the cancellation is delivered at the caller's next checkpoint).

        Raises:
            TypeError: ``key`` is not a ``str``; ``max_running`` is not an ``int`` or ``None``;
                ``rate`` is not a :class:`Rate` or ``None``.
            ValueError: ``key`` is empty or longer than 200 characters; ``max_running < 0``.
            StoreError: the store could not keep the limit (nothing changed).
        """
        check_key(key, allow_none=False)
        limit = Limit(max_running=max_running, rate=rate)
        await self._runtime.checkpoint()
        await self._put_limit(key, limit)

    async def _put_limit(self, key: str, limit: Limit) -> None:
        """Hook: keep ``limit`` (``Limit()``: none) as ``key``'s and apply it. Here: in the
        store, if it keeps limits, then in this pool's waiting room."""
        if self._limit_book is not None:
            await self._limit_book.put_limit(key, stored_limit(limit))
        if self._use_flow().set_limit(key, limit):
            self._dispatch_idle()

    async def limits(self) -> dict[str, Limit]:
        """Every key's own limit, by key, sorted (the pool's ``key_limit`` is not listed).
        A checkpoint; on a distributed pool, read from Redis.

        Raises:
            StoreError: on a distributed pool, Redis does not answer.
        """
        await self._runtime.checkpoint()
        flow = self._flow
        return {} if flow is None else dict(sorted(flow.own_limits.items()))

    def key_stats(self, key: str) -> KeyStats:
        """The key's jobs ``running`` and ``waiting`` (queued) in this pool now, and the limit
        that applies to it. Synchronous, O(1). On a distributed pool: the key's jobs this
        process runs or holds (its limit as this process last read it: see
        docs/flow-control.md).

        Raises:
            TypeError, ValueError: ``key`` is not a valid key (see :meth:`submit`).
        """
        check_key(key, allow_none=False)
        flow = self._flow
        if flow is None:
            return KeyStats(key, 0, 0, None)
        return flow.key_stats(key)

    def limited_keys(self) -> list[KeyStats]:
        """The keys with a limit of their own, and the keys now at their limit with jobs
        waiting, sorted by key: what the metrics and the dashboard show (bounded by the keys
        given limits, and by those with jobs held back). O(keys with a state)."""
        flow = self._flow
        if flow is None:
            return []
        found = {stats.key: stats for stats in flow.parked_keys()}
        for key in flow.own_limits:
            if key not in found:
                found[key] = flow.key_stats(key)
        return [found[key] for key in sorted(found)]

    @property
    def delayed_starts(self) -> int:
        """The number of jobs that started after a limit held them back (their key was at its
        limit at some moment while they waited), counted since the pool opened."""
        flow = self._flow
        return 0 if flow is None else flow.delayed
