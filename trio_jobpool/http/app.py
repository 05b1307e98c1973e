"""The ASGI app around a running pool: :func:`create_app`.

Only the pool's public API is used, so one app serves a pool in memory, on SQLite or on Redis.
Each request is one task of the ASGI server; the app starts no tasks of its own and keeps no
state but its settings, the metrics registry, the count of refused submissions and how many
``?wait`` requests are re-reading jobs of other processes.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import json
import logging
import math
import re
import reprlib
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Collection
from typing import Any, Final, NoReturn
from urllib.parse import quote, urlsplit

from anyio import move_on_after, sleep
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from trio_jobpool import (
    DuplicateJob,
    JobFailed,
    JobHandle,
    JobNotFound,
    JobNotRegistered,
    JobNotSerializable,
    JobPool,
    JobRegistry,
    JobStatus,
    KeyStats,
    Limit,
    PoolClosed,
    PoolStats,
    QueueFull,
    RedisStore,
    RetryPolicy,
    Schedule,
    StoreError,
    StoreOutcomeUnknown,
    __version__,
)

from . import metrics
from ._dashboard import FIRST_JOBS, NEXT_DUE, dashboard_bytes, dashboard_page
from ._input import (
    ApiError,
    float_param,
    int_param,
    parse_key,
    parse_limit,
    parse_resize,
    parse_schedule,
    parse_schedule_name,
    parse_submission,
    read_json,
    time_zones,
)
from ._openapi import openapi_document
from ._reference import SWAGGER_UI_MISSING, SwaggerUiFiles, reference_file, swagger_ui_directory
from ._retry_after import RetryAfter

# anyio's names are imported here, not looked up as anyio.name in a request: anyio imports its
# modules lazily, which opens files, and a server out of file descriptors must answer too.

__all__ = ["create_app"]

logger = logging.getLogger("trio_jobpool.http")

MAX_WAIT: Final = 60.0
"""The longest ``?wait=`` of ``GET /api/v1/jobs/{job_id}``, in seconds."""
MAX_LIST: Final = 500
"""The largest ``?limit=`` of ``GET /api/v1/jobs``."""
REREAD: Final = 0.5
"""How often ``?wait`` reads again a job that ends in another process (seconds)."""
MAX_REMOTE_WAITS: Final = 64
"""How many ``?wait`` requests at once may re-read jobs of other processes; more answer at once."""
CLUSTER_STATS_WAIT: Final = 3.0
"""How long ``/metrics`` waits for ``cluster_stats()`` (seconds): well under Prometheus's
default scrape timeout (10 s), so a scrape is answered while Redis hangs."""
RETRY_AFTER_STATS_WAIT: Final = 1.0
"""How long a distributed pool's refused submission waits for the cluster's stats, which its
``Retry-After`` is computed from (seconds)."""
_MESSAGE: Final = 1000  # characters of a job's error message in an answer
_SHORT = reprlib.Repr()  # a result's repr, when JSON cannot hold the result
_SHORT.maxstring = _SHORT.maxother = _SHORT.maxlong = 1000
_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_DASHBOARD_FILES: Final = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}

Endpoint = Callable[[Request], Awaitable[Response]]


def create_app(
    pool: JobPool,
    registry: JobRegistry,
    *,
    token: str | None = None,
    max_body_bytes: int = 65_536,
    submit_wait: float = 0.25,
    max_workers_limit: int = 1024,
    allowed_hosts: Collection[str] | None = None,
    dashboard: bool = True,
    body_timeout: float = 10.0,
    max_bodies: int = 64,
) -> Starlette:
    """An ASGI app (Starlette) serving ``pool`` over HTTP: the endpoints of docs/service.md.

    The app never opens, closes or stops ``pool``: serve it while the pool is open. Only the
    names in ``registry`` can be submitted. With ``token``, every request whose method changes
    state (anything but ``GET``, ``HEAD``, ``OPTIONS``) needs ``Authorization: Bearer <token>``
    (compared in constant time), else 401. Bodies longer than ``max_body_bytes`` are refused
    (413) as they arrive. A submission waits up to ``submit_wait`` seconds for room, then is
    refused with 429 and ``Retry-After``. A resize beyond ``max_workers_limit`` workers is
    refused (422): each worker is a task, started at once.

    Against slow clients: a request body must arrive whole within ``body_timeout`` seconds of
    the app starting to read it, else 408 ``body_timeout`` (and the connection is closed); at
    most ``max_bodies`` request bodies are read at once, and a request that would be one more is
    answered at once 503 ``too_many_bodies`` with ``Retry-After: 1``, without reading its body.

    Against requests a web page makes a browser send (cross-site request forgery, DNS
    rebinding): a body must be ``Content-Type: application/json`` (else 415, so a browser must
    ask first, and is refused); a request that changes state and carries an ``Origin`` of
    another host than its ``Host`` is refused (403); with ``allowed_hosts`` (host names, without
    ports), a request whose ``Host`` is none of them is refused (400). Whatever the settings, a
    malformed ``Host`` (userinfo, a path) is refused (400 ``bad_host``), and so is a request
    with more than one ``Authorization`` or ``Host`` header (400 ``duplicate_header``).

    Errors: every refusal is a JSON ``{"error": code, "message": text}`` with the status of
    docs/service.md; an unexpected exception in a request is logged (logger
    ``trio_jobpool.http``, with its traceback) and answered 500 ``internal`` without details.
    Cancellation (a client gone, the server stopping) is never caught: a submission cancelled
    while it waits for room was not accepted.

    Raises:
        TypeError: ``pool`` is not a ``JobPool``, ``registry`` not a ``JobRegistry``.
        ValueError: an empty ``token``; ``max_body_bytes < 1``; ``submit_wait`` not a number
            ``> 0``; ``max_workers_limit < 1``; an empty ``allowed_hosts``; ``body_timeout``
            not a number ``> 0``; ``max_bodies < 1``.
    """
    _check_settings(
        pool,
        registry,
        token=token,
        max_body_bytes=max_body_bytes,
        submit_wait=submit_wait,
        max_workers_limit=max_workers_limit,
        body_timeout=body_timeout,
        max_bodies=max_bodies,
    )
    hosts = _host_names(allowed_hosts)
    api = _Api(
        pool,
        registry,
        token,
        max_body_bytes,
        float(submit_wait),
        max_workers_limit,
        float(body_timeout),
        max_bodies,
    )
    guard = Middleware(_Guard, token=token, hosts=hosts, rejections=api.rejections)
    app = Starlette(
        routes=_routes(api, dashboard),
        middleware=[guard],
        exception_handlers={HTTPException: _http_error},
    )
    # A path with a trailing slash that no route has, "/api/v1/jobs/", is a 404, not a redirect.
    app.router.redirect_slashes = False
    return app


def _check_settings(
    pool: JobPool,
    registry: JobRegistry,
    *,
    token: str | None,
    max_body_bytes: int,
    submit_wait: float,
    max_workers_limit: int,
    body_timeout: float,
    max_bodies: int,
) -> None:
    """Refuse the arguments of :func:`create_app` that it documents as refused, in the order
    of its signature.

    Raises:
        TypeError: ``pool`` is not a ``JobPool``, ``registry`` not a ``JobRegistry``.
        ValueError: a setting out of its range.
    """
    if not isinstance(pool, JobPool):
        raise TypeError(f"pool must be a JobPool, got {pool!r}")
    if not isinstance(registry, JobRegistry):
        raise TypeError(f"registry must be a JobRegistry, got {registry!r}")
    if token is not None and (not isinstance(token, str) or not token):
        raise ValueError("token must be a non-empty str or None")
    if type(max_body_bytes) is not int or max_body_bytes < 1:
        raise ValueError(f"max_body_bytes must be an int >= 1, got {max_body_bytes!r}")
    if type(submit_wait) not in (int, float) or not 0 < submit_wait < math.inf:
        raise ValueError(f"submit_wait must be a number > 0, got {submit_wait!r}")
    if type(max_workers_limit) is not int or max_workers_limit < 1:
        raise ValueError(f"max_workers_limit must be an int >= 1, got {max_workers_limit!r}")
    if type(body_timeout) not in (int, float) or not 0 < body_timeout < math.inf:
        raise ValueError(f"body_timeout must be a number > 0, got {body_timeout!r}")
    if type(max_bodies) is not int or max_bodies < 1:
        raise ValueError(f"max_bodies must be an int >= 1, got {max_bodies!r}")


def _host_names(allowed_hosts: Collection[str] | None) -> frozenset[str] | None:
    """``allowed_hosts`` in lower case, IPv6 addresses without their []; None stays None.

    Raises:
        ValueError: no host, or a host with a port.
    """
    if allowed_hosts is None:
        return None
    hosts = frozenset(host.lower().strip("[]") for host in allowed_hosts)
    if not hosts:
        raise ValueError("allowed_hosts must name a host, or be None for any")
    # One colon is a port; an IPv6 address has at least two.
    with_port = [h for h in hosts if h.count(":") == 1]
    if with_port:
        raise ValueError(f"allowed_hosts are host names without a port, got {with_port}")
    return hosts


def _routes(api: _Api, dashboard: bool) -> list[BaseRoute]:
    """The endpoints of ``api`` at their paths (the dashboard's only with ``dashboard``); every
    endpoint answers its errors as JSON (:func:`_json_errors`).

    One route per path, serving each of its methods: a method the path does not serve is then
    answered 405 with every method it does serve in ``Allow`` (``HEAD`` with ``GET``), never
    only those of the first route that matched the path."""
    paths: dict[str, dict[str, Endpoint]] = {
        "/api/v1/jobs": {"GET": api.list_jobs, "POST": api.submit},
        "/api/v1/jobs/pool/stats": {"GET": api.stats},
        "/api/v1/jobs/pool/size": {"PUT": api.resize},
        "/api/v1/jobs/pool/info": {"GET": api.info},
        "/api/v1/jobs/{job_id}": {"GET": api.job},
        "/api/v1/jobs/{job_id}/cancel": {"POST": api.cancel},
        "/api/v1/schedules": {"GET": api.list_schedules},
        "/api/v1/schedules/{name}": {
            "GET": api.schedule,
            "PUT": api.declare_schedule,
            "DELETE": api.delete_schedule,
        },
        "/api/v1/limits": {"GET": api.list_limits},
        "/api/v1/limits/{key}": {
            "GET": api.key_limit,
            "PUT": api.set_limit,
            "DELETE": api.delete_limit,
        },
        "/healthz": {"GET": api.health},
        "/metrics": {"GET": api.metrics},
        "/openapi.json": {"GET": api.openapi},
    }
    if dashboard:
        paths["/"] = {"GET": api.page}
        paths["/static/{name}"] = {"GET": api.static}
    paths["/docs"] = {"GET": api.reference}
    paths["/docs/reference.js"] = {"GET": api.reference_script}
    routes: list[BaseRoute] = [_route(path, endpoints) for path, endpoints in paths.items()]
    if api.swagger_ui is not None:
        routes.append(Mount("/docs/swagger-ui", SwaggerUiFiles(api.swagger_ui)))
    return routes


def _route(path: str, endpoints: dict[str, Endpoint]) -> Route:
    """The route of ``path``: each method of ``endpoints`` to its endpoint (``HEAD`` to the
    ``GET`` one), errors answered as JSON."""
    checked = {method: _json_errors(endpoint) for method, endpoint in endpoints.items()}
    if len(checked) == 1:
        ((method, endpoint),) = checked.items()
        return Route(path, endpoint, methods=[method])

    async def by_method(request: Request) -> Response:
        # The route lets through only the methods of `checked` (and HEAD, when GET is one).
        method = request.method
        return await checked["GET" if method == "HEAD" else method](request)

    return Route(path, by_method, methods=list(checked))


class _Api:
    """The endpoints, over one pool and its settings."""

    def __init__(
        self,
        pool: JobPool,
        registry: JobRegistry,
        token: str | None,
        max_body_bytes: int,
        submit_wait: float,
        max_workers_limit: int,
        body_timeout: float,
        max_bodies: int,
    ) -> None:
        self.pool = pool
        self.jobs = registry
        self.token_required = token is not None
        self.max_body_bytes = max_body_bytes
        self.submit_wait = submit_wait
        self.max_workers_limit = max_workers_limit
        self.remote_waits = 0  # ?wait requests re-reading a job of another process now
        self.body_timeout = body_timeout
        self.max_bodies = max_bodies
        self.bodies = 0  # request bodies being read now (at most max_bodies)
        self.rejections: Counter[str] = Counter()  # refused submissions, by reason
        self.metrics_registry = metrics.pool_registry(pool, self.rejections)
        self.swagger_ui = swagger_ui_directory()
        # Read now, once (it walks the zone files): not in a request that may come while the
        # server has no file descriptor to spare.
        time_zones()
        self.retry_after = RetryAfter()
        # The rate of ended jobs is measured from now (a distributed pool's from its first
        # refusal: its cluster's stats are read from Redis, once per refusal).
        self.sample_locally = not isinstance(pool.store, RedisStore)
        if self.sample_locally:
            self.retry_after.observe(pool.stats)

    # -- jobs ----------------------------------------------------------------------------------

    async def _body(self, request: Request) -> object:
        """The request's JSON body (:func:`read_json`), read within ``body_timeout`` seconds,
        as one of at most ``max_bodies`` bodies read at once. A cancellation from outside (the
        client gone, the server stopping) goes on as it is.

        Raises:
            ApiError: 408 ``body_timeout``; 503 ``too_many_bodies`` (the body is not read);
                those of :func:`read_json`.
        """
        if self.bodies >= self.max_bodies:
            message = f"{self.max_bodies} request bodies are being read; try again"
            headers = {"Retry-After": "1", "Connection": "close"}
            raise ApiError(503, "too_many_bodies", message, headers)
        self.bodies += 1
        try:
            with move_on_after(self.body_timeout):
                return await read_json(request, self.max_body_bytes)
        finally:
            self.bodies -= 1
        # Only a read that the deadline cancelled gets here.
        message = f"the body did not arrive within {self.body_timeout:g} seconds"
        raise ApiError(408, "body_timeout", message, {"Connection": "close"})

    async def submit(self, request: Request) -> Response:
        """``POST /api/v1/jobs``: 202 once ``pool.submit`` returned (the job is accepted:
        ``queued``, or ``scheduled`` with its due time for a job given ``delay`` or ``at`` in
        the future, which never waits for room); 429 if no room came within ``submit_wait``
        (the submission is withdrawn, not accepted);
        504 ``outcome_unknown`` with the job's id if Redis was sent the job and did not answer
        (it may have been accepted)."""
        try:
            spec = parse_submission(await self._body(request), self.jobs)
        except ApiError as exc:
            self.rejections[exc.code] += 1
            raise
        pool = self.pool
        fn = self.jobs.get(spec.name)
        options = spec.options
        if options["job_id"] is None and isinstance(pool.store, RedisStore):
            # Named here, so that an answer that the outcome is unknown can say which job to
            # look up later (the pool's own ids are made inside submit).
            options = {**options, "job_id": uuid.uuid4().hex}
        handle: JobHandle[Any] | None = None
        try:
            if pool.store is None:
                # In memory, submit_nowait accepts exactly when submit would at once, and
                # costs no cancel scope; only a full pool goes on to wait for room.
                with contextlib.suppress(QueueFull):
                    handle = pool.submit_nowait(fn, *spec.args, **options)
            if handle is None:
                with move_on_after(self.submit_wait):
                    handle = await pool.submit(fn, *spec.args, **options)
        except QueueFull as exc:  # a store may refuse at once
            self._refuse(await self._queue_full(str(exc)))
        except PoolClosed as exc:
            self._refuse(ApiError(503, "pool_closed", str(exc)))
        except DuplicateJob as exc:
            self._refuse(ApiError(409, "duplicate_job", f"a live job has the id {exc.job_id!r}"))
        except JobNotRegistered as exc:  # in the app's registry, not in the pool's
            self._refuse(ApiError(400, "unknown_job_name", str(exc)))
        except (JobNotSerializable, TypeError, ValueError) as exc:
            self._refuse(ApiError(422, "invalid", str(exc)))
        except StoreOutcomeUnknown as exc:  # not a refusal: the job may be accepted
            logger.warning("submit of %r: outcome unknown: %s", spec.name, exc)
            return _unknown_outcome(request, options["job_id"] or exc.job_id or "")
        except StoreError as exc:
            logger.warning("submit of %r failed: %s", spec.name, exc)
            message = "the pool's store failed the write, or could not be reached: not accepted"
            self._refuse(ApiError(503, "store_unavailable", message))
        if handle is None:
            message = f"no room in the queue within {self.submit_wait:g} seconds"
            self._refuse(await self._queue_full(message))
        if self.sample_locally:
            self.retry_after.observe(pool.stats)  # stats() once a second at most
        job_id = handle.job_id
        due = handle.scheduled_for
        # Accepted as scheduled exactly when the handle has a due time: a fresh handle gets one
        # only from delay= or at= in the future (one not in the future makes an ordinary job).
        answer: dict[str, Any] = {"job_id": job_id, "status": "queued"}
        if due is not None:
            answer = {"job_id": job_id, "status": "scheduled", "scheduled_for": due}
        return _json(202, answer, _location(request, job_id))

    def _refuse(self, error: ApiError) -> NoReturn:
        self.rejections[error.code] += 1
        raise error

    async def _queue_full(self, message: str) -> ApiError:
        """429 ``queue_full`` with ``Retry-After``: how long the jobs waiting now take to
        clear at the rate the pool has ended jobs lately (:mod:`._retry_after`); a distributed
        pool's, from its cluster's stats (this process's if Redis does not answer within
        ``RETRY_AFTER_STATS_WAIT`` seconds)."""
        stats: PoolStats | None = None
        if not self.sample_locally:
            with contextlib.suppress(StoreError), move_on_after(RETRY_AFTER_STATS_WAIT):
                stats = await self.pool.cluster_stats()
        seconds = self.retry_after.seconds(stats or self.pool.stats())
        return ApiError(429, "queue_full", message, {"Retry-After": str(seconds)})

    async def list_jobs(self, request: Request) -> Response:
        """``GET /api/v1/jobs``: ``pool.recent_jobs(limit)``; with ``?status=scheduled``,
        ``pool.scheduled_jobs(limit)`` (earliest due first). ``status`` is exactly
        ``scheduled`` (422 else)."""
        limit = int_param(request, "limit", 50, 1, MAX_LIST)
        status = request.query_params.get("status")
        if status is None:
            handles = self.pool.recent_jobs(limit)
        elif status == JobStatus.SCHEDULED.value:  # exactly the document's enum
            handles = self.pool.scheduled_jobs(limit)
        else:
            raise ApiError(
                422,
                "invalid",
                f"the query parameter 'status' must be 'scheduled' (the one status the list "
                f"filters by), got {status!r}",
            )
        jobs = [await _job_json(job) for job in handles]
        return _json(200, {"jobs": jobs})

    async def job(self, request: Request) -> Response:
        """``GET /api/v1/jobs/{job_id}``: the job as ``pool.aget`` has it, after waiting up to
        ``?wait`` seconds for it to end. Cancelling the request only ends the wait."""
        wait = float_param(request, "wait", MAX_WAIT)
        job_id = request.path_params["job_id"]
        handle = await self._get(job_id)
        if wait and not handle.status.ended:
            with move_on_after(wait):
                await self._wait_for_end(job_id)
            handle = await self._get(job_id)
        return _json(200, await _job_json(handle))

    async def _wait_for_end(self, job_id: str) -> None:
        # This process's handle of the job learns of its end wherever it runs; a job of
        # another process of a distributed pool has none here, and Redis tells nobody of its
        # end but its submitter: read it again every REREAD seconds.
        try:
            mine = self.pool.get(job_id)
        except JobNotFound:
            if self.remote_waits >= MAX_REMOTE_WAITS:  # each costs Redis two reads a second
                return
            self.remote_waits += 1
            try:
                while True:
                    if (await self._get(job_id)).status.ended:
                        return
                    await sleep(REREAD)
            finally:
                self.remote_waits -= 1
        else:
            await mine.wait()

    async def cancel(self, request: Request) -> Response:
        """``POST /api/v1/jobs/{job_id}/cancel``: ``pool.acancel``; 409 for an ended job."""
        job_id = request.path_params["job_id"]
        try:
            await self.pool.acancel(job_id)
        except JobNotFound:
            handle = await self._get(job_id)  # 404 if the pool knows nothing of it
            raise ApiError(
                409, "job_ended", f"job {job_id!r} has ended ({handle.status.value})"
            ) from None
        return _json(200, {"message": "job cancelled", "job_id": job_id})

    async def _get(self, job_id: str) -> JobHandle[Any]:
        try:
            return await self.pool.aget(job_id)
        except JobNotFound:
            raise ApiError(404, "not_found", f"no job {job_id!r}") from None

    # -- periodic schedules ----------------------------------------------------------------------

    async def list_schedules(self, request: Request) -> Response:
        """``GET /api/v1/schedules``: ``pool.schedules()``, sorted by name."""
        schedules = await self.pool.schedules()
        return _json(200, {"schedules": [_schedule_json(s) for s in schedules]})

    async def schedule(self, request: Request) -> Response:
        """``GET /api/v1/schedules/{name}``: the schedule of that name (404 if none)."""
        name = request.path_params["name"]
        for schedule in await self.pool.schedules():
            if schedule.name == name:
                return _json(200, _schedule_json(schedule))
        raise ApiError(404, "not_found", f"no schedule {name!r}")

    async def declare_schedule(self, request: Request) -> Response:
        """``PUT /api/v1/schedules/{name}``: ``pool.schedule(name, ...)``, which keeps an
        identical definition as it is and replaces a different one. 201 (with ``Location``)
        when no schedule of that name existed just before (as ``pool.schedules()`` read it),
        else 200; the answer is the schedule as the pool keeps it now.

        The body's fields are checked first (422 ``invalid`` naming the field; 400
        ``unknown_job_name``), then the pool reads the cron expression: a ``ValueError`` of
        its is 422 naming ``cron``. Cancelled (the client gone), the declaration may or may not
        have been made."""
        name = parse_schedule_name(request.path_params["name"])
        spec = parse_schedule(await self._body(request), self.jobs)
        existed = any(s.name == name for s in await self.pool.schedules())
        try:
            schedule = await self.pool.schedule(
                name,
                self.jobs.get(spec.name),
                *spec.args,
                cron=spec.cron,
                every=spec.every,
                tz=spec.tz,
                priority=spec.priority,
                timeout=spec.timeout,
                retry=spec.retry,
                overlap=spec.overlap,
                misfire=spec.misfire,
                paused=spec.paused,
            )
        except PoolClosed as exc:
            raise ApiError(503, "pool_closed", str(exc)) from None
        except JobNotRegistered as exc:  # in the app's registry, not in the pool's
            raise ApiError(400, "unknown_job_name", str(exc)) from None
        except JobNotSerializable as exc:
            raise ApiError(422, "invalid", f"'args': {exc}") from None
        except (TypeError, ValueError) as exc:
            # Every other field was checked above: what the pool refuses is the expression.
            field = "cron" if spec.cron is not None else "every"
            raise ApiError(422, "invalid", f"{field!r}: {exc}") from None
        if existed:
            return _json(200, _schedule_json(schedule))
        root = request.scope.get("root_path", "")
        location = {"Location": f"{root}/api/v1/schedules/{quote(name, safe='')}"}
        return _json(201, _schedule_json(schedule), location)

    async def delete_schedule(self, request: Request) -> Response:
        """``DELETE /api/v1/schedules/{name}``: ``pool.unschedule(name)`` (404 if there is
        none); the jobs it submitted are not touched."""
        name = request.path_params["name"]
        try:
            await self.pool.unschedule(name)
        except JobNotFound:
            raise ApiError(404, "not_found", f"no schedule {name!r}") from None
        return _json(200, {"message": "schedule deleted", "name": name})

    # -- flow control: the limits of keys ---------------------------------------------------------

    async def list_limits(self, request: Request) -> Response:
        """``GET /api/v1/limits``: :meth:`_limits` (every key's own limit, and the keys of
        :meth:`JobPool.limited_keys` with their counts)."""
        return _json(200, await self._limits())

    async def _limits(self) -> dict[str, Any]:
        """``{"limits": {key: limit}, "keys": [key stats]}``: ``limits`` is ``await
        pool.limits()`` (the keys' own limits, sorted by key; the pool's ``key_limit`` is not
        one); ``keys`` is ``pool.limited_keys()`` (the keys with a limit of their own and
        those at their limit with jobs waiting), and ``pool.key_stats(key)`` of any key of
        ``limits`` it lacks, sorted by key: so every key of ``limits`` has its running and
        waiting jobs there. Bounded by the keys given limits and those held back, never one
        entry per key ever seen.

        Raises:
            StoreError: a distributed pool's Redis does not answer (503).
        """
        pool = self.pool
        limits = await pool.limits()
        keys = {stats.key: stats for stats in pool.limited_keys()}
        for key in limits:
            if key not in keys:
                keys[key] = pool.key_stats(key)
        return {
            "limits": {key: limit.to_json() for key, limit in limits.items()},
            "keys": [_key_json(keys[key]) for key in sorted(keys)],
        }

    async def key_limit(self, request: Request) -> Response:
        """``GET /api/v1/limits/{key}``: ``pool.key_stats(key)``: the key's running and
        waiting jobs and the limit that applies to it (its own, else the pool's ``key_limit``;
        ``null``: none). Any valid key has stats (zeros for a key never seen): never 404."""
        key = parse_key(request.path_params["key"])
        return _json(200, _key_json(self.pool.key_stats(key)))

    async def set_limit(self, request: Request) -> Response:
        """``PUT /api/v1/limits/{key}``: ``pool.set_limit(key, max_running=..., rate=...)``,
        which replaces the key's own limit (the parts not given are unlimited). 200 with the
        key's stats afterwards (:meth:`key_limit`), whose ``limit`` is the one just set.

        The key and the body are checked first (422 ``invalid`` naming the field), so a
        refused request changes nothing. Cancelled (the client gone) while a store writes the
        limit, the limit may or may not have been set."""
        key = parse_key(request.path_params["key"])
        limit = parse_limit(await self._body(request))
        try:
            await self.pool.set_limit(key, max_running=limit.max_running, rate=limit.rate)
        except PoolClosed as exc:
            raise ApiError(503, "pool_closed", str(exc)) from None
        return _json(200, _key_json(self.pool.key_stats(key)))

    async def delete_limit(self, request: Request) -> Response:
        """``DELETE /api/v1/limits/{key}``: ``pool.set_limit(key)``, which removes the key's
        own limit (the pool's ``key_limit`` applies to it again). Idempotent: a key without a
        limit of its own is answered 200 too, with ``"removed": false`` (whether it had one
        as ``pool.limits()`` read it just before)."""
        key = parse_key(request.path_params["key"])
        had = key in await self.pool.limits()
        try:
            await self.pool.set_limit(key)
        except PoolClosed as exc:
            raise ApiError(503, "pool_closed", str(exc)) from None
        message = "limit deleted" if had else "the key had no limit of its own"
        return _json(200, {"message": message, "key": key, "removed": had})

    # -- the pool ------------------------------------------------------------------------------

    async def stats(self, request: Request) -> Response:
        """``GET /api/v1/jobs/pool/stats``: ``pool.stats()``; with ``?cluster=true``,
        ``pool.cluster_stats()``. ``cluster`` is exactly ``true`` or ``false`` (422 else)."""
        cluster = request.query_params.get("cluster", "false")
        if cluster not in ("true", "false"):  # exactly the document's enum
            raise ApiError(
                422,
                "invalid",
                f"the query parameter 'cluster' must be 'true' or 'false', got {cluster!r}",
            )
        if cluster == "true":
            stats = await self.pool.cluster_stats()
        else:
            stats = self.pool.stats()
        return _json(200, stats.as_dict())

    async def resize(self, request: Request) -> Response:
        """``PUT /api/v1/jobs/pool/size``: ``pool.resize``."""
        body = await self._body(request)
        max_workers = parse_resize(body, 1, self.max_workers_limit)
        try:
            self.pool.resize(max_workers)
        except PoolClosed as exc:
            raise ApiError(503, "pool_closed", str(exc)) from None
        return _json(200, {"max_workers": self.pool.max_workers})

    async def info(self, request: Request) -> Response:
        return _json(200, self._info())

    def _info(self) -> dict[str, Any]:
        store = self.pool.store
        return {
            "version": __version__,
            "store": "memory://" if store is None else store.url,
            "closed": self.pool.closed,
            "names": sorted(self.jobs),
            "token_required": self.token_required,
            "submit_wait": self.submit_wait,
            "max_body_bytes": self.max_body_bytes,
        }

    async def health(self, request: Request) -> Response:
        if self.pool.closed:
            return _json(503, {"status": "closed"})
        return _json(200, {"status": "ok"})

    async def metrics(self, request: Request) -> Response:
        """``GET /metrics``: this process's metrics, and the cluster gauges and the schedules'
        counters if the store answers for them within ``CLUSTER_STATS_WAIT`` seconds (one
        deadline for both); else what it did not answer for is left out, and a distributed
        pool's ``jobpool_cluster_stats_fresh`` is 0 without the cluster gauges.

        The schedules are read here, before rendering: ``pool.schedules()`` is async (it may
        read the store), while a Prometheus collector is called synchronously."""
        cluster: PoolStats | None = None
        schedules: list[Schedule] | None = None
        with move_on_after(CLUSTER_STATS_WAIT) as deadline:
            try:
                cluster = await self.pool.cluster_stats()
            except StoreError as exc:  # the pool's own metrics are still worth a scrape
                logger.warning("GET /metrics: no cluster stats: %s", exc)
            try:
                schedules = await self.pool.schedules()
            except StoreError as exc:
                logger.warning("GET /metrics: no schedule counters: %s", exc)
        if deadline.cancelled_caught:
            logger.warning(
                "GET /metrics: no %s: the store did not answer within %g s",
                "cluster stats, no schedule counters" if cluster is None else "schedule counters",
                CLUSTER_STATS_WAIT,
            )
        fresh = cluster is not None if isinstance(self.pool.store, RedisStore) else None
        content = metrics.render(self.metrics_registry, cluster, fresh, schedules)
        return Response(content, media_type=metrics.CONTENT_TYPE)

    async def openapi(self, request: Request) -> Response:
        """``GET /openapi.json``: the document of this app; mounted under a prefix (the ASGI
        ``root_path``), with that prefix as its one server."""
        document = openapi_document(
            token_required=self.token_required,
            names=sorted(self.jobs),
            workers=(1, self.max_workers_limit),
            root_path=request.scope.get("root_path", ""),
        )
        return _json(200, document)

    # -- the API reference -----------------------------------------------------------------

    async def reference(self, request: Request) -> Response:
        """``GET /docs``: the interactive API reference (Swagger UI) of ``/openapi.json``,
        every file it loads served by this app (404 without the swagger-ui-py package)."""
        if self.swagger_ui is None:
            raise ApiError(404, "not_found", SWAGGER_UI_MISSING)
        return reference_file("index.html", "text/html; charset=utf-8")

    async def reference_script(self, request: Request) -> Response:
        return reference_file("reference.js", "text/javascript; charset=utf-8")

    # -- the dashboard -------------------------------------------------------------------------

    async def page(self, request: Request) -> Response:
        """``GET /``: the dashboard, with the answers of its first round in it
        (:func:`dashboard_page`): ``pool/info``, ``pool/stats``, the first jobs, the next
        scheduled ones, the periodic schedules and the limits of keys."""
        pool = self.pool
        jobs = [await _job_json(job) for job in pool.recent_jobs(FIRST_JOBS)]
        stats = pool.stats()
        due = pool.scheduled_jobs(NEXT_DUE) if stats.scheduled_tasks else []
        schedules = await pool.schedules()
        first = {
            "info": self._info(),
            "stats": stats.as_dict(),
            "jobs": jobs,
            "scheduled": [await _job_json(job) for job in due],
            "schedules": [_schedule_json(schedule) for schedule in schedules],
            "limits": await self._limits(),
        }
        page = dashboard_page(_ENCODER.encode(first))
        return _dashboard_file(page, "text/html; charset=utf-8")

    async def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        media_type = _DASHBOARD_FILES.get(name)
        if media_type is None:
            raise ApiError(404, "not_found", "no such path")
        return _dashboard_file(dashboard_bytes(name), media_type)


def _dashboard_file(content: bytes, media_type: str) -> Response:
    headers = {
        "Cache-Control": "no-cache",
        # The page loads nothing from elsewhere, and nothing may load it into a frame.
        "Content-Security-Policy": (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "connect-src 'self'; frame-ancestors 'none'"
        ),
        "X-Content-Type-Options": "nosniff",
    }
    return Response(content, media_type=media_type, headers=headers)


# -- JSON in and out -------------------------------------------------------------------------


async def _job_json(handle: JobHandle[Any]) -> dict[str, Any]:
    """A job as the API gives it (docs/service.md)."""
    status = handle.status
    result = None
    if status is JobStatus.COMPLETED:
        result = _jsonable((await handle.wait()).unwrap())
    error = handle.error
    return {
        "job_id": handle.job_id,
        "name": handle.name,
        "priority": handle.priority,
        "key": handle.key,
        "status": status.value,
        "attempts": handle.attempts,
        "progress": handle.progress,
        "progress_message": handle.progress_message,
        "submitted_at": handle.submitted_at,
        "scheduled_for": handle.scheduled_for,
        "started_at": handle.started_at,
        "finished_at": handle.finished_at,
        "exec_time": handle.exec_time,
        "result": result,
        "error": None if error is None else _error_json(error),
    }


def _schedule_json(schedule: Schedule) -> dict[str, Any]:
    """A schedule as the API gives it (docs/service.md): every field of ``Schedule``, times as
    seconds since the epoch; its definition as ``PUT`` takes it (``args``, ``priority``,
    ``timeout``, ``retry``, ``overlap``, ``misfire``, ``paused``), so that a client can
    declare it again with one field changed. What JSON cannot hold (an argument a schedule
    declared in code has, an infinite time) is written as in a job's JSON: a short ``repr``,
    ``null`` for a time."""
    return {
        "name": schedule.name,
        "job_name": schedule.job_name,
        "args": [_jsonable(arg) for arg in schedule.args],
        "cron": schedule.cron,
        "every": _finite(schedule.every),
        "tz": schedule.tz,
        "priority": schedule.priority,
        "timeout": _finite(schedule.timeout),
        "retry": _retry_json(schedule.retry),
        "overlap": schedule.overlap,
        "misfire": schedule.misfire,
        "paused": schedule.paused,
        "next_run": _finite(schedule.next_run),
        "last_run": _finite(schedule.last_run),
        "last_job_id": schedule.last_job_id,
        "runs": schedule.runs,
        "skipped": schedule.skipped,
    }


def _key_json(stats: KeyStats) -> dict[str, Any]:
    """A key's stats as the API gives them (docs/service.md): every field of ``KeyStats``,
    ``limit`` as ``Limit.to_json()`` gives it (``null``: no limit applies)."""
    return {
        "key": stats.key,
        "running": stats.running,
        "waiting": stats.waiting,
        "limit": _limit_json(stats.limit),
    }


def _limit_json(limit: Limit | None) -> dict[str, Any] | None:
    """``{"max_running": 2, "rate": {"count": 10, "per": 60.0}}`` (either part ``null``)."""
    return None if limit is None else limit.to_json()


def _retry_json(policy: RetryPolicy | None) -> dict[str, Any] | None:
    """A retry policy as a body gives it (which retries every ``Exception``)."""
    if policy is None:
        return None
    return {
        "max_attempts": policy.max_attempts,
        "backoff": _finite(policy.backoff),
        "max_backoff": _finite(policy.max_backoff),
        "jitter": policy.jitter,
    }


def _finite(seconds: float | None) -> float | None:
    """``seconds``, or ``None`` for ``None`` and for what JSON cannot hold (``inf``)."""
    return seconds if seconds is not None and math.isfinite(seconds) else None


def _error_json(error: BaseException) -> dict[str, str]:
    """The type and message of a job's error; the message cut to 1,000 characters (and
    ``<TypeName>`` if its ``__str__`` raises)."""
    if isinstance(error, JobFailed):  # read back from a store: the original type and message
        return {"type": error.type_name, "message": error.message[:_MESSAGE]}
    try:
        message = str(error)
    except Exception:  # a broken __str__ is the job's problem, not the request's
        message = f"<{type(error).__name__}>"
    return {"type": type(error).__name__, "message": message[:_MESSAGE]}


def _jsonable(value: Any) -> Any:
    """``value`` if JSON holds it (no NaN), else a short ``repr`` of it (``reprlib``: at most
    about 1,000 characters; ``<TypeName instance at ...>`` if its ``__repr__`` raises)."""
    try:
        _ENCODER.encode(value)
    except (TypeError, ValueError, RecursionError):
        try:
            return _SHORT.repr(value)
        except Exception:  # a broken __repr__ is the job's problem, not the request's
            return f"<{type(value).__name__}>"
    return value


# Made once: json.dumps with any option builds an encoder on every call.
_ENCODER: Final = json.JSONEncoder(allow_nan=False, separators=(",", ":"))


def _json(status: int, body: object, headers: dict[str, str] | None = None) -> Response:
    content = _ENCODER.encode(body).encode()
    return Response(content, status, headers, media_type="application/json")


def _location(request: Request, job_id: str) -> dict[str, str]:
    """The ``Location`` header of job ``job_id``: its path on the server the client sees, so
    under the app's mount prefix (the ASGI ``root_path``: ``/jobs`` for an app mounted at
    ``/jobs``, or a server's ``--root-path``), the id percent-encoded (a header is ASCII)."""
    root = request.scope.get("root_path", "")
    return {"Location": f"{root}/api/v1/jobs/{quote(job_id, safe='')}"}


def _unknown_outcome(request: Request, job_id: str) -> Response:
    """504 ``outcome_unknown``: the submit reached the store, which did not answer; the job
    may have been accepted. ``job_id`` (and ``Location``) name it for a later look-up."""
    message = (
        f"the store did not answer: job {job_id!r} may or may not have been accepted; "
        "look it up by its id later (404 there means it was not)"
    )
    body = {"error": "outcome_unknown", "message": message, "job_id": job_id}
    return _json(504, body, _location(request, job_id))


def _error(error: ApiError) -> Response:
    return _json(error.status, {"error": error.code, "message": error.message}, error.headers)


def _json_errors(endpoint: Endpoint) -> Endpoint:
    """``endpoint``, answering an :class:`ApiError` as JSON, and anything unexpected as 500."""

    @functools.wraps(endpoint)
    async def answer(request: Request) -> Response:
        try:
            return await endpoint(request)
        except ApiError as exc:
            return _error(exc)
        except StoreError as exc:  # a distributed pool that cannot reach Redis
            logger.warning("%s %s failed: %s", request.method, request.url.path, exc)
            return _error(ApiError(503, "store_unavailable", "the pool's store cannot be reached"))
        except Exception:
            logger.exception("%s %s failed", request.method, request.url.path)
            return _error(ApiError(500, "internal", "internal error (see the server's log)"))

    return answer


_HTTP_CODES: Final = {404: "not_found", 405: "method_not_allowed"}


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "bad_request")
    message = "no such path" if exc.status_code == 404 else exc.detail
    headers = dict(exc.headers or {})
    if "Allow" in headers:  # Starlette joins a set: one order for every answer
        methods = sorted(method.strip() for method in headers["Allow"].split(","))
        headers["Allow"] = ", ".join(methods)
        message = f"{request.method} is not allowed here; allowed: {headers['Allow']}"
    return _error(ApiError(exc.status_code, code, message, headers))


class _Guard:
    """ASGI middleware, before routing: one ``Authorization`` and one ``Host`` at most (400
    ``duplicate_header``); a well-formed ``Host`` (400 ``bad_host`` for userinfo, a path ...),
    one of the app's hosts if it names them; for a method that changes state, the ``Origin``
    (if a browser sent one) and the bearer token (if the app has one)."""

    def __init__(
        self,
        app: ASGIApp,
        token: str | None,
        hosts: frozenset[str] | None,
        rejections: Counter[str],
    ) -> None:
        self.app = app
        self._token = None if token is None else token.encode()
        self._hosts = hosts
        self._rejections = rejections

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            error = self._check(scope)
            if error is not None:
                # The path within this app, which may be mounted under root_path.
                path = scope["path"].removeprefix(scope.get("root_path", ""))
                if path == "/api/v1/jobs" and scope["method"] == "POST":
                    self._rejections[error.code] += 1
                await _error(error)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _check(self, scope: Scope) -> ApiError | None:
        headers = Headers(scope=scope)
        # Before anything reads them: a second Authorization would be left unchecked (get()
        # reads the first), a second Host is malformed HTTP (RFC 9112, 3.2).
        for name in _SINGLE_HEADERS:
            count = len(headers.getlist(name))
            if count > 1:
                message = f"a request may carry one {name!r} header, this one has {count}"
                return ApiError(400, "duplicate_header", message)
        host = headers.get("host", "")
        if not _HOST.fullmatch(host):  # userinfo or a path: "evil.example@127.0.0.1"
            return ApiError(400, "bad_host", f"malformed Host header {host!r}")
        ours = _address(f"{scope.get('scheme', 'http')}://{host}")
        if self._hosts is not None and ours[0] not in self._hosts:
            return ApiError(400, "bad_host", f"this server does not answer for {host!r}")
        if scope["method"] in _SAFE_METHODS:
            return None
        origin = headers.get("origin")
        if origin is not None and (ours[0] is None or _address(origin) != ours):
            message = f"a request from {origin!r} cannot change this server's state"
            return ApiError(403, "cross_origin", message)
        if self._token is not None and not self._authorized(headers.get("authorization", "")):
            message = "this request needs 'Authorization: Bearer <token>'"
            return ApiError(401, "unauthorized", message, {"WWW-Authenticate": "Bearer"})
        return None

    def _authorized(self, given: str) -> bool:
        assert self._token is not None
        scheme, _, credentials = given.partition(" ")
        # The scheme is case-insensitive; the token is compared in constant time.
        same = hmac.compare_digest(credentials.strip().encode("latin-1"), self._token)
        return scheme.lower() == "bearer" and same


_DEFAULT_PORTS: Final = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_SINGLE_HEADERS: Final = ("authorization", "host")
# A Host field value (RFC 9110, 7.2: uri-host [":" port]): an IP literal in [], or a reg-name
# or IPv4 address (unreserved, pct-encoded and sub-delims characters); no userinfo, no path.
_HOST: Final = re.compile(r"(\[[0-9A-Za-z:.%_~-]+\]|[A-Za-z0-9._~%!$&'()*+,;=-]*)(:[0-9]*)?")


def _address(url: str) -> tuple[str | None, int | None]:
    """The host (in lower case; an IPv6 address without its []) and the port (the scheme's
    default if none is written) of ``url``; ``(None, None)`` if it is malformed. Applied to a
    browser's ``Origin`` and to this server as the request's ``Host`` names it."""
    try:
        parts = urlsplit(url)
        return parts.hostname, parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None, None
