"""``trio-jobpool serve``, ``worker`` and ``prune``: the commands that open a pool or a store.

``serve`` opens a pool with the jobs of a registry (``--app module:attribute``), builds the app of
:mod:`trio_jobpool.http` around it and serves it with Hypercorn's Trio worker. The first SIGINT
or SIGTERM stops serving (requests under way get Hypercorn's graceful timeout), then leaving the
pool's block drains it (up to ``--shutdown-timeout``); a second signal cancels what still runs
(a durable or distributed pool keeps those jobs queued for the next pool). ``worker`` is the
same without HTTP, for a shared (Redis) store. A status line that cannot be written (stdout or
stderr a closed pipe) is dropped: it never stops the drain nor sets the exit code, and SIGPIPE
stays ignored while they run. ``prune`` opens an SQLite store by itself and
deletes old ended jobs.

Every expected failure is a :class:`~trio_jobpool.cli.CliError` with its exit code.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import ipaddress
import logging
import math
import os
import signal
import sys
import time
import traceback
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn, TextIO

import anyio.lowlevel
import trio

from ._errors import StoreError
from ._pool import JobPool, open_job_pool
from ._registry import JobRegistry
from .cli import EXIT_BAD_INPUT, EXIT_FAILED, CliError, write_line

__all__ = [
    "ServeOptions",
    "WorkerOptions",
    "load_registry",
    "run_prune",
    "run_serve",
    "run_worker",
]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_CLI_MISSING = "needs the [cli] extra ({name} is not installed): pip install 'trio-jobpool[cli]'"
_REDIS_MISSING = (
    "a Redis store needs the [redis] extra (coredis): pip install 'trio-jobpool[redis]'"
)


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """What ``worker`` (and ``serve``) open: the registry, the store and the pool's sizes."""

    app: str
    store: str
    workers: int
    queue_size: int
    shutdown_timeout: float
    shutdown_grace: float = 1.0


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


def _say(message: str, stream: TextIO | None = None) -> None:
    """A status line on stdout (or ``stream``); one that cannot be written is dropped
    (:func:`~trio_jobpool.cli.write_line`): it never stops the drain nor sets the exit code."""
    write_line(message, stream)


def _ignore_sigpipe() -> None:
    """Keep SIGPIPE ignored (Python's default, which an ``--app`` module may have changed):
    a write to a closed pipe then fails with EPIPE, which :func:`_say` drops, instead of
    killing the process before its pool drains."""
    if hasattr(signal, "SIGPIPE"):  # (not on Windows)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)


# -- loading the registry ------------------------------------------------------------------


def load_registry(spec: str) -> JobRegistry:
    """The :class:`JobRegistry` that ``spec`` names: ``module:attribute`` (the working directory
    is searched first, as for ``python -m``) or ``path/to/file.py:attribute``; ``:attribute``
    defaults to ``registry``, and may be dotted (``module:jobs.registry``).

    Raises:
        CliError: (exit 2) the module or file cannot be found or fails to import, the attribute
            is missing, or it is not a ``JobRegistry``.
    """
    target, colon, attribute = spec.rpartition(":")
    if not colon:
        target, attribute = spec, "registry"
    if not target or not attribute:
        raise CliError(EXIT_BAD_INPUT, f"--app {spec!r}: expected MODULE:ATTRIBUTE or FILE.py")
    if target.endswith(".py") or "/" in target or os.sep in target:
        module = _import_file(Path(target), spec)
    else:
        module = _import_module(target, spec)
    value: Any = module
    for part in attribute.split("."):
        if not hasattr(value, part):
            found = [name for name, item in vars(module).items() if isinstance(item, JobRegistry)]
            hint = f" (its registries: {', '.join(found)})" if found else ""
            raise CliError(
                EXIT_BAD_INPUT, f"--app {spec!r}: {target} has no attribute {attribute!r}{hint}"
            )
        value = getattr(value, part)
    if not isinstance(value, JobRegistry):
        raise CliError(
            EXIT_BAD_INPUT,
            f"--app {spec!r}: {attribute} is a {type(value).__name__}, not a "
            "trio_jobpool.JobRegistry",
        )
    return value


def _import_module(name: str, spec: str) -> ModuleType:
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(f"{exc.name}.")):
            raise CliError(
                EXIT_BAD_INPUT,
                f"--app {spec!r}: no module named {name!r} here ({cwd}); run from the "
                "directory that holds it, or name a file: --app path/to/jobs.py:registry",
            ) from None
        raise _import_failed(spec) from None
    except Exception:
        raise _import_failed(spec) from None


def _import_file(path: Path, spec: str) -> ModuleType:
    if not path.is_file():
        raise CliError(EXIT_BAD_INPUT, f"--app {spec!r}: no such file: {path}")
    path = path.resolve()
    name = path.stem if path.stem.isidentifier() and path.stem not in sys.modules else None
    name = name or f"_trio_jobpool_app_{abs(hash(str(path)))}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise CliError(EXIT_BAD_INPUT, f"--app {spec!r}: cannot import {path}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    sys.path.insert(0, str(path.parent))  # for the modules next to it
    try:
        module_spec.loader.exec_module(module)
    except Exception:
        del sys.modules[name]
        raise _import_failed(spec) from None
    return module


def _import_failed(spec: str) -> CliError:
    """The error of a module that raised while being imported: its traceback is the user's
    own code, so it is shown (this is the one failure that prints one)."""
    text = traceback.format_exc().rstrip()
    return CliError(EXIT_BAD_INPUT, f"--app {spec!r}: importing it failed:\n{text}")


# -- opening the pool, and the errors that are expected -------------------------------------


def _leaves(error: BaseException) -> Iterator[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from _leaves(inner)
    else:
        yield error


def _expected(error: BaseException, store: str) -> CliError | None:
    """The :class:`CliError` of an expected failure, or None if anything in it (an exception
    group's leaves) is unexpected: that is raised as it is, with its traceback."""
    found: list[CliError] = []
    for leaf in _leaves(error):
        if isinstance(leaf, CliError):
            found.append(leaf)
        elif isinstance(leaf, StoreError):
            found.append(CliError(EXIT_FAILED, f"cannot use the store: {leaf}"))
        elif isinstance(leaf, ImportError) and store.startswith(("redis://", "rediss://")):
            found.append(CliError(EXIT_BAD_INPUT, _REDIS_MISSING))
        else:
            return None
    return found[0] if found else None


def _run(main: Callable[[], Awaitable[None]], store: str) -> None:
    _ignore_sigpipe()
    try:
        trio.run(main)
    except BaseException as error:
        expected = _expected(error, store)
        if expected is None:
            raise
        raise expected from None


def _pool_opener(
    options: WorkerOptions, registry: JobRegistry
) -> contextlib.AbstractAsyncContextManager[JobPool]:
    """``open_job_pool(...)`` for these options; its arguments are checked here, before any
    event loop runs.

    Raises:
        CliError: (exit 2) a bad store URL or setting, or a pool that cannot have no workers.
    """
    distributed = options.store.startswith(("redis://", "rediss://"))
    if options.workers == 0 and not distributed:
        raise CliError(
            EXIT_BAD_INPUT,
            "--workers 0 (a process that only submits) needs a shared store, "
            "--store redis://host:port/db, for worker processes to run the jobs",
        )
    try:
        return open_job_pool(
            max_workers=options.workers,
            queue_size=options.queue_size,
            shutdown_timeout=options.shutdown_timeout,
            shutdown_grace=options.shutdown_grace,
            store=options.store,
            registry=registry,
        )
    except (ValueError, TypeError) as exc:
        raise CliError(EXIT_BAD_INPUT, f"--store {options.store!r}: {exc}") from None


@contextlib.asynccontextmanager
async def _pool_until_signal(
    opener: contextlib.AbstractAsyncContextManager[JobPool], shutdown_timeout: float
) -> AsyncIterator[tuple[JobPool, trio.Event]]:
    """Open the pool and watch for SIGINT/SIGTERM: yields the pool and an event set by the first
    signal; a second one cancels the running jobs (``pool.stop(drain=False)``). Leaving drains
    the pool (up to ``shutdown_timeout``)."""
    stopping = trio.Event()
    pools: list[JobPool] = []
    with trio.open_signal_receiver(*_SIGNALS) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_signals, signals, stopping, pools, nursery.cancel_scope)
            try:
                async with opener as pool:
                    pools.append(pool)
                    yield pool, stopping
                    _draining(pool, shutdown_timeout)
            except BaseException as error:  # (reported, and the process ends)
                if pools and pools[0].abandoned_jobs:  # trio.run would wait for them forever
                    _exit_abandoning(pools[0], error)
                raise
            nursery.cancel_scope.cancel()
            if pool.abandoned_jobs:
                _exit_abandoning(pool)
    if not pools:  # a second signal cancelled the opening (a long recovery, a slow Redis)
        raise CliError(EXIT_FAILED, "stopped by a signal before the pool was open")


async def _watch_signals(
    signals: AsyncIterator[int],
    stopping: trio.Event,
    pools: list[JobPool],
    opening: trio.CancelScope,
) -> None:
    async for number in signals:
        name = signal.Signals(number).name
        if not stopping.is_set():
            stopping.set()
            _say(f"{name}: stopping (send it again to cancel the running jobs)")
        elif pools:
            _say(f"{name} again: cancelling the running jobs")
            await pools[0].stop(drain=False)
        else:
            _say(f"{name} again: giving up opening the pool")
            opening.cancel()


def _exit_abandoning(pool: JobPool, error: BaseException | None = None) -> NoReturn:
    """End the process now, with exit code 1: jobs that ignored their cancellation still run
    (the pool abandoned them; each was logged), and ``trio.run`` would wait for them forever.
    The pool's block has returned (``error``: what leaving it raised, reported first on
    stderr: an expected failure by its message, anything else with its traceback), so its
    store is closed: on a store they stay ``running``, for the next pool to run again."""
    ids = pool.abandoned_jobs
    if error is not None:
        expected = _expected(error, _store_name(pool))
        if expected is not None:
            _say(f"error: {expected.message}", sys.stderr)
        else:
            _say("".join(traceback.format_exception(error)).rstrip("\n"), sys.stderr)
    _say(_summary(pool))
    _say(
        f"{len(ids)} job(s) did not end when cancelled and were abandoned "
        f"({', '.join(map(repr, ids[:10]))}{', ...' if len(ids) > 10 else ''}): "
        "exiting without waiting for them",
        sys.stderr,
    )
    logging.shutdown()  # (the status lines are flushed as written)
    os._exit(EXIT_FAILED)


def _draining(pool: JobPool, timeout: float) -> None:
    stats = pool.stats()
    if stats.active_workers or stats.queued_tasks:
        _say(
            f"draining: {stats.active_workers} running, {stats.queued_tasks} waiting here; "
            f"waiting up to {timeout:g} s"
        )


def _summary(pool: JobPool | None) -> str:
    if pool is None:
        return "stopped"
    stats = pool.stats()
    return (
        f"stopped: {stats.total_completed} completed, {stats.total_failed} failed, "
        f"{stats.total_cancelled} cancelled, {stats.total_timed_out} timed out here"
    )


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


def _store_name(pool: JobPool) -> str:
    store = pool.store
    return "memory://" if store is None else str(store.url)


# -- serve -----------------------------------------------------------------------------------


def run_serve(options: ServeOptions) -> int:
    """``trio-jobpool serve``: serve until SIGINT/SIGTERM, then drain; 0 once stopped."""
    if options.token == "":
        raise CliError(EXIT_BAD_INPUT, "--token: an empty token is not allowed")
    if not options.body_timeout > 0:
        raise CliError(EXIT_BAD_INPUT, "--body-timeout must be more than 0 seconds")
    try:
        import hypercorn.trio
        from hypercorn.config import Config
        from hypercorn.typing import ASGIFramework

        from .http import create_app
    except ImportError as exc:
        raise CliError(EXIT_BAD_INPUT, _CLI_MISSING.format(name=exc.name)) from None
    registry = load_registry(options.app)
    opener = _pool_opener(options, registry)
    if not len(registry):
        _say(f"warning: the registry {options.app} has no jobs", sys.stderr)
    config = Config()
    host = f"[{options.host}]" if ":" in options.host else options.host
    config.bind = [f"{host}:{options.port}"]
    config.loglevel = "WARNING"
    config.accesslog = _access_logger() if options.access_log else None
    config.backlog = options.backlog
    files = _raise_file_limit()
    if files is not None and options.max_bodies > files // 2:
        _say(
            f"warning: --max-bodies {options.max_bodies} slow clients could hold most of this "
            f"process's {files} file descriptors (ulimit -n)",
            sys.stderr,
        )
    where = f"{options.host}:{options.port}"
    opened: list[JobPool] = []

    async def main() -> None:
        # anyio (which the app uses) imports its Trio backend on first use: done now, for
        # a first request that comes while every file descriptor is taken cannot.
        await anyio.lowlevel.checkpoint()
        async with _pool_until_signal(opener, options.shutdown_timeout) as (pool, stopping):
            opened.append(pool)
            # On loopback, answer only for loopback names: a web page whose host name an
            # attacker points at 127.0.0.1 (DNS rebinding) is refused.
            hosts = ["localhost", "127.0.0.1", "::1", options.host]
            app: ASGIFramework = create_app(  # a Starlette app is one
                pool,
                registry,
                token=options.token,
                dashboard=options.dashboard,
                allowed_hosts=hosts if _loopback(options.host) else None,
                body_timeout=options.body_timeout,
                max_bodies=options.max_bodies,
            )  # type: ignore[assignment]
            async with trio.open_nursery() as nursery:
                serve = partial(hypercorn.trio.serve, app, config, shutdown_trigger=stopping.wait)
                try:
                    binds: list[str] = await nursery.start(serve)
                except* OSError as group:  # Hypercorn's bind (in a group from its nursery)
                    error = next(_leaves(group))
                    reason = getattr(error, "strerror", None) or str(error)
                    raise CliError(EXIT_FAILED, f"cannot listen on {where}: {reason}") from None
                _say(
                    f"serving on {binds[0] if binds else where} (store: {_store_name(pool)}, "
                    f"workers: {pool.max_workers})"
                )
                if not _loopback(options.host) and options.token is None:
                    _say(
                        f"warning: listening on {options.host} without a token: anyone who can "
                        "reach it can submit and cancel jobs (--token)",
                        sys.stderr,
                    )

    accept_errors = logging.getLogger("trio.serve_listeners")
    once = _OncePerCondition()
    accept_errors.addFilter(once)
    try:
        _run(main, options.store)
    finally:
        accept_errors.removeFilter(once)
    _say(_summary(opened[0] if opened else None))
    return 0


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


# -- worker ----------------------------------------------------------------------------------


def run_worker(options: WorkerOptions) -> int:
    """``trio-jobpool worker``: run the store's jobs until SIGINT/SIGTERM, then drain."""
    if not options.store.startswith(("redis://", "rediss://", "sqlite:///")):
        raise CliError(
            EXIT_BAD_INPUT,
            f"--store {options.store!r}: a worker runs the jobs of a shared store, "
            "redis://host:port/db (or an sqlite:/// file that no other pool holds)",
        )
    registry = load_registry(options.app)
    opener = _pool_opener(options, registry)
    opened: list[JobPool] = []

    async def main() -> None:
        async with _pool_until_signal(opener, options.shutdown_timeout) as (pool, stopping):
            opened.append(pool)
            _say(
                f"worker {os.getpid()}: {pool.max_workers} workers on {_store_name(pool)}, "
                "Ctrl+C to stop"
            )
            await stopping.wait()

    _run(main, options.store)
    _say(_summary(opened[0] if opened else None))
    return 0


# -- prune -----------------------------------------------------------------------------------


def run_prune(store: str, older_than: float) -> int:
    """``trio-jobpool prune``: delete the jobs of an SQLite store that ended before
    ``older_than`` seconds ago; prints how many."""
    from .stores import SqliteStore

    if store.startswith(("redis://", "rediss://")):
        raise CliError(
            EXIT_BAD_INPUT,
            "a Redis store needs no pruning: ended jobs expire by themselves, keep_ended "
            "seconds after their end (a week by default; set it in the URL: ?keep_ended=86400)",
        )
    try:
        sqlite_store = SqliteStore.from_url(store)
    except ValueError as exc:
        raise CliError(
            EXIT_BAD_INPUT, f"--store: {exc} (expected sqlite:///path/jobs.db)"
        ) from None
    if not sqlite_store.path.is_file():
        raise CliError(EXIT_BAD_INPUT, f"--store: no such file: {sqlite_store.path}")
    deleted: list[int] = []

    async def main() -> None:
        await sqlite_store.open()  # takes the store's lock: StoreError if a pool holds it
        try:
            deleted.append(await sqlite_store.prune(older_than))
        finally:
            await sqlite_store.aclose()

    try:
        trio.run(main)
    except StoreError as exc:
        hint = " (stop the server or worker that uses it first)" if "in use" in str(exc) else ""
        raise CliError(EXIT_FAILED, f"{exc}{hint}") from None
    _say(f"pruned {deleted[0]} ended jobs from {sqlite_store.url}")
    return 0
