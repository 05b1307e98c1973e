"""Attempts: how a free worker takes the next job, how an attempt starts and ends, retries,
timeouts (one deadline watcher per pool), and the journal's part in a start."""

from __future__ import annotations

import logging
import math
import time
from typing import Any, Final

from ._config import PoolConfig
from ._errors import (
    JobNotSerializable,
    StoreError,
)
from ._flow_room import FlowRoom
from ._job import (
    NO_CAUSE,
    SHUTDOWN,
    TIMED_OUT,
    CancelKind,
    CancelReason,
    JobHandle,
    JobStatus,
    RecordedJob,
    Unbuilt,
    _current_job,
)
from ._journal import Journal
from ._pool_core import PoolCore
from ._records import job_from_record, wall_clock_converter
from ._registry import check_json
from ._runtime import Runtime, Slot, TaskGroupLike
from .stores._base import JobRecord

__all__ = ["Attempts", "log_start_over"]

logger = logging.getLogger("trio_jobpool")


_QUEUED: Final = JobStatus.QUEUED
_RETRYING: Final = JobStatus.RETRYING
_RUNNING: Final = JobStatus.RUNNING
_COMPLETED: Final = JobStatus.COMPLETED
_INF: Final = math.inf


class Attempts(PoolCore):
    """Taking, starting and ending attempts (see the module docstring)."""

    def __init__(
        self,
        config: PoolConfig,
        runtime: Runtime,
        nursery: TaskGroupLike,
        journal: Journal | None = None,
    ) -> None:
        super().__init__(config, runtime, nursery, journal)
        if journal is not None:
            journal.attach(self._wall, self._commit_result)

    def _use_flow(self) -> FlowRoom:
        """The pool's :class:`FlowRoom`, made on first use: from then on it is the waiting
        room (the jobs waiting so far move into it, in their order)."""
        flow = self._flow
        if flow is None:
            config = self._config
            flow = self._flow = FlowRoom(
                self._now,
                self._wake_watcher_at,
                key_limit=config.key_limit,
                fair=config.fair,
                aging=config.aging,
            )
            plain, self._waiting = self._waiting, flow
            assert not isinstance(plain, FlowRoom)
            for job in plain.drain():
                flow.push(job)
        return flow

    def _wake_watcher_at(self, when: float) -> None:
        """Have the deadline watcher wake at ``when`` (pool clock) at the latest."""
        if when < self._watch_target:
            self._watch_target = self._watch_scope.deadline = when

    def _dispatch_idle(self) -> None:
        """Hand waiting jobs to idle workers while both remain (jobs became eligible)."""
        while True:
            slot = self._pop_idle()
            if slot is None:
                return
            job = self._take()
            if job is None:
                self._idle.append(slot)
                return
            self._runtime.unpark(slot, job)

    def _place(self, job: JobHandle[Any], *, bounded: bool, slot: Slot | None = None) -> None:
        """Give a queued job to an idle worker (``slot``, else any), or to the waiting room."""
        if (
            slot is None
            and not self._starts_paused
            and (self._flow is None or self._flow.may_start(job))
        ):
            slot = self._pop_idle()
        if slot is not None:
            self._start(job)
            self._runtime.unpark(slot, job)
            return
        job._status = _QUEUED
        if bounded:  # a first attempt (a retry re-enters beyond the bound)
            self._bounded_waiting += 1
        self._waiting.push(job)

    def _admit_offers(self) -> None:
        """Accept blocked submissions, best first, while there is room for them."""
        bound = self._bound
        offers = self._offers
        while offers.size and self._bounded_waiting < bound:
            offer = offers.pop()
            if offer is None:
                return
            if self._settle_offer(offer):
                if self._journal is None:
                    self._place(offer.job, bounded=True)
                else:  # reserved: its submitter writes it to the store, then places it
                    self._bounded_waiting += 1

    def _cancel_job(self, job: JobHandle[Any], reason: CancelReason) -> None:
        """Cancel the live ``job`` for ``reason``: a running job's scope is cancelled (it ends
        when its code next reaches a checkpoint, keeping its first reason); a waiting or
        retrying one ends ``CANCELLED`` now."""
        status = job._status
        if status is _RUNNING:
            if job._cancel_reason is None:
                job._cancel_reason = reason
            if job._scope is not None:
                job._scope.cancel()
            return
        job._cancel_reason = reason
        counters = self._counters
        counters.queued -= 1
        counters.cancelled += 1
        if status is _QUEUED:
            self._waiting.discard(job)
            if not job._attempts and job._due_m is None:
                self._bounded_waiting -= 1
        elif job._scope is not None:  # retrying: stop its backoff timer
            job._scope.cancel()
            job._scope = None
        self._end(job, JobStatus.CANCELLED, NO_CAUSE, self._now())
        if status is _QUEUED and self._offers.size:
            self._admit_offers()

    async def _watch_deadlines(self) -> None:
        """Time out running jobs: one task per pool sleeps until the earliest deadline.

        Arming a cancel scope's deadline for every job costs about as much as a short job's
        whole run, so timeouts are kept here instead: starting a job with a deadline earlier
        than the watcher's next wake-up moves that wake-up (rare: with a common timeout, later
        jobs have later deadlines); otherwise starting and ending a job costs a set insertion.
        When it wakes, the watcher cancels the scope of every running job whose deadline has
        passed (exactly as the scope's own deadline would have) and sleeps until the next one.
        """
        runtime = self._runtime
        while True:
            with self._watch_scope:  # cancelled by _shut_down, or its deadline passes
                await runtime.sleep(_INF)
            if self._stopping:
                return
            now = self._now()
            target = _INF
            if self._starts_paused:
                if self._resume_at <= now:
                    self._resume_starts()
                else:
                    target = self._resume_at
            flow = self._flow
            if flow is not None:
                if flow.release_due(now):
                    self._dispatch_idle()
                target = min(target, flow.next_release())
            for job in list(self._running):
                deadline = job._started_m + job._timeout  # type: ignore[operator]
                if deadline <= now:
                    if job._cancel_reason is None:
                        job._cancel_reason = TIMED_OUT
                        if job._scope is not None:
                            job._scope.cancel()
                elif deadline < target:
                    target = deadline
            self._watch_scope = runtime.CancelScope()
            self._watch_scope.deadline = self._watch_target = target

    def _take(self) -> JobHandle[Any] | None:
        """The next job for a free worker, already marked running; ``None`` if none waits (or
        if starts are paused because the store cannot commit)."""
        if self._starts_paused:
            return None
        if self._offers.size:
            return self._take_contended()
        job = self._waiting.pop()
        if job is not None:
            # A first attempt counts against the bound; a retry or a job that was scheduled
            # (it re-entered when due) does not.
            if not job._attempts and job._due_m is None:
                self._bounded_waiting -= 1
            self._start(job)
        return job

    def _take_contended(self) -> JobHandle[Any] | None:
        """``_take`` while blocked submissions wait: the best of the queue and the offers."""
        waiting = self._waiting
        while True:
            job = waiting.peek()
            offer = self._offers.peek()
            if (
                offer is not None
                and self._journal is None  # with a journal, an offer must be written first
                and (job is None or offer._priority < job._priority)
                and (self._flow is None or self._flow.may_start(offer.job))
            ):
                self._offers.pop()
                if not self._settle_offer(offer):
                    continue
                self._start(offer.job)
                return offer.job
            if job is None:
                return None
            waiting.pop()
            bounded = not job._attempts and job._due_m is None
            self._start(job)
            if bounded:
                self._bounded_waiting -= 1
                self._admit_offers()
            return job

    def _start(self, job: JobHandle[Any], now: float | None = None) -> None:
        """Count a taken job as running from ``now``; with a journal, queue its start's write
        (the worker waits for it before the job's code runs: ``_start_written``)."""
        if now is None:
            now = self._now()
        counters = self._counters
        counters.queued -= 1
        counters.running += 1
        wait = now - job._ready_m
        counters.record_wait(wait)
        due = job._due_m
        if due is not None and due == job._ready_m:  # the start of a job that fell due
            counters.record_lag(wait)
        job._status = _RUNNING
        job._attempts += 1
        job._started_m = now
        job._exec_time = None
        deadline = now + job._timeout
        if self._journal is not None:
            assert isinstance(job, RecordedJob)
            self._journal.started(job, now)
        self._running.add(job)
        if deadline < self._watch_target:
            self._watch_target = self._watch_scope.deadline = deadline
        if self._flow is not None:
            self._flow.started(job, now)

    def _attempt_raised(self, job: JobHandle[Any], exc: Exception) -> None:
        """An attempt of the running ``job`` raised ``exc``: retry it, or end it."""
        reason = job._cancel_reason
        if reason is not None:
            # The job raised while being cancelled or timed out (for example from cleanup
            # code): it ends as cancelled/timed out, with what it raised as the cause.
            self._attempt_ended(job, reason.kind.status, None, cause=exc)
            return
        policy = job._retry
        # An attempt a crash or a shutdown cut short, or one that ended with Defer, is counted
        # in attempts, not as a failure.
        counted = job._attempts - job._deferrals  # the backoff grows with these
        failures = counted
        if isinstance(job, RecordedJob):
            failures -= job._record.crashes + job._record.interrupted
        if policy is not None and not self._stopping and policy.should_retry(failures, exc):
            self._schedule_retry(job, exc, policy.delay(counted, self._rng))
            return
        # A failed job's outcome keeps the traceback it ended with (see JobHandle.wait).
        self._attempt_ended(job, JobStatus.FAILED, (exc, exc.__traceback__))

    def _attempt_ended(
        self,
        job: JobHandle[Any],
        status: JobStatus,
        result: Any,
        cause: BaseException | None = None,
    ) -> None:
        """Record the end of a running attempt that ends the job with ``status``. A job with
        a record must return JSON: any other value fails it with ``JobNotSerializable``."""
        counters = self._counters
        now = self._attempt_over(job)
        if status is JobStatus.COMPLETED and self._named_jobs and result is not None:
            try:
                check_json(result, f"the result of job {job.job_id!r}")
            except JobNotSerializable as exc:
                status, result = JobStatus.FAILED, (exc, exc.__traceback__)
        if status is JobStatus.COMPLETED:
            counters.completed += 1
        elif status is JobStatus.FAILED:
            counters.failed += 1
        else:
            result = NO_CAUSE if cause is None else Unbuilt(cause)
            if status is JobStatus.CANCELLED:
                counters.cancelled += 1
            else:
                counters.timed_out += 1
        self._end(job, status, result, now)

    def _attempt_completed(self, job: JobHandle[Any], value: Any) -> None:
        """The running attempt of ``job`` returned ``value``: the job ends ``COMPLETED``.

        The hot path of a worker: :meth:`_attempt_ended` without its branches, for a pool whose
        jobs have no record (a job with one goes through :meth:`_attempt_ended`, which checks
        that its result is JSON and which the distributed pool extends).
        """
        if self._named_jobs:
            self._attempt_ended(job, _COMPLETED, value)
            return
        now = self._attempt_over(job)
        self._counters.completed += 1
        self._end(job, _COMPLETED, value, now)

    def _attempt_over(self, job: JobHandle[Any]) -> float:
        """Count a running attempt out (its run time into the stats, its slot of its key
        freed: jobs that this makes eligible go to idle workers); return the time."""
        self._counters.running -= 1
        self._running.discard(job)
        now = self._now()
        exec_time = job._exec_time = now - job._started_m  # type: ignore[operator]
        self._counters.record_exec(exec_time)
        if self._flow is not None and self._flow.stopped(job) and self._idle:
            self._dispatch_idle()
        return now

    def _schedule_retry(self, job: JobHandle[Any], exc: Exception, delay: float) -> None:
        """The failed attempt of the running ``job`` is retried after ``delay`` seconds, in a
        timer task of the pool's nursery (holding no worker)."""
        counters = self._counters
        self._attempt_over(job)
        counters.queued += 1
        counters.retried += 1
        job._status = _RETRYING
        job._result = exc
        if self._journal is not None:
            assert isinstance(job, RecordedJob)
            self._journal.retrying(job, exc, delay)
        self._nursery.start_soon(self._retry_later, job, delay)

    async def _retry_later(self, job: JobHandle[Any], delay: float) -> None:
        if job._status is not _RETRYING:  # cancelled before this task started
            return
        with self._runtime.CancelScope() as scope:
            job._scope = scope
            await self._runtime.sleep(delay)
        if job._status is _RETRYING:
            job._scope = None
            job._ready_m = self._now()
            self._place(job, bounded=False)

    def _end_unstarted(self, job: JobHandle[Any]) -> None:
        """End a job handed to a worker that must not start: it was cancelled before its start,
        or has no time at all (a timeout of 0); its code never runs."""
        if job._cancel_reason is None:
            job._cancel_reason = TIMED_OUT
        self._attempt_ended(job, job._cancel_reason.kind.status, None)

    def _end_cancelled(
        self,
        job: JobHandle[Any],
        cause: BaseException | None,
        reason: CancelReason = SHUTDOWN,
    ) -> None:
        """End a running job whose worker is being cancelled from outside (or interrupted).
        It ends ``CANCELLED``: with ``reason``, unless it was cancelled already for a reason
        other than its timeout."""
        job._scope = None
        current = job._cancel_reason
        if current is None or current.kind is CancelKind.TIMEOUT:
            job._cancel_reason = reason
        self._attempt_ended(job, JobStatus.CANCELLED, None, cause=cause)

    async def _start_written(self, job: JobHandle[Any]) -> bool:
        """Before a job's code runs, wait until its start is durable (see ``_journal.py``).
        ``False`` if it must not run: the write failed (then the job ended unstarted if it was
        cancelled meanwhile, else it is queued again), or the shutdown abandoned it during the
        wait (then it is no longer the pool's, and nothing is done with it)."""
        assert self._journal is not None
        assert isinstance(job, RecordedJob)
        try:
            await self._journal.start_written(job)
        except StoreError:
            if job._status is not _RUNNING:  # abandoned meanwhile (see _abandon)
                return False
            if job._cancel_reason is not None:  # cancelled meanwhile: it ends, unstarted
                self._end_unstarted(job)
            else:
                self._requeue_unstarted(job)
            return False
        return job._status is _RUNNING  # else abandoned meanwhile: it ended already

    def _requeue_unstarted(self, job: RecordedJob[Any]) -> None:
        """Put back a job whose start could not be written, as if it had never been taken: in
        front of the waiting jobs of its priority. It runs once the store commits again
        (starts are paused meanwhile: see ``_commit_result``)."""
        assert self._journal is not None
        counters = self._counters
        counters.running -= 1
        counters.queued += 1
        wait = job._started_m - job._ready_m  # type: ignore[operator]
        counters.forget_wait(wait, lagged=job._due_m == job._ready_m)
        self._running.discard(job)
        job._attempts -= 1
        job._status = _QUEUED
        self._journal.requeued(job)
        if self._flow is not None:
            self._flow.stopped(job)  # starts are paused: nothing to hand out now
        if not job._attempts:  # never started: no start time (a retry shows its failed one)
            job._started_m = None
            if job._due_m is None:  # and a first attempt waits within the bound again
                self._bounded_waiting += 1
        self._waiting.push_front(job)

    def _commit_result(self, error: StoreError | None) -> None:
        """The store's report of a failed commit (``error``), or of the first commit that
        succeeded after failures (``None``); called on the event loop.

        A failure pauses the starts of jobs (a start that cannot be written would leave the
        job's run unrecorded) for the journal's backoff; then the deadline watcher lets the
        workers try again, and first queues the failed updates again. A success resumes the
        starts at once and resets the backoff. Submits are not paused: each one is its own
        test of the store, and fails with ``StoreError`` while it fails.
        """
        journal = self._journal
        if self._stopping or journal is None:
            return
        if error is None:
            journal.recovered()
            if self._starts_paused:
                self._resume_starts()
            return
        if self._starts_paused:
            return
        self._starts_paused = True
        self._resume_at = resume = self._now() + journal.pause_for()
        if resume < self._watch_target:
            self._watch_target = self._watch_scope.deadline = resume

    def _resume_starts(self) -> None:
        """End a pause of the starts: write the failed updates again, and hand waiting jobs to
        the idle workers (their starts are the next test of the store)."""
        self._starts_paused = False
        self._resume_at = _INF
        assert self._journal is not None
        self._journal.retry_failed()
        self._dispatch_idle()

    def _recover(self, records: list[JobRecord]) -> None:
        """Take over the live jobs a store returned on opening, in their stored order
        (each put back by :meth:`_resume`).

        They count as submitted to this pool. A recovered backlog counts against the bound
        (first attempts) like any waiting job, so new submissions wait for it to drain.
        """
        wall_now = time.time()
        if any(record.key is not None for record in records):
            self._use_flow()
        for record in records:
            key = self._key(record.job_id)
            if type(key) is int and key >= self._next_id:
                self._next_id = key + 1
            job = self._job_from_record(record, key)
            self._live[key] = job
            self._counters.submitted += 1
            self._resume(job, record, wall_now)

    def _resume(self, job: RecordedJob[Any], record: JobRecord, wall_now: float) -> None:
        """Put the recovered ``job`` (live, counted as submitted, in no state yet) where its
        ``record`` says it was: waiting for a retry (due at its stored wall-clock time, at
        once if that passed), or queued. ``wall_now``: the wall-clock time of the recovery."""
        self._counters.queued += 1
        if record.status == "retrying":
            job._status = _RETRYING
            delay = max(0.0, (record.retry_at or wall_now) - wall_now)
            self._nursery.start_soon(self._retry_later, job, delay)
        else:
            job._status = _QUEUED
            self._place(job, bounded=not job._attempts)
            if record.interrupted or record.crashes:
                log_start_over(record, record.attempts + 1)

    def _begin_wait(self, target: JobHandle[Any] | None) -> bool:
        """Before the current task waits on ``target`` (a job of this pool; ``None``: room in
        this pool, for a submit). ``True``: the task is the own task of a running job of the
        pool, now counted as blocked; the caller calls ``_end_wait`` once the wait is over.
        ``False``: anyone else (a task the job started does not count: the job itself may go
        on), or a pool with a shared queue (other processes may run what it waits for).

        Invariant: ``_blocked`` counts the running jobs whose own task waits so. When every
        worker is busy (``running >= max_workers``) and every running job waits so, no worker
        will ever be free to run what they wait for (a job not started yet, or a running job
        that waits likewise), and no room will come for a submit: only a timeout or a cancel
        from outside would end the waits.

        Raises:
            RuntimeError: the wait would complete that deadlock (or ``target`` is the job
                itself). The waits already under way go on.
        """
        if self._shared_queue:
            return False
        current = _current_job.get()
        if current is None or current._owner is not self or current._status is not _RUNNING:
            return False
        if self._runtime.current_task() not in self._worker_task_set:
            return False
        if target is current:
            raise RuntimeError(f"job {current.job_id!r} waits for itself")
        running = self._counters.running
        if self._blocked + 1 >= running >= self._max_workers:
            what = "room in the pool" if target is None else f"job {target.job_id!r}"
            raise RuntimeError(
                f"job {current.job_id!r} would wait forever for {what}: all {running} "
                f"running jobs of its pool (max_workers={self._max_workers}) wait on jobs of "
                "the same pool or for room in it, so no worker would ever be free to run "
                "them. Submit without awaiting the handle (return it, or let another task "
                "collect it), or run the sub-jobs in a separate pool (see docs/guide.md)"
            )
        self._blocked += 1
        return True

    def _end_wait(self) -> None:
        """A wait that ``_begin_wait`` counted is over."""
        self._blocked -= 1

    def _refuse_inside_own_job(self, what: str) -> None:
        current = _current_job.get()
        if current is not None and current._owner is self and current._status is _RUNNING:
            raise RuntimeError(
                f"{what} called from inside job {current.job_id!r} of the same pool "
                "would wait for itself"
            )

    def _job_from_record(self, record: JobRecord, key: str | int) -> RecordedJob[Any]:
        """A handle for a stored job (to resume it, or to show an ended one)."""
        registry = self._config.registry
        fn = registry.get(record.name) if registry is not None and record.name in registry else None
        return job_from_record(
            self,
            record,
            fn,
            key,
            self._default_timeout,
            self._default_retry,
            wall_clock_converter(self._now()),
        )


def log_start_over(record: JobRecord, attempt: int) -> None:
    """Log (logger ``trio_jobpool``) that ``record``'s job, whose earlier attempts a pool's
    shutdown or a crash cut short, starts again from the beginning as its ``attempt``-th: at
    INFO the first time (a resume after a stop is routine), as a WARNING from the second on (a
    job that runs longer than the ``shutdown_timeout`` of pools stopped as often never ends)."""
    causes = [
        f"{count} by a {cause}"
        for count, cause in ((record.interrupted, "pool's shutdown"), (record.crashes, "crash"))
        if count
    ]
    logger.log(
        logging.WARNING if record.interrupted + record.crashes > 1 else logging.INFO,
        "job %r (%s) starts again from the beginning, attempt %d: earlier attempts were cut "
        "short (%s); a job that runs longer than the shutdown_timeout starts over at every "
        "restart",
        record.job_id,
        record.name,
        attempt,
        ", ".join(causes),
    )
