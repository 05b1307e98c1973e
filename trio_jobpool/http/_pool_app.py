"""An ASGI app that owns its pool: :func:`create_pool_app`, for ``uvicorn module:app`` and
``hypercorn module:app``.

The pool is opened and closed by the ASGI lifespan, in the task the server gives the lifespan,
so the server's own shutdown drains it: on SIGINT or SIGTERM, Uvicorn and Hypercorn stop
accepting connections, wait for the requests under way (their graceful timeouts), then send
``lifespan.shutdown``, which leaves the pool's block (a drain, up to ``shutdown_timeout``)
before the process exits. Serving :func:`~trio_jobpool.http.create_app` inside a pool's block
that the program opened around ``uvicorn.Server.serve()`` does not drain: Uvicorn re-raises the
signal once ``serve()`` returns, and SIGTERM then ends the process with the jobs still running.
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from trio_jobpool import JobPool, JobRegistry, RetryPolicy, open_job_pool

from ._input import ApiError
from .app import _error, create_app

__all__ = ["PoolApp", "create_pool_app"]


def create_pool_app(
    registry: JobRegistry,
    *,
    store: object = None,
    max_workers: int = 4,
    queue_size: int = 100,
    max_pending: int | None = 0,
    shutdown_timeout: float | None = 30.0,
    shutdown_grace: float | None = 1.0,
    job_timeout: float | None = 1800.0,
    retry: RetryPolicy | None = None,
    token: str | None = None,
    allowed_hosts: Collection[str] | None = None,
    max_body_bytes: int = 65_536,
    submit_wait: float = 0.25,
    max_workers_limit: int = 1024,
    dashboard: bool = True,
    body_timeout: float = 10.0,
    max_bodies: int = 64,
) -> PoolApp:
    """An ASGI app serving the endpoints of docs/service.md over a pool it opens itself, in
    the ASGI lifespan: ``app = create_pool_app(registry, store="sqlite:///jobs.db")`` in a
    module, then ``uvicorn module:app`` or ``hypercorn module:app`` (``-k trio`` runs the pool
    on Trio).

    Lifespan startup opens ``open_job_pool(max_workers, queue_size, store=store,
    registry=registry, max_pending=max_pending, shutdown_timeout=shutdown_timeout,
    shutdown_grace=shutdown_grace, job_timeout=job_timeout, retry=retry)`` and builds
    ``create_app(pool, registry, token=..., allowed_hosts=..., max_body_bytes=...,
    submit_wait=..., max_workers_limit=..., dashboard=..., body_timeout=..., max_bodies=...)``;
    lifespan shutdown (the server stopping, after its graceful timeout for requests) leaves
    the pool's block normally: no more jobs are accepted and the running ones get up to
    ``shutdown_timeout`` seconds before they are cancelled (on a store, a cancelled job stays
    queued for the next pool). A startup that fails (a store in use, Redis unreachable, a bad
    ``create_app`` setting) is reported to the server as ``lifespan.startup.failed`` with the
    traceback, and the server exits. If the lifespan task is cancelled (the server gives up
    on it), leaving the block cancels every job at once, as ``open_job_pool`` does.

    Without a lifespan (a server run with the lifespan off, the app mounted in another app
    without :meth:`PoolApp.open` in that app's lifespan, or after shutdown) every HTTP request
    is answered 503 ``pool_closed``.

    Raises:
        ValueError, TypeError: bad pool arguments (those of ``open_job_pool``, checked here);
            ``registry`` not a ``JobRegistry``. The ``create_app`` settings are checked when
            the lifespan starts.
    """
    if not isinstance(registry, JobRegistry):
        raise TypeError(f"registry must be a JobRegistry, got {registry!r}")
    opener = functools.partial(
        open_job_pool,
        max_workers,
        queue_size,
        store=store,
        registry=registry,
        max_pending=max_pending,
        shutdown_timeout=shutdown_timeout,
        shutdown_grace=shutdown_grace,
        job_timeout=job_timeout,
        retry=retry,
    )
    opener()  # checks the arguments now; the context manager is never entered
    app_options: dict[str, Any] = {
        "token": token,
        "allowed_hosts": allowed_hosts,
        "max_body_bytes": max_body_bytes,
        "submit_wait": submit_wait,
        "max_workers_limit": max_workers_limit,
        "dashboard": dashboard,
        "body_timeout": body_timeout,
        "max_bodies": max_bodies,
    }
    return PoolApp(opener, functools.partial(create_app, registry=registry, **app_options))


class PoolApp:
    """The ASGI app of :func:`create_pool_app`: the lifespan opens the pool, HTTP requests go
    to the app of :func:`~trio_jobpool.http.create_app` over it."""

    def __init__(
        self,
        opener: Callable[[], AbstractAsyncContextManager[JobPool]],
        build: Callable[[JobPool], Starlette],
    ) -> None:
        self._opener = opener
        self._build = build
        self._pool: JobPool | None = None
        self._app: Starlette | None = None

    @property
    def pool(self) -> JobPool | None:
        """The open pool, while the lifespan (or :meth:`open`) holds it; else ``None``."""
        return self._pool

    @asynccontextmanager
    async def open(self) -> AsyncIterator[JobPool]:
        """Open the pool and serve it for the duration of an ``async with`` block; leaving the
        block normally drains the pool (up to ``shutdown_timeout``), leaving it by an exception
        or a cancellation cancels every job at once. The lifespan does this; call it yourself
        from the lifespan of an app that mounts this one (a mounted app's lifespan is not run).

        Raises:
            RuntimeError: the pool is open already (one pool per app at a time).
            Whatever ``open_job_pool`` and ``create_app`` raise.
        """
        if self._pool is not None:
            raise RuntimeError("this app's pool is open already: one lifespan at a time")
        async with self._opener() as pool:
            # Built before the pool is visible: with a bad setting, nothing is served.
            app = self._build(pool)
            self._pool, self._app = pool, app
            try:
                yield pool
            finally:
                # From here on a request is answered 503; the server has stopped taking them.
                self._pool = self._app = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI: the lifespan opens and drains the pool; a request goes to the app over the
        open pool, or is answered 503 ``pool_closed`` when none is open."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        app = self._app
        if app is not None:
            await app(scope, receive, send)
        elif scope["type"] == "http":
            message = "the pool is not open (the app's ASGI lifespan opens it)"
            await _error(ApiError(503, "pool_closed", message))(scope, receive, send)
        # A scope of another type, with no pool open, is not accepted: the server closes it.

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        """The ASGI lifespan protocol around :meth:`open`. An exception is reported to the
        server (``startup.failed`` or ``shutdown.failed``, with its traceback) and re-raised;
        a cancellation is not caught."""
        started = False
        await receive()  # lifespan.startup
        try:
            async with self.open():
                await send({"type": "lifespan.startup.complete"})
                started = True
                await receive()  # lifespan.shutdown
        except Exception:
            phase = "shutdown" if started else "startup"
            await send({"type": f"lifespan.{phase}.failed", "message": traceback.format_exc()})
            raise
        await send({"type": "lifespan.shutdown.complete"})
