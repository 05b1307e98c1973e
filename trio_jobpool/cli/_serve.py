"""``trio-jobpool serve``: a registry's jobs over HTTP, with Hypercorn on Trio.

``serve`` opens a pool with the jobs of a registry (``--app module:attribute``), builds the app of
:mod:`trio_jobpool.http` around it and serves it with Hypercorn's Trio worker. The first SIGINT
or SIGTERM stops serving (requests under way get Hypercorn's graceful timeout), then leaving the
pool's block drains it (up to ``--shutdown-timeout``); a second signal cancels what still runs
(:mod:`._running`). Hypercorn is imported when ``serve`` runs; without it, or without
:mod:`trio_jobpool.http`'s own packages (the ``[cli]`` extra), ``serve`` says what to install
and every other command works.

Every expected failure is a :class:`CliError` with its exit code.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import math
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import anyio.lowlevel
import trio

from trio_jobpool import JobPool, JobRegistry

from ._errors import EXIT_BAD_INPUT, EXIT_FAILED, CliError
from ._output import write_line
from ._running import (
    App,
    WorkerOptions,
    declare_schedules,
    leaves,
    load_app,
    open_pool,
    pool_until_signal,
    run_trio,
    store_name,
)

try:
    from trio_jobpool.http import create_app
except ImportError as exc:  # Starlette or prometheus_client (the [cli] extra) is missing
    _http_missing: str | None = exc.name
else:
    _http_missing = None

if TYPE_CHECKING:
    from hypercorn.config import Config
    from hypercorn.typing import ASGIFramework

__all__ = ["ServeOptions", "run_serve"]

_Serve = Callable[..., Awaitable[None]]

_CLI_MISSING = "needs the [cli] extra ({name} is not installed): pip install 'trio-jobpool[cli]'"


@dataclass(frozen=True, slots=True)
class ServeOptions(WorkerOptions):
    """``serve``'s options: a worker's, and the HTTP server's."""

    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    dashboard: bool = True
    access_log: bool = False
    backlog: int = 1024
    body_timeout: float = 10.0
    max_bodies: int = 64


def _raise_file_limit() -> int | None:
    """Raise this process's soft limit of open files to its hard limit (each connection is
    one); the limit now, or None if there is none (or no such limit: Windows)."""
    if sys.platform == "win32":
        return None
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
    return None if soft == resource.RLIM_INFINITY else soft


class _OncePerCondition(logging.Filter):
    """For Trio's accept loop (logger ``trio.serve_listeners``), which logs every failed
    accept (``EMFILE``: out of file descriptors, ...) with its traceback and tries again 0.1 s
    later: one line per condition (the log call's first argument, the errno's name) a minute,
    without the traceback, saying how many were left out since the last one."""

    EVERY = 60.0  # seconds between two lines of one condition

    def __init__(self) -> None:
        super().__init__()
        self._last: dict[str, float] = {}
        self._left_out: Counter[str] = Counter()

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = None
        record.exc_text = None
        args = record.args if isinstance(record.args, tuple) else ()
        condition = str(args[0]) if args else str(record.msg)
        now = time.monotonic()
        if now - self._last.get(condition, -math.inf) < self.EVERY:
            self._left_out[condition] += 1
            return False
        self._last[condition] = now
        left_out = self._left_out.pop(condition, 0)
        if left_out:
            record.msg = f"{record.msg} ({left_out} more since the last such line)"
        return True


# -- serve -----------------------------------------------------------------------------------


def run_serve(options: ServeOptions) -> int:
    """``trio-jobpool serve``: serve until SIGINT/SIGTERM, then drain; 0 once stopped.

    Raises:
        CliError: bad options, a missing package, a registry that cannot be loaded, an
            address that cannot be listened on, a store that cannot be opened (their exit
            codes: :mod:`._errors`).
    """
    _check_options(options)
    serve = _hypercorn_serve()
    app = load_app(options.app)
    opener = open_pool(options, app.registry)
    if not len(app.registry):
        write_line(f"warning: the registry {options.app} has no jobs", sys.stderr)
    config = _hypercorn_config(options)
    _warn_file_limit(options.max_bodies)
    main = partial(_serve_pool, options, app, opener, serve, config)
    with _accept_errors_once():
        run_trio(main, options.store)
    return 0


def _check_options(options: ServeOptions) -> None:
    """Refuse what argparse lets through: an empty token, a body timeout of 0.

    Raises:
        CliError: ``EXIT_BAD_INPUT``.
    """
    if options.token == "":
        raise CliError(EXIT_BAD_INPUT, "--token: an empty token is not allowed")
    if not options.body_timeout > 0:
        raise CliError(EXIT_BAD_INPUT, "--body-timeout must be more than 0 seconds")


def _hypercorn_serve() -> _Serve:
    """Hypercorn's Trio ``serve``, imported now; Hypercorn and :mod:`trio_jobpool.http` are
    both needed to serve.

    Raises:
        CliError: ``EXIT_BAD_INPUT``, naming the missing package and the extra to install.
    """
    try:
        import hypercorn.trio
    except ImportError as exc:
        raise CliError(EXIT_BAD_INPUT, _CLI_MISSING.format(name=exc.name)) from None
    if _http_missing is not None:
        raise CliError(EXIT_BAD_INPUT, _CLI_MISSING.format(name=_http_missing))
    return hypercorn.trio.serve


def _hypercorn_config(options: ServeOptions) -> Config:
    """Hypercorn's settings: the address, its log level (WARNING), the access log, the
    backlog. Called after :func:`_hypercorn_serve`, which found Hypercorn."""
    from hypercorn.config import Config

    config = Config()
    host = f"[{options.host}]" if ":" in options.host else options.host
    config.bind = [f"{host}:{options.port}"]
    config.loglevel = "WARNING"
    config.accesslog = _access_logger() if options.access_log else None
    config.backlog = options.backlog
    return config


def _warn_file_limit(max_bodies: int) -> None:
    """Raise the limit of open files (:func:`_raise_file_limit`); warn on stderr if
    ``max_bodies`` slow clients could hold more than half of it."""
    files = _raise_file_limit()
    if files is not None and max_bodies > files // 2:
        write_line(
            f"warning: --max-bodies {max_bodies} slow clients could hold most of this "
            f"process's {files} file descriptors (ulimit -n)",
            sys.stderr,
        )


@contextlib.contextmanager
def _accept_errors_once() -> Iterator[None]:
    """Within the block, Trio's accept loop logs each failed-accept condition once a minute
    (:class:`_OncePerCondition`)."""
    accept_errors = logging.getLogger("trio.serve_listeners")
    once = _OncePerCondition()
    accept_errors.addFilter(once)
    try:
        yield
    finally:
        accept_errors.removeFilter(once)


async def _serve_pool(
    options: ServeOptions,
    loaded: App,
    opener: contextlib.AbstractAsyncContextManager[JobPool],
    serve: _Serve,
    config: Config,
) -> None:
    """Open the pool, declare the app's schedules (:func:`declare_schedules`), serve its app
    with ``serve`` and ``config`` until the first signal, then leave the pool's block, which
    drains it and writes the stop line (:func:`pool_until_signal`).

    Raises:
        CliError: ``EXIT_FAILED`` if the address cannot be listened on; ``EXIT_BAD_INPUT`` if
            the app's schedules cannot be declared.
    """
    # anyio, which the app uses, imports its Trio backend on first use: a first request that
    # comes while every file descriptor is taken could not, so it is imported before serving.
    await anyio.lowlevel.checkpoint()
    async with pool_until_signal(opener, options.shutdown_timeout) as (pool, stopping):
        await declare_schedules(pool, loaded, stopping)
        app = _app(pool, loaded.registry, options)
        async with trio.open_nursery() as nursery:
            start = partial(serve, app, config, shutdown_trigger=stopping.wait)
            binds = await _start_listening(nursery, start, f"{options.host}:{options.port}")
            _announce(pool, options, binds)


def _app(pool: JobPool, registry: JobRegistry, options: ServeOptions) -> ASGIFramework:
    """The app of :mod:`trio_jobpool.http` over ``pool``, with ``serve``'s options."""
    # On loopback the app answers only for loopback names: a web page whose host name an
    # attacker points at 127.0.0.1 (DNS rebinding) is refused.
    hosts = ["localhost", "127.0.0.1", "::1", options.host]
    app: ASGIFramework = create_app(  # a Starlette app is an ASGIFramework
        pool,
        registry,
        token=options.token,
        dashboard=options.dashboard,
        allowed_hosts=hosts if _loopback(options.host) else None,
        body_timeout=options.body_timeout,
        max_bodies=options.max_bodies,
    )  # type: ignore[assignment]
    return app


async def _start_listening(nursery: trio.Nursery, serve: _Serve, where: str) -> list[str]:
    """Start ``serve`` in ``nursery``; the addresses it listens on once it does.

    Raises:
        CliError: ``EXIT_FAILED`` with the system's reason if it cannot listen on ``where``.
    """
    try:
        binds: list[str] = await nursery.start(serve)
    except* OSError as group:  # Hypercorn's bind fails inside its nursery, so in a group
        error = next(leaves(group))
        reason = getattr(error, "strerror", None) or str(error)
        raise CliError(EXIT_FAILED, f"cannot listen on {where}: {reason}") from None
    return binds


def _announce(pool: JobPool, options: ServeOptions, binds: list[str]) -> None:
    """Print ``serving on URL`` on stdout; warn on stderr of a server open to the network
    without a token."""
    where = binds[0] if binds else f"{options.host}:{options.port}"
    write_line(f"serving on {where} (store: {store_name(pool)}, workers: {pool.max_workers})")
    if not _loopback(options.host) and options.token is None:
        write_line(
            f"warning: listening on {options.host} without a token: anyone who can "
            "reach it can submit and cancel jobs (--token)",
            sys.stderr,
        )


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: not known to be loopback
        return False


def _access_logger() -> logging.Logger:
    logger = logging.getLogger("trio_jobpool.access")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.handlers = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger
