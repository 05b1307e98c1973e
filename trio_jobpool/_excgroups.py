"""Helpers for the exception groups that task groups raise."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["every_leaf", "first_leaf", "lone_error"]


def first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first exception in ``group`` that is not itself a group."""
    first = group.exceptions[0]
    return first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


def every_leaf(exc: BaseException, test: Callable[[BaseException], bool]) -> bool:
    """Whether ``test`` holds for ``exc``, or for every exception in it if it is a group."""
    if isinstance(exc, BaseExceptionGroup):
        return all(every_leaf(inner, test) for inner in exc.exceptions)
    return test(exc)


def _same_error(seen: BaseException, raised: BaseException) -> bool:
    """Whether ``seen`` is ``raised`` itself or a copy an exception group split derived."""
    if seen is raised:
        return True
    return (
        isinstance(seen, BaseExceptionGroup)
        and isinstance(raised, BaseExceptionGroup)
        and seen.message == raised.message
        and seen.__traceback__ is raised.__traceback__
    )


def lone_error(
    group: BaseExceptionGroup[BaseException], body_error: BaseException | None
) -> BaseException | None:
    """The one exception in ``group``, or ``None`` if it holds several.

    If that one is ``body_error`` (what the body of a block raised) or a copy of it (a
    cancelled Trio scope may split a group the body raised, and so copy it), ``body_error``
    itself is returned, so that the block re-raises the very object its body raised.
    """
    if len(group.exceptions) != 1:
        return None
    single = group.exceptions[0]
    if body_error is not None and _same_error(single, body_error):
        return body_error
    return single
