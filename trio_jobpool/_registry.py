"""JobRegistry: async job functions under stable names, and the JSON checks for their arguments.

The in-memory pool runs any async callable; durable and distributed pools store jobs by name with
JSON arguments, so they run registered functions only.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar, overload

from ._errors import JobNotRegistered, JobNotSerializable

__all__ = ["JobRegistry", "check_json"]

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


class JobRegistry:
    """A mapping of stable names to async job functions.

    Given to ``open_job_pool(registry=...)``, it lets ``submit`` take a name instead of the
    function. Durable and distributed pools run registered functions only, and the HTTP service
    submits by name only (the registry given to ``create_app``). Use ``@registry.job`` (the
    function's ``__qualname__`` as the name) or ``@registry.job(name="build")``; the decorator
    returns the function unchanged.

    Container protocol: ``name in registry``, ``iter(registry)`` (the names) and
    ``len(registry)``.
    """

    def __init__(self) -> None:
        self._by_name: dict[str, Callable[..., Awaitable[Any]]] = {}
        self._names: dict[Callable[..., Awaitable[Any]], str] = {}

    @overload
    def job(self, fn: F, /, *, name: str | None = None) -> F: ...
    @overload
    def job(self, fn: None = None, /, *, name: str | None = None) -> Callable[[F], F]: ...

    def job(
        self, fn: Callable[..., Awaitable[Any]] | None = None, /, *, name: str | None = None
    ) -> Any:
        """Decorator: register an async function, as ``@registry.job`` (under its
        ``__qualname__``) or ``@registry.job(name="build")`` (under the given name). Returns
        the function unchanged.

        Raises:
            TypeError, ValueError: as :meth:`register`.
        """

        def register(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            self.register(fn, name=name)
            return fn

        return register if fn is None else register(fn)

    def register(self, fn: Callable[..., Awaitable[Any]], *, name: str | None = None) -> str:
        """Register ``fn`` under ``name`` (default: ``fn.__qualname__``) and return the name.

        Registering the same function under the same name again is harmless; a function may
        have several names (:meth:`name_of` returns the first).

        Raises:
            TypeError: ``fn`` is not an ``async def`` function (checked with
                ``inspect.iscoroutinefunction``), or ``name`` is not a ``str``.
            ValueError: ``name`` is empty or already registered to another function.
        """
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"only async functions can be registered as jobs, got {fn!r}")
        if name is None:
            name = fn.__qualname__
        if not isinstance(name, str):
            raise TypeError(f"a job name must be a str, got {name!r}")
        if not name:
            raise ValueError("a job name must not be empty")
        existing = self._by_name.get(name)
        if existing is not None and existing is not fn:
            raise ValueError(f"job name {name!r} is already registered to {existing!r}")
        self._by_name[name] = fn
        self._names.setdefault(fn, name)
        return name

    def get(self, name: str) -> Callable[..., Awaitable[Any]]:
        """The function registered as ``name``.

        Raises:
            JobNotRegistered: no function has that name.
        """
        try:
            return self._by_name[name]
        except KeyError:
            raise JobNotRegistered(f"no job is registered as {name!r}") from None

    def name_of(self, fn: Callable[..., Awaitable[Any]]) -> str:
        """The name ``fn`` was (first) registered under.

        Raises:
            JobNotRegistered: ``fn`` is not registered here.
        """
        try:
            return self._names[fn]
        except (KeyError, TypeError):
            raise JobNotRegistered(f"{fn!r} is not registered in this JobRegistry") from None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)


def check_json(value: object, what: str) -> None:
    """Refuse what JSON would not carry faithfully, naming the offending value.

    Allowed: ``None``, ``bool``, ``int``, finite ``float``, ``str``, and lists, tuples and
    ``str``-keyed dicts of those.

    Raises:
        JobNotSerializable: anything else (``what`` says whose value it is).
    """
    _check(value, what, set())


def _check(item: object, what: str, ancestors: set[int]) -> None:
    if item is None or isinstance(item, bool | int | str):
        return
    if isinstance(item, float):
        if math.isfinite(item):
            return
    elif isinstance(item, list | tuple | dict):
        if id(item) in ancestors:
            raise JobNotSerializable(f"{what} is not JSON-serialisable: a container holds itself")
        ancestors.add(id(item))
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    raise JobNotSerializable(
                        f"{what} is not JSON-serialisable: dict key {key!r} is not a str"
                    )
                _check(child, what, ancestors)
        else:
            for child in item:
                _check(child, what, ancestors)
        ancestors.discard(id(item))
        return
    raise JobNotSerializable(f"{what} is not JSON-serialisable: {item!r}")
