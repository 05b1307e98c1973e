"""Retry policy: which failures are retried, how often, and how long to wait in between."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failed job is retried.

    A failed attempt whose exception is an instance of one of ``retry_on`` is queued again after
    a backoff, as long as fewer than ``max_attempts`` attempts have started. The wait before
    attempt ``k + 1`` is ``min(max_backoff, backoff * 2 ** (k - 1))`` seconds; with ``jitter``
    it is multiplied by a uniform factor in ``[0.5, 1.0]`` so that jobs failing together do not
    come back together. The job holds no worker while it waits.

    Timeouts and cancellations are never retried, whatever ``retry_on`` says.
    ``RetryPolicy(max_attempts=1)`` means "no retry".

    Attributes:
        max_attempts: attempts in all, the first included; ``int >= 1``.
        backoff: the first wait, in seconds; a number ``>= 0``.
        max_backoff: the cap on every wait (before jitter); a number ``>= 0``.
        jitter: multiply each wait by a random factor in ``[0.5, 1.0]``.
        retry_on: the exception classes that are retried; ``Exception`` subclasses. A single
            class is accepted and stored as a one-element tuple.

    Raises:
        ValueError: ``max_attempts < 1``, a negative or NaN ``backoff``/``max_backoff``.
        TypeError: a non-``int`` ``max_attempts``, a non-number ``backoff``/``max_backoff``, or
            a ``retry_on`` that is not a tuple of ``Exception`` subclasses.
    """

    max_attempts: int = 3
    backoff: float = 1.0
    max_backoff: float = 60.0
    jitter: bool = True
    retry_on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise TypeError(f"max_attempts must be an int, got {self.max_attempts!r}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts!r}")
        for name in ("backoff", "max_backoff"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise TypeError(f"{name} must be a number of seconds, got {value!r}")
            if math.isnan(value) or value < 0:
                raise ValueError(f"{name} must be >= 0 seconds, got {value!r}")
        retry_on: object = self.retry_on
        if isinstance(retry_on, type):
            retry_on = (retry_on,)
            object.__setattr__(self, "retry_on", retry_on)
        if not isinstance(retry_on, tuple):
            raise TypeError(f"retry_on must be a tuple of Exception subclasses, got {retry_on!r}")
        for exc_type in retry_on:
            if not (isinstance(exc_type, type) and issubclass(exc_type, Exception)):
                raise TypeError(f"retry_on must hold Exception subclasses, got {exc_type!r}")

    def should_retry(self, attempts: int, exc: BaseException) -> bool:
        """Whether a job that failed with ``exc`` on attempt number ``attempts`` (1-based) goes
        again: ``attempts < max_attempts and isinstance(exc, retry_on)``."""
        return attempts < self.max_attempts and isinstance(exc, self.retry_on)

    def delay(self, attempts: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after attempt number ``attempts`` (1-based) failed, by the formula
        above; the jitter factor is drawn from ``rng`` (default: the ``random`` module). Never
        overflows: past 1,000 doublings the wait before jitter is ``max_backoff`` (``0.0`` if
        ``backoff`` is ``0``)."""
        exponent = max(0, attempts - 1)
        if exponent > 1000:  # 2**1001 overflows a float; the power no longer matters
            base = math.inf if self.backoff > 0 else 0.0
        else:
            base = self.backoff * 2.0**exponent
        wait = min(self.max_backoff, base)
        if self.jitter:
            wait *= (rng or random).uniform(0.5, 1.0)
        return wait
