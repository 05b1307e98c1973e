"""Periodic schedules on a pool in memory, in virtual time on both backends."""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable

import anyio
import pytest
import trio
import trio.testing

from trio_jobpool import JobNotFound, PoolClosed, RetryPolicy, Schedule, open_job_pool

from ._helpers import Gate, invariant_holds, run_virtual

BACKENDS = ["trio", "asyncio"]
UTC = datetime.UTC


def virtual(test: Callable[[], Awaitable[None]]) -> Callable[[str], None]:
    """Run an async test body in virtual time on each backend (a year fits)."""

    @pytest.mark.parametrize("backend", BACKENDS)
    def run(backend: str) -> None:
        run_virtual(backend, test, long=True)

    run.__name__ = test.__name__
    run.__doc__ = test.__doc__
    return run


class Ticks:
    """A job that records the id of each run and the wall-clock time it started at."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, float]] = []

    async def __call__(self, *args: object) -> None:
        from trio_jobpool import current_job

        job = current_job()
        started = job.started_at
        assert started is not None
        self.runs.append((job.job_id, started))
        await anyio.lowlevel.checkpoint()

    @property
    def ids(self) -> list[str]:
        return [job_id for job_id, _ in self.runs]


def wall(pool_handle_time: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(pool_handle_time, UTC)


async def sleep_until(wall_now: float, target: datetime.datetime) -> None:
    """Sleep (virtually) from wall-clock ``wall_now`` until ``target``."""
    await anyio.sleep(target.timestamp() - wall_now)


async def pool_wall(pool: object) -> float:
    """The pool's wall clock now (a scheduled-job handle tells it)."""
    from trio_jobpool import JobPool

    assert isinstance(pool, JobPool)
    handle = pool.submit_nowait(anyio.lowlevel.checkpoint)
    await handle.wait()
    return handle.submitted_at


@virtual
async def test_a_day_of_every_five_minutes_runs_exactly_288_jobs() -> None:
    ticks = Ticks()
    async with open_job_pool(max_workers=2) as pool:
        now = await pool_wall(pool)
        start = datetime.datetime.fromtimestamp(now, UTC).replace(
            hour=0, minute=0, second=0, microsecond=0
        ) + datetime.timedelta(days=1)
        await sleep_until(now, start - datetime.timedelta(seconds=1))
        declared = await pool.schedule("five", ticks, cron="*/5 * * * *")
        assert isinstance(declared, Schedule)
        assert declared.next_run == start.timestamp()
        await anyio.sleep(86400)  # until 23:59:59 of the day
        schedule = (await pool.schedules())[0]
    assert len(ticks.runs) == 288
    expected = [
        f"five@{(start + datetime.timedelta(minutes=5 * k)):%Y-%m-%dT%H:%M:%SZ}" for k in range(288)
    ]
    assert ticks.ids == expected
    for job_id, started in ticks.runs:  # each started exactly at its tick
        assert f"five@{wall(started):%Y-%m-%dT%H:%M:%SZ}" == job_id
    assert (schedule.runs, schedule.skipped) == (288, 0)
    assert schedule.last_job_id == expected[-1]
    assert schedule.next_run == (start + datetime.timedelta(days=1)).timestamp()
    waits = pool.histograms()["wait_time"]
    assert waits.count == 289  # with pool_wall's job
    assert waits.total < 289e-6  # no tick waited (looptime counts in microseconds)


@virtual
async def test_a_daily_time_runs_once_on_both_daylight_saving_days() -> None:
    """02:30 in Europe/Berlin: on 2027-03-28 it does not exist (runs at 03:00 CEST, 01:00
    UTC), on 2027-10-31 it exists twice (runs at the first, 00:30 UTC); once each day."""
    ticks = Ticks()
    async with open_job_pool() as pool:
        now = await pool_wall(pool)
        await sleep_until(now, datetime.datetime(2027, 3, 27, tzinfo=UTC))
        await pool.schedule("nightly", ticks, cron="30 2 * * *", tz="Europe/Berlin")
        await anyio.sleep(3 * 86400)
        spring = list(ticks.ids)
        await sleep_until(
            datetime.datetime(2027, 3, 30, tzinfo=UTC).timestamp(),
            datetime.datetime(2027, 10, 30, tzinfo=UTC),
        )
        ticks.runs.clear()
        await anyio.sleep(3 * 86400)
        autumn = list(ticks.ids)
        await pool.unschedule("nightly")
    assert spring == [
        "nightly@2027-03-27T01:30:00Z",  # 02:30 CET
        "nightly@2027-03-28T01:00:00Z",  # 03:00 CEST: the first minute after the gap
        "nightly@2027-03-29T00:30:00Z",  # 02:30 CEST
    ]
    assert autumn == [
        "nightly@2027-10-30T00:30:00Z",  # 02:30 CEST
        "nightly@2027-10-31T00:30:00Z",  # the first 02:30 (CEST); not again at 01:30 UTC
        "nightly@2027-11-01T01:30:00Z",  # 02:30 CET
    ]


@virtual
async def test_every_ticks_from_the_declaration() -> None:
    ticks = Ticks()
    async with open_job_pool() as pool:
        declared = await pool.schedule("hourly", ticks, "arg", every=3600)
        anchor = declared.next_run - 3600
        await anyio.sleep(5 * 3600 + 1)
        again = await pool.schedule("hourly", ticks, "arg", every=3600)  # identical
        assert again.next_run == anchor + 6 * 3600  # the first declaration's ticks
        assert again.runs == 5
        await anyio.sleep(3600)
    assert [started for _, started in ticks.runs] == [anchor + 3600 * k for k in range(1, 7)]


@virtual
async def test_overlap_skip_skips_ticks_while_the_last_job_runs() -> None:
    starts: list[float] = []

    async def slow() -> None:
        starts.append(anyio.current_time() - opened)
        await anyio.sleep(150)

    opened = anyio.current_time()
    async with open_job_pool(max_workers=4) as pool:
        await pool.schedule("skip", slow, every=60)
        await anyio.sleep(60 * 8 + 1)
        schedule = (await pool.schedules())[0]
        # ticks at 60..480: runs at 60 (until 210), 240 (until 390), 420; the rest skipped
        assert (schedule.runs, schedule.skipped) == (3, 5)
        assert pool.stats().active_workers == 1
        assert invariant_holds(pool.stats())
        await pool.unschedule("skip")
    assert starts == [60.0, 240.0, 420.0]


@virtual
async def test_overlap_allow_submits_every_tick() -> None:
    async def slow() -> None:
        await anyio.sleep(150)

    async with open_job_pool(max_workers=4) as pool:
        await pool.schedule("allow", slow, every=60, overlap="allow")
        await anyio.sleep(60 * 4 + 1)
        assert pool.stats().active_workers == 3  # the jobs of 120, 180 and 240
        schedule = (await pool.schedules())[0]
        assert (schedule.runs, schedule.skipped) == (4, 0)
        await pool.stop(drain=False)


@pytest.mark.parametrize(("misfire", "runs", "skipped"), [("skip", 0, 2), ("once", 1, 1)])
def test_ticks_missed_by_a_stalled_loop(misfire: str, runs: int, skipped: int) -> None:
    """A loop that stalls past two hourly ticks, and wakes 100 s after the second: both are
    missed (more than a minute late); ``once`` runs one job for the latest."""
    clock = trio.testing.MockClock(autojump_threshold=0)
    ticks = Ticks()

    async def main() -> None:
        async with open_job_pool() as pool:
            declared = await pool.schedule("h", ticks, every=3600, misfire=misfire)
            clock.jump(2 * 3600 + 100)  # the timer wakes late, as after a stalled loop
            await trio.testing.wait_all_tasks_blocked()
            schedule = (await pool.schedules())[0]
            assert (schedule.runs, schedule.skipped) == (runs, skipped)
            assert schedule.next_run == declared.next_run + 2 * 3600
            await pool.unschedule("h")
        if runs:
            assert ticks.ids == [f"h@{wall(declared.next_run + 3600):%Y-%m-%dT%H:%M:%SZ}"]
        else:
            assert ticks.ids == []

    trio.run(main, clock=clock)


def test_a_tick_a_little_late_still_runs() -> None:
    clock = trio.testing.MockClock(autojump_threshold=0)
    ticks = Ticks()

    async def main() -> None:
        async with open_job_pool() as pool:
            await pool.schedule("h", ticks, every=3600)
            clock.jump(3600 + 59)
            await trio.testing.wait_all_tasks_blocked()
            schedule = (await pool.schedules())[0]
            assert (schedule.runs, schedule.skipped) == (1, 0)
            await pool.unschedule("h")

    trio.run(main, clock=clock)


@virtual
async def test_declarations_replace_and_keep_their_history() -> None:
    ticks = Ticks()
    async with open_job_pool() as pool:
        first = await pool.schedule("s", ticks, every=100)
        await anyio.sleep(250)
        replaced = await pool.schedule("s", ticks, every=30)
        assert replaced.every == 30
        assert replaced.next_run == first.next_run - 100 + 250 + 30
        assert replaced.runs == 2
        await anyio.sleep(60)
        cron = await pool.schedule("s", ticks, cron="0 * * * mon-fri")
        assert cron.cron == "0 * * * MON-FRI"
        assert cron.runs == 4
        assert [s.name for s in await pool.schedules()] == ["s"]
        await pool.unschedule("s")
        with pytest.raises(JobNotFound, match="no such schedule: 's'"):
            await pool.unschedule("s")
        assert await pool.schedules() == []
        await anyio.sleep(7 * 86400)
    assert len(ticks.runs) == 4


@virtual
async def test_paused_schedules_fire_nothing() -> None:
    ticks = Ticks()
    async with open_job_pool() as pool:
        paused = await pool.schedule("p", ticks, every=10, paused=True)
        await anyio.sleep(100)
        schedule = (await pool.schedules())[0]
        assert schedule.paused
        assert (schedule.runs, schedule.skipped) == (0, 0)
        assert schedule.next_run == paused.next_run + 100
        resumed = await pool.schedule("p", ticks, every=10)
        assert resumed.next_run == paused.next_run + 100  # ticks from the new declaration
        await anyio.sleep(25)
        await pool.unschedule("p")
    assert len(ticks.runs) == 2


async def new_year() -> None:
    await anyio.lowlevel.checkpoint()


@virtual
async def test_schedules_are_listed_by_name_and_sorted() -> None:
    ticks = Ticks()
    async with open_job_pool() as pool:
        await pool.schedule("b", ticks, every=60, priority=2, timeout=5)
        await pool.schedule("a", new_year, cron="0 0 1 jan *", tz="America/New_York")
        listed = await pool.schedules()
        assert [s.name for s in listed] == ["a", "b"]
        a = listed[0]
        assert (a.cron, a.every, a.tz, a.job_name, a.last_run, a.last_job_id) == (
            "0 0 1 JAN *",
            None,
            "America/New_York",
            "new_year",
            None,
            None,
        )
        assert (
            wall(a.next_run)
            .astimezone(datetime.timezone(datetime.timedelta(hours=-5)))
            .strftime("%m-%d %H:%M")
            == "01-01 00:00"
        )
        await anyio.sleep(61)
        job = pool.get(f"b@{wall(listed[1].next_run):%Y-%m-%dT%H:%M:%SZ}")
        assert job.priority == 2
        await pool.stop(drain=False)


@virtual
async def test_tick_jobs_enter_beyond_the_bound() -> None:
    gate = Gate()
    ticks = Ticks()
    async with open_job_pool(max_workers=1, queue_size=0, max_pending=0) as pool:
        await pool.submit(gate.job)
        await pool.schedule("t", ticks, every=10)
        await anyio.sleep(35)
        assert pool.stats().queued_tasks == 1  # one: overlap="skip" skipped 20 and 30
        schedule = (await pool.schedules())[0]
        assert (schedule.runs, schedule.skipped) == (1, 2)
        gate.open()
        await pool.unschedule("t")
        await pool.join()
    assert len(ticks.runs) == 1


@pytest.mark.anyio
async def test_bad_declarations_are_refused() -> None:
    async def job() -> None:
        pass

    async with open_job_pool() as pool:
        cases: list[tuple[dict[str, object], type[Exception], str]] = [
            ({}, ValueError, "exactly one"),
            ({"cron": "* * * * *", "every": 5}, ValueError, "exactly one"),
            ({"cron": "61 * * * *"}, ValueError, "61"),
            ({"cron": "* * * * * *"}, ValueError, "6 fields"),
            ({"cron": "* * * * *", "tz": "Mars/Olympus"}, ValueError, "Mars/Olympus"),
            ({"every": 0.5}, ValueError, "every"),
            ({"every": True}, TypeError, "every"),
            ({"every": 5, "overlap": "queue"}, ValueError, "overlap"),
            ({"every": 5, "misfire": "all"}, ValueError, "misfire"),
            ({"every": 5, "paused": "yes"}, TypeError, "paused"),
            ({"every": 5, "priority": "high"}, TypeError, "priority"),
            ({"every": 5, "timeout": -1}, ValueError, "timeout"),
        ]
        for kwargs, error, words in cases:
            with pytest.raises(error, match=words):
                await pool.schedule("x", job, **kwargs)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="empty"):
            await pool.schedule("", job, every=5)
        with pytest.raises(TypeError, match="callable"):
            await pool.schedule("x", 5, every=5)  # type: ignore[arg-type]
        assert await pool.schedules() == []
        pool.close()
        with pytest.raises(PoolClosed, match="'x'"):
            await pool.schedule("x", job, every=5)


@virtual
async def test_a_schedule_carries_its_definition_and_declares_itself_again() -> None:
    """``Schedule`` holds the whole definition (``args``, ``priority``, ``timeout``, ``retry``,
    ``overlap``, ``misfire`` besides the rest): declared again from it, it is identical
    (nothing changes); with ``paused`` flipped it is paused, and the rest is kept."""
    ticks = Ticks()
    retry = RetryPolicy(max_attempts=2, backoff=1.0, retry_on=(KeyError,))
    async with open_job_pool() as pool:
        declared = await pool.schedule(
            "s",
            ticks,
            "a",
            [1, 2],
            every=3600,
            priority=-1,
            timeout=30,
            retry=retry,
            overlap="allow",
            misfire="once",
        )
        assert (declared.args, declared.priority, declared.timeout) == (("a", [1, 2]), -1, 30.0)
        assert (declared.retry, declared.overlap, declared.misfire) == (retry, "allow", "once")
        await anyio.sleep(1800)

        def again(s: Schedule, paused: bool) -> Awaitable[Schedule]:
            return pool.schedule(
                s.name,
                ticks,
                *s.args,
                cron=s.cron,
                every=s.every,
                tz=s.tz,
                priority=s.priority,
                timeout=s.timeout,
                retry=s.retry,
                overlap=s.overlap,
                misfire=s.misfire,
                paused=paused,
            )

        same = await again(declared, paused=False)
        assert same == declared  # identical: its ticks are kept
        paused = await again(declared, paused=True)
        assert paused.paused
        assert paused.next_run == declared.next_run + 1800  # a new declaration's ticks
        kept = ("args", "priority", "timeout", "retry", "overlap", "misfire", "every", "tz")
        assert [getattr(paused, f) for f in kept] == [getattr(declared, f) for f in kept]
        (listed,) = await pool.schedules()
        assert listed == paused
        hash(listed)  # (a list among the arguments is not part of the hash)
