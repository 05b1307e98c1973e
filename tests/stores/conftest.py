"""Fixtures of the store tests: the same test against every store, and a clean job board."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.durable_app import board, registry

# "sqlite" commits on the event loop with a start journal (synchronous=NORMAL, the default);
# "sqlite-full" commits in the store's writer thread, and every start waits for its commit.
STORES = ["memory", "sqlite", "sqlite-full"]  # redis joins here


@pytest.fixture(params=STORES)
def pool_kwargs(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """The store-related keyword arguments of ``open_job_pool`` for each store.

    Combined with ``anyio_backend`` (tests/conftest.py), an ``@pytest.mark.anyio`` test that
    takes this fixture runs six ways: {trio, asyncio} x {memory, sqlite, sqlite-full}.
    """
    if request.param == "memory":
        return {"registry": registry}
    if request.param == "sqlite-full":
        return {"store": f"sqlite:///{tmp_path / 'jobs.db'}?synchronous=FULL", "registry": registry}
    return {"store": f"sqlite:///{tmp_path / 'jobs.db'}", "registry": registry}


@pytest.fixture(autouse=True)
def _clean_board() -> Iterator[None]:
    """The conformance jobs' shared board starts empty in every test."""
    board.reset()
    yield
    board.reset()
