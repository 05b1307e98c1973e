"""The OpenAPI 3.1 document of the app (served at ``/openapi.json``).

Written out by hand, next to the checks of :mod:`._input` it describes; the tests fuzz the app
with schemathesis from this document, which holds the two together: a request the document
allows is accepted, every answer matches its schema and its documented status.
"""

from __future__ import annotations

import copy
from typing import Any

from trio_jobpool import PoolStats, __version__

from ._input import (
    MAX_COUNT,
    MAX_JOB_ID,
    MAX_KEY,
    MAX_PRIORITY,
    MAX_SCHEDULE_NAME,
    MISFIRES,
    OVERLAPS,
    time_zones,
)

__all__ = ["openapi_document"]

Schema = dict[str, Any]

_NUMBER_OR_NULL: Schema = {"type": ["number", "null"]}
_SECONDS: Schema = {"type": ["number", "null"], "minimum": 0}

# One segment of a URL path: no "/", no control characters (a job id, a schedule's name, a key).
_SEGMENT = "^[^/\\u0000-\\u001f\\u007f]+$"
_KEY: Schema = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_KEY,
    "pattern": _SEGMENT,
    "not": {"enum": [".", ".."]},
}
_MAX_RUNNING: Schema = {
    "type": ["integer", "null"],
    "minimum": 0,
    "maximum": MAX_COUNT,
    "description": "at most this many of the key's jobs run at once (0: none); null: no bound",
}
_RATE_OR_NULL: Schema = {
    "oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/Rate"}],
    "description": "at most count starts of the key in any window of per seconds; null: none",
}

_ALL: list[str] = []  # "required": every property; the loop after _SCHEMAS fills it in

_SCHEMAS: dict[str, Schema] = {
    "Error": {
        "type": "object",
        "required": ["error", "message"],
        "properties": {
            "error": {"type": "string"},
            "message": {"type": "string"},
            "job_id": {"type": "string", "description": "the job, for outcome_unknown (504)"},
        },
    },
    "Retry": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "max_attempts": {"type": "integer", "minimum": 1, "maximum": 1000},
            "backoff": _SECONDS,
            "max_backoff": _SECONDS,
            "jitter": {"type": "boolean"},
        },
    },
    "Submission": {
        "type": "object",
        "additionalProperties": False,
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "description": "a registered job's name"},
            "args": {"type": "array", "items": {}, "description": "positional arguments"},
            "priority": {
                "type": "integer",
                "minimum": -MAX_PRIORITY,
                "maximum": MAX_PRIORITY,
                "default": 5,
                "description": "lower runs first; FIFO within one priority",
            },
            "job_id": {
                "type": ["string", "null"],
                "minLength": 1,
                "maxLength": MAX_JOB_ID,
                "pattern": _SEGMENT,
                "not": {"enum": [".", ".."]},
            },
            "timeout": {**_SECONDS, "description": "seconds per attempt; null: the pool's"},
            "retry": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/Retry"}]},
            "delay": {
                **_SECONDS,
                "description": (
                    "run no earlier than this many seconds from now (scheduled: never 429); "
                    "0: at once. Not with at"
                ),
            },
            "at": {
                "type": ["string", "null"],
                "format": "date-time",
                "description": (
                    "run no earlier than this RFC 3339 time, with its offset (Z or +01:00); a "
                    "time not in the future submits at once. Not with delay"
                ),
            },
            "key": {
                **_KEY,
                "type": ["string", "null"],
                "description": (
                    "the job's flow-control key (a tenant, an API): its limit "
                    "(PUT /api/v1/limits/{key}) holds its jobs queued without holding a worker"
                ),
            },
        },
        # delay and at: one of them at most (null is not given)
        "not": {
            "required": ["delay", "at"],
            "properties": {"delay": {"type": "number"}, "at": {"type": "string"}},
        },
    },
    "Accepted": {
        "type": "object",
        "required": ["job_id", "status"],
        "properties": {
            "job_id": {"type": "string"},
            "status": {"enum": ["queued", "scheduled"]},
            "scheduled_for": {
                "type": "number",
                "description": "when a scheduled job is due (seconds since the epoch)",
            },
        },
    },
    "Job": {
        "type": "object",
        "required": _ALL,
        "properties": {
            "job_id": {"type": "string"},
            "name": {"type": "string"},
            "priority": {"type": "integer"},
            "key": {"type": ["string", "null"], "description": "its flow-control key"},
            "status": {
                "enum": [
                    "scheduled",
                    "queued",
                    "retrying",
                    "running",
                    "completed",
                    "failed",
                    "cancelled",
                    "timed_out",
                ]
            },
            "attempts": {"type": "integer", "minimum": 0},
            "progress": {"type": "number", "minimum": 0, "maximum": 1},
            "progress_message": {"type": ["string", "null"]},
            "submitted_at": {"type": "number"},
            "scheduled_for": {
                **_NUMBER_OR_NULL,
                "description": "when it is (or was last) due; null: never scheduled",
            },
            "started_at": _NUMBER_OR_NULL,
            "finished_at": _NUMBER_OR_NULL,
            "exec_time": _NUMBER_OR_NULL,
            "result": {"description": "the value of a completed job (or its repr)"},
            "error": {
                "oneOf": [
                    {"type": "null"},
                    {
                        "type": "object",
                        "required": ["type", "message"],
                        "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
                    },
                ]
            },
        },
    },
    "JobList": {
        "type": "object",
        "required": ["jobs"],
        "properties": {"jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}}},
    },
    "Cancelled": {
        "type": "object",
        "required": ["message", "job_id"],
        "properties": {"message": {"const": "job cancelled"}, "job_id": {"type": "string"}},
    },
    "PoolStats": {
        "type": "object",
        "required": list(PoolStats.__dataclass_fields__),
        "properties": {
            name: {"type": "integer" if field.type == "int" else "number", "minimum": 0}
            for name, field in PoolStats.__dataclass_fields__.items()
        },
    },
    "Resize": {
        "type": "object",
        "additionalProperties": False,
        "required": ["max_workers"],
        "properties": {"max_workers": {"type": "integer"}},
    },
    "Size": {
        "type": "object",
        "required": ["max_workers"],
        "properties": {"max_workers": {"type": "integer", "minimum": 0}},
    },
    "Info": {
        "type": "object",
        "required": _ALL,
        "properties": {
            "version": {"type": "string"},
            "store": {"type": "string"},
            "closed": {"type": "boolean"},
            "names": {"type": "array", "items": {"type": "string"}},
            "token_required": {"type": "boolean"},
            "submit_wait": {"type": "number"},
            "max_body_bytes": {"type": "integer"},
        },
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"enum": ["ok", "closed"]}},
    },
    "ScheduleDefinition": {
        "type": "object",
        "additionalProperties": False,
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "description": "the registered job's name"},
            "args": {"type": "array", "items": {}, "description": "the job's arguments"},
            "cron": {
                "type": ["string", "null"],
                "format": "cron",
                "description": (
                    "a 5-field cron expression (minute hour day-of-month month day-of-week: "
                    "numbers, names, *, lists, ranges, steps), read in tz; the pool checks "
                    "it (422 naming cron). Not with every"
                ),
                "examples": ["30 2 * * *", "*/15 9-17 * * MON-FRI"],
            },
            "every": {
                "type": ["number", "null"],
                "minimum": 1,
                "description": "seconds between ticks (from the declaration). Not with cron",
            },
            "tz": {
                "type": "string",
                "default": "UTC",
                "description": "the IANA time zone cron is read in",
            },
            "priority": {
                "type": "integer",
                "minimum": -MAX_PRIORITY,
                "maximum": MAX_PRIORITY,
                "default": 5,
            },
            "timeout": {**_SECONDS, "description": "seconds per attempt; null: the pool's"},
            "retry": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/Retry"}]},
            "overlap": {
                "enum": list(OVERLAPS),
                "default": OVERLAPS[0],
                "description": "skip: no tick while the schedule's last job is live",
            },
            "misfire": {
                "enum": list(MISFIRES),
                "default": MISFIRES[0],
                "description": "once: one job for the latest tick missed while no pool ran",
            },
            "paused": {"type": "boolean", "default": False},
        },
        # exactly one of cron and every (null is not given)
        "oneOf": [
            {
                "required": ["cron"],
                "properties": {"cron": {"type": "string"}, "every": {"type": "null"}},
            },
            {
                "required": ["every"],
                "properties": {"every": {"type": "number"}, "cron": {"type": "null"}},
            },
        ],
    },
    "Schedule": {
        "type": "object",
        "required": _ALL,
        "properties": {
            "name": {"type": "string"},
            "job_name": {"type": "string"},
            "args": {"type": "array", "items": {}},
            "cron": {"type": ["string", "null"]},
            "every": _NUMBER_OR_NULL,
            "tz": {"type": "string"},
            "priority": {"type": "integer"},
            "timeout": _NUMBER_OR_NULL,
            "retry": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/Retry"}]},
            "overlap": {"enum": list(OVERLAPS)},
            "misfire": {"enum": list(MISFIRES)},
            "paused": {"type": "boolean"},
            "next_run": {
                **_NUMBER_OR_NULL,
                "description": "the next tick (seconds since the epoch), also while paused",
            },
            "last_run": {
                **_NUMBER_OR_NULL,
                "description": "the tick of the last job it submitted",
            },
            "last_job_id": {"type": ["string", "null"]},
            "runs": {"type": "integer", "minimum": 0},
            "skipped": {"type": "integer", "minimum": 0},
        },
    },
    "ScheduleList": {
        "type": "object",
        "required": ["schedules"],
        "properties": {
            "schedules": {"type": "array", "items": {"$ref": "#/components/schemas/Schedule"}}
        },
    },
    "ScheduleDeleted": {
        "type": "object",
        "required": ["message", "name"],
        "properties": {"message": {"const": "schedule deleted"}, "name": {"type": "string"}},
    },
    "Rate": {
        "type": "object",
        "additionalProperties": False,
        "required": ["count", "per"],
        "properties": {
            "count": {"type": "integer", "minimum": 1, "maximum": MAX_COUNT},
            "per": {"type": "number", "exclusiveMinimum": 0, "description": "seconds"},
        },
    },
    "LimitDefinition": {
        "type": "object",
        "additionalProperties": False,
        "properties": {"max_running": _MAX_RUNNING, "rate": _RATE_OR_NULL},
        # at least one of them (null is not given)
        "anyOf": [
            {"required": ["max_running"], "properties": {"max_running": {"type": "integer"}}},
            {"required": ["rate"], "properties": {"rate": {"type": "object"}}},
        ],
    },
    "Limit": {
        "type": "object",
        "required": _ALL,
        "properties": {"max_running": _MAX_RUNNING, "rate": _RATE_OR_NULL},
    },
    "KeyStats": {
        "type": "object",
        "required": _ALL,
        "properties": {
            "key": {"type": "string"},
            "running": {
                "type": "integer",
                "minimum": 0,
                "description": "its jobs running now (in this process)",
            },
            "waiting": {
                "type": "integer",
                "minimum": 0,
                "description": "its jobs queued now (in this process)",
            },
            "limit": {
                "oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/Limit"}],
                "description": "the limit that applies: its own, else the pool's key_limit",
            },
        },
    },
    "LimitList": {
        "type": "object",
        "required": ["limits", "keys"],
        "properties": {
            "limits": {
                "type": "object",
                "additionalProperties": {"$ref": "#/components/schemas/Limit"},
                "description": "every key's own limit, by key",
            },
            "keys": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/KeyStats"},
                "description": (
                    "the keys with a limit of their own, and the keys at their limit with "
                    "jobs waiting, sorted by key"
                ),
            },
        },
    },
    "LimitDeleted": {
        "type": "object",
        "required": ["message", "key", "removed"],
        "properties": {
            "message": {"enum": ["limit deleted", "the key had no limit of its own"]},
            "key": {"type": "string"},
            "removed": {
                "type": "boolean",
                "description": "whether the key had a limit of its own",
            },
        },
    },
}

for _schema in _SCHEMAS.values():
    if _schema.get("required") is _ALL:
        _schema["required"] = list(_schema["properties"])

_ERRORS = {
    400: "malformed JSON, or a name that is not registered",
    401: "a token is configured and the request lacks it",
    403: "a browser's request from a page of another origin",
    408: "the body did not arrive within the server's body timeout",
    404: "no such job or schedule",
    409: "a live job has this id / the job has ended",
    413: "the body is too long",
    415: "the body is not declared JSON (Content-Type: application/json)",
    422: (
        "a field or parameter is missing, of the wrong type or out of range (the message "
        "names it); delay with at; a bad cron expression, zone, or cron with every; a "
        "limit of neither max_running nor rate; a key a path cannot hold"
    ),
    429: "the queue is full; try again after Retry-After seconds",
    503: "the pool is closed, its store cannot be reached, or too many bodies are being read",
    504: "the store did not answer a submit: the job (its job_id in the answer) may be accepted",
}


def _json(schema: str, description: str) -> Schema:
    ref = {"$ref": f"#/components/schemas/{schema}"}
    return {"description": description, "content": {"application/json": {"schema": ref}}}


def _errors(*statuses: int) -> dict[str, Schema]:
    answers = {str(status): _json("Error", _ERRORS[status]) for status in statuses}
    if 429 in statuses:
        answers["429"]["headers"] = {
            "Retry-After": {
                "description": (
                    "seconds: the jobs waiting now over the rate jobs ended in the last "
                    "minute, 1 to 300"
                ),
                "schema": {"type": "integer", "minimum": 1, "maximum": 300},
            }
        }
    return answers


def _body(schema: str) -> Schema:
    ref = {"$ref": f"#/components/schemas/{schema}"}
    return {"required": True, "content": {"application/json": {"schema": ref}}}


_JOB_ID_PARAMETER: Schema = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1},
}
_SCHEDULE_PARAMETER: Schema = {
    "name": "name",
    "in": "path",
    "required": True,
    "description": "the schedule's name",
    "schema": {"type": "string", "minLength": 1},
}

_KEY_PARAMETER: Schema = {
    "name": "key",
    "in": "path",
    "required": True,
    "description": "the flow-control key",
    "schema": _KEY,
}


# Every operation that changes state has "security" (the bearer token) and a 401 answer, as in
# an app with a token; openapi_document takes both out of the document of an app without one.
_PATHS: dict[str, Any] = {
    "/api/v1/jobs": {
        "post": {
            "summary": "Submit a registered job",
            "operationId": "submitJob",
            "requestBody": _body("Submission"),
            "responses": {
                "202": _json("Accepted", "accepted: the job is queued, or scheduled"),
                **_errors(400, 401, 403, 408, 409, 413, 415, 422, 429, 503, 504),
            },
            "security": [{"bearer": []}],
        },
        "get": {
            "summary": (
                "Recent jobs: running, then waiting, then ended; with status=scheduled, the "
                "scheduled jobs, earliest due first"
            ),
            "operationId": "listJobs",
            "parameters": [
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                },
                {
                    "name": "status",
                    "in": "query",
                    "description": "scheduled: only the scheduled jobs, earliest due first",
                    "schema": {"type": "string", "enum": ["scheduled"]},
                },
            ],
            "responses": {"200": _json("JobList", "the jobs"), **_errors(422)},
        },
    },
    "/api/v1/jobs/{job_id}": {
        "get": {
            "summary": "One job; with wait, first wait up to that long for it to end",
            "operationId": "getJob",
            "parameters": [
                _JOB_ID_PARAMETER,
                {
                    "name": "wait",
                    "in": "query",
                    "schema": {"type": "number", "minimum": 0, "maximum": 60},
                },
            ],
            "responses": {"200": _json("Job", "the job"), **_errors(404, 422, 503)},
        }
    },
    "/api/v1/jobs/{job_id}/cancel": {
        "post": {
            "summary": "Cancel a live job",
            "operationId": "cancelJob",
            "parameters": [_JOB_ID_PARAMETER],
            "responses": {
                "200": _json("Cancelled", "cancelled"),
                **_errors(401, 403, 404, 409, 503),
            },
            "security": [{"bearer": []}],
        }
    },
    "/api/v1/jobs/pool/stats": {
        "get": {
            "summary": "The pool's stats (PoolStats.as_dict())",
            "operationId": "poolStats",
            "parameters": [
                {
                    "name": "cluster",
                    "in": "query",
                    "description": "true: every process of a distributed pool",
                    "schema": {"type": "string", "enum": ["true", "false"], "default": "false"},
                }
            ],
            "responses": {"200": _json("PoolStats", "the stats"), **_errors(422, 503)},
        }
    },
    "/api/v1/jobs/pool/size": {
        "put": {
            "summary": "Resize the pool",
            "operationId": "resizePool",
            "requestBody": _body("Resize"),
            "responses": {
                "200": _json("Size", "the new size"),
                **_errors(400, 401, 403, 408, 413, 415, 422, 503),
            },
            "security": [{"bearer": []}],
        }
    },
    "/api/v1/jobs/pool/info": {
        "get": {
            "summary": "The service's settings",
            "operationId": "poolInfo",
            "responses": {"200": _json("Info", "the settings")},
        }
    },
    "/api/v1/schedules": {
        "get": {
            "summary": "The periodic schedules, sorted by name",
            "operationId": "listSchedules",
            "responses": {"200": _json("ScheduleList", "the schedules"), **_errors(503)},
        }
    },
    "/api/v1/schedules/{name}": {
        "get": {
            "summary": "One periodic schedule",
            "operationId": "getSchedule",
            "parameters": [_SCHEDULE_PARAMETER],
            "responses": {"200": _json("Schedule", "the schedule"), **_errors(404, 503)},
        },
        "put": {
            "summary": (
                "Declare a periodic schedule, or replace the one of that name (an identical "
                "declaration changes nothing)"
            ),
            "operationId": "declareSchedule",
            "parameters": [
                {
                    **_SCHEDULE_PARAMETER,
                    "schema": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": MAX_SCHEDULE_NAME,
                        "pattern": _SEGMENT,
                        "not": {"enum": [".", ".."]},
                    },
                }
            ],
            "requestBody": _body("ScheduleDefinition"),
            "responses": {
                "200": _json("Schedule", "declared: it existed (replaced, or unchanged)"),
                "201": {
                    **_json("Schedule", "declared: a new schedule"),
                    "headers": {
                        "Location": {
                            "description": "the schedule's URL",
                            "schema": {"type": "string"},
                        }
                    },
                },
                **_errors(400, 401, 403, 408, 413, 415, 422, 503),
            },
            "security": [{"bearer": []}],
        },
        "delete": {
            "summary": "Remove a periodic schedule (the jobs it submitted are not touched)",
            "operationId": "deleteSchedule",
            "parameters": [_SCHEDULE_PARAMETER],
            "responses": {
                "200": _json("ScheduleDeleted", "removed"),
                **_errors(401, 403, 404, 503),
            },
            "security": [{"bearer": []}],
        },
    },
    "/api/v1/limits": {
        "get": {
            "summary": (
                "The keys' own limits, and the keys with a limit or held at one, with their "
                "running and waiting jobs"
            ),
            "operationId": "listLimits",
            "responses": {"200": _json("LimitList", "the limits and the keys"), **_errors(503)},
        }
    },
    "/api/v1/limits/{key}": {
        "get": {
            "summary": "A key's running and waiting jobs, and the limit that applies to it",
            "operationId": "getKeyStats",
            "parameters": [_KEY_PARAMETER],
            "responses": {"200": _json("KeyStats", "the key's stats"), **_errors(422)},
        },
        "put": {
            "summary": "Set a key's limit (replacing its own limit, if it has one)",
            "operationId": "setLimit",
            "parameters": [_KEY_PARAMETER],
            "requestBody": _body("LimitDefinition"),
            "responses": {
                "200": _json("KeyStats", "set: the key's stats, with the limit set"),
                **_errors(400, 401, 403, 408, 413, 415, 422, 503),
            },
            "security": [{"bearer": []}],
        },
        "delete": {
            "summary": (
                "Remove a key's own limit (the pool's key_limit applies again); a key without "
                "one is answered 200 too"
            ),
            "operationId": "deleteLimit",
            "parameters": [_KEY_PARAMETER],
            "responses": {
                "200": _json("LimitDeleted", "removed, or there was none"),
                **_errors(401, 403, 422, 503),
            },
            "security": [{"bearer": []}],
        },
    },
    "/healthz": {
        "get": {
            "summary": "Liveness: 200 while the pool is open",
            "operationId": "health",
            "responses": {
                "200": _json("Health", "open"),
                "503": _json("Health", "the pool is closed"),
            },
        }
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics",
            "operationId": "metrics",
            "responses": {
                "200": {
                    "description": "the Prometheus text format",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        }
    },
}


def openapi_document(
    *, token_required: bool, names: list[str], workers: tuple[int, int], root_path: str = ""
) -> dict[str, Any]:
    """The document; with ``token_required``, the requests that change state need the token;
    ``names``: the registered names a submission may give; ``workers``: the smallest and
    largest size a resize may ask for; ``root_path``: the prefix the app is mounted under
    (``/jobs``), which becomes the document's one ``servers`` entry, so that tools resolve
    its paths under it (without one, no ``servers``: the paths are from the host's root)."""
    schemas = copy.deepcopy(_SCHEMAS)
    schemas["Submission"]["properties"]["name"]["enum"] = names
    definition = schemas["ScheduleDefinition"]["properties"]
    definition["name"]["enum"] = names
    definition["tz"]["enum"] = sorted(time_zones())
    size = schemas["Resize"]["properties"]["max_workers"]
    size["minimum"], size["maximum"] = workers
    paths = copy.deepcopy(_PATHS)
    if not token_required:
        _without_token(paths)
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "trio_jobpool",
            "version": __version__,
            "description": "A job worker pool served over HTTP (docs/service.md).",
        },
        "paths": paths,
        "components": {"schemas": schemas},
    }
    if root_path:
        document["servers"] = [{"url": root_path, "description": "where the app is mounted"}]
    if token_required:
        document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    return document


def _without_token(paths: dict[str, Any]) -> None:
    """Take out of ``paths`` what only an app with a token has: the ``security`` of every
    operation that changes state, and its 401 answer."""
    for operations in paths.values():
        for operation in operations.values():
            if operation.pop("security", None) is not None:
                del operation["responses"]["401"]
