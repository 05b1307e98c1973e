"""Interactions between the fixes of issue #12, found in review: the workers' own task group
(abandoned jobs) with the SQLite store's start writes, and with Trio's system tasks."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest

from trio_jobpool import JobHandle, JobRegistry, JobStatus, SqliteStore, StoreError, open_job_pool

from ._helpers import invariant_holds, settle

ROOT = Path(__file__).resolve().parent.parent

registry = JobRegistry()
_state: dict[str, Any] = {}


@registry.job(name="review_gated")
async def gated() -> str:
    await _state["gate"].wait()
    return "first"


@registry.job(name="review_quick")
async def quick() -> str:
    await anyio.lowlevel.checkpoint()
    return "second"


@pytest.mark.anyio
async def test_a_job_abandoned_while_its_start_is_being_written_is_left_alone(
    tmp_path: Path,
) -> None:
    """A worker waits (shielded) for its job's start to be committed; if the shutdown abandons
    the job meanwhile (a commit slower than ``shutdown_grace``), the worker must not end the job
    a second time when the commit finally reports (it raised KeyError in the workers' host:
    TrioInternalError on Trio, corrupt counters on asyncio)."""
    db = tmp_path / "jobs.db"
    store = SqliteStore(db, synchronous="FULL")  # commits in the writer thread
    _state["gate"] = anyio.Event()
    async with open_job_pool(
        1, 10, store=store, registry=registry, shutdown_timeout=0.0, shutdown_grace=0.05
    ) as pool:
        await pool.submit("review_gated")
        second: JobHandle[str] = await pool.submit("review_quick")
        blocker = sqlite3.connect(db, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")  # the writer thread now waits for this lock
            _state["gate"].set()  # the first job ends; the worker takes the second one
            await settle()  # ... and waits for its start to be committed
            assert second.status is JobStatus.RUNNING
            await pool.stop()
            second = second  # rebound: mypy keeps the status narrowed above across calls
            assert second.status is JobStatus.CANCELLED
            assert "abandoned" in str(second.error)
            stats = pool.stats()
            assert invariant_holds(stats)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        with contextlib.suppress(StoreError):  # (the start may have failed: "locked")
            await store.flush()
        await settle()  # the worker has seen the commit's report
        assert pool.stats() == stats
    # The abandoned job's row is as a crash leaves it: the next pool runs it.
    async with open_job_pool(1, 10, store=f"sqlite:///{db}", registry=registry) as pool:
        assert await pool.get(second.job_id).result() == "second"


class _Interrupt(BaseException):
    """Neither an Exception nor a cancellation (as KeyboardInterrupt and SystemExit are)."""


@pytest.mark.anyio
async def test_an_abandoned_job_that_raises_a_base_exception_is_logged_not_crashing_trio(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Once the pool abandoned a job, nobody waits for its worker: what the job raises then
    cannot reach the pool's block. Under Trio the workers' host is a system task, and an
    exception out of it crashes the run (TrioInternalError); it must be logged instead."""
    caplog.set_level(logging.ERROR, logger="trio_jobpool")
    started, release, finished = anyio.Event(), anyio.Event(), anyio.Event()

    async def stubborn() -> None:
        started.set()
        try:
            while not release.is_set():
                with contextlib.suppress(anyio.get_cancelled_exc_class()):
                    await release.wait()
            raise _Interrupt("raised after the pool gave up on the job")
        finally:
            finished.set()

    try:
        async with open_job_pool(shutdown_timeout=0.0, shutdown_grace=0.05) as pool:
            job = await pool.submit(stubborn)
            await started.wait()
        assert job.status is JobStatus.CANCELLED
        assert "abandoned" in str(job.error)
    finally:
        release.set()
    await finished.wait()
    await settle()
    logged = [r for r in caplog.records if r.name == "trio_jobpool" and r.exc_info]
    assert len(logged) == 1, caplog.records
    assert "abandoned" in logged[0].getMessage()
    error = logged[0].exc_info[1]  # type: ignore[index]
    assert isinstance(error, BaseExceptionGroup)
    assert error.subgroup(_Interrupt) is not None
