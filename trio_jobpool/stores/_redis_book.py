"""How a periodic schedule is kept in Redis: the fields of its hash, and back.

Each schedule of queue ``q`` is a hash, ``{q}:schedule:<name>``, whose names are in the set
``{q}:schedules``. Its fields are text that the scripts compare and copy as they are, never
decode (Lua's JSON encoder keeps 14 digits of a number, too few for a wall-clock time):

* ``definition``: the declaration's canonical JSON (:func:`definition_text`): two declarations
  are identical exactly when their texts are equal;
* ``declared``: what the declaration said, as JSON (the job, its arguments, the rule, the
  options), read back as given;
* ``anchor``, ``handled_until``, ``next_run``, ``last_run``: wall-clock times as Python's
  ``repr`` of the float (exact both ways; ``last_run`` empty for none);
* ``runs``, ``skipped``: integers; ``last_job_id``: the id, empty for none.

The step that fires a tick compares ``definition``, ``anchor`` and ``handled_until`` with those
of the state the pool planned from (:func:`position_text`): every other change of a schedule (a
declaration, another process's step) changes one of them.
"""

from __future__ import annotations

import json
import math
from typing import Any

from ._base import ScheduleRecord

__all__ = [
    "declaration_fields",
    "definition_text",
    "position_text",
    "schedule_from_fields",
    "state_fields",
    "step_fields",
]


def _text(value: float) -> str:
    return repr(float(value))


def _canonical(value: Any) -> Any:
    """``value`` with every integral finite float as an ``int``: ``1.0`` and ``1`` are the same
    number to :meth:`ScheduleRecord.definition`'s comparison, so they must be to the text's."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    if isinstance(value, dict):
        return {key: _canonical(item) for key, item in value.items()}
    return value


def _declared(record: ScheduleRecord) -> dict[str, Any]:
    return {
        "job_name": record.job_name,
        "args": record.args,
        "cron": record.cron,
        "every": record.every,
        "tz": record.tz,
        "priority": record.priority,
        "timeout": record.timeout,
        "retry": record.retry,
        "overlap": record.overlap,
        "misfire": record.misfire,
        "paused": record.paused,
    }


def definition_text(record: ScheduleRecord) -> str:
    """The canonical JSON of what ``record`` declares (``definition()``): sorted keys, no
    spaces, integral numbers without a fraction."""
    return json.dumps(_canonical(_declared(record)), sort_keys=True, separators=(",", ":"))


def position_text(record: ScheduleRecord) -> tuple[str, str, str]:
    """``record.position()`` as the text a tick's step compares: the definition's canonical
    JSON, the anchor, ``handled_until``."""
    return definition_text(record), _text(record.anchor), _text(record.handled_until)


def declaration_fields(record: ScheduleRecord) -> list[str]:
    """The fields a declaration writes: its definition and its ticks' start."""
    return [
        "definition",
        definition_text(record),
        "declared",
        json.dumps(_declared(record)),
        "anchor",
        _text(record.anchor),
        "handled_until",
        _text(record.handled_until),
        "next_run",
        _text(record.next_run),
    ]


def state_fields(record: ScheduleRecord) -> list[str]:
    """The counters and the last run (kept when a schedule is declared anew)."""
    return [
        "runs",
        str(record.runs),
        "skipped",
        str(record.skipped),
        "last_run",
        "" if record.last_run is None else _text(record.last_run),
        "last_job_id",
        record.last_job_id or "",
    ]


def step_fields(record: ScheduleRecord) -> list[str]:
    """The fields a tick's step writes: how far ticks are handled, and the state."""
    return [
        "handled_until",
        _text(record.handled_until),
        "next_run",
        _text(record.next_run),
        *state_fields(record),
    ]


def schedule_from_fields(name: str, fields: dict[str, str]) -> ScheduleRecord:
    """The schedule ``name`` from the fields of its hash."""
    declared = json.loads(fields["declared"])
    last_run = fields.get("last_run", "")
    return ScheduleRecord(
        name=name,
        job_name=declared["job_name"],
        args=declared["args"],
        cron=declared["cron"],
        every=declared["every"],
        tz=declared["tz"],
        anchor=float(fields["anchor"]),
        priority=declared["priority"],
        timeout=declared["timeout"],
        retry=declared["retry"],
        overlap=declared["overlap"],
        misfire=declared["misfire"],
        paused=declared["paused"],
        handled_until=float(fields["handled_until"]),
        next_run=float(fields["next_run"]),
        last_run=float(last_run) if last_run else None,
        last_job_id=fields.get("last_job_id") or None,
        runs=int(fields.get("runs", "0")),
        skipped=int(fields.get("skipped", "0")),
    )
