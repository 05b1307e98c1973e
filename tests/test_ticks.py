"""Tick arithmetic of periodic schedules (trio_jobpool/_ticks.py): pure functions, exact values.

Cron results are checked against instants written out by hand (the DST days of Europe/Berlin and
America/New_York in 2026), and, by hypothesis, against a brute-force oracle: expressions are
generated from the sets of values they stand for, so the oracle only tests membership.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trio_jobpool._ticks import Due, TickRule, tick_id

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
EXAMPLES = settings(max_examples=150, deadline=None)


def at(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, *, tz: tzinfo = UTC
) -> float:
    """Epoch seconds of a wall-clock time in ``tz`` (first occurrence if ambiguous)."""
    return datetime(year, month, day, hour, minute, tzinfo=tz).timestamp()


def cron(expr: str, tz: str = "UTC") -> TickRule:
    return TickRule.parse(expr, None, tz, 0.0)


def ticks_in(rule: TickRule, start: float, end: float) -> list[float]:
    """The ticks in ``(start, end]``, one ``next_after`` at a time."""
    out: list[float] = []
    tick = rule.next_after(start)
    while tick <= end:
        out.append(tick)
        tick = rule.next_after(tick)
    return out


def utc(ticks: list[float]) -> list[str]:
    return [datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M") for t in ticks]


def local(ticks: list[float], tz: tzinfo) -> list[str]:
    return [datetime.fromtimestamp(t, tz).strftime("%m-%d %H:%M %Z") for t in ticks]


def local_day(rule: TickRule, day: date, tz: tzinfo) -> list[float]:
    """The ticks of one local calendar day."""
    start = datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()
    following = day + timedelta(days=1)
    end = datetime(following.year, following.month, following.day, tzinfo=tz).timestamp()
    return ticks_in(rule, start - 1, end - 1)


# -- The fields: every form the API promises -------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "minutes"),
    [
        ("* * * * *", list(range(60))),
        ("*/5 * * * *", list(range(0, 60, 5))),
        ("*/25 * * * *", [0, 25, 50]),
        ("0,15,45 * * * *", [0, 15, 45]),
        ("45,0,15,15 * * * *", [0, 15, 45]),
        ("10-13 * * * *", [10, 11, 12, 13]),
        ("10-40/15 * * * *", [10, 25, 40]),
        ("5/20 * * * *", [5, 25, 45]),  # from 5 to the end of the field
        ("5-5/10 * * * *", [5]),  # a one-value range with a step is that value (cronsim 2.9)
        ("1-2,50-59/3 * * * *", [1, 2, 50, 53, 56, 59]),
        ("7 * * * *", [7]),
    ],
)
def test_minute_field_forms(expr: str, minutes: list[int]) -> None:
    start = at(2026, 6, 15, 10, 0)
    got = ticks_in(cron(expr), start - 1, start + 3599)
    assert got == [start + 60 * m for m in minutes]


@pytest.mark.parametrize(
    ("expr", "hours"),
    [
        ("0 9-11 * * *", [9, 10, 11]),
        ("0 */6 * * *", [0, 6, 12, 18]),
        ("0 1,23 * * *", [1, 23]),
        ("0 20/2 * * *", [20, 22]),
    ],
)
def test_hour_field_forms(expr: str, hours: list[int]) -> None:
    start = at(2026, 6, 15)
    got = ticks_in(cron(expr), start - 1, start + 86399)
    assert got == [start + 3600 * h for h in hours]


def days_matched(expr: str, first: date, days: int) -> list[str]:
    start = at(first.year, first.month, first.day)
    return [d[:10] for d in utc(ticks_in(cron(expr), start - 1, start + days * 86400 - 1))]


def test_weekday_names_ranges_and_sunday_as_0_or_7() -> None:
    # 2026-06-15 is a Monday.
    week = [f"2026-06-{d}" for d in range(15, 22)]
    assert days_matched("0 0 * * MON-FRI", date(2026, 6, 15), 7) == week[:5]
    assert days_matched("0 0 * * mon-fri", date(2026, 6, 15), 7) == week[:5]
    assert days_matched("0 0 * * 1-5", date(2026, 6, 15), 7) == week[:5]
    assert days_matched("0 0 * * SAT,SUN", date(2026, 6, 15), 7) == week[5:]
    for sunday in ("0", "7", "SUN", "Sun"):
        assert days_matched(f"0 0 * * {sunday}", date(2026, 6, 15), 7) == ["2026-06-21"]
    assert days_matched("0 0 * * 1-7", date(2026, 6, 15), 7) == week
    assert days_matched("0 0 * * MON/2", date(2026, 6, 15), 7) == [
        week[0],
        week[2],
        week[4],
        week[6],
    ]  # MON, WED, FRI, and 7 (Sunday)


def test_month_names_and_steps() -> None:
    two_years = days_matched("0 0 1 jan,Jul *", date(2026, 1, 1), 730)
    assert two_years == ["2026-01-01", "2026-07-01", "2027-01-01", "2027-07-01"]
    assert days_matched("0 0 1 */4 *", date(2026, 1, 1), 365) == [
        "2026-01-01",
        "2026-05-01",
        "2026-09-01",
    ]
    assert days_matched("0 0 1 FEB-APR *", date(2026, 1, 1), 365) == [
        "2026-02-01",
        "2026-03-01",
        "2026-04-01",
    ]


def test_day_of_month_and_day_of_week_either_when_both_restricted() -> None:
    # June 2026: the 13th is a Saturday; Fridays are the 5th, 12th, 19th, 26th.
    got = days_matched("0 0 13 * FRI", date(2026, 6, 1), 30)
    assert got == ["2026-06-05", "2026-06-12", "2026-06-13", "2026-06-19", "2026-06-26"]
    # 31 February never exists, but Mondays of February do: accepted (cronsim >= 2.8).
    assert days_matched("0 0 31 2 MON", date(2026, 2, 1), 28) == [
        "2026-02-02",
        "2026-02-09",
        "2026-02-16",
        "2026-02-23",
    ]


def test_day_fields_starting_with_a_star_must_both_match() -> None:
    # `*/2` starts with `*`: odd days of the month that are also Mondays (Vixie cron).
    got = days_matched("0 0 */2 * MON", date(2026, 6, 1), 30)
    assert got == ["2026-06-01", "2026-06-15", "2026-06-29"]
    got = days_matched("0 0 1-7 * */7", date(2026, 6, 1), 30)  # */7 is Sunday (0 and 7)
    assert got == ["2026-06-07"]


def test_a_day_of_every_five_minutes_is_288_ticks() -> None:
    for tz in ("UTC", "Europe/Berlin", "America/New_York"):
        zone = ZoneInfo(tz)
        got = local_day(cron("*/5 * * * *", tz), date(2026, 6, 15), zone)
        assert len(got) == 288
        assert all(b - a == 300 for a, b in itertools.pairwise(got))


def test_the_rarest_expression_is_found_40_years_ahead() -> None:
    """February 29 on a Sunday: 2088, then 2128 (2100 is not a leap year)."""
    rule = cron("0 0 29 2 */7")
    assert utc([rule.next_after(at(2088, 3, 1))]) == ["2128-02-29 00:00"]


# -- Daylight saving time -----------------------------------------------------------------------


def test_berlin_0230_runs_once_on_the_spring_forward_day() -> None:
    """2026-03-29: 02:00 CET becomes 03:00 CEST, 02:30 does not exist: it runs at 03:00 CEST."""
    rule = cron("30 2 * * *", "Europe/Berlin")
    got = local_day(rule, date(2026, 3, 29), BERLIN)
    assert got == [at(2026, 3, 29, 1, 0)]
    assert local(got, BERLIN) == ["03-29 03:00 CEST"]
    # The days around it run at 02:30 as usual.
    assert utc(ticks_in(rule, at(2026, 3, 27, 12), at(2026, 3, 31, 12))) == [
        "2026-03-28 01:30",
        "2026-03-29 01:00",
        "2026-03-30 00:30",
        "2026-03-31 00:30",
    ]


def test_berlin_0230_runs_once_on_the_fall_back_day() -> None:
    """2026-10-25: 03:00 CEST becomes 02:00 CET, 02:30 happens twice: it runs at the first."""
    rule = cron("30 2 * * *", "Europe/Berlin")
    got = local_day(rule, date(2026, 10, 25), BERLIN)
    assert got == [at(2026, 10, 25, 0, 30)]
    assert local(got, BERLIN) == ["10-25 02:30 CEST"]
    assert utc(ticks_in(rule, at(2026, 10, 23, 12), at(2026, 10, 27, 12))) == [
        "2026-10-24 00:30",
        "2026-10-25 00:30",
        "2026-10-26 01:30",
        "2026-10-27 01:30",
    ]


def test_from_inside_the_repeated_hour_the_next_tick_is_tomorrow() -> None:
    """Asked at any second of 2026-10-25 after its tick (including 02:00-03:00 CET, whose wall
    times already passed once), the next tick is the next day's: never the past, never twice."""
    rule = cron("30 2 * * *", "Europe/Berlin")
    tick, tomorrow = at(2026, 10, 25, 0, 30), at(2026, 10, 26, 1, 30)
    for t in range(int(at(2026, 10, 24, 23, 0)), int(at(2026, 10, 25, 3, 0)), 30):
        assert rule.next_after(t) == (tick if t < tick else tomorrow), t
        assert rule.next_after(t + 0.5) == (tick if t + 0.5 < tick else tomorrow), t


def test_several_times_in_the_gap_run_once_at_its_end() -> None:
    rule = cron("0,30 2 * * *", "Europe/Berlin")
    assert local(local_day(rule, date(2026, 3, 29), BERLIN), BERLIN) == ["03-29 03:00 CEST"]
    # 02:00 moves to 03:00, where a tick already is: one tick.
    rule = cron("0 2,3 * * *", "Europe/Berlin")
    assert local(local_day(rule, date(2026, 3, 29), BERLIN), BERLIN) == ["03-29 03:00 CEST"]
    # The repeated hour: each time once, in summer time.
    rule = cron("0,30 2 * * *", "Europe/Berlin")
    assert local(local_day(rule, date(2026, 10, 25), BERLIN), BERLIN) == [
        "10-25 02:00 CEST",
        "10-25 02:30 CEST",
    ]


def test_new_york_both_transitions() -> None:
    """2026-03-08: 02:00 EST becomes 03:00 EDT. 2026-11-01: 02:00 EDT becomes 01:00 EST."""
    rule = cron("30 2 * * *", "America/New_York")
    spring = local_day(rule, date(2026, 3, 8), NEW_YORK)
    assert spring == [at(2026, 3, 8, 7, 0)]
    assert local(spring, NEW_YORK) == ["03-08 03:00 EDT"]
    rule = cron("30 1 * * *", "America/New_York")
    fall = local_day(rule, date(2026, 11, 1), NEW_YORK)
    assert fall == [at(2026, 11, 1, 5, 30)]
    assert local(fall, NEW_YORK) == ["11-01 01:30 EDT"]
    # A fixed time outside the changes keeps its wall time: 09:00 is 13:00 UTC in summer.
    rule = cron("0 9 * * *", "America/New_York")
    assert utc(ticks_in(rule, at(2026, 10, 31), at(2026, 11, 2, 23))) == [
        "2026-10-31 13:00",
        "2026-11-01 14:00",
        "2026-11-02 14:00",
    ]


def test_elapsed_time_expressions_tick_by_the_clock_through_changes() -> None:
    """A minute or hour field starting with `*`: every instant whose local time matches."""
    every5 = cron("*/5 * * * *", "Europe/Berlin")
    hourly = cron("0 * * * *", "America/New_York")
    for rule, zone, short, long in (
        (every5, BERLIN, (date(2026, 3, 29), 276), (date(2026, 10, 25), 300)),
        (hourly, NEW_YORK, (date(2026, 3, 8), 23), (date(2026, 11, 1), 25)),
    ):
        for day, count in (short, long):
            got = local_day(rule, day, zone)
            assert len(got) == count
            gaps = {b - a for a, b in itertools.pairwise(got)}
            assert gaps == {300 if rule is every5 else 3600}
    # Half-hourly in the hour that is skipped, then repeated.
    rule = cron("*/30 2 * * *", "Europe/Berlin")
    assert local_day(rule, date(2026, 3, 29), BERLIN) == []
    assert local(local_day(rule, date(2026, 10, 25), BERLIN), BERLIN) == [
        "10-25 02:00 CEST",
        "10-25 02:30 CEST",
        "10-25 02:00 CET",
        "10-25 02:30 CET",
    ]
    assert local(local_day(hourly, date(2026, 11, 1), NEW_YORK)[:4], NEW_YORK) == [
        "11-01 00:00 EDT",
        "11-01 01:00 EDT",
        "11-01 01:00 EST",
        "11-01 02:00 EST",
    ]


def test_elapsed_time_after_a_change_at_midnight() -> None:
    """America/Santiago, 2026-09-06: 00:00 -04 becomes 01:00 -03. The day's first wall times
    are 01:00 and 01:30 (cronsim, given the zone, yields 03:00 first: we evaluate elapsed-time
    expressions in the fixed offset of each stretch between changes)."""
    santiago = ZoneInfo("America/Santiago")
    rule = cron("*/30 1,3 * * SUN", "America/Santiago")
    got = ticks_in(rule, at(2026, 9, 5, 12, tz=santiago), at(2026, 9, 6, 12, tz=santiago))
    assert local(got, santiago) == [
        "09-06 01:00 -03",
        "09-06 01:30 -03",
        "09-06 03:00 -03",
        "09-06 03:30 -03",
    ]
    assert got[0] == at(2026, 9, 6, 4, 0)
    # A fixed time at the missing midnight runs when the day starts, at 01:00.
    rule = cron("0 0 * * *", "America/Santiago")
    assert local(local_day(rule, date(2026, 9, 6), santiago), santiago) == ["09-06 01:00 -03"]


def test_a_change_of_30_minutes() -> None:
    """Australia/Lord_Howe, 2026-10-04: 02:00 +1030 becomes 02:30 +11."""
    lord_howe = ZoneInfo("Australia/Lord_Howe")
    rule = cron("0 */3 * * *", "Australia/Lord_Howe")
    assert local(local_day(rule, date(2026, 10, 4), lord_howe), lord_howe) == [
        f"10-04 {hour:02}:00 {'+1030' if hour == 0 else '+11'}" for hour in range(0, 24, 3)
    ]
    rule = cron("15 2 * * *", "Australia/Lord_Howe")
    assert local(local_day(rule, date(2026, 10, 4), lord_howe), lord_howe) == ["10-04 02:30 +11"]


def test_utc_has_no_changes() -> None:
    rule = cron("30 2 * * *")
    assert utc(ticks_in(rule, at(2026, 3, 28), at(2026, 3, 30))) == [
        "2026-03-28 02:30",
        "2026-03-29 02:30",
    ]


# -- every ----------------------------------------------------------------------------------------


def test_every_ticks_at_anchor_plus_k_every() -> None:
    anchor = 1_780_000_000.25
    rule = TickRule.parse(None, 60, "UTC", anchor)
    assert rule.every == 60.0
    assert isinstance(rule.every, float)
    assert rule.next_after(anchor - 1e6) == anchor + 60
    assert rule.next_after(anchor) == anchor + 60  # k >= 1: the declaration is no tick
    assert rule.next_after(anchor + 59.99) == anchor + 60
    assert rule.next_after(anchor + 60) == anchor + 120
    assert ticks_in(rule, anchor, anchor + 300) == [anchor + 60 * k for k in range(1, 6)]


def test_every_is_exact_and_does_not_drift() -> None:
    """Tick k is the exact anchor + k * every rounded once: a million ticks later, no drift."""
    anchor, every = 1_780_000_000.1, 1.1
    rule = TickRule.parse(None, every, "Europe/Berlin", anchor)  # the zone plays no part
    k = 1_000_000
    exact = Fraction(anchor) + k * Fraction(every)
    tick = rule.next_after(float(exact) - 0.5)
    assert tick == float(exact)
    assert rule.next_after(tick) == float(exact + Fraction(every))
    naive = anchor
    for _ in range(k):
        naive += every
    assert naive != float(exact)  # what repeated float addition would have given


def test_every_misfire_over_a_year_of_one_second_ticks_is_arithmetic() -> None:
    anchor = 1_780_000_000.5
    rule = TickRule.parse(None, 1, "UTC", anchor)
    last = anchor + 5  # tick 5 fired
    now = last + 365 * 86400 + 0.25
    missed = 365 * 86400
    assert rule.count_in(last, now, cap=10**12) == missed
    assert rule.count_in(last, now, cap=2) == 2
    assert rule.latest_in(last, now) == last + missed
    assert rule.due(last, now) == Due(2, last + missed, last + missed + 1)
    assert rule.due(last, now, cap=10**12) == Due(missed, last + missed, last + missed + 1)
    # Nothing missed, and exactly one missed.
    assert rule.due(last, last + 0.5) == Due(0, None, last + 1)
    assert rule.due(last, last + 1) == Due(1, last + 1, last + 2)
    assert rule.count_in(now, last, cap=5) == 0
    assert rule.latest_in(now, last) is None
    # Before the first tick: none yet.
    assert rule.due(anchor, anchor + 0.9) == Due(0, None, anchor + 1)


# -- cron misfire -------------------------------------------------------------------------------


@dataclass
class Calls:
    count: int = 0


@pytest.fixture
def cron_calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """Counts the rule's cron evaluations (each one a cronsim iterator)."""
    calls = Calls()
    evaluate: Callable[[TickRule, int], float] = TickRule._cron_after

    def counted(self: TickRule, second: int) -> float:
        calls.count += 1
        return evaluate(self, second)

    monkeypatch.setattr(TickRule, "_cron_after", counted)
    return calls


def test_cron_misfire_over_a_year_of_minutes(cron_calls: Calls) -> None:
    rule = cron("* * * * *")
    last = at(2026, 1, 1, 0, 0)
    now = at(2027, 1, 1, 0, 0) + 30.5
    due = rule.due(last, now)
    assert due == Due(2, at(2027, 1, 1, 0, 0), at(2027, 1, 1, 0, 1))
    assert cron_calls.count < 60  # a bisection, not half a million steps
    cron_calls.count = 0
    assert rule.latest_in(last, now) == at(2027, 1, 1, 0, 0)
    assert cron_calls.count < 60
    assert rule.count_in(last, now, cap=5) == 5
    assert rule.count_in(last, last + 600, cap=100) == 10


def test_cron_latest_with_ticks_clustered_far_back(cron_calls: Calls) -> None:
    """Every minute of the 1st of the month, asked on the 20th: the 1st's last minute."""
    rule = cron("* * 1 * *", "Europe/Berlin")
    got = rule.latest_in(at(2026, 5, 15), at(2026, 6, 20, 12))
    assert local([got or 0.0], BERLIN) == ["06-01 23:59 CEST"]
    assert cron_calls.count < 60


def test_cron_due_common_cases(cron_calls: Calls) -> None:
    rule = cron("0 * * * *")
    last = at(2026, 6, 15, 10)
    assert rule.due(last, last + 1800) == Due(0, None, last + 3600)
    assert cron_calls.count == 1
    cron_calls.count = 0
    assert rule.due(last, last + 3600) == Due(1, last + 3600, last + 7200)
    assert cron_calls.count == 2
    assert rule.due(last, last + 3 * 3600 + 5) == Due(2, last + 3 * 3600, last + 4 * 3600)
    assert rule.due(last, last + 3 * 3600 + 5, cap=10) == Due(3, last + 3 * 3600, last + 4 * 3600)
    assert rule.due(last, last - 10) == Due(0, None, last + 3600)


# -- tick ids -------------------------------------------------------------------------------------


def test_tick_ids() -> None:
    assert tick_id("backup", at(2026, 3, 29, 1, 0)) == "backup@2026-03-29T01:00:00Z"
    assert tick_id("b", at(2026, 3, 29, 1, 0) + 0.999) == "b@2026-03-29T01:00:00Z"
    assert tick_id("b", at(2026, 3, 29, 1, 0) - 0.001) == "b@2026-03-29T00:59:59Z"
    assert tick_id("a@b", 0.0) == "a@b@1970-01-01T00:00:00Z"
    rule = cron("30 2 * * *", "Europe/Berlin")
    fall = rule.next_after(at(2026, 10, 24, 12))
    assert tick_id("nightly", fall) == "nightly@2026-10-25T00:30:00Z"
    with pytest.raises(ValueError, match="finite"):
        tick_id("x", math.nan)


# -- definitions ---------------------------------------------------------------------------------


def test_definition_is_canonical_json_and_ignores_the_anchor() -> None:
    a = TickRule.parse("0  9 * *\tmon-fri", None, "Europe/Berlin", 1.0)
    b = TickRule.parse("0 9 * * MON-FRI", None, "Europe/Berlin", 2.0)
    assert a.cron == "0 9 * * MON-FRI"
    assert (
        a.definition()
        == b.definition()
        == {
            "cron": "0 9 * * MON-FRI",
            "every": None,
            "tz": "Europe/Berlin",
        }
    )
    first = TickRule.parse(None, 60, "UTC", 1_780_000_000.0)
    later = TickRule.parse(None, 60.0, "UTC", 1_780_000_123.4)
    assert first.definition() == later.definition() == {"cron": None, "every": 60.0, "tz": "UTC"}
    assert first != later  # the rules differ by their anchors; the definitions do not
    assert json.loads(json.dumps(first.definition())) == first.definition()
    assert TickRule.parse(None, 61, "UTC", 0.0).definition() != first.definition()
    assert TickRule.parse("0-59 * * * *", None, "UTC", 0.0).definition() != (
        TickRule.parse("* * * * *", None, "UTC", 0.0).definition()
    )
    assert a == TickRule.parse("0 9 * * MON-FRI", None, "Europe/Berlin", 1.0)
    assert hash(a) == hash(TickRule.parse("0 9 * * MON-FRI", None, "Europe/Berlin", 1.0))


# -- errors ----------------------------------------------------------------------------------------

BAD_CRON = [
    ("61 * * * *", r"cron expression '61 \* \* \* \*': bad minute field '61' \(values: 0-59"),
    ("0 24 * * *", "bad hour field '24'"),
    ("0 0 0 * *", "bad day-of-month field '0'"),
    ("0 0 30 2 *", "bad day-of-month field '30'"),
    ("0 0 * 13 *", "bad month field '13'"),
    ("0 0 * JANUARY *", "the month field 'JANUARY' is not supported syntax"),
    ("0 0 * * 8", "bad day-of-week field '8'"),
    ("0 0 * * FOO", "bad day-of-week field 'FOO'"),
    ("JAN 0 * * *", "bad minute field 'JAN'"),
    ("5-1 * * * *", "bad minute field '5-1'"),
    ("*/0 * * * *", r"bad minute field '\*/0'"),
    ("0 0 * * FRI-MON", "bad day-of-week field 'FRI-MON'"),
    ("0,,5 * * * *", "the minute field '0,,5' is not supported syntax"),
    ("-1 * * * *", "the minute field '-1' is not supported syntax"),
    ("1" * 5000 + " * * * *", "a number is out of range"),
    ("0 0 1 1 * *", r"6 fields, expected 5 .*seconds and years fields are not supported"),
    ("0 0 0 1 1 * 2027", "7 fields, expected 5"),
    ("* * * *", "4 fields, expected 5"),
    ("", "0 fields, expected 5"),
    ("@daily", "nicknames are not supported: write '0 0 \\* \\* \\*'"),
    ("@HOURLY", "nicknames are not supported: write '0 \\* \\* \\* \\*'"),
    ("@reboot", "nicknames are not supported, and this one names no time"),
    ("0 0 L * *", "the day-of-month field 'L' is not supported syntax"),
    ("0 0 LW * *", "the day-of-month field 'LW' is not supported syntax"),
    ("0 0 15W * *", "the day-of-month field '15W' is not supported syntax"),
    ("0 0 * * 5L", "the day-of-week field '5L' is not supported syntax"),
    ("0 0 * * MON#2", "the day-of-week field 'MON#2' is not supported syntax"),
    ("0 0 ? * *", r"the day-of-month field '\?' is not supported syntax"),
    ("H * * * *", "the minute field 'H' is not supported syntax"),
    ("0 0 * * \u017fun", "non-ASCII characters"),  # a long s, which upper-cases to S
    ("\u0663 * * * *", "non-ASCII characters"),  # an Arabic-Indic digit 3
]


@pytest.mark.parametrize(("expr", "message"), BAD_CRON)
def test_bad_cron_expressions_name_the_expression_and_the_problem(expr: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TickRule.parse(expr, None, "UTC", 0.0)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"cron": "* * * * *", "every": 60},
            ValueError,
            "exactly one of cron= and every=, got both",
        ),
        ({"cron": None, "every": None}, ValueError, "exactly one of cron= and every=, got neither"),
        ({"every": 0.5}, ValueError, r"every must be >= 1 second, got 0\.5"),
        ({"every": 0}, ValueError, "every must be >= 1 second, got 0"),
        ({"every": -60}, ValueError, "every must be >= 1 second"),
        ({"every": math.nan}, ValueError, "every must be a finite number of seconds, got nan"),
        ({"every": math.inf}, ValueError, "every must be a finite number of seconds, got inf"),
        ({"every": 10**400}, ValueError, "every must be a finite number of seconds"),
        ({"every": True}, TypeError, "every must be a number of seconds, got True"),
        ({"every": "60"}, TypeError, "every must be a number of seconds, got '60'"),
        ({"every": Fraction(60)}, TypeError, "every must be a number of seconds"),
        ({"cron": 5}, TypeError, "cron must be a str"),
        ({"cron": b"* * * * *"}, TypeError, "cron must be a str"),
        ({"tz": "Mars/Olympus_Mons"}, ValueError, "unknown time zone 'Mars/Olympus_Mons'"),
        ({"tz": "europe/berlin"}, ValueError, "unknown time zone 'europe/berlin'"),
        ({"tz": ""}, ValueError, "unknown time zone ''"),
        ({"tz": "../etc/passwd"}, ValueError, r"unknown time zone '\.\./etc/passwd'"),
        ({"tz": "/etc/localtime"}, ValueError, "unknown time zone '/etc/localtime'"),
        ({"tz": "Europe"}, ValueError, "unknown time zone 'Europe'"),
        ({"tz": "x" * 300}, ValueError, "unknown time zone 'xxx"),
        ({"tz": "UTC\x00"}, ValueError, "unknown time zone"),
        ({"tz": "localtime"}, ValueError, "'localtime' is a file of this machine"),
        ({"tz": None}, TypeError, "tz must be an IANA time zone name"),
        ({"tz": BERLIN}, TypeError, "tz must be an IANA time zone name"),
        ({"anchor": math.nan}, ValueError, "anchor must be a finite number of seconds"),
        ({"anchor": False}, TypeError, "anchor must be a number of seconds"),
    ],
)
def test_bad_definitions(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    args: dict[str, Any] = {"cron": None, "every": 60, "tz": "UTC", "anchor": 0.0}
    if "cron" in kwargs and "every" not in kwargs:
        args["every"] = None
    args.update(kwargs)
    with pytest.raises(error, match=message):
        TickRule.parse(**args)


def test_good_zones_and_numbers() -> None:
    for tz in ("UTC", "Etc/UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"):
        assert TickRule.parse("* * * * *", None, tz, 0.0).tz == tz
    assert TickRule.parse(None, 1, "UTC", 0).every == 1.0  # every = 1 is the least
    assert TickRule.parse(None, 1.5, "UTC", -5).anchor == -5.0


def test_bad_times() -> None:
    for rule in (cron("* * * * *"), TickRule.parse(None, 60, "UTC", 0.0)):
        with pytest.raises(ValueError, match="finite"):
            rule.next_after(math.nan)
        with pytest.raises(ValueError, match="finite"):
            rule.latest_in(0.0, math.inf)
        with pytest.raises(ValueError, match="finite"):
            rule.count_in(-math.inf, 0.0, 2)
        with pytest.raises(ValueError, match="cap must be >= 0"):
            rule.count_in(0.0, 1.0, -1)
        with pytest.raises(TypeError, match="cap must be an int"):
            rule.count_in(0.0, 1.0, True)
        with pytest.raises(ValueError, match="cap must be >= 1"):
            rule.due(0.0, 1.0, 0)
        with pytest.raises(ValueError, match="finite"):
            rule.due(math.nan, 1.0)


# -- Properties --------------------------------------------------------------------------------

# (low, high) of each field; day-of-week values 0-7, 7 being Sunday as 0 is.
BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
NAMES: dict[int, list[str]] = {
    3: ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"],
    4: ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
}


@dataclass(frozen=True)
class Expr:
    """A generated expression and the values each of its fields stands for."""

    text: str
    fields: tuple[str, ...]
    values: tuple[frozenset[int], ...]

    def day_matches(self, day: date) -> bool:
        dom = day.day in self.values[2]
        dow = day.isoweekday() % 7 in {v % 7 for v in self.values[4]}
        month = day.month in self.values[3]
        if self.fields[2].startswith("*") or self.fields[4].startswith("*"):
            return month and dom and dow
        return month and (dom or dow)

    @property
    def follows_wall_clock(self) -> bool:
        """Fixed times (Debian's DST rule): neither the minute nor the hour starts with `*`."""
        return not (self.fields[0].startswith("*") or self.fields[1].startswith("*"))


@st.composite
def terms(draw: st.DrawFn, index: int) -> tuple[str, set[int]]:
    low, high = BOUNDS[index]

    def show(value: int) -> str:
        """The value as a number, or as a name (either case) where it has one."""
        names = NAMES.get(index, [])
        if value - low < len(names) and draw(st.booleans()):
            name = names[value - low]
            return name if draw(st.booleans()) else name.lower()
        return str(value)

    kind = draw(
        st.sampled_from(["star", "star-step", "value", "range", "range-step", "start-step"])
    )
    step = draw(st.integers(1, high - low + 1))
    a = draw(st.integers(low, high))
    b = draw(st.integers(a, high))
    if kind == "star":
        return "*", set(range(low, high + 1))
    if kind == "star-step":
        return f"*/{step}", set(range(low, high + 1, step))
    if kind == "value":
        return show(a), {a}
    if kind == "range":
        return f"{show(a)}-{show(b)}", set(range(a, b + 1))
    if kind == "range-step":
        return f"{show(a)}-{show(b)}/{step}", set(range(a, b + 1, step))
    return f"{show(a)}/{step}", set(range(a, high + 1, step))


@st.composite
def expressions(draw: st.DrawFn) -> Expr:
    fields: list[str] = []
    values: list[frozenset[int]] = []
    for index in range(5):
        parts = draw(st.lists(terms(index), min_size=1, max_size=3))
        fields.append(",".join(text for text, _ in parts))
        values.append(frozenset().union(*(vals for _, vals in parts)))
    expr = Expr(" ".join(fields), tuple(fields), tuple(values))
    # An expression cronsim refuses: a day of month no selected month has, both day fields
    # required. (TickRule.parse refusing it is tested above.)
    if min(values[2]) > 29 and (fields[2].startswith("*") or fields[4].startswith("*")):
        longest = max({2: 29, 4: 30, 6: 30, 9: 30, 11: 30}.get(m, 31) for m in values[3])
        if min(values[2]) > longest:
            draw(st.nothing())
    return expr


def oracle_next(expr: Expr, t: int, zone: tzinfo) -> float:
    """The first tick after ``t`` by the rules of TickRule's docstring, found day by day.

    A matching local day of a fixed-time expression: its times in order, each at its first
    occurrence, or if it does not exist at the first minute after it that does. Of any other
    expression: every minute of the local day (an instant whose wall time matches)."""
    day = datetime.fromtimestamp(t, zone).date()
    for _ in range(366 * 50):
        if expr.day_matches(day):
            found = (wall_clock_next if expr.follows_wall_clock else elapsed_next)(
                expr, day, t, zone
            )
            if found is not None:
                return found
        day += timedelta(days=1)
    return math.inf


def wall_clock_next(expr: Expr, day: date, t: int, zone: tzinfo) -> float | None:
    for hour in sorted(expr.values[1]):
        for minute in sorted(expr.values[0]):
            wall = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
            while wall.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != wall.replace(
                tzinfo=None
            ):
                wall += timedelta(minutes=1)  # does not exist: the next minute that does
            if wall.timestamp() > t:
                return wall.timestamp()
    return None


def elapsed_next(expr: Expr, day: date, t: int, zone: tzinfo) -> float | None:
    # From 3 hours before the wall midnight (which may not exist) to the day's end, minute by
    # minute of elapsed time (every zone here changes by whole minutes).
    midnight = datetime(day.year, day.month, day.day, tzinfo=zone).timestamp()
    instant = int(max(midnight - 3 * 3600, t + 1) // 60 * 60)
    while True:
        wall = datetime.fromtimestamp(instant, zone)
        if wall.date() > day:
            return None
        if (
            wall.date() == day
            and instant > t
            and wall.hour in expr.values[1]
            and wall.minute in expr.values[0]
        ):
            return float(instant)
        instant += 60


# 2000-2040, as integers and as non-integers.
times = st.one_of(
    st.integers(946_684_800, 2_208_988_800),
    st.floats(946_684_800, 2_208_988_800, allow_nan=False),
)
FIXED_ZONES = ["UTC", "Asia/Kolkata", "Asia/Kathmandu"]  # no changes since 1986
DST_ZONES = [
    "Europe/Berlin",
    "America/New_York",
    "Australia/Sydney",  # the southern hemisphere
    "America/Santiago",  # changes at midnight
    "America/St_Johns",  # -03:30
    "Asia/Tehran",  # changed at midnight until 2022
    "America/Havana",  # changes at midnight
    "Australia/Lord_Howe",  # changes by 30 minutes
    "Africa/Casablanca",  # changes around Ramadan
]


@EXAMPLES
@given(expr=expressions(), tz=st.sampled_from(FIXED_ZONES), t=times)
def test_cron_next_after_agrees_with_brute_force(expr: Expr, tz: str, t: float) -> None:
    rule = cron(expr.text, tz)
    assert rule.next_after(t) == oracle_next(expr, math.floor(t), ZoneInfo(tz))


def check_next_after(rule: TickRule, t: float, probe: float) -> float:
    """``next_after(t)`` is after ``t``, and no tick lies between: asked at any time in
    ``[t, tick)``, the rule gives the same tick."""
    tick = rule.next_after(t)
    assert tick > t
    inside = t + probe * (tick - t)
    if inside < tick:
        assert rule.next_after(inside) == tick
    assert rule.next_after(tick) > tick
    return tick


@functools.cache
def changes(tz: str) -> list[int]:
    """The instants (whole seconds) at which ``tz`` changes its offset, 2000-2040."""
    zone = ZoneInfo(tz)

    def offset(instant: int) -> timedelta | None:
        return datetime.fromtimestamp(instant, zone).utcoffset()

    found = []
    for day in range(946_684_800, 2_208_988_800, 86400):
        if offset(day) != offset(day + 86400):
            low, high = day, day + 86400  # offset(low) != offset(high): bisect to the second
            while high - low > 1:
                middle = (low + high) // 2
                low, high = (middle, high) if offset(middle) == offset(low) else (low, middle)
            found.append(high)
    return found


@st.composite
def zones_and_times(draw: st.DrawFn) -> tuple[str, float]:
    """A zone with changes, and a time: anywhere, or within 36 hours of one of its changes."""
    tz = draw(st.sampled_from(DST_ZONES))
    if draw(st.booleans()):
        return tz, draw(times)
    change = draw(st.sampled_from(changes(tz)))
    return tz, change + draw(st.one_of(st.integers(-129_600, 129_600), st.floats(-3600, 3600)))


@EXAMPLES
@given(expr=expressions(), zone_and_time=zones_and_times(), probe=st.floats(0, 1))
def test_cron_next_after_across_dst_is_consistent(
    expr: Expr, zone_and_time: tuple[str, float], probe: float
) -> None:
    tz, t = zone_and_time
    rule = cron(expr.text, tz)
    tick = check_next_after(rule, t, probe)
    assert tick == int(tick)
    assert tick == oracle_next(expr, math.floor(t), ZoneInfo(tz))


@EXAMPLES
@given(
    expr=expressions(),
    tz=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York"]),
    last=times,
    span=st.integers(0, 3 * 86400),
    cap=st.integers(1, 4),
)
def test_cron_missed_tick_helpers_agree_with_stepping(
    expr: Expr, tz: str, last: float, span: int, cap: int
) -> None:
    rule = cron(expr.text, tz)
    now = last + span
    stepped = list(take(step(rule, last, now), cap + 1))
    count = min(len(stepped), cap)
    assert rule.count_in(last, now, cap) == count
    latest = rule.latest_in(last, now)
    if stepped:
        assert latest is not None
        assert stepped[-1] <= latest <= now
        assert rule.next_after(latest - 1) == latest  # a tick
        assert rule.next_after(latest) > now  # the latest
    else:
        assert latest is None
    assert rule.due(last, now, cap) == Due(count, latest, rule.next_after(now))


def step(rule: TickRule, start: float, end: float) -> Iterator[float]:
    tick = rule.next_after(start)
    while tick <= end:
        yield tick
        tick = rule.next_after(tick)


def take(ticks: Iterator[float], n: int) -> Iterator[float]:
    for _, tick in zip(range(n), ticks, strict=False):
        yield tick


@EXAMPLES
@given(
    anchor=times,
    every=st.one_of(st.integers(1, 10**6), st.floats(1, 1e6, allow_nan=False)),
    t=st.floats(-1e9, 1e7, allow_nan=False),
    probe=st.floats(0, 1),
    span=st.floats(0, 300),
)
def test_every_ticks_are_anchor_plus_k_every(
    anchor: float, every: float, t: float, probe: float, span: float
) -> None:
    rule = TickRule.parse(None, every, "UTC", anchor)
    start = anchor + t
    tick = check_next_after(rule, start, probe)
    exact_anchor, exact_every = Fraction(anchor), Fraction(float(every))
    k = (Fraction(tick) - exact_anchor) / exact_every
    assert float(exact_anchor + round(k) * exact_every) == tick
    assert round(k) >= 1
    # No earlier tick is after start.
    if round(k) > 1:
        assert float(exact_anchor + (round(k) - 1) * exact_every) <= start
    # The missed-tick helpers agree with stepping.
    end = start + span
    stepped = list(take(step(rule, start, end), 10**4))
    assert rule.count_in(start, end, 10**6) == len(stepped)
    assert rule.latest_in(start, end) == (stepped[-1] if stepped else None)
    assert rule.due(start, end) == Due(
        min(len(stepped), 2), stepped[-1] if stepped else None, rule.next_after(end)
    )
    # Ticks at least a second apart have ids of their own.
    ids = [tick_id("s", x) for x in stepped[:50]]
    assert len(set(ids)) == len(ids)


@EXAMPLES
@given(anchor=times, k=st.integers(1, 10**8), fraction=st.floats(0, 1e-6))
def test_one_second_ticks_have_distinct_ids(anchor: float, k: int, fraction: float) -> None:
    """every = 1 with an anchor just past a second: the ids of ticks k and k + 1 differ."""
    rule = TickRule.parse(None, 1, "UTC", anchor + fraction)
    first = rule.next_after(rule.anchor + k - 0.5)
    second = rule.next_after(first)
    assert tick_id("s", first) != tick_id("s", second)
    assert second - first == pytest.approx(1, abs=1e-5)
