"""``trio-jobpool limits list|set|delete``: the flow-control limits of a running ``serve``.

A client of ``GET /api/v1/limits``, ``PUT /api/v1/limits/{key}`` and ``DELETE
/api/v1/limits/{key}`` (docs/service.md), through :class:`._client.Client`: the same ``--url``
and ``--token``, errors and exit codes as ``submit`` and ``schedules``. ``rich`` (the ``[cli]``
extra) draws the table of ``list``; plain lines stand in for it without it.
"""

from __future__ import annotations

import json
import math
import urllib.parse
from typing import Any

from ._client import Client
from ._errors import EXIT_UNREACHABLE, CliError
from ._output import print_table

__all__ = ["delete_limit", "limit_text", "list_limits", "set_limit"]


def _limit_path(key: str) -> str:
    return f"/api/v1/limits/{urllib.parse.quote(key, safe='')}"


def list_limits(client: Client, *, as_json: bool = False) -> int:
    """``limits list``: the keys of ``GET /api/v1/limits`` as a table (key, running, waiting,
    limit: the key's own, or the pool's ``key_limit`` marked as such), or the JSON the server
    sent. The keys are those with a limit of their own and those now at their limit with jobs
    waiting, sorted by key. No cell is cut short: on a terminal the table wraps to its width;
    elsewhere (a pipe, a file) each key takes one line."""
    answer = client.request("GET", "/api/v1/limits")
    if as_json:
        print(json.dumps(answer, indent=2, ensure_ascii=False))
        return 0
    keys = answer.get("keys") if isinstance(answer, dict) else None
    own = answer.get("limits") if isinstance(answer, dict) else None
    if not isinstance(keys, list) or not isinstance(own, dict):
        raise CliError(EXIT_UNREACHABLE, f"unexpected limits from {client.url}: {answer!r}")
    rows = [_row(stats, own) for stats in keys if isinstance(stats, dict)]
    print_table("limits", client.url, _COLUMNS, rows, right=("running", "waiting"))
    return 0


_COLUMNS = ("key", "running", "waiting", "limit")


def _row(stats: dict[str, Any], own: dict[str, Any]) -> tuple[str, ...]:
    """A key's cells: its name, running and waiting jobs, and its limit (``(pool default)``
    after a limit that is the pool's ``key_limit``, not the key's own)."""
    key = str(stats.get("key"))
    limit = stats.get("limit")
    text = limit_text(limit)
    if limit is not None and key not in own:
        text += " (pool default)"
    return (key, str(stats.get("running")), str(stats.get("waiting")), text)


def limit_text(limit: object) -> str:
    """A limit's JSON (``Limit.to_json()``) as ``max_running=2, rate=10/60s`` (the text of
    ``str(Limit)``); ``none`` for ``null``; anything else as it is."""
    if limit is None:
        return "none"
    if not isinstance(limit, dict):
        return str(limit)
    parts = []
    if limit.get("max_running") is not None:
        parts.append(f"max_running={limit['max_running']}")
    rate = limit.get("rate")
    if isinstance(rate, dict):
        parts.append(f"rate={rate.get('count')}/{_seconds(rate.get('per'))}s")
    return ", ".join(parts) or "none"


def _seconds(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return str(value)
    return f"{value:g}"


def set_limit(
    client: Client,
    key: str,
    *,
    max_running: int | None = None,
    rate: tuple[int, float] | None = None,
) -> int:
    """``limits set``: set the key's limit (``max_running``, ``rate`` as ``(count, per)``; the
    part left out is unlimited: the limit set replaces the key's own whole); prints ``set
    limit of KEY: max_running=2 (running 1, waiting 4)``. The server checks every field (422,
    exit 2)."""
    body: dict[str, Any] = {
        "max_running": max_running,
        "rate": None if rate is None else {"count": rate[0], "per": rate[1]},
    }
    answer = client.request("PUT", _limit_path(key), body)
    if not isinstance(answer, dict):
        raise CliError(EXIT_UNREACHABLE, f"unexpected answer from {client.url}: {answer!r}")
    print(
        f"set limit of {answer.get('key', key)}: {limit_text(answer.get('limit'))} "
        f"(running {answer.get('running')}, waiting {answer.get('waiting')})"
    )
    return 0


def delete_limit(client: Client, key: str) -> int:
    """``limits delete``: remove the key's own limit; prints ``limit deleted: KEY``, or
    ``no limit of its own: KEY`` when it had none (exit 0 both: nothing is left to remove)."""
    answer = client.request("DELETE", _limit_path(key))
    removed = answer.get("removed") if isinstance(answer, dict) else None
    print(f"{'limit deleted' if removed else 'no limit of its own'}: {key}")
    return 0
