"""The shutdown's grace: a job that does not end when cancelled (it shields itself, or catches
the cancellation) is abandoned once ``shutdown_grace`` has passed, and ``stop()`` returns."""

from __future__ import annotations

import logging
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest
import trio

from trio_jobpool import JobCancelled, JobRegistry, JobStatus, open_job_pool

from ._helpers import invariant_holds, sleep_forever

pytestmark = pytest.mark.anyio


class Stubborn:
    """Jobs that do not end when cancelled until the test releases them; create inside the loop."""

    def __enter__(self) -> Stubborn:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release.set()  # (a failed test must not leave it running: the run would wait)

    def __init__(self) -> None:
        self.started = anyio.Event()
        self.release = anyio.Event()
        self.finished = anyio.Event()
        self.cancellations = 0

    async def shielded(self) -> str:
        try:
            self.started.set()
            with anyio.CancelScope(shield=True):
                await self.release.wait()
            return "done"
        finally:
            self.finished.set()

    async def swallowing(self) -> str:
        """Catches every cancellation and waits again (so it spins while cancelled)."""
        try:
            self.started.set()
            while not self.release.is_set():
                try:
                    await self.release.wait()
                except anyio.get_cancelled_exc_class():
                    self.cancellations += 1
            return "done"
        finally:
            self.finished.set()


def _abandon_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "trio_jobpool" and r.levelno == logging.WARNING and "abandoned" in r.message
    ]


@pytest.mark.parametrize("kind", ["shielded", "swallowing"])
async def test_stop_abandons_a_job_that_does_not_end_when_cancelled(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    with Stubborn() as stubborn:  # released on the way out, whatever happens
        caplog.set_level(logging.WARNING, logger="trio_jobpool")
        async with open_job_pool(max_workers=2, shutdown_timeout=0.0, shutdown_grace=0.05) as pool:
            job = await pool.submit(getattr(stubborn, kind), job_id="stubborn")
            bystander = await pool.submit(sleep_forever, job_id="bystander")
            await stubborn.started.wait()
            await pool.stop()
            # stop() returned although the job has not ended: it was abandoned.
            assert not stubborn.finished.is_set()
            assert job.status is JobStatus.CANCELLED
            assert isinstance(job.error, JobCancelled)
            assert "abandoned" in str(job.error)
            assert bystander.status is JobStatus.CANCELLED
            assert "shutdown" in str(bystander.error)
            stats = pool.stats()
            assert (stats.total_cancelled, stats.active_workers, stats.queued_tasks) == (2, 0, 0)
            assert invariant_holds(stats)
        assert _abandon_warnings(caplog) == [
            f"job 'stubborn' was still running 0.05 s after the pool's shutdown cancelled it: "
            f"abandoned; it runs on in the background (name: {job.name})"
        ]
        if kind == "swallowing":
            assert stubborn.cancellations > 0
        # The job runs on in the background; once it ends, nothing in the pool changes.
        stubborn.release.set()
        await stubborn.finished.wait()
        await anyio.wait_all_tasks_blocked()
        assert job.status is JobStatus.CANCELLED
        assert pool.stats() == stats


@pytest.mark.trio
async def test_a_shield_longer_than_the_timeout_ends_the_stop_at_timeout_plus_grace(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    ended: list[float] = []

    async def shielded_sleep() -> None:
        with trio.CancelScope(shield=True):
            await trio.sleep(6.0)
        ended.append(trio.current_time())

    caplog.set_level(logging.WARNING, logger="trio_jobpool")
    start = trio.current_time()
    async with open_job_pool(shutdown_timeout=2.0, shutdown_grace=0.5) as pool:
        job = await pool.submit(shielded_sleep)
    assert trio.current_time() - start == pytest.approx(2.5)  # virtual time: exact
    assert job.status is JobStatus.CANCELLED
    assert len(_abandon_warnings(caplog)) == 1
    await trio.sleep(10.0)
    assert ended == [pytest.approx(start + 6.0)]  # it ran on, in the background
    assert pool.stats().total_cancelled == 1


@pytest.mark.trio
async def test_leaving_the_block_by_an_exception_abandons_too(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def shielded_sleep() -> None:
        with trio.CancelScope(shield=True):
            await trio.sleep(100.0)

    class Oops(Exception):
        pass

    start = trio.current_time()
    with pytest.raises(Oops):  # noqa: PT012 - the block is the subject
        async with open_job_pool(shutdown_grace=3.0) as pool:
            job = await pool.submit(shielded_sleep)
            await trio.sleep(1.0)
            raise Oops
    assert trio.current_time() - start == pytest.approx(4.0)
    assert job.status is JobStatus.CANCELLED
    assert "abandoned" in str(job.error)
    await trio.sleep(100.0)  # (let it end in the background before the test does)


@pytest.mark.trio
async def test_without_a_grace_the_shutdown_waits_for_the_job(
    autojump_clock: trio.abc.Clock,
) -> None:
    async def shielded_sleep() -> str:
        with trio.CancelScope(shield=True):
            await trio.sleep(6.0)
        return "done"

    async with open_job_pool(shutdown_timeout=2.0, shutdown_grace=None) as pool:
        job = await pool.submit(shielded_sleep)
    assert trio.current_time() == pytest.approx(6.0)
    assert job.status is JobStatus.COMPLETED


# -- with a store: the abandoned job stays running there, and the next pool runs it again ----

registry = JobRegistry()
_state: dict[str, Any] = {}


@registry.job(name="stubborn_once")
async def stubborn_once() -> str:
    """On its first run, catches every cancellation until the test releases it."""
    _state["runs"] += 1
    if _state["runs"] > 1:
        await anyio.lowlevel.checkpoint()
        return "second run"
    stubborn: Stubborn = _state["stubborn"]
    return await stubborn.swallowing()


async def test_an_abandoned_job_stays_running_in_sqlite_and_the_next_pool_runs_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with Stubborn() as stubborn:  # released on the way out, whatever happens
        _state.update(runs=0, stubborn=stubborn)
        db = tmp_path / "jobs.db"
        caplog.set_level(logging.WARNING, logger="trio_jobpool")
        async with open_job_pool(
            store=f"sqlite:///{db}", registry=registry, shutdown_timeout=0.0, shutdown_grace=0.05
        ) as pool:
            job = await pool.submit(stubborn_once, job_id="s1")
            await stubborn.started.wait()
        # The block returned (its store is closed) while the first run still runs.
        assert not stubborn.finished.is_set()
        assert job.status is JobStatus.CANCELLED
        assert _abandon_warnings(caplog) == [
            "job 's1' was still running 0.05 s after the pool's shutdown cancelled it: "
            "abandoned; it runs on in the background (name: stubborn_once), and stays "
            "running in the store"
        ]
        with sqlite3.connect(db) as connection:
            assert connection.execute("SELECT status FROM jobs WHERE job_id = 's1'").fetchall() == [
                ("running",)
            ]
        async with open_job_pool(store=f"sqlite:///{db}", registry=registry) as pool:
            again = pool.get("s1")
            assert await again.result() == "second run"
            assert again.attempts == 2
        assert _state["runs"] == 2
        stubborn.release.set()
        await stubborn.finished.wait()  # the first run ends now: it must not write its end
        await anyio.wait_all_tasks_blocked()
        with sqlite3.connect(db) as connection:
            assert connection.execute(
                "SELECT status, result FROM jobs WHERE job_id = 's1'"
            ).fetchall() == [("completed", '"second run"')]


async def test_an_abandoned_job_keeps_its_redis_lease_until_it_lapses_and_runs_again(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with Stubborn() as stubborn:  # released on the way out, whatever happens
        _state.update(runs=0, stubborn=stubborn)
        store = f"{redis_url}/0?queue=t{uuid.uuid4().hex[:12]}&lease_timeout=0.6"
        caplog.set_level(logging.WARNING, logger="trio_jobpool")
        async with open_job_pool(
            1, 10, store=store, registry=registry, shutdown_timeout=0.0, shutdown_grace=0.05
        ) as pool:
            job = await pool.submit(stubborn_once, job_id="r1")
            await stubborn.started.wait()
        assert not stubborn.finished.is_set()
        assert job.status is JobStatus.CANCELLED
        assert len(_abandon_warnings(caplog)) == 1
        # Counted in no total (as a fenced attempt): its next run is the one the cluster counts.
        first = pool.stats()
        assert (first.total_cancelled, first.total_completed, first.active_workers) == (0, 0, 0)
        async with open_job_pool(1, 10, store=store, registry=registry) as pool:
            # Neither ended nor handed back: Redis still has it, until its lease lapses, this
            # pool's keeper reaps it and a worker here runs it again.
            assert not (await pool.aget("r1")).status.ended
            with anyio.fail_after(10):
                while not (again := await pool.aget("r1")).status.ended:
                    await anyio.sleep(0.02)  # Redis's state is no event of this process
            assert again.status is JobStatus.COMPLETED
            assert await again.result() == "second run"
            stats = await pool.cluster_stats()
            assert invariant_holds(stats)
            assert (stats.total_completed, stats.total_cancelled) == (1, 0)
            assert pool.stats().total_completed == 1  # 0 + 1: the processes add up
        assert _state["runs"] == 2
        stubborn.release.set()
        await stubborn.finished.wait()
