"""Flow-control values: :class:`Limit`, :class:`Rate`, :class:`KeyStats`, and the checks of a key.

Plain, immutable values with their JSON form (how the stores keep limits); what they mean for
the order of jobs is ``_flow_room.py``'s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["KeyStats", "Limit", "Rate", "check_key", "in_force", "limit_from_json", "stored_limit"]

KEY_MAX_LENGTH = 200
"""The longest key accepted, in characters: a key is a label (a tenant, an API), kept in every
job's record and, on Redis, in a hash field name."""


def check_key(key: object, *, allow_none: bool = True) -> str | None:
    """``key`` if it is a valid flow-control key (a non-empty ``str`` of at most
    :data:`KEY_MAX_LENGTH` characters), or ``None`` where that is allowed.

    Raises:
        TypeError: not a ``str`` (nor ``None``, where allowed).
        ValueError: empty, or too long.
    """
    if key is None and allow_none:
        return None
    if not isinstance(key, str):
        raise TypeError(f"key must be a str{' or None' if allow_none else ''}, got {key!r}")
    if not key or len(key) > KEY_MAX_LENGTH:
        raise ValueError(f"key must be a str of 1 to {KEY_MAX_LENGTH} characters, got {key!r}")
    return key


@dataclass(frozen=True, slots=True)
class Rate:
    """At most ``count`` starts of a key in any window of ``per`` seconds.

    A sliding window over the last ``count`` start times: a burst of ``count`` at once is
    allowed, and the next start waits until ``per`` seconds after the oldest of them. (A token
    bucket refilling ``count`` per ``per`` would allow up to ``2·count - 1`` in one window.)
    Every attempt's start counts, a retry's included.

    Raises:
        TypeError: ``count`` is not an ``int`` (a ``bool`` is refused), or ``per`` is not a
            number.
        ValueError: ``count < 1``, or ``per`` is not a finite number ``> 0``.
    """

    count: int
    per: float

    def __post_init__(self) -> None:
        count, per = self.count, self.per
        if isinstance(count, bool) or not isinstance(count, int):
            raise TypeError(f"Rate(count, per): count must be an int, got {count!r}")
        if count < 1:
            raise ValueError(f"Rate(count, per): count must be >= 1, got {count!r}")
        if isinstance(per, bool) or not isinstance(per, int | float):
            raise TypeError(f"Rate(count, per): per must be a number of seconds, got {per!r}")
        if not math.isfinite(per) or per <= 0:
            raise ValueError(f"Rate(count, per): per must be a finite number > 0, got {per!r}")
        object.__setattr__(self, "per", float(per))

    def __str__(self) -> str:
        return f"{self.count}/{self.per:g}s"


@dataclass(frozen=True, slots=True)
class Limit:
    """A key's limit: at most ``max_running`` of its jobs running at once, and at most
    ``rate.count`` starts in any ``rate.per`` seconds. ``None`` leaves that part unlimited;
    ``Limit()`` limits nothing. ``max_running=0`` holds every job of the key (they wait, holding
    no worker, until the limit is raised or removed).

    Raises:
        TypeError: ``max_running`` is not an ``int`` or ``None`` (a ``bool`` is refused), or
            ``rate`` is not a :class:`Rate` or ``None``.
        ValueError: ``max_running < 0``.
    """

    max_running: int | None = None
    rate: Rate | None = None

    def __post_init__(self) -> None:
        running = self.max_running
        if running is not None:
            if isinstance(running, bool) or not isinstance(running, int):
                raise TypeError(f"Limit: max_running must be an int or None, got {running!r}")
            if running < 0:
                raise ValueError(f"Limit: max_running must be >= 0, got {running!r}")
        if self.rate is not None and not isinstance(self.rate, Rate):
            raise TypeError(f"Limit: rate must be a Rate or None, got {self.rate!r}")

    @property
    def limits_anything(self) -> bool:
        """``False`` for ``Limit()``: neither part is set."""
        return self.max_running is not None or self.rate is not None

    def to_json(self) -> dict[str, Any]:
        """The JSON form the stores and the HTTP API use: ``{"max_running": 2, "rate":
        {"count": 10, "per": 60.0}}`` (either part ``null``)."""
        rate = self.rate
        return {
            "max_running": self.max_running,
            "rate": None if rate is None else {"count": rate.count, "per": rate.per},
        }

    def __str__(self) -> str:
        parts = []
        if self.max_running is not None:
            parts.append(f"max_running={self.max_running}")
        if self.rate is not None:
            parts.append(f"rate={self.rate}")
        return ", ".join(parts) or "no limit"


def in_force(limit: Limit | None) -> Limit | None:
    """``limit``, or ``None`` when it limits nothing (``None`` or ``Limit()``)."""
    return limit if limit is not None and limit.limits_anything else None


def stored_limit(limit: Limit | None) -> dict[str, Any] | None:
    """What a store keeps of ``limit``: its JSON form, or ``None`` (remove it) when it limits
    nothing."""
    limit = in_force(limit)
    return None if limit is None else limit.to_json()


def limit_from_json(data: object) -> Limit:
    """The :class:`Limit` of its JSON form (see :meth:`Limit.to_json`).

    Raises:
        TypeError, ValueError: not that form, or bad values (the message names the field).
    """
    if not isinstance(data, dict):
        raise TypeError(f"a limit must be an object, got {data!r}")
    unknown = set(data) - {"max_running", "rate"}
    if unknown:
        raise ValueError(f"a limit has only max_running and rate, got {sorted(unknown)}")
    rate = data.get("rate")
    if rate is not None:
        if not isinstance(rate, dict) or set(rate) != {"count", "per"}:
            raise ValueError(f"rate must be an object with count and per, got {rate!r}")
        rate = Rate(rate["count"], rate["per"])
    return Limit(max_running=data.get("max_running"), rate=rate)


@dataclass(frozen=True, slots=True)
class KeyStats:
    """A key's state in one pool (:meth:`JobPool.key_stats`): its jobs ``running`` and
    ``waiting`` (``queued``, in the waiting room) now, and the ``limit`` that applies to it (its
    own, else the pool's ``key_limit``; ``None``: unlimited)."""

    key: str
    running: int
    waiting: int
    limit: Limit | None
