"""Argument checks shared by the pool's entry points; each error names the value it refuses."""

from __future__ import annotations

import math

__all__ = ["check_count", "seconds", "validate_timeout"]


def check_count(name: str, value: object, minimum: int, *, allow_none: bool = False) -> None:
    """Check that ``value`` is an ``int >= minimum`` (or ``None``, if allowed).

    Raises:
        TypeError: not an ``int`` (a ``bool`` is refused too).
        ValueError: below ``minimum``.
    """
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")


def validate_timeout(name: str, value: float | None) -> float | None:
    """``None`` stays ``None``; otherwise a non-negative number of seconds (``inf`` allowed).

    Raises:
        TypeError: not a number.
        ValueError: negative or NaN.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds or None, got {value!r}")
    if math.isnan(value) or value < 0:
        raise ValueError(f"{name} must be >= 0 seconds, got {value!r}")
    return float(value)


def seconds(name: str, value: float | None) -> float:
    """As :func:`validate_timeout`, with ``None`` meaning no limit (``math.inf``)."""
    checked = validate_timeout(name, value)
    return math.inf if checked is None else checked
