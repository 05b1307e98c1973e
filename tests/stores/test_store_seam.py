"""The ``Store`` seam: a pool takes any object that implements the protocol, and what it writes
through it (its journal) is exactly the job's life. Faults are injected with a fake store
(tests/stores/fake_store.py) instead of a subclass of ``SqliteStore``."""

from __future__ import annotations

import time

import anyio
import pytest

from tests.durable_app import board, registry
from trio_jobpool import JobHandle, JobNotFound, JobStatus, StoreError, open_job_pool
from trio_jobpool.stores import Store

from .fake_store import MemoryStore, record_of

pytestmark = pytest.mark.anyio


def test_the_fake_store_implements_the_protocol() -> None:
    assert isinstance(MemoryStore(), Store)


async def test_a_pool_writes_a_jobs_life_through_any_store() -> None:
    store = MemoryStore()
    async with open_job_pool(1, 10, store=store, registry=registry) as pool:
        assert pool.store is store
        assert await (await pool.submit("note", "a", job_id="a")).result() == "a"
        await pool.join()
    assert [entry for entry in store.log if entry[1] == "a"] == [
        ("add", "a", "queued"),
        ("start", "a", "running"),
        ("change", "a", "completed"),
    ]
    assert store.rows["a"].result == "a"
    assert store.rows["a"].attempts == 1


async def test_an_ended_job_is_read_back_through_the_store() -> None:
    store = MemoryStore()
    async with open_job_pool(1, 10, store=store, registry=registry, history=0) as pool:
        await (await pool.submit("note", "a", job_id="a")).wait()
        await pool.join()
        again = pool.get("a")  # no history: read from the store
        assert again.status is JobStatus.COMPLETED
        assert await again.result() == "a"
        with pytest.raises(JobNotFound):
            pool.get("never")


async def test_a_store_that_fails_refuses_submits_and_then_recovers() -> None:
    store = MemoryStore()
    async with open_job_pool(1, 10, store=store, registry=registry) as pool:
        store.failing = True
        before = pool.stats()
        with pytest.raises(StoreError, match="the disk is full"):
            await pool.submit("note", "lost", job_id="lost")
        with pytest.raises(StoreError, match="the disk is full"):
            pool.submit_nowait("note", "lost", job_id="lost")
        assert pool.stats() == before  # neither was accepted
        with pytest.raises(JobNotFound):
            pool.get("lost")
        store.failing = False
        assert await (await pool.submit("note", "kept", job_id="kept")).result() == "kept"
    assert "lost" not in store.rows
    assert store.statuses()["kept"] == "completed"
    assert store.failed_commits == 2


async def test_a_start_that_cannot_be_written_is_not_run_until_the_store_recovers() -> None:
    store = MemoryStore()
    async with open_job_pool(1, 10, store=store, registry=registry) as pool:
        blocker: JobHandle[str] = await pool.submit("hold", "blocker", job_id="blocker")
        await board.wait_started("blocker")
        waiting: JobHandle[str] = await pool.submit("note", "next", job_id="next")
        store.failing = True
        board.open()  # the blocker ends; the next job's start cannot be written
        await blocker.wait()
        assert "next" not in board.started
        assert waiting.status is JobStatus.QUEUED
        store.failing = False  # the paused starts resume (within the 0.05 s backoff)
        assert await waiting.result() == "next"
        assert waiting.attempts == 1
    assert store.statuses() == {"blocker": "completed", "next": "completed"}


async def test_jobs_a_crash_left_in_the_store_run_again() -> None:
    store = MemoryStore(
        {
            "waiting": record_of("waiting", "note", "waiting"),
            "running": record_of("running", "note", "running", status="running"),
        }
    )
    async with open_job_pool(1, 10, store=store, registry=registry) as pool:
        assert pool.stats().total_submitted == 2
        await pool.join()
    assert store.statuses() == {"waiting": "completed", "running": "completed"}
    assert store.rows["running"].crashes == 1


async def test_a_scheduled_jobs_life_through_any_store() -> None:
    """A job for later is inserted ``scheduled``; falling due writes nothing (its start
    writes ``running``); a deferral is one change back to ``scheduled``."""
    store = MemoryStore()
    async with open_job_pool(1, 10, store=store, registry=registry) as pool:
        later: JobHandle[str] = await pool.submit("note", "later", job_id="later", delay=0.02)
        deferred: JobHandle[str] = await pool.submit("defer_once", "d", 0.02, job_id="d")
        assert await later.result() == "later"
        assert await deferred.result() == "d"
    assert [entry for entry in store.log if entry[1] == "later"] == [
        ("add", "later", "scheduled"),
        ("start", "later", "running"),
        ("change", "later", "completed"),
    ]
    assert [entry for entry in store.log if entry[1] == "d"] == [
        ("add", "d", "queued"),
        ("start", "d", "running"),
        ("change", "d", "scheduled"),
        ("start", "d", "running"),
        ("change", "d", "completed"),
    ]
    assert store.rows["later"].scheduled_for == later.scheduled_for
    assert store.rows["d"].scheduled_for == deferred.scheduled_for


class Leave(Exception):
    pass


async def test_a_due_job_whose_start_cannot_be_written_stays_scheduled_on_record() -> None:
    store = MemoryStore()
    with pytest.raises(Leave):  # noqa: PT012 - the block is the subject
        async with open_job_pool(1, 10, store=store, registry=registry) as pool:
            later: JobHandle[str] = await pool.submit("note", "later", job_id="later", delay=0.02)
            store.failing = True
            assert later.scheduled_for is not None
            await anyio.sleep(later.scheduled_for - time.time() + 0.01)  # until it is due
            await anyio.wait_all_tasks_blocked()
            assert store.failed_commits >= 1  # its start was tried, and not written
            assert later.status is JobStatus.QUEUED
            assert later.attempts == 0
            assert "later" not in board.started
            raise Leave
    assert later.status is JobStatus.CANCELLED  # by the shutdown, which writes nothing for it
    assert store.statuses() == {"later": "scheduled"}
    store.failing = False
    async with open_job_pool(1, 10, store=store, registry=registry) as pool:
        assert await pool.get("later").result() == "later"  # due at once
        assert pool.get("later").attempts == 1
    assert board.started == ["later"]


def test_a_store_of_no_known_kind_is_refused() -> None:
    with pytest.raises(TypeError, match="store must be"):
        open_job_pool(store=object(), registry=registry)
    with pytest.raises(ValueError, match="not supported"):
        open_job_pool(store="postgres://localhost/jobs", registry=registry)
