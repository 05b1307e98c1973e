"""What ``serve`` and ``worker`` share: loading ``--app``'s registry, and a pool that runs in this
process until SIGINT or SIGTERM.

The first signal sets an event (the command stops taking work: ``serve`` stops serving); leaving
the pool's block then drains it (up to ``--shutdown-timeout``); a second signal cancels what still
runs (a durable or distributed pool keeps those jobs queued for the next pool). A status line
that cannot be written (stdout or stderr a closed pipe) is dropped (:func:`write_line`): it never
stops the drain nor sets the exit code, and SIGPIPE stays ignored while they run.

Every expected failure is a :class:`CliError` with its exit code.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import logging
import os
import signal
import sys
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

import trio

from trio_jobpool import (
    JobHandle,
    JobNotRegistered,
    JobNotSerializable,
    JobPool,
    JobRegistry,
    JobStatus,
    StoreError,
    open_job_pool,
)

from ._errors import EXIT_BAD_INPUT, EXIT_FAILED, CliError
from ._output import write_line

__all__ = [
    "App",
    "DeclareSchedules",
    "WorkerOptions",
    "declare_schedules",
    "leaves",
    "load_app",
    "load_registry",
    "open_pool",
    "pool_until_signal",
    "run_trio",
    "store_name",
    "summary",
]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
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
    max_pending: int | None = 0


def _ignore_sigpipe() -> None:
    """Keep SIGPIPE ignored (Python's default, which an ``--app`` module may have changed):
    a write to a closed pipe then fails with EPIPE, which :func:`write_line` drops, instead of
    killing the process before its pool drains."""
    if hasattr(signal, "SIGPIPE"):  # Windows has no SIGPIPE
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)


# -- loading the registry ------------------------------------------------------------------


DeclareSchedules = Callable[[JobPool], Awaitable[object]]
"""An app module's ``declare_schedules(pool)``: an async function that declares the app's
periodic schedules on the pool (``await pool.schedule(...)``)."""


@dataclass(frozen=True, slots=True)
class App:
    """What ``--app`` names: the registry, and its module's ``declare_schedules`` if it has one
    (``None`` else)."""

    spec: str
    registry: JobRegistry
    declare_schedules: DeclareSchedules | None = None


def load_app(spec: str) -> App:
    """The registry ``spec`` names (:func:`load_registry`), and the ``declare_schedules``
    of the module (or file) that holds it, if it defines one.

    Raises:
        CliError: (exit 2) as :func:`load_registry`; a ``declare_schedules`` that is not
            callable.
    """
    registry, module = _load(spec)
    declare = getattr(module, "declare_schedules", None)
    if declare is not None and not callable(declare):
        raise CliError(
            EXIT_BAD_INPUT,
            f"--app {spec!r}: declare_schedules is a {type(declare).__name__}, not an async "
            "function of the pool",
        )
    return App(spec, registry, declare)


def load_registry(spec: str) -> JobRegistry:
    """The :class:`JobRegistry` that ``spec`` names: ``module:attribute`` (the working directory
    is searched first, as for ``python -m``) or ``path/to/file.py:attribute``; ``:attribute``
    defaults to ``registry``, and may be dotted (``module:jobs.registry``).

    Raises:
        CliError: (exit 2) the module or file cannot be found or fails to import, the attribute
            is missing, or it is not a ``JobRegistry``.
    """
    return _load(spec)[0]


def _load(spec: str) -> tuple[JobRegistry, ModuleType]:
    """The registry ``spec`` names and the module that holds it (see :func:`load_registry`)."""
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
    return value, module


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


# -- the app's periodic schedules ----------------------------------------------------------


async def declare_schedules(pool: JobPool, app: App, stopping: trio.Event) -> None:
    """Run the app module's ``declare_schedules(pool)``, if it has one, then write the
    schedules the pool has (``schedules: a, b``). Declaring a schedule identical to the one
    kept changes nothing, so every process (each ``serve``, each ``worker``) does it when its
    pool opens. A signal (``stopping``) cancels a declaration still under way: the command
    then stops as usual.

    Raises:
        CliError: (exit 2) the function raised ``ValueError``, ``TypeError`` or
            ``JobNotRegistered``/``JobNotSerializable`` (a bad expression, zone, job or
            argument: its message), or anything else but a ``StoreError`` (with its
            traceback: it is the app's own code), or returned no awaitable.
        StoreError: the store could not keep a schedule.
    """
    declare = app.declare_schedules
    if declare is None:
        return
    async with trio.open_nursery() as nursery:

        async def cancel_on_signal() -> None:
            await stopping.wait()
            nursery.cancel_scope.cancel()

        nursery.start_soon(cancel_on_signal)
        await _declare(pool, app.spec, declare)
        nursery.cancel_scope.cancel()
    if stopping.is_set():
        return
    names = [schedule.name for schedule in await pool.schedules()]
    write_line(f"schedules: {', '.join(names) if names else 'none'}")


async def _declare(pool: JobPool, spec: str, declare: DeclareSchedules) -> None:
    """``await declare(pool)``, its expected failures as :class:`CliError`."""
    where = f"--app {spec!r}: declare_schedules"
    try:
        declaring = declare(pool)
        if not inspect.isawaitable(declaring):
            raise CliError(
                EXIT_BAD_INPUT,
                f"{where} returned {type(declaring).__name__}: it must be an async function "
                "(async def declare_schedules(pool): ...)",
            )
        await declaring
    except (CliError, StoreError):
        raise
    except (ValueError, TypeError, JobNotRegistered, JobNotSerializable) as exc:
        raise CliError(EXIT_BAD_INPUT, f"{where} failed: {exc}") from None
    except Exception:
        text = traceback.format_exc().rstrip()
        raise CliError(EXIT_BAD_INPUT, f"{where} failed:\n{text}") from None


# -- opening the pool, and the errors that are expected -------------------------------------


def leaves(error: BaseException) -> Iterator[BaseException]:
    """The exceptions in ``error``: itself, or the leaves of an exception group, depth first."""
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from leaves(inner)
    else:
        yield error


def _expected(error: BaseException, store: str) -> CliError | None:
    """The :class:`CliError` of an expected failure, or None if anything in it (an exception
    group's leaves) is unexpected: that is raised as it is, with its traceback."""
    found: list[CliError] = []
    for leaf in leaves(error):
        if isinstance(leaf, CliError):
            found.append(leaf)
        elif isinstance(leaf, StoreError):
            found.append(CliError(EXIT_FAILED, f"cannot use the store: {leaf}"))
        elif isinstance(leaf, ImportError) and store.startswith(("redis://", "rediss://")):
            found.append(CliError(EXIT_BAD_INPUT, _REDIS_MISSING))
        else:
            return None
    return found[0] if found else None


def run_trio(main: Callable[[], Awaitable[None]], store: str) -> None:
    """``trio.run(main)`` with SIGPIPE ignored. A failure whose every leaf is expected (a
    :class:`CliError`, a :class:`StoreError`, coredis missing for a Redis ``store``) is raised
    as the :class:`CliError` of the first leaf; anything else as it is, with its traceback."""
    _ignore_sigpipe()
    try:
        trio.run(main)
    except BaseException as error:
        expected = _expected(error, store)
        if expected is None:
            raise
        raise expected from None


def open_pool(
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
            max_pending=options.max_pending,
            shutdown_timeout=options.shutdown_timeout,
            shutdown_grace=options.shutdown_grace,
            store=options.store,
            registry=registry,
        )
    except (ValueError, TypeError) as exc:
        raise CliError(EXIT_BAD_INPUT, f"--store {options.store!r}: {exc}") from None


@contextlib.asynccontextmanager
async def pool_until_signal(
    opener: contextlib.AbstractAsyncContextManager[JobPool], shutdown_timeout: float
) -> AsyncIterator[tuple[JobPool, trio.Event]]:
    """Open the pool and watch for SIGINT/SIGTERM: yields the pool and an event set by the first
    signal; a second one cancels the running jobs (``pool.stop(drain=False)``). Leaving drains
    the pool (up to ``shutdown_timeout``), then writes the stop line (:func:`summary`).

    Once the pool is open, before yielding, it writes ``resumed N job(s) from STORE`` if the
    store gave the pool jobs an earlier run left live (the pool logs each one that starts over
    because a shutdown or a crash cut its attempt short)."""
    stopping = trio.Event()
    pools: list[JobPool] = []
    live: list[JobHandle[Any]] = []  # the jobs live when the drain began
    with _pool_log(), trio.open_signal_receiver(*_SIGNALS) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_watch_signals, signals, stopping, pools, nursery.cancel_scope)
            try:
                async with opener as pool:
                    pools.append(pool)
                    _resumed(pool)
                    yield pool, stopping
                    live = _draining(pool, shutdown_timeout)
            except BaseException as error:
                # With jobs abandoned, trio.run would wait for them forever: the error is
                # reported and the process ends here.
                if pools and pools[0].abandoned_jobs:
                    _exit_abandoning(pools[0], live, error)
                raise
            nursery.cancel_scope.cancel()
            if pool.abandoned_jobs:
                _exit_abandoning(pool, live)
    if not pools:  # a second signal cancelled the opening: a long recovery, a slow Redis
        raise CliError(EXIT_FAILED, "stopped by a signal before the pool was open")
    write_line(summary(pool, live))


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
            write_line(f"{name}: stopping (send it again to cancel the running jobs)")
        elif pools:
            write_line(f"{name} again: cancelling the running jobs")
            await pools[0].stop(drain=False)
        else:
            write_line(f"{name} again: giving up opening the pool")
            opening.cancel()


def _exit_abandoning(
    pool: JobPool, live: list[JobHandle[Any]], error: BaseException | None = None
) -> NoReturn:
    """End the process now, with exit code 1: jobs that ignored their cancellation still run
    (the pool abandoned them; each was logged), and ``trio.run`` would wait for them forever.
    The pool's block has returned (``error``: what leaving it raised, reported first on
    stderr: an expected failure by its message, anything else with its traceback), so its
    store is closed: on a store they stay ``running``, for the next pool to run again."""
    ids = pool.abandoned_jobs
    if error is not None:
        expected = _expected(error, store_name(pool))
        if expected is not None:
            write_line(f"error: {expected.message}", sys.stderr)
        else:
            write_line("".join(traceback.format_exception(error)).rstrip("\n"), sys.stderr)
    write_line(summary(pool, live))
    write_line(
        f"{len(ids)} job(s) did not end when cancelled and were abandoned "
        f"({', '.join(map(repr, ids[:10]))}{', ...' if len(ids) > 10 else ''}): "
        "exiting without waiting for them",
        sys.stderr,
    )
    logging.shutdown()  # flushes the log handlers; write_line flushed every status line
    os._exit(EXIT_FAILED)


class _StderrLines(logging.Handler):
    """Each record as a line on stderr, through :func:`write_line` (a stderr that cannot be
    written drops it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:
            self.handleError(record)
        else:
            write_line(text, sys.stderr)


@contextlib.contextmanager
def _pool_log() -> Iterator[None]:
    """Within the block, the pool's log (logger ``trio_jobpool``) from INFO up is written on
    stderr, a line a record (its message; a traceback after it), so that the jobs a restart
    starts over are said at once (INFO), not only once they are cut off again (WARNING, which
    logging's last resort shows anyway). Left alone if logging was configured (the ``--app``
    module's handlers, on the root or on ``trio_jobpool``)."""
    pool_logger = logging.getLogger("trio_jobpool")
    if pool_logger.handlers or logging.getLogger().handlers:
        yield
        return
    handler = _StderrLines(logging.INFO)
    level = pool_logger.level
    pool_logger.addHandler(handler)
    if pool_logger.getEffectiveLevel() > logging.INFO:
        pool_logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        pool_logger.removeHandler(handler)
        pool_logger.setLevel(level)


def _resumed(pool: JobPool) -> None:
    """Write how many jobs the pool took over from its store on opening, if any: a pool
    counts those as submitted, and nothing else can have submitted yet."""
    resumed = pool.stats().total_submitted
    if resumed:
        write_line(
            f"resumed {resumed} job{'s' if resumed != 1 else ''} from {store_name(pool)} "
            "(left queued or running by an earlier run)"
        )


def _draining(pool: JobPool, timeout: float) -> list[JobHandle[Any]]:
    """Say what the drain waits for, and what it does not: the scheduled jobs (the stop
    cancels them, and a store keeps them for the next start); the jobs live now (running,
    waiting, retrying, scheduled), to tell afterwards which of them the drain's end cut off."""
    stats = pool.stats()
    scheduled = stats.scheduled_tasks
    if stats.active_workers or stats.queued_tasks:
        line = (
            f"draining: {stats.active_workers} running, {stats.queued_tasks} waiting here; "
            f"waiting up to {timeout:g} s"
        )
        if scheduled:
            line += f"; not for the {scheduled} scheduled"
        write_line(line)
    elif not scheduled:
        return []
    # recent_jobs gives the running jobs, then every other live one, then ended ones.
    return pool.recent_jobs(stats.active_workers + stats.queued_tasks + scheduled)


# JobCancelled's message for a job the pool's shutdown cancelled (documented in its docstring).
_CUT_OFF = "was cancelled by the pool's shutdown"


def summary(pool: JobPool | None, live: list[JobHandle[Any]] | None = None) -> str:
    """The last status line of a command: what this process's pool ran (None: never opened).

    ``live``: the jobs that were live when the drain began. Those the drain's end cancelled
    (``--shutdown-timeout`` ran out, or a second signal), and the scheduled ones (which the
    drain does not wait for), are not counted as cancelled on a pool with a store, which keeps
    them for the next run: the line says how many were ``left queued in the store`` (``left
    queued or scheduled`` when scheduled jobs are among them) instead. In memory they are gone,
    and count as cancelled."""
    if pool is None:
        return "stopped"
    stats = pool.stats()
    cut: list[JobHandle[Any]] = []
    if pool.store is not None and live:
        cut = [
            job
            for job in live
            if job.status is JobStatus.CANCELLED and _CUT_OFF in str(job.error or "")
        ]
    line = (
        f"stopped: {stats.total_completed} completed, {stats.total_failed} failed, "
        f"{stats.total_cancelled - len(cut)} cancelled, {stats.total_timed_out} timed out here"
    )
    if cut:
        # A job that was scheduled (and has not run) is kept as scheduled, due at its time.
        scheduled = any(job.scheduled_for is not None for job in cut)
        kept = "queued or scheduled" if scheduled else "queued"
        line += f"; {len(cut)} left {kept} in the store for the next start"
    return line


def store_name(pool: JobPool) -> str:
    """The URL of the pool's store, ``memory://`` for a pool without one."""
    store = pool.store
    return "memory://" if store is None else str(store.url)
