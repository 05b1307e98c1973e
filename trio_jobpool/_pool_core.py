"""The state every pool keeps, and what a job's handle asks of its pool.

:class:`PoolCore` is the first of the classes that make up :class:`~trio_jobpool.JobPool`, each
adding one concern on top of the one before (see docs/design.md, "The engine"):
``PoolCore`` (the state, ids, admission of an accepted job, the end of a job, the handles'
``JobOwner`` protocol) → ``Attempts`` (taking, starting and ending attempts, retries, timeouts,
the journal's pause of starts) → ``Workers`` (the worker tasks, their host, shutdown) →
``Intake`` (``submit``, ``submit_nowait``, blocked submissions) → ``JobPool`` (the public API).
"""

from __future__ import annotations

import math
import random
import re
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final

from ._config import PoolConfig
from ._errors import (
    DuplicateJob,
    JobNotRegistered,
    PoolClosed,
)
from ._flow_room import FlowRoom
from ._job import (
    JobHandle,
    JobStatus,
    RecordedJob,
)
from ._journal import Journal
from ._runtime import EventLike, Runtime, Slot, TaskGroupLike
from ._stats import Counters
from ._waiting_room import Offer, Offers, WaitingJobs

__all__ = ["PoolCore"]


_INF: Final = math.inf


class PoolCore:
    """The state of a pool (see the module docstring). Invariants, between checkpoints:
    ``_live`` holds every accepted job that has not ended (by key, see :meth:`_key`); the
    counters count them exactly (``queued`` + ``running`` = live jobs); ``_bounded_waiting``
    counts the first attempts that wait (or are reserved), which ``_bound`` limits; a
    parked worker's slot is in ``_idle`` only while nothing waits that it could take."""

    _shared_queue = False
    """Whether the pool's queue is shared with other processes (a distributed pool): then
    every job has a record (a :class:`RecordedJob`) though the pool has no journal, a running
    job's scope carries its fence (``_fence_deadline``), and a wait on a job cannot be a
    deadlock (another process may run it)."""

    def __init__(
        self,
        config: PoolConfig,
        runtime: Runtime,
        nursery: TaskGroupLike,
        journal: Journal | None = None,
    ) -> None:
        self._config = config
        self._runtime = runtime
        self._nursery = nursery
        self._now = runtime.clock()
        self._wall_offset = time.time() - self._now()
        self._max_workers = config.max_workers
        # how many waiting jobs count as full (inf: no bound)
        self._bound = _INF if config.max_pending is None else config.queue_size + config.max_pending
        self._default_timeout = config.job_timeout
        self._default_retry = config.retry
        self._history_size = config.history
        self._journal = journal
        # Jobs by registered name, each with a record: one test on submit's path.
        self._named_jobs = journal is not None or self._shared_queue
        self._counters = Counters()
        self._live: dict[str | int, JobHandle[Any]] = {}  # by key (see _key)
        # The last `history` ended jobs, oldest first, and the newest of them for each key.
        self._ended: deque[JobHandle[Any]] = deque()
        self._history: dict[str | int, JobHandle[Any]] = {}
        # The waiting room: plain until flow control is first used (see Attempts._use_flow),
        # then a FlowRoom, which is also _flow.
        self._waiting: WaitingJobs | FlowRoom = WaitingJobs()
        self._flow: FlowRoom | None = None
        self._bounded_waiting = 0  # waiting jobs that count against the bound
        self._offers = Offers()
        self._idle: list[Slot] = []  # parked workers, most recently idle last
        self._running: set[JobHandle[Any]] = set()
        self._watch_target = _INF  # when the deadline watcher wakes next
        self._watch_scope = runtime.CancelScope()
        self._workers = 0  # workers not yet told (or deciding) to exit
        self._worker_tasks = 0  # worker tasks still alive
        self._closed = False
        self._stopping = False
        # set when no live job is left but scheduled ones (see _wake_join), made on demand
        self._idle_event: Any = None
        self._workers_gone = runtime.Event()
        # The workers run in a task group of their own, hosted by a task the pool's block can
        # stop waiting for (see _host_workers); set once it has ended, or the pool gave up on
        # it (_abandon).
        self._workers_group: TaskGroupLike | None = None
        self._workers_settled = runtime.Event()
        self._workers_host_error: BaseException | None = None  # what the host's group raised
        self._no_more_workers = runtime.Event()  # lets the host's group end with its workers
        self._abandon_at = _INF  # when the shutdown stops waiting for the jobs (pool clock)
        self._abandoned = False
        self._abandoned_ids: list[str] = []  # the jobs _abandon stopped waiting for
        # For the detection of waits that cannot end (see _begin_wait): the worker tasks,
        # and how many running jobs' own tasks wait on a job of this pool or for room in it.
        self._worker_task_set: set[object] = set()
        self._blocked = 0
        self._rng = random.Random()
        self._id_prefix = secrets.token_hex(8)
        # the form of the ids this pool generates, whole: one match tells one (see _key)
        self._generated_id = re.compile(self._id_prefix + "[0-9a-f]{16}").fullmatch
        # Starts paused while the store fails to commit: no job is taken until _resume_at (a
        # wake-up of the deadline watcher) or until a commit succeeds, whichever comes first.
        self._starts_paused = False
        self._resume_at = _INF
        self._next_id = 0  # the counter of the next generated id (see _key)

    def _key(self, job_id: str) -> str | int:
        """The key of ``job_id`` in the pool's maps.

        Generated ids are this pool's 16-hex-digit prefix plus a 16-hex-digit counter, and only
        the counter is kept (the id string costs more memory than the rest of a queued job);
        the string is made again when asked for. Any other id is its own key.
        """
        if self._generated_id(job_id) is not None:
            return int(job_id[16:], 16)
        return job_id

    def _job_id(self, key: str | int) -> str:
        return key if isinstance(key, str) else f"{self._id_prefix}{key:016x}"

    def _register(self, job: JobHandle[Any]) -> None:
        """Count an accepted job in as live and queued; its clocks start now."""
        now = self._now()
        job._submitted_m = job._ready_m = now
        journal = self._journal
        if journal is not None:
            assert isinstance(job, RecordedJob)
            journal.accepted(job, now)
        self._live[job._key] = job
        self._counters.submitted += 1
        self._counters.queued += 1

    def _settle_offer(self, offer: Offer) -> bool:
        """Accept an offer taken from ``_offers``; ``False`` if its id became live meanwhile."""
        job = offer.job
        if job._key in self._live:
            self._runtime.unpark(offer.slot, DuplicateJob(job.job_id))
            return False
        self._register(job)
        self._runtime.unpark(offer.slot, True)
        return True

    def _end(
        self, job: JobHandle[Any], status: JobStatus, result: Any, now: float, held: bool = True
    ) -> None:
        """Give ``job``'s handle its final state (status, outcome, end time), keep it in the
        history, release its arguments and wake the tasks that wait for it.

        ``held``: the job is one of this pool's live jobs, no longer counted as queued or
        running; it leaves the live jobs and its end is reported (``_report_end``). ``False``:
        the handle only (a distributed pool's handle of a job that ran elsewhere, or whose run
        here was not its end).
        """
        job._status = status
        job._result = result
        job._finished_m = now
        job._args = ()  # an ended job no longer holds on to its arguments
        key = job._key
        if self._history_size:
            history = self._history
            history[key] = job  # an id used again: the newest job is the one found
            ended = self._ended
            ended.append(job)
            if len(ended) > self._history_size:
                oldest = ended.popleft()
                if history.get(oldest._key) is oldest:
                    del history[oldest._key]
        extra = job._extra
        if extra is not None and extra.done is not None:
            extra.done.set()
        if held:
            live = self._live
            del live[key]
            if self._named_jobs:
                self._report_end(job, status, result, now)
            if self._idle_event is not None:
                self._wake_join()

    def _wake_join(self) -> None:
        """Set the event ``join`` waits on if no job is waiting, retrying or running (every
        live job is scheduled, or none is live)."""
        if self._idle_event is not None and len(self._live) <= self._counters.scheduled:
            self._idle_event.set()
            self._idle_event = None

    def _running_oldest_first(self) -> list[JobHandle[Any]]:
        """The running jobs, the earliest started first."""
        return sorted(self._running, key=_start_time)

    def _report_end(self, job: JobHandle[Any], status: JobStatus, result: Any, now: float) -> None:
        """Hook: where the end of a job with a record goes. Here: to the journal."""
        assert self._journal is not None
        assert isinstance(job, RecordedJob)
        self._journal.ended(job, status, result, now)

    def _wall(self, monotonic: float) -> float:
        return self._wall_offset + monotonic

    def _name_of(self, fn: Callable[..., Awaitable[Any]]) -> str | None:
        registry = self._config.registry
        if registry is None:
            return None
        try:
            return registry.name_of(fn)
        except JobNotRegistered:
            return None

    def _new_event(self) -> EventLike:
        return self._runtime.Event()

    async def _checkpoint(self) -> None:
        await self._runtime.checkpoint()

    def _progressed(self, job: RecordedJob[Any]) -> None:
        """Hook (``JobOwner``): a live job with a record reported progress. Here: to the
        journal."""
        if self._journal is not None:
            self._journal.progressed(job)

    def _pop_idle(self) -> Slot | None:
        idle = self._idle
        while idle:
            slot = idle.pop()
            if not slot.abandoned:
                return slot
        return None

    def close(self) -> None:
        """Stop accepting jobs: ``submit`` and ``submit_nowait`` raise :class:`PoolClosed` from
        now on, and every submission waiting for room raises :class:`PoolClosed` now. Jobs
        already accepted are not affected (retries still re-enter). Idempotent."""
        if self._closed:
            return
        self._closed = True
        for offer in self._offers.drain():
            self._runtime.unpark(
                offer.slot,
                PoolClosed(f"cannot accept job {offer.job.job_id!r}: the pool is closed"),
            )


def _start_time(job: JobHandle[Any]) -> float:
    started = job._started_m
    return 0.0 if started is None else started
