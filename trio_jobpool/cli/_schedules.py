"""``trio-jobpool schedules list|set|delete``: the periodic schedules of a running ``serve``.

A client of ``GET /api/v1/schedules``, ``PUT /api/v1/schedules/{name}`` and ``DELETE
/api/v1/schedules/{name}`` (docs/service.md), through :class:`._client.Client`: the same
``--url`` and ``--token``, errors and exit codes as ``submit`` and ``cancel``. ``rich`` (the
``[cli]`` extra) draws the table of ``list``; plain lines stand in for it without it.
"""

from __future__ import annotations

import json
import math
import urllib.parse
from typing import Any

from ._client import Client, due_text
from ._errors import EXIT_UNREACHABLE, CliError
from ._output import print_table

__all__ = ["delete_schedule", "list_schedules", "set_schedule"]


def _schedule_path(name: str) -> str:
    return f"/api/v1/schedules/{urllib.parse.quote(name, safe='')}"


def list_schedules(client: Client, *, as_json: bool = False) -> int:
    """``schedules list``: every schedule of the server as a table (name, job, when, next run
    in this machine's zone, last job, runs, skipped), or the JSON the server sent.

    The last job's id names its tick (``name@2026-12-08T01:30:00Z``), so the table has no
    column of its own for the last run. No cell is cut short: on a terminal the table wraps
    to its width; elsewhere (a pipe, a file) each schedule takes one line."""
    answer = client.request("GET", "/api/v1/schedules")
    if as_json:
        print(json.dumps(answer, indent=2, ensure_ascii=False))
        return 0
    schedules = answer.get("schedules") if isinstance(answer, dict) else None
    if not isinstance(schedules, list):
        raise CliError(EXIT_UNREACHABLE, f"unexpected schedules from {client.url}: {answer!r}")
    rows = [_row(schedule) for schedule in schedules if isinstance(schedule, dict)]
    print_table("schedules", client.url, _COLUMNS, rows, right=("runs", "skipped"))
    return 0


_COLUMNS = ("name", "job", "when", "next run", "last job", "runs", "skipped")


def _row(schedule: dict[str, Any]) -> tuple[str, ...]:
    """A schedule's cells: its name, job, ``cron '...' in ZONE`` or ``every N s`` (``,
    paused``), next run (in this machine's zone), last job, runs and skipped."""
    when = (
        f"cron '{schedule.get('cron')}' in {schedule.get('tz')}"
        if schedule.get("cron") is not None
        else f"every {_seconds_text(schedule.get('every'))}"
    )
    if schedule.get("paused"):
        when += ", paused"
    return (
        str(schedule.get("name")),
        str(schedule.get("job_name")),
        when,
        "-" if schedule.get("next_run") is None else due_text(schedule.get("next_run")),
        str(schedule.get("last_job_id") or "-"),
        str(schedule.get("runs")),
        str(schedule.get("skipped")),
    )


def _seconds_text(value: object) -> str:
    """A period: ``90 s``, ``15 min``, ``6 h``, ``1 d`` when it is a whole number of the unit."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return str(value)
    for unit, seconds in (("d", 86400), ("h", 3600), ("min", 60)):
        if value >= seconds and value % seconds == 0:
            return f"{value // seconds:g} {unit}"
    return f"{value:g} s"


def set_schedule(
    client: Client,
    name: str,
    job: str,
    args: list[Any],
    *,
    cron: str | None = None,
    every: float | None = None,
    tz: str | None = None,
    priority: int | None = None,
    timeout: float | None = None,
    overlap: str | None = None,
    misfire: str | None = None,
    paused: bool = False,
) -> int:
    """``schedules set``: declare the schedule ``name`` (or replace it), running ``job`` with
    ``args`` on ``cron`` or ``every``; prints ``created``/``declared`` with its next run. The
    server checks every field (a bad expression or zone: 422, exit 2). An option left out is
    the server's default, so ``set`` without ``--paused`` declares the schedule running."""
    body: dict[str, Any] = {"name": job, "args": args, "paused": paused}
    for field, value in (
        ("cron", cron),
        ("every", every),
        ("tz", tz),
        ("priority", priority),
        ("timeout", timeout),
        ("overlap", overlap),
        ("misfire", misfire),
    ):
        if value is not None:
            body[field] = value
    status, answer = client.request_with_status("PUT", _schedule_path(name), body)
    if not isinstance(answer, dict):
        raise CliError(EXIT_UNREACHABLE, f"unexpected answer from {client.url}: {answer!r}")
    verb = "created" if status == 201 else "declared"
    state = "paused" if answer.get("paused") else f"next run at {due_text(answer.get('next_run'))}"
    print(f"{verb} schedule {answer.get('name', name)} ({answer.get('job_name', job)}): {state}")
    return 0


def delete_schedule(client: Client, name: str) -> int:
    """``schedules delete``: remove the schedule (404: exit 1); its jobs are not touched."""
    answer = client.request("DELETE", _schedule_path(name))
    message = answer.get("message", "schedule deleted") if isinstance(answer, dict) else answer
    print(f"{message}: {name}")
    return 0
