"""When a periodic schedule's ticks fall, and the job id of each tick.

A :class:`TickRule` is a schedule's definition (``cron`` or ``every``, and ``tz``) made into
arithmetic on wall-clock times: ``float`` seconds since the epoch, UTC, as ``time.time()``
gives them. It has no clock and no state: the pool asks it about times it names.

- ``every`` ticks fall at ``anchor + k * every``, ``k >= 1``, computed exactly (the anchor and the
  period as the exact values of their floats, in integers) and rounded once to the nearest
  float. Counting them and finding the latest one in a span is arithmetic, however
  long the span.
- ``cron`` ticks are whole seconds (whole minutes, in fact), evaluated in the IANA zone ``tz`` by
  `cronsim <https://pypi.org/project/cronsim/>`_, with Debian cron's rules for the changes of
  daylight saving time (see :class:`TickRule` and docs/design.md, "Cron expressions: why
  cronsim").

This module parses no cron expression itself: it checks that an expression keeps to the syntax
the library promises (5 fields of numbers, names, ``*``, ``,``, ``-``, ``/``) and hands it to
cronsim, which parses and evaluates it.
"""

from __future__ import annotations

import functools
import math
import re
import time
from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any, Final, NamedTuple
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

__all__ = ["Due", "TickRule", "tick_id"]

_FIELD_NAMES: Final = ("minute", "hour", "day-of-month", "month", "day-of-week")
_FIELD_VALUES: Final = (
    "0-59",
    "0-23",
    "1-31, and a day that one of the months has",
    "1-12 or JAN-DEC",
    "0-7 or SUN-SAT, 0 and 7 being Sunday",
)
_VALUE: Final = r"(?:[0-9]+|[A-Z]{3})"
_TERM: Final = rf"(?:\*|{_VALUE}(?:-{_VALUE})?)(?:/[0-9]+)?"
# What a field may be: a list of terms, each `*`, a value or a range, with an optional step.
# Values are numbers or three-letter names (cronsim checks the ranges and where names may go).
# This keeps out what cronsim also reads and the library does not promise: `L`, `LW`, `5L`,
# `MON#2` (and `?`, `W`, `H`, which cronsim refuses too).
_FIELD_SYNTAX: Final = re.compile(rf"{_TERM}(?:,{_TERM})*")
_NICKNAMES: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MACHINE_ZONES: Final = frozenset({"localtime", "posixrules"})
_SCAN_STEP: Final = 6 * 3600
"""How far apart :func:`_changes_in_year` compares a zone's offsets: it finds every change of
offset but one undone less than 6 hours later (the tz database has no such pair since 1970)."""


class Due(NamedTuple):
    """What :meth:`TickRule.due` found about the ticks since the last one fired.

    Attributes:
        missed: how many ticks fell in ``(last, now]``, at most ``cap`` (so with ``cap=2``:
            ``0``, ``1``, or ``2`` meaning "two or more").
        latest: the latest of them, or ``None`` when ``missed == 0``.
        next_tick: the first tick after ``now``.
    """

    missed: int
    latest: float | None
    next_tick: float


@dataclass(frozen=True, slots=True)
class TickRule:
    """A periodic schedule's ticks. Make one with :meth:`parse`; immutable and hashable.

    **every.** Ticks at ``anchor + k * every`` for ``k >= 1``: the exact sum, rounded once to
    the nearest float (so two ticks are always at least ``every`` apart, as exact values, and
    ``k`` of them never drift). ``anchor`` is the wall-clock time of the declaration. A schedule
    declared again with an identical definition (:meth:`definition`) keeps its first
    declaration's anchor, which the pool keeps in the schedule's state: a second process that
    declares the same ``every`` schedule later must not move its ticks. Only a different
    definition takes the new declaration's time as its anchor.

    **cron.** A standard 5-field expression (minute, hour, day of month, month, day of week):
    numbers, ``*``, lists ``a,b``, ranges ``a-b``, steps ``*/n``, ``a-b/n`` and ``a/n`` (from
    ``a`` to the end of the field), month names ``JAN``-``DEC`` and weekday names
    ``SUN``-``SAT`` (any case, also in ranges), weekday ``0`` or ``7`` for Sunday. When both
    the day of month and the day of week are restricted, a day matches if either does; when
    either field starts with ``*`` (``*``, ``*/2``), both must match (Vixie and Debian cron).
    Evaluated by cronsim on the wall clock of ``tz``; ticks are whole minutes, as epoch seconds.

    Changes of the zone's offset (daylight saving time), as Debian's cron handles them (each
    statement here has a test):

    - An expression whose minute and hour fields both start with a digit or a name (a job at
      fixed times: ``30 2 * * *``, ``0 9-17 * * MON-FRI``) follows the wall clock, and each of
      its times runs once a day. A time that does not exist (spring forward, ``02:30`` in
      ``Europe/Berlin`` on 2026-03-29) runs at the first minute that exists after it (``03:00``
      CEST, 01:00 UTC), once even if several of its times fall in the gap (or one of its times
      is that minute). A time that exists twice (fall back, ``02:30`` on 2026-10-25) runs once,
      at its first occurrence (``02:30`` CEST, 00:30 UTC).
    - An expression whose minute or hour field starts with ``*`` (``*/5 * * * *``,
      ``0 * * * *``, ``0 */2 * * *``) follows elapsed time: it ticks at every instant whose
      local time matches. Wall times of a skipped hour never happen, and those of a repeated hour
      happen twice, so ``*/5 * * * *`` ticks 276 times on the spring-forward day, 300 times on the
      fall-back day, always 5 minutes apart; and ``*/30 2 * * *`` does not run at all on the
      spring-forward day, and runs 4 times on the fall-back day. These are evaluated by cronsim
      in the fixed offset of each stretch of time between two changes (cronsim given the zone
      skips ticks after a change at midnight, as America/Santiago's, or of 30 minutes, as
      Australia/Lord_Howe's).

    In ``UTC`` (and any zone without changes) both are the same thing.

    Times passed to the methods must be finite (``ValueError``); for ``cron``, within the
    years ``datetime`` holds (1-9999), else ``datetime``'s own error.

    Attributes:
        cron: the expression, its fields upper-cased and separated by single spaces; or
            ``None``.
        every: the period in seconds, as a ``float``; or ``None``.
        tz: the IANA zone name, as given.
        anchor: the declaration's wall-clock time (only ``every`` ticks depend on it).
    """

    cron: str | None
    every: float | None
    tz: str
    anchor: float
    _zone: tzinfo = field(repr=False, compare=False)
    # `every`'s anchor and period, exactly: (anchor * scale, every * scale, scale), integers,
    # `scale` a power of two (a float is an integer over a power of two). `None` for cron.
    _exact: tuple[int, int, int] | None = field(default=None, repr=False, compare=False)
    # A cron rule whose minute or hour field starts with `*`: it follows elapsed time.
    _elapsed: bool = field(default=False, repr=False, compare=False)

    @classmethod
    def parse(cls, cron: str | None, every: float | None, tz: str, anchor: float) -> TickRule:
        """Check a schedule's definition and make its rule.

        Args:
            cron: a 5-field cron expression, or ``None``.
            every: seconds between ticks, a finite ``int`` or ``float`` ``>= 1``, or ``None``.
                Exactly one of ``cron`` and ``every`` is given. (``>= 1`` keeps two ticks out
                of one second: a tick's job id names its second, see :func:`tick_id`.)
            tz: an IANA time zone name (``"UTC"``, ``"Europe/Berlin"``) in which ``cron`` is
                evaluated. ``"localtime"`` and ``"posixrules"`` are refused: they are files
                of a machine, not zones, and differ from one machine to the next.
            anchor: the declaration's wall-clock time, finite seconds since the epoch.

        Raises:
            ValueError: both ``cron`` and ``every``, or neither; a cron expression that is not
                5 fields of the syntax above, or that cronsim refuses (the message quotes the
                expression and says what is wrong: the field, or the syntax not supported,
                such as seconds fields, ``@daily``-style nicknames, ``L``, ``W``, ``#``,
                ``?``, ``H``); ``every`` below 1, NaN or infinite; an unknown zone (the
                message names it); a NaN or infinite ``anchor``.
            TypeError: ``cron`` not a ``str``; ``every`` or ``anchor`` not an ``int`` or
                ``float`` (a ``bool`` is refused); ``tz`` not a ``str``.
        """
        if (cron is None) == (every is None):
            given = "both" if cron is not None else "neither"
            raise ValueError(
                f"a schedule needs exactly one of cron= and every=, got {given} "
                f"(cron={cron!r}, every={every!r})"
            )
        anchor = _seconds("anchor", anchor)
        zone = _zone(tz)
        if every is not None:
            period = _seconds("every", every)
            if period < 1:
                raise ValueError(f"every must be >= 1 second, got {every!r}")
            return cls(None, period, tz, anchor, zone, _exact_every(anchor, period))
        canonical = _check_cron(cron)
        minute, hour = canonical.split()[:2]
        elapsed = minute.startswith("*") or hour.startswith("*")
        return cls(canonical, None, tz, anchor, zone, _elapsed=elapsed)

    def definition(self) -> dict[str, Any]:
        """The definition, as a JSON-ready dict: ``{"cron": str | None, "every": float |
        None, "tz": str}``.

        Two declarations are identical when their definitions are equal. The anchor is not part
        of it (see the class's docstring); ``cron`` is in its canonical form (single spaces,
        upper case), so ``"0 9 * * mon"`` and ``"0  9 * * MON"`` are identical; ``every`` is a
        ``float`` (``60`` and ``60.0`` are identical). Expressions that differ in writing but
        not in meaning (``*`` and ``0-59``) are different definitions.
        """
        return {"cron": self.cron, "every": self.every, "tz": self.tz}

    def next_after(self, t: float) -> float:
        """The first tick strictly after ``t`` (finite wall-clock seconds).

        ``every``: ``anchor + every`` for any ``t`` before it. ``cron``: a whole number of
        seconds; ``math.inf`` if cronsim finds no tick within 50 years (no expression
        :meth:`parse` accepts goes that long without one: the rarest, ``0 0 29 2 */7``,
        February 29 on a Sunday, goes 40 years at most). Costs one cronsim evaluation (tens of
        microseconds; two across a change of offset), or a few integer operations for
        ``every``.

        Raises:
            ValueError: ``t`` is NaN or infinite.
            OverflowError, ValueError, OSError: for ``cron``, ``t`` or the tick outside the
                years ``datetime`` holds (1-9999), raised by ``datetime``.
        """
        _check_time(t)
        if self._exact is not None:
            return self._every_tick(self._every_index_after(t))
        return self._cron_after(math.floor(t))

    def count_in(self, start: float, end: float, cap: int) -> int:
        """How many ticks fall in ``(start, end]``, at most ``cap`` (``0`` if ``end <= start``).

        ``every``: arithmetic, whatever the span and ``cap``. ``cron``: up to ``cap + 1``
        evaluations, so keep ``cap`` small (``cap=2`` tells none, one and more than one apart).

        Raises:
            ValueError: ``start`` or ``end`` NaN or infinite, ``cap`` negative.
            TypeError: ``cap`` not an ``int``.
        """
        _check_time(start)
        _check_time(end)
        _check_cap(cap)
        if self._exact is not None:
            count = self._every_index_after(end) - self._every_index_after(start)
            return max(0, min(count, cap))
        count = 0
        tick = self._cron_after(math.floor(start))
        while tick <= end and count < cap:
            count += 1
            tick = self._cron_after(int(tick))
        return count

    def latest_in(self, start: float, end: float) -> float | None:
        """The latest tick in ``(start, end]``, or ``None`` if none falls there.

        ``every``: arithmetic. ``cron``: a bisection on whole seconds, at most about
        ``2 * log2((end - start) / 60)`` evaluations (a year: under 50, a few milliseconds); two
        when a single tick fell in the span.

        Raises:
            ValueError: ``start`` or ``end`` NaN or infinite.
        """
        _check_time(start)
        _check_time(end)
        if self._exact is not None:
            first = self._every_index_after(start)
            last = self._every_index_after(end) - 1
            return self._every_tick(last) if last >= first else None
        return self._cron_latest(math.floor(start), math.floor(end))

    def due(self, last: float, now: float, cap: int = 2) -> Due:
        """What a pool needs at ``now`` when the last tick it handled was ``last``: how many
        ticks fell in ``(last, now]`` (at most ``cap``), the latest of them, and the first tick
        after ``now``. (For a schedule that has not fired yet, ``last`` is its anchor.)

        ``cron``: one evaluation when no tick fell, two when one did, about
        ``cap + 2 * log2((now - last) / 60)`` when more did (a year of downtime: a few
        milliseconds). ``every``: arithmetic.

        Raises:
            ValueError: ``last`` or ``now`` NaN or infinite, ``cap`` below 1.
            TypeError: ``cap`` not an ``int``.
        """
        _check_time(last)
        _check_time(now)
        _check_cap(cap)
        if cap < 1:
            raise ValueError(f"cap must be >= 1, got {cap!r}")
        if self._exact is not None:
            first = self._every_index_after(last)
            following = self._every_index_after(now)
            count = max(0, following - first)
            latest = self._every_tick(following - 1) if count else None
            return Due(min(count, cap), latest, self._every_tick(following))
        start, end = math.floor(last), math.floor(now)
        ticks: list[float] = []
        tick = self._cron_after(start)
        while tick <= end and len(ticks) < cap:
            ticks.append(tick)
            tick = self._cron_after(int(tick))
        if tick > end:  # all of them were counted: `tick` is the first after `now`
            return Due(len(ticks), ticks[-1] if ticks else None, tick)
        # More than `cap` ticks fell in the span; `tick` is one of them.
        return Due(cap, self._cron_latest_from(tick, end), self._cron_after(end))

    # every: tick `k` is `float(anchor + k * every)`, exactly; the floats are strictly
    # increasing in `k` (rounding is monotonic, and exact ticks are >= 1 apart).

    def _every_tick(self, k: int) -> float:
        assert self._exact is not None
        anchor, every, scale = self._exact
        return (anchor + k * every) / scale  # int / int: correctly rounded

    def _every_index_after(self, t: float) -> int:
        """The least ``k >= 1`` whose tick is after ``t``."""
        assert self._exact is not None
        anchor, every, scale = self._exact
        numerator, denominator = t.as_integer_ratio()
        # k - 1 = floor((t - anchor) / every), in integers.
        k = max(1, (numerator * scale - anchor * denominator) // (every * denominator) + 1)
        # The exact tick k is after t; its float may have rounded down onto t (never below:
        # t is a float), and then the next one is the first after t.
        return k + 1 if self._every_tick(k) <= t else k

    # cron: ticks are whole seconds, so the first tick after t is the first after floor(t).

    def _cron_after(self, second: int) -> float:
        """The first tick after ``second`` (whole seconds since the epoch)."""
        assert self.cron is not None
        if not self._elapsed or self._zone is UTC:
            # On the wall clock, cronsim's Debian rules (the class docstring); or a zone
            # without changes.
            return _first_match(self.cron, second, self._zone)
        # Elapsed time: each stretch between two changes of the zone's offset is a zone of
        # fixed offset, where cronsim is exact. (With the zone itself, cronsim skips ticks after
        # a change at midnight, as America/Santiago's, or of 30 minutes, as Lord Howe's.)
        # Invariant: no tick falls in (second, begin]; `offset` is the zone's just after begin.
        begin = second
        while True:
            offset = datetime.fromtimestamp(begin + 1, self._zone).utcoffset()
            assert offset is not None
            tick = _first_match(self.cron, begin, timezone(offset))
            if tick == math.inf:
                return tick
            change = _next_change(self._zone, begin + 1, int(tick))
            if change is None:  # `tick` is in the stretch: the first after `begin`
                return tick
            begin = change - 1  # the next stretch starts at `change`

    def _cron_latest(self, start: int, end: int) -> float | None:
        """The latest tick in ``(start, end]``, or ``None``."""
        first = self._cron_after(start)
        return None if first > end else self._cron_latest_from(first, end)

    def _cron_latest_from(self, low: float, end: int) -> float:
        """The latest tick in ``[low, end]``, ``low`` being a tick: a bisection on whole
        seconds that needs only :meth:`_cron_after`.

        Invariant: ``low`` is a tick ``<= end`` and no tick falls in ``(high, end]``.
        """
        high = end
        while True:
            following = self._cron_after(int(low))
            if following > high:
                return low
            low = following
            middle = (int(low) + high) // 2
            if middle > low:
                probe = self._cron_after(middle)
                if probe <= high:
                    low = probe
                else:
                    high = middle


def _exact_every(anchor: float, every: float) -> tuple[int, int, int]:
    """``(anchor * scale, every * scale, scale)`` in integers, ``scale`` a power of two."""
    anchor_numerator, anchor_denominator = anchor.as_integer_ratio()
    every_numerator, every_denominator = every.as_integer_ratio()
    scale = max(anchor_denominator, every_denominator)  # both powers of two
    return (
        anchor_numerator * (scale // anchor_denominator),
        every_numerator * (scale // every_denominator),
        scale,
    )


def _first_match(cron: str, second: int, zone: tzinfo) -> float:
    """The first instant after ``second`` that cronsim gives for ``cron`` in ``zone``."""
    # cronsim starts from the local wall time and yields the matches after it in wall-clock
    # order. Inside a repeated hour (after falling back), a wall time that already passed
    # comes round again: cronsim may first yield the earlier occurrence, an instant before
    # `second`, which is not "after" it. Such matches are skipped (at most the matches of one
    # repeated hour).
    for local in CronSim(cron, datetime.fromtimestamp(second, zone)):
        tick = local.timestamp()
        if tick > second:
            return tick
    return math.inf  # cronsim found nothing within 50 years


@functools.lru_cache(maxsize=1024)
def _changes_in_year(zone: tzinfo, year: int) -> tuple[int, ...]:
    """The instants (whole seconds) of ``year`` (UTC), the first of its year excluded and the
    first of the next included, at which ``zone`` changes its UTC offset: each one the first
    second of the new offset. Offsets :data:`_SCAN_STEP` apart are compared, and each
    difference bisected to the second (about 2 ms a zone and year; cached)."""
    begin = int(datetime(year, 1, 1, tzinfo=UTC).timestamp())
    end = int(datetime(year + 1, 1, 1, tzinfo=UTC).timestamp())

    def offset(instant: int) -> timedelta | None:
        return datetime.fromtimestamp(instant, zone).utcoffset()

    changes = []
    low, low_offset = begin, offset(begin)
    while low < end:
        high = min(low + _SCAN_STEP, end)
        high_offset = offset(high)
        if high_offset != low_offset:
            # Invariant: offset(a) == low_offset != offset(b).
            a, b = low, high
            while b - a > 1:
                middle = (a + b) // 2
                a, b = (middle, b) if offset(middle) == low_offset else (a, middle)
            changes.append(b)
        low, low_offset = high, high_offset
    return tuple(changes)


def _next_change(zone: tzinfo, after: int, until: int) -> int | None:
    """The first change of ``zone``'s offset in ``(after, until]``, or ``None``."""
    year = datetime.fromtimestamp(after, UTC).year
    while True:
        changes = _changes_in_year(zone, year)
        index = bisect_right(changes, after)
        if index < len(changes):
            return changes[index] if changes[index] <= until else None
        if datetime(year + 1, 1, 1, tzinfo=UTC).timestamp() >= until:
            return None
        year += 1


def tick_id(name: str, tick: float) -> str:
    """The job id of a schedule's tick: ``f"{name}@{YYYY-MM-DDTHH:MM:SSZ}"``, the tick's UTC
    time rounded down to the whole second.

    ``cron`` ticks are whole seconds; ``every`` ticks may not be, and two ticks would share an id
    only if they fell within one second, which ``every >= 1`` rules out (exact ticks ``>= 1``
    second apart round to floats in different seconds).

    Raises:
        ValueError: ``tick`` is NaN or infinite.
        OverflowError, OSError: ``tick`` is beyond the years the platform's ``gmtime`` holds.
    """
    _check_time(tick)
    return f"{name}@{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(math.floor(tick)))}"


def _check_cron(cron: object) -> str:
    """The canonical form of a cron expression; ValueError (quoting it) if it is not one the
    library promises, TypeError if it is not a ``str``."""
    if not isinstance(cron, str):
        raise TypeError(f"cron must be a str (a 5-field cron expression), got {cron!r}")

    def refuse(problem: str) -> ValueError:
        return ValueError(f"cron expression {cron!r}: {problem}")

    if not cron.isascii():
        raise refuse("non-ASCII characters")
    fields = cron.upper().split()
    if len(fields) == 1 and fields[0].startswith("@"):
        nickname = fields[0].lower()
        if nickname in _NICKNAMES:
            raise refuse(f"nicknames are not supported: write {_NICKNAMES[nickname]!r}")
        raise refuse("nicknames are not supported, and this one names no time")
    if len(fields) != 5:
        extra = " (seconds and years fields are not supported)" if len(fields) in (6, 7) else ""
        raise refuse(
            f"{len(fields)} fields, expected 5 (minute hour day-of-month month day-of-week){extra}"
        )
    for name, text in zip(_FIELD_NAMES, fields, strict=True):
        if _FIELD_SYNTAX.fullmatch(text) is None:
            raise refuse(
                f"the {name} field {text!r} is not supported syntax (numbers and names, '*', "
                "lists with ',', ranges with '-', steps with '/'; not 'L', 'W', '#', '?' or 'H')"
            )
    canonical = " ".join(fields)
    try:
        CronSim(canonical, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        # cronsim's messages are "Bad <field>", the field as in _FIELD_NAMES.
        bad = str(exc).removeprefix("Bad ")
        if bad in _FIELD_NAMES:
            index = _FIELD_NAMES.index(bad)
            raise refuse(
                f"bad {bad} field {fields[index]!r} (values: {_FIELD_VALUES[index]}; "
                "ranges low-high; steps >= 1)"
            ) from None
        raise refuse(str(exc)) from None
    except ValueError:  # int() of a number of thousands of digits
        raise refuse("a number is out of range") from None
    return canonical


def _zone(tz: object) -> tzinfo:
    """The zone named ``tz``: ``datetime.UTC`` for ``"UTC"`` (cronsim's fast path), else a
    :class:`~zoneinfo.ZoneInfo`."""
    if not isinstance(tz, str):
        raise TypeError(f"tz must be an IANA time zone name (a str), got {tz!r}")
    if tz == "UTC":
        return UTC
    if tz in _MACHINE_ZONES:
        raise ValueError(f"time zone {tz!r} is a file of this machine, not an IANA zone name")
    try:
        return ZoneInfo(tz)
    except (KeyError, ValueError, OSError):  # ZoneInfoNotFoundError is a KeyError
        raise ValueError(
            f"unknown time zone {tz!r}: not an IANA zone name such as 'Europe/Berlin' (or this "
            "system has no time zone data: install the tzdata package)"
        ) from None


def _seconds(name: str, value: object) -> float:
    """``value`` as a finite ``float``; TypeError for a non-number or a ``bool``, ValueError
    for NaN, an infinity or an ``int`` too large for a ``float``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    try:
        seconds = float(value)
    except OverflowError:
        seconds = math.inf
    if not math.isfinite(seconds):
        raise ValueError(f"{name} must be a finite number of seconds, got {value!r}")
    return seconds


def _check_time(t: float) -> None:
    if not math.isfinite(t):
        raise ValueError(f"a time must be finite seconds since the epoch, got {t!r}")


def _check_cap(cap: int) -> None:
    if isinstance(cap, bool) or not isinstance(cap, int):
        raise TypeError(f"cap must be an int, got {cap!r}")
    if cap < 0:
        raise ValueError(f"cap must be >= 0, got {cap!r}")
