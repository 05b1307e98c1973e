"""``trio-jobpool submit``, ``status``, ``cancel``, ``stats``: a client of ``trio-jobpool serve``.

Synchronous, with the standard library only (``urllib.request``, JSON); ``rich`` (the ``[cli]``
extra) draws the progress bar of ``--wait`` and the stats table, and plain lines stand in for them
without it. The endpoints are those of docs/service.md.

Every expected failure is a :class:`CliError` whose exit code says what kind
it is: the server refused (1: 404, 409, 429, 503), bad input (2: 400, 401, 413, 422, ...), the
server cannot be reached or failed (3: no connection, no answer, 5xx).
"""

from __future__ import annotations

import datetime
import json
import math
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from trio_jobpool import JobStatus

from ._errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_UNREACHABLE, CliError

__all__ = ["Client", "cancel", "due_text", "parse_args_json", "stats", "status", "submit"]

REQUEST_TIMEOUT = 30.0  # seconds for the server to answer (beyond a long poll's own wait)
POLL_WAIT = 0.5  # seconds each GET of `--wait` asks the server to wait for the job's end
_ENDED = frozenset(status.value for status in JobStatus if status.ended)
# Answers that refuse for a reason other than bad input (exit 1); other 4xx are bad input (2).
_REFUSED = frozenset({404, 409, 429, 503})


def parse_args_json(text: str) -> list[Any]:
    """The job's arguments: one JSON array.

    Raises:
        CliError: (exit 2) not JSON, or not an array.
    """
    example = "for example '[\"repo-a\", 3]'"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(
            EXIT_BAD_INPUT,
            f"ARGS is not JSON ({exc.msg}): {text!r}; give one JSON array, {example}",
        ) from None
    if not isinstance(value, list):
        raise CliError(
            EXIT_BAD_INPUT, f"ARGS must be a JSON array of the job's arguments, {example}"
        )
    return value


class Client:
    """Requests to one server: ``url`` (``http://host:port``), with a bearer ``token`` if set."""

    def __init__(self, url: str, *, token: str | None = None) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise CliError(EXIT_BAD_INPUT, f"--url {url!r}: expected http://host:port")
        self.url = url.rstrip("/")
        self.token = token

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: dict[str, str] | None = None,
        timeout: float = REQUEST_TIMEOUT,
    ) -> Any:
        """Send a request; return the answer's JSON.

        Raises:
            CliError: an error answer (its ``message``), no connection, no answer in time.
        """
        return self.request_with_status(method, path, body, query=query, timeout=timeout)[1]

    def request_with_status(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: dict[str, str] | None = None,
        timeout: float = REQUEST_TIMEOUT,
    ) -> tuple[int, Any]:
        """As :meth:`request`, with the answer's status (a success: 2xx)."""
        url = self.url + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw: bytes = response.read()
                status: int = response.status
        except urllib.error.HTTPError as error:
            with error:
                raise _refusal(error, error.read()) from None
        except urllib.error.URLError as error:
            raise CliError(
                EXIT_UNREACHABLE,
                f"cannot reach {self.url}: {error.reason} (is 'trio-jobpool serve' running "
                "there? see --url)",
            ) from None
        except TimeoutError:
            raise CliError(
                EXIT_UNREACHABLE, f"{self.url} did not answer within {timeout:g} s"
            ) from None
        except OSError as error:  # a connection reset or closed half way
            raise CliError(
                EXIT_UNREACHABLE, f"lost the connection to {self.url}: {error}"
            ) from None
        try:
            return status, json.loads(raw)
        except ValueError:
            raise CliError(
                EXIT_UNREACHABLE,
                f"{method} {url}: the answer is not JSON (is this a trio-jobpool server?)",
            ) from None


def _refusal(error: urllib.error.HTTPError, raw: bytes) -> CliError:
    """The CliError of an error answer: the server's ``message`` and the exit code."""
    status = error.code
    try:
        answer = json.loads(raw)
    except ValueError:
        answer = None
    if isinstance(answer, dict) and isinstance(answer.get("message"), str):
        message = f"{answer['message']} ({status} {answer.get('error', error.reason)})"
    else:
        message = f"the server answered {status} {error.reason}"
    if status == 401:
        message += "; give the server's token with --token or $TRIO_JOBPOOL_TOKEN"
    retry_after = error.headers.get("Retry-After") if error.headers else None
    if status == 429 and retry_after:
        message += f"; try again in {retry_after} s"
    if status >= 500 and status != 503:
        return CliError(EXIT_UNREACHABLE, message)
    if status in _REFUSED:
        return CliError(EXIT_FAILED, message)
    return CliError(EXIT_BAD_INPUT, message)


def _job_path(job_id: str) -> str:
    return f"/api/v1/jobs/{urllib.parse.quote(job_id, safe='')}"


# -- commands -------------------------------------------------------------------------------


def submit(
    client: Client,
    name: str,
    args: list[Any],
    *,
    priority: int | None = None,
    job_id: str | None = None,
    timeout: float | None = None,
    delay: float | None = None,
    at: str | None = None,
    key: str | None = None,
    wait: bool = False,
) -> int:
    """``submit``: print the new job's id; with ``wait``, its result once it has ended. A job
    the server scheduled (``delay``, ``at``: an RFC 3339 time, which the server checks) is
    also reported on stderr with its due time: stdout keeps only the id, for scripts.
    ``key``: the job's flow-control key (the server checks it: 422, exit 2)."""
    body: dict[str, Any] = {"name": name, "args": args}
    if priority is not None:
        body["priority"] = priority
    if job_id is not None:
        body["job_id"] = job_id
    if timeout is not None:
        body["timeout"] = timeout
    if delay is not None:
        body["delay"] = delay
    if at is not None:
        body["at"] = at
    if key is not None:
        body["key"] = key
    answer = client.request("POST", "/api/v1/jobs", body)
    new_id = str(answer["job_id"])
    if answer.get("status") == "scheduled":
        due = due_text(answer.get("scheduled_for"))
        print(f"scheduled {name} as {new_id}, due at {due}", file=sys.stderr)
    elif wait:
        print(f"submitted {name} as {new_id}", file=sys.stderr)
    if not wait:
        print(new_id)
        return 0
    job = _wait_for(client, new_id)
    return _report_end(job)


def due_text(seconds: object) -> str:
    """A due time (seconds since the epoch) as an RFC 3339 time in this machine's zone, to the
    nearest second (``2026-12-07T11:00:00+01:00``: a time given to the second comes back
    through the pool's clock a few microseconds either side of it); a time no date can hold
    (beyond the year 9999), or not a number, as it is."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return str(seconds)
    try:
        moment = datetime.datetime.fromtimestamp(round(seconds), datetime.UTC).astimezone()
    except (OverflowError, OSError, ValueError):
        return f"{seconds} (seconds since the epoch)"
    return moment.isoformat(timespec="seconds")


def status(client: Client, job_id: str, *, wait: bool = False) -> int:
    """``status``: print the job as JSON; with ``wait``, once it has ended (1 if it failed)."""
    if not wait:
        print(json.dumps(client.request("GET", _job_path(job_id)), indent=2))
        return 0
    job = _wait_for(client, job_id)
    print(json.dumps(job, indent=2))
    return 0 if job.get("status") == "completed" else EXIT_FAILED


def cancel(client: Client, job_id: str) -> int:
    """``cancel``: cancel a live job."""
    answer = client.request("POST", f"{_job_path(job_id)}/cancel")
    message = answer.get("message", "job cancelled") if isinstance(answer, dict) else answer
    print(f"{message}: {job_id}")
    return 0


def stats(client: Client, *, as_json: bool = False, cluster: bool = False) -> int:
    """``stats``: the pool's stats as a table, or the JSON the server sent."""
    query = {"cluster": "true"} if cluster else None
    answer = client.request("GET", "/api/v1/jobs/pool/stats", query=query)
    if as_json:
        print(json.dumps(answer, indent=2))
        return 0
    if not isinstance(answer, dict):
        raise CliError(EXIT_UNREACHABLE, f"unexpected stats from {client.url}: {answer!r}")
    title = f"pool stats{' of the cluster' if cluster else ''}"
    rows = [(_LABELS.get(str(key), str(key)), _cell(key, value)) for key, value in answer.items()]
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(f"{title} ({client.url})")
        width = max((len(label) for label, _ in rows), default=0)
        for label, value in rows:
            print(f"  {label:<{width}}  {value}")
        return 0
    table = Table(title=title, caption=client.url, show_header=False)
    table.add_column("stat")
    table.add_column("value", justify="right")
    for label, value in rows:
        table.add_row(label, value)
    Console().print(table)
    return 0


_LABELS = {
    "total_submitted": "submitted",
    "total_completed": "completed",
    "total_failed": "failed",
    "total_cancelled": "cancelled",
    "total_timed_out": "timed out",
    "total_retried": "retried",
    "active_workers": "running",
    "max_workers": "workers",
    "queued_tasks": "waiting",
    "scheduled_tasks": "scheduled",
    "average_exec_time": "average run time",
    "average_wait_time": "average wait",
    "exec_time_p50": "run time p50",
    "exec_time_p95": "run time p95",
    "exec_time_p99": "run time p99",
}


def _cell(key: str, value: Any) -> str:
    if isinstance(value, float) and ("time" in key) and math.isfinite(value):
        return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"
    return str(value)


# -- waiting for a job ----------------------------------------------------------------------


class _Display(Protocol):
    def update(self, job: dict[str, Any]) -> None: ...


def _wait_for(client: Client, job_id: str) -> dict[str, Any]:
    """Poll the job (each GET waits up to POLL_WAIT for its end) until it has ended, showing
    its progress on stderr; return its last state."""
    path = _job_path(job_id)
    try:
        with _progress(job_id) as display:
            while True:
                job: dict[str, Any] = client.request(
                    "GET", path, query={"wait": str(POLL_WAIT)}, timeout=POLL_WAIT + REQUEST_TIMEOUT
                )
                display.update(job)
                if job.get("status") in _ENDED:
                    return job
    except KeyboardInterrupt:
        print(
            f"stopped waiting; the job goes on (trio-jobpool cancel {job_id} cancels it)",
            file=sys.stderr,
        )
        raise


@contextmanager
def _progress(job_id: str) -> Iterator[_Display]:
    try:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
        )
    except ImportError:
        yield _PlainDisplay()
        return
    progress = Progress(
        # markup=False: the job's name, id and progress message are text, not Rich markup.
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[state]}", markup=False),
        console=Console(stderr=True),
    )
    task = progress.add_task(job_id, total=1.0, state="submitted")

    class Display:
        def update(self, job: dict[str, Any]) -> None:
            state = str(job.get("status", "?"))
            message = job.get("progress_message")
            if message:
                state += f": {message}"
            completed = float(job.get("progress") or 0.0)
            if job.get("status") == "completed":
                completed = 1.0
            description = str(job.get("name") or job_id)
            progress.update(task, completed=completed, description=description, state=state)

    with progress:
        yield Display()


class _PlainDisplay:
    """Without rich: a line whenever the job's status or progress message changes."""

    def __init__(self) -> None:
        self._last: tuple[Any, ...] = ()
        self._started = time.monotonic()

    def update(self, job: dict[str, Any]) -> None:
        line = (job.get("status"), job.get("progress"), job.get("progress_message"))
        if line != self._last:
            self._last = line
            percent = f"{100 * float(job.get('progress') or 0):.0f}%"
            elapsed = time.monotonic() - self._started
            message = job.get("progress_message") or ""
            print(f"{elapsed:6.1f}s {job.get('status')} {percent} {message}", file=sys.stderr)


def _report_end(job: dict[str, Any]) -> int:
    """Print an ended job's result on stdout (exit 0), or its error on stderr (exit 1)."""
    job_id = job.get("job_id")
    if job.get("status") == "completed":
        print(json.dumps(job.get("result"), ensure_ascii=False))
        return 0
    error = job.get("error") or {}
    detail = f": {error.get('type')}: {error.get('message')}" if error else ""
    print(f"job {job_id} {job.get('status')}{detail}", file=sys.stderr)
    return EXIT_FAILED
