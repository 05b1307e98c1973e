"""Reading requests: the JSON body (capped), and the fields of each request, checked.

Every check that fails raises :class:`ApiError` with the status and code of docs/service.md;
nothing here touches the pool.
"""

from __future__ import annotations

import datetime
import functools
import json
import math
import re
import zoneinfo
from collections.abc import Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, Final, NoReturn, TypedDict

from starlette.requests import ClientDisconnect, Request

from trio_jobpool import JobRegistry, Limit, Rate, RetryPolicy

__all__ = [
    "MAX_COUNT",
    "MAX_JOB_ID",
    "MAX_KEY",
    "MAX_PRIORITY",
    "MAX_SCHEDULE_NAME",
    "MISFIRES",
    "OVERLAPS",
    "ApiError",
    "ScheduleSpec",
    "SubmitOptions",
    "Submission",
    "float_param",
    "int_param",
    "parse_key",
    "parse_limit",
    "parse_resize",
    "parse_schedule",
    "parse_schedule_name",
    "parse_submission",
    "read_json",
    "time_zones",
]

MAX_JOB_ID: Final = 200
"""The longest ``job_id`` a client may give, in characters."""
MAX_PRIORITY: Final = 2**53 - 1
"""The largest magnitude of a priority (what every store, and JavaScript, holds exactly)."""
MAX_KEY: Final = 200
"""The longest flow-control key a client may give, in characters (the pool's own bound)."""
MAX_COUNT: Final = MAX_PRIORITY
"""The largest ``max_running`` and rate ``count`` a client may give (held exactly by every
store, and by JavaScript)."""
MAX_SCHEDULE_NAME: Final = MAX_JOB_ID - len("@2027-01-12T01:30:00Z")
"""The longest schedule name a client may give: its ticks' job ids (``name@tick``) are then
at most ``MAX_JOB_ID`` characters, ids a client can name too."""
OVERLAPS: Final = ("skip", "allow")
"""The values of a schedule's ``overlap`` (``JobPool.schedule``)."""
MISFIRES: Final = ("skip", "once")
"""The values of a schedule's ``misfire`` (``JobPool.schedule``)."""

_SUBMIT_FIELDS: Final = frozenset(
    {"name", "args", "priority", "job_id", "timeout", "retry", "delay", "at", "key"}
)
_LIMIT_FIELDS: Final = frozenset({"max_running", "rate"})
_RATE_FIELDS: Final = frozenset({"count", "per"})
_RETRY_FIELDS: Final = frozenset({"max_attempts", "backoff", "max_backoff", "jitter"})
_SCHEDULE_FIELDS: Final = frozenset(
    {
        "name",
        "args",
        "cron",
        "every",
        "tz",
        "priority",
        "timeout",
        "retry",
        "overlap",
        "misfire",
        "paused",
    }
)
# Files of a machine that zoneinfo lists among its zones; the pool refuses them as zones.
_MACHINE_ZONES: Final = frozenset({"localtime", "posixrules"})
# A job id is one segment of a URL path, so it has no "/"; it has no control characters, and no
# lone surrogates, as JSON's "\ud800" is not text a URL or a header can carry.
_JOB_ID: Final = re.compile(r"[^/\x00-\x1f\x7f\ud800-\udfff]+")
# An RFC 3339 date-time (section 5.6): "T" and "Z" in either case (its note allows that), any
# number of digits of a second, an offset that is "Z" or +hh:mm / -hh:mm, nothing around it. The
# ranges of the fields are the datetime constructor's to check; a second of 60 is a leap second.
_DATE_TIME: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)


class ApiError(Exception):
    """A request refused: the HTTP status, a stable code and a message for the client."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def _invalid(message: str) -> NoReturn:
    raise ApiError(422, "invalid", message)


def _no_constants(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


async def read_json(request: Request, max_bytes: int) -> object:
    """The request's body as JSON.

    Raises:
        ApiError: 415 ``unsupported_media_type`` unless the body is declared JSON
            (``application/json``, or a ``+json`` type): a web page cannot send that to another
            site without the browser asking first; 413 ``body_too_large`` once more than
            ``max_bytes`` have been declared or have arrived (the rest is not read); 400
            ``malformed_json`` for a body that is not UTF-8 JSON (``NaN``, ``Infinity`` and
            numbers too large for a float included, and nesting too deep to parse); 400
            ``client_disconnected`` if the client went away before the end of the body.
    """
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"the body must be JSON, with Content-Type: application/json (got {media_type!r})",
        )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes)
    chunks = []
    size = 0
    try:
        async with aclosing(request.stream()) as stream:
            async for chunk in stream:
                size += len(chunk)
                if size > max_bytes:
                    raise _too_large(max_bytes)
                chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(400, "client_disconnected", "the client went away") from None
    try:
        return _DECODER.decode(b"".join(chunks).decode("utf-8-sig"))  # a BOM is allowed
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ApiError(400, "malformed_json", f"the body is not JSON: {exc}") from None


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 is inf
        raise ValueError(f"{text} is too large for a number")
    return value


# Made once: json.loads with any option builds a decoder on every call.
_DECODER: Final = json.JSONDecoder(parse_constant=_no_constants, parse_float=_float)


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(413, "body_too_large", f"the body is longer than {max_bytes} bytes")


class SubmitOptions(TypedDict):
    """The keyword arguments of ``JobPool.submit`` a submission gives."""

    job_id: str | None
    priority: int
    timeout: float | None
    retry: RetryPolicy | None
    delay: float | None
    at: datetime.datetime | None
    key: str | None


@dataclass(frozen=True, slots=True)
class Submission:
    """A checked ``POST /api/v1/jobs`` body."""

    name: str
    args: tuple[Any, ...]
    options: SubmitOptions


def parse_submission(body: object, registry: JobRegistry) -> Submission:
    """Check a submission's fields (422 ``invalid``), then its name (400 ``unknown_job_name``)."""
    fields = _object(body, _SUBMIT_FIELDS, "the body")
    name = fields.get("name")
    if not isinstance(name, str):
        _invalid("'name' is required and must be a string")
    args = fields.get("args", [])
    if not isinstance(args, list):
        _invalid("'args' must be an array")
    priority = _int(fields, "priority", 5, -MAX_PRIORITY, MAX_PRIORITY)
    job_id = fields.get("job_id")
    if job_id is not None:
        if not isinstance(job_id, str) or not 1 <= len(job_id) <= MAX_JOB_ID:
            _invalid(f"'job_id' must be a string of 1 to {MAX_JOB_ID} characters")
        if not _JOB_ID.fullmatch(job_id) or job_id in (".", ".."):
            _invalid(
                "'job_id' must not contain '/', control characters or lone surrogates, "
                "nor be '.' or '..'"
            )
    timeout = _number(fields, "timeout")
    retry = _retry(fields.get("retry"))
    delay = _number(fields, "delay")
    at = _date_time(fields, "at")
    if delay is not None and at is not None:
        _invalid("give 'delay' or 'at', not both")
    key = fields.get("key")
    if key is not None:
        if not isinstance(key, str):
            _invalid(f"'key' must be a string or null, got {json.dumps(key)[:100]}")
        key = _key(key, "'key'")
    if name not in registry:
        raise ApiError(400, "unknown_job_name", f"no job is registered as {name!r}")
    options = SubmitOptions(
        job_id=job_id,
        priority=priority,
        timeout=timeout,
        retry=retry,
        delay=delay,
        at=at,
        key=key,
    )
    return Submission(name, tuple(args), options)


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """A checked ``PUT /api/v1/schedules/{name}`` body: the arguments of ``JobPool.schedule``
    but the schedule's name (``name`` is the registered job's)."""

    name: str
    args: tuple[Any, ...]
    cron: str | None
    every: float | None
    tz: str
    priority: int
    timeout: float | None
    retry: RetryPolicy | None
    overlap: str
    misfire: str
    paused: bool


@functools.cache
def time_zones() -> frozenset[str]:
    """The time zones a schedule may name: the IANA zones this machine knows
    (``zoneinfo.available_timezones()``, which the OpenAPI document lists) and ``UTC``, less
    the files of a machine (``localtime``, ``posixrules``) that the pool refuses. Read once
    (walking the zone files takes tens of milliseconds)."""
    return frozenset(zoneinfo.available_timezones() | {"UTC"}) - _MACHINE_ZONES


def parse_schedule_name(name: str) -> str:
    """A schedule's name from a path, as ``PUT`` takes it (422 ``invalid``): 1 to
    ``MAX_SCHEDULE_NAME`` characters, no ``/`` and no control characters (a tick's job id,
    ``name@tick``, must be an id a client can give), not ``.`` or ``..``."""
    if not 1 <= len(name) <= MAX_SCHEDULE_NAME:
        _invalid(f"a schedule's name must have 1 to {MAX_SCHEDULE_NAME} characters")
    if not _JOB_ID.fullmatch(name) or name in (".", ".."):
        _invalid(
            "a schedule's name must not contain '/', control characters or lone surrogates, "
            "nor be '.' or '..'"
        )
    return name


def parse_schedule(body: object, registry: JobRegistry) -> ScheduleSpec:
    """Check a schedule's fields (422 ``invalid``, naming the field), then its job's name (400
    ``unknown_job_name``). Exactly one of ``cron`` and ``every`` (``null`` is the same as
    leaving a field out); ``tz`` one of :func:`time_zones`. A cron expression is checked only
    for its type here: the pool reads it (``JobPool.schedule`` raises ``ValueError`` for a bad
    one, which the app answers 422 naming ``cron``)."""
    fields = _object(body, _SCHEDULE_FIELDS, "the body")
    name = fields.get("name")
    if not isinstance(name, str):
        _invalid("'name' (the registered job's name) is required and must be a string")
    args = fields.get("args", [])
    if not isinstance(args, list):
        _invalid("'args' must be an array")
    cron = fields.get("cron")
    if cron is not None and not isinstance(cron, str):
        _invalid(f"'cron' must be a cron expression (a string) or null, got {json.dumps(cron)}")
    every = fields.get("every")
    if every is not None:
        if type(every) not in (int, float) or not 1 <= every < math.inf:
            _invalid(f"'every' must be a number of seconds >= 1 or null, got {json.dumps(every)}")
        try:
            every = float(every)
        except OverflowError:  # an int of hundreds of digits
            _invalid("'every' is too large")
    if (cron is None) == (every is None):
        _invalid(
            "give one of 'cron' and 'every', not both"
            if cron is not None
            else "give one of 'cron' (a cron expression) and 'every' (seconds)"
        )
    tz = fields.get("tz", "UTC")
    if not isinstance(tz, str) or tz not in time_zones():
        _invalid(
            f"'tz' must be an IANA time zone name such as 'Europe/Berlin' or 'UTC', got "
            f"{json.dumps(tz)[:100]}"
        )
    priority = _int(fields, "priority", 5, -MAX_PRIORITY, MAX_PRIORITY)
    timeout = _number(fields, "timeout")
    retry = _retry(fields.get("retry"))
    overlap = _word(fields, "overlap", OVERLAPS)
    misfire = _word(fields, "misfire", MISFIRES)
    paused = fields.get("paused", False)
    if not isinstance(paused, bool):
        _invalid(f"'paused' must be true or false, got {json.dumps(paused)}")
    if name not in registry:
        raise ApiError(400, "unknown_job_name", f"no job is registered as {name!r}")
    return ScheduleSpec(
        name=name,
        args=tuple(args),
        cron=cron,
        every=every,
        tz=tz,
        priority=priority,
        timeout=timeout,
        retry=retry,
        overlap=overlap,
        misfire=misfire,
        paused=paused,
    )


def _word(fields: dict[str, Any], name: str, allowed: tuple[str, ...]) -> str:
    """A field that is one of the words ``allowed`` (the first by default)."""
    value = fields.get(name, allowed[0])
    if value not in allowed:
        _invalid(
            f"{name!r} must be one of {', '.join(map(repr, allowed))}, got {json.dumps(value)}"
        )
    return str(value)


def parse_key(key: str) -> str:
    """A flow-control key from a path (``/api/v1/limits/{key}``), as a submission's ``key`` is
    checked (422 ``invalid``)."""
    return _key(key, "a key")


def _key(key: str, what: str) -> str:
    """``key`` if it is a key a client may give: 1 to ``MAX_KEY`` characters, no ``/``, no
    control characters and no lone surrogates, not ``.`` or ``..`` (the characters of a job id):
    every key a submission gives is then one segment of a URL, its limit's
    ``/api/v1/limits/{key}``. Else 422 ``invalid`` naming ``what``."""
    if not 1 <= len(key) <= MAX_KEY:
        _invalid(f"{what} must be a string of 1 to {MAX_KEY} characters")
    if not _JOB_ID.fullmatch(key) or key in (".", ".."):
        _invalid(
            f"{what} must not contain '/', control characters or lone surrogates, "
            "nor be '.' or '..'"
        )
    return key


def parse_limit(body: object) -> Limit:
    """The :class:`Limit` of a ``PUT /api/v1/limits/{key}`` body, ``{"max_running": 2, "rate":
    {"count": 10, "per": 60}}`` (422 ``invalid``, naming the field): ``max_running`` an integer
    within 0 and ``MAX_COUNT`` or ``null``; ``rate`` ``null`` or an object of exactly ``count``
    (an integer within 1 and ``MAX_COUNT``) and ``per`` (seconds, a number ``> 0``). ``null``
    is the same as leaving a field out; at least one of them must be given (a limit of
    neither limits nothing: ``DELETE`` removes a key's limit)."""
    fields = _object(body, _LIMIT_FIELDS, "the body")
    max_running = None
    if fields.get("max_running") is not None:
        max_running = _int(fields, "max_running", 0, 0, MAX_COUNT)
    rate = None
    if fields.get("rate") is not None:
        given = _object(fields["rate"], _RATE_FIELDS, "'rate'")
        if "count" not in given or "per" not in given:
            _invalid("'rate' must have both 'count' and 'per'")
        count = _int(given, "count", 0, 1, MAX_COUNT)
        per = given["per"]
        if type(per) not in (int, float) or not 0 < per < math.inf:
            _invalid(f"'per' must be a number of seconds > 0, got {json.dumps(per)[:100]}")
        try:
            rate = Rate(count, float(per))
        except OverflowError:  # an int of hundreds of digits
            _invalid("'per' is too large")
    if max_running is None and rate is None:
        _invalid(
            "give 'max_running', 'rate' or both (DELETE /api/v1/limits/{key} removes a key's limit)"
        )
    return Limit(max_running=max_running, rate=rate)


def parse_resize(body: object, low: int, high: int) -> int:
    """The ``max_workers`` of a ``PUT /api/v1/jobs/pool/size`` body, within ``low`` ..
    ``high`` (422 ``invalid``)."""
    fields = _object(body, frozenset({"max_workers"}), "the body")
    if "max_workers" not in fields:
        _invalid("'max_workers' is required")
    return _int(fields, "max_workers", 0, low, high)


def int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    """An integer query parameter within ``low`` .. ``high`` (422 ``invalid``)."""
    text = request.query_params.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        _invalid(f"the query parameter {name!r} must be an integer, got {text!r}")
    if not low <= value <= high:
        _invalid(f"the query parameter {name!r} must be within {low} and {high}, got {value}")
    return value


def float_param(request: Request, name: str, high: float) -> float | None:
    """A number query parameter within 0 .. ``high``, or ``None`` (422 ``invalid``)."""
    text = request.query_params.get(name)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        _invalid(f"the query parameter {name!r} must be a number, got {text!r}")
    if not 0 <= value <= high:  # NaN fails this too
        _invalid(f"the query parameter {name!r} must be within 0 and {high}, got {text!r}")
    return value


def _object(value: object, allowed: frozenset[str], what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        _invalid(f"{what} must be a JSON object")
    unknown = sorted(set(value) - allowed)
    if unknown:
        _invalid(f"unknown field {unknown[0]!r} in {what} (known: {', '.join(sorted(allowed))})")
    return value


def _int(fields: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = fields.get(name, default)
    if type(value) is float and value.is_integer():  # JSON's 3.0 is the integer 3
        value = int(value)
    if type(value) is not int:  # a bool is not a number here
        _invalid(f"{name!r} must be an integer, got {json.dumps(value)}")
    if not low <= value <= high:
        _invalid(f"{name!r} must be within {low} and {high}, got {value}")
    return value


def _number(fields: dict[str, Any], name: str) -> float | None:
    value = fields.get(name)
    if value is None:
        return None
    if type(value) not in (int, float) or not 0 <= value < math.inf:
        _invalid(f"{name!r} must be a number >= 0 or null, got {json.dumps(value)}")
    try:
        return float(value)
    except OverflowError:  # an int of hundreds of digits
        _invalid(f"{name!r} is too large")


def _date_time(fields: dict[str, Any], name: str) -> datetime.datetime | None:
    """The aware datetime of an RFC 3339 date-time field (with its offset: ``Z`` or
    ``+01:00``), or ``None`` for an absent or null one. A leap second (``23:59:60Z``) is the
    second after ``23:59:59Z``; digits of a second beyond microseconds are dropped.

    Raises:
        ApiError: 422 ``invalid``, naming the field: not a string, not an RFC 3339 date-time,
            no offset (a local time names no instant), or a field out of its range.
    """
    value = fields.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        _invalid(f"{name!r} must be an RFC 3339 date-time string or null, got {json.dumps(value)}")
    found = _DATE_TIME.fullmatch(value)
    if found is None:
        if _DATE_TIME.fullmatch(value + "Z") is not None:
            _invalid(
                f"{name!r} must have a UTC offset ('Z' or '+01:00'), got {value!r}: a local "
                "time names no instant"
            )
        _invalid(
            f"{name!r} must be an RFC 3339 date-time such as '2026-12-07T10:00:00Z' or "
            f"'2026-12-07T11:00:00+01:00', got {json.dumps(value)[:100]}"
        )
    year, month, day, hour, minute, second, fraction, _, sign, hours, minutes = found.groups()
    leap = second == "60"
    try:
        if int(hours or 0) > 23 or int(minutes or 0) > 59:
            raise ValueError(f"no such UTC offset: {sign}{hours}:{minutes}")
        offset = datetime.timedelta(hours=int(hours or 0), minutes=int(minutes or 0))
        zone = datetime.timezone(-offset if sign == "-" else offset)
        moment = datetime.datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            59 if leap else int(second),
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=zone,
        )
        return moment + datetime.timedelta(seconds=1) if leap else moment
    except (ValueError, OverflowError) as exc:  # a 13th month, a 30th of February, year 0
        _invalid(f"{name!r} is not a valid date-time ({exc}), got {value!r}")


def _retry(value: object) -> RetryPolicy | None:
    if value is None:
        return None
    fields = _object(value, _RETRY_FIELDS, "'retry'")
    given: dict[str, Any] = {}  # what is not given keeps RetryPolicy's default
    if "max_attempts" in fields:
        given["max_attempts"] = _int(fields, "max_attempts", 0, 1, 1000)
    for name in ("backoff", "max_backoff"):
        if fields.get(name) is not None:
            given[name] = _number(fields, name)
    if "jitter" in fields:
        if not isinstance(fields["jitter"], bool):
            _invalid(f"'jitter' must be true or false, got {json.dumps(fields['jitter'])}")
        given["jitter"] = fields["jitter"]
    try:
        return RetryPolicy(**given)
    except (TypeError, ValueError) as exc:
        _invalid(f"'retry': {exc}")
