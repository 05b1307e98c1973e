"""``Retry-After`` of a submission refused for a full queue: how long the queue ahead of the
client takes to clear at the rate the pool ends jobs.

The rate is measured, not guessed from run times: :class:`RetryAfter` keeps samples of how many
jobs the pool has ended (completed, failed, cancelled, timed out), at most one a second, over
the last :data:`WINDOW` seconds. With ``queued`` jobs waiting and ``ended`` jobs ended over the
last ``span`` seconds (the window, or less while the app is younger)::

    Retry-After = clamp(ceil(queued * span / max(ended, 1)), MIN_SECONDS, MAX_SECONDS)

``max(ended, 1)``: when no job ended in the span, the rate is taken as one job per span (an
upper bound of it), so the advice grows with how long nothing has ended, up to
:data:`MAX_SECONDS`. Before any span of a second has been seen (a distributed pool's first
refusal), the workers' capacity stands in for the rate: ``max_workers`` jobs per average
execution time (1 s while no attempt has ended).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from typing import Final

from trio_jobpool import PoolStats

__all__ = ["MAX_SECONDS", "MIN_SECONDS", "WINDOW", "RetryAfter", "ended_jobs"]

MIN_SECONDS: Final = 1
"""The shortest ``Retry-After``, in seconds."""
MAX_SECONDS: Final = 300
"""The longest ``Retry-After``, in seconds: past this, the advice says "much later"."""
WINDOW: Final = 60.0
"""The seconds of history the rate is measured over."""
_EVERY: Final = 1.0  # seconds between two samples
_MIN_SPAN: Final = 1.0  # the shortest span a rate is measured over


def ended_jobs(stats: PoolStats) -> int:
    """How many jobs the pool has ended, in any way."""
    ended = stats.total_completed + stats.total_failed
    return ended + stats.total_cancelled + stats.total_timed_out


def _monotonic() -> float:
    return time.monotonic()


class RetryAfter:
    """The samples of one pool's ended jobs, and the ``Retry-After`` they give (see the
    module). ``clock`` reads seconds (monotonic); the first sample is taken by the caller."""

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock or _monotonic
        # (time, ended jobs), oldest first, at least _EVERY seconds apart; the first is the
        # newest one at least WINDOW old, when there is one (the baseline of the rate).
        self._samples: deque[tuple[float, int]] = deque()

    def observe(self, stats: Callable[[], PoolStats]) -> None:
        """Take a sample of ``stats()`` (this pool's), unless the last one is less than a
        second old: then ``stats`` is not called (a submit calls this every time)."""
        now = self._clock()
        samples = self._samples
        if not samples or now - samples[-1][0] >= _EVERY:
            self._add(now, ended_jobs(stats()))

    def seconds(self, stats: PoolStats) -> int:
        """``Retry-After`` for a client refused now, with ``stats`` as the pool (or its
        cluster) has them now, which are also taken as a sample."""
        now = self._clock()
        ended_now = ended_jobs(stats)
        samples = self._samples
        if not samples or now - samples[-1][0] >= _EVERY:
            self._add(now, ended_now)
        since, ended_then = samples[0]
        span = now - since
        if span >= _MIN_SPAN:
            wait = stats.queued_tasks * span / max(ended_now - ended_then, 1)
        else:
            per_job = stats.average_exec_time or 1.0
            wait = stats.queued_tasks * per_job / max(1, stats.max_workers)
        return min(MAX_SECONDS, max(MIN_SECONDS, math.ceil(wait)))

    def _add(self, now: float, ended: int) -> None:
        samples = self._samples
        samples.append((now, ended))
        while len(samples) > 1 and samples[1][0] <= now - WINDOW:
            samples.popleft()
