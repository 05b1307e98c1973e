"""Fixtures of the store tests: the same test against every store, and a clean job board."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.durable_app import board, registry

STORES = ["memory", "sqlite"]  # redis joins here


@pytest.fixture(params=STORES)
def pool_kwargs(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """The store-related keyword arguments of ``open_job_pool`` for each store.

    Combined with ``anyio_backend`` (tests/conftest.py), an ``@pytest.mark.anyio`` test that
    takes this fixture runs four ways: {trio, asyncio} x {memory, sqlite}.
    """
    if request.param == "memory":
        return {"registry": registry}
    return {"store": f"sqlite:///{tmp_path / 'jobs.db'}", "registry": registry}


@pytest.fixture(autouse=True)
def _clean_board() -> Iterator[None]:
    """The conformance jobs' shared board starts empty in every test."""
    board.reset()
    yield
    board.reset()
