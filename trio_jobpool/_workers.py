"""The worker tasks: their task group (hosted outside the pool's nursery, so that the pool can
stop waiting for a job that ignores its cancellation), the loop each worker runs, the shutdown,
and the abandonment of jobs that outlive it (see docs/design.md, "Jobs that ignore
cancellation")."""

from __future__ import annotations

import contextlib
import logging
import math
from functools import partial
from typing import Any, Final

from ._attempts import Attempts
from ._errors import (
    StoreError,
)
from ._excgroups import first_leaf
from ._job import (
    ABANDONED,
    NO_CAUSE,
    OWN_CODE,
    SHUTDOWN,
    JobHandle,
    JobStatus,
    _current_job,
    interrupted,
)
from ._runtime import EventLike, Slot, TaskGroupLike

__all__ = ["Workers"]

logger = logging.getLogger("trio_jobpool")


_RUNNING: Final = JobStatus.RUNNING
_CANCELLED: Final = JobStatus.CANCELLED
_INF: Final = math.inf
# A worker that keeps finding work ready yields to the scheduler at least this often, so that
# jobs which never checkpoint cannot starve the rest of the program.
_YIELD_EVERY: Final = 64


class Workers(Attempts):
    """The worker tasks and the shutdown (see the module docstring)."""

    async def _open_workers_group(self, nursery: TaskGroupLike) -> None:
        """Start the host of the workers' task group, and its supervisor in the pool's
        ``nursery``; return once the group is open."""
        opened = self._runtime.Event()
        self._runtime.spawn_detached(partial(self._host_workers, opened), "trio_jobpool workers")
        nursery.start_soon(self._supervise_workers)
        await opened.wait()

    async def _host_workers(self, opened: EventLike) -> None:
        """The workers' task group: its own task, outside the pool's nursery, so that the pool
        can stop waiting for a job that ignores its cancellation (see ``_abandon``).

        While the pool has not given up on it, everything the group raises is handed to
        ``_supervise_workers``, a child of the pool's nursery, which raises it there: to the
        pool's block, the workers behave as children of its nursery. A cancellation of this
        task itself (the end of the run) propagates. Once the pool has abandoned it, anything
        else it raises (an abandoned job's ``KeyboardInterrupt``, say) has nobody to go to, and
        out of a Trio system task it would crash the run (``TrioInternalError``): it is logged
        (an error on the ``trio_jobpool`` logger, with its traceback), and the task ends.
        """
        try:
            async with self._runtime.open_task_group() as group:
                self._workers_group = group
                opened.set()
                await self._no_more_workers.wait()  # then the group waits for its workers
        except BaseException as exc:
            if isinstance(exc, self._runtime.cancelled_exc):
                raise
            if self._abandoned:
                logger.error(
                    "a worker whose job the pool's shutdown abandoned raised this, which no "
                    "one waits for any more",
                    exc_info=exc,
                )
                return
            self._workers_host_error = exc  # raised by _supervise_workers
        finally:
            self._workers_settled.set()
            opened.set()  # also when the group failed to open: _open_workers_group waits for it

    async def _supervise_workers(self) -> None:
        """Stand for the workers' task group in the pool's nursery: raise what the group
        raised; if the pool's nursery is cancelled first, cancel the workers and wait for
        them, up to the shutdown's grace (then abandon those left)."""
        try:
            await self._workers_settled.wait()
        finally:
            if not self._workers_settled.is_set():
                self._abort_workers()
                with self._runtime.CancelScope(shield=True) as scope:
                    scope.deadline = self._abandon_at
                    await self._workers_settled.wait()
                if not self._workers_settled.is_set():
                    self._abandon()
            error, self._workers_host_error = self._workers_host_error, None
            if error is not None:
                while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
                    error = error.exceptions[0]  # as a worker in the pool's nursery raised it
                raise error

    def _spawn_workers(self, count: int) -> None:
        """Start ``count`` workers. Each is idle (or holds a waiting job) from this moment on,
        so jobs submitted before its task first runs are handed to it, not queued."""
        group = self._workers_group
        assert group is not None
        for _ in range(count):
            self._workers += 1
            self._worker_tasks += 1
            slot = Slot()
            job = self._take()
            if job is None:
                self._idle.append(slot)
            else:
                self._runtime.unpark(slot, job)
            group.start_soon(self._worker, slot)

    async def _worker(self, slot: Slot) -> None:
        """Run jobs until told to exit (resize, stop) or cancelled (the pool is torn down).

        Cancelled from outside (the pool is going away) or interrupted (``KeyboardInterrupt``),
        it records the job it was running or being handed as cancelled, and lets the exception
        go on.
        """
        task = self._runtime.current_task()
        self._worker_task_set.add(task)
        try:
            job: JobHandle[Any] | None = await self._runtime.park(slot)
            while job is not None:
                job = await self._run_jobs(job, slot)
        except BaseException:
            late = slot.late
            if isinstance(late, JobHandle) and late._status is _RUNNING:
                self._end_cancelled(late, None)
            self._workers -= 1
            raise
        finally:
            self._worker_task_set.discard(task)
            self._worker_tasks -= 1
            if self._worker_tasks == 0 and self._stopping:
                self._workers_gone.set()

    async def _run_jobs(self, job: JobHandle[Any], slot: Slot) -> JobHandle[Any] | None:
        """Run ``job`` and then the jobs this worker takes next, in one cancel scope, until the
        scope is spent; return the worker's next job, or ``None``: the worker exits (it is
        uncounted already, or its job was abandoned and it is no longer the pool's).

        Invariants: the scope belongs to the attempt in progress alone (cancelling a job, by
        id, by its timeout through the deadline watcher or by the shutdown, cancels it); it is
        *spent* once cancelled for the job that used it, and a fresh one serves the next job.
        Between attempts nothing can cancel it and it has no deadline, so it is inert (a
        distributed pool's fence is its deadline only while an attempt runs). One scope serves
        a run of attempts because creating one costs more than the rest of a short job.
        """
        runtime = self._runtime
        fence = self._fence_deadline if self._shared_queue else None
        stray_cancel = runtime.stray_cancel_check()
        ready_in_a_row = 0
        scope = runtime.CancelScope()
        with scope:
            while True:
                if self._journal is not None and not await self._start_written(job):
                    pass  # not recorded as started: requeued, ended, or abandoned
                elif job._cancel_reason is not None or not job._timeout:
                    self._end_unstarted(job)  # its code never runs
                else:
                    ended = job  # its cancel reason, read again once the attempt is over
                    _current_job.set(job)
                    job._scope = scope
                    if fence is not None:
                        scope.deadline = fence(job)
                    try:
                        value = await job._fn(*job._args)
                    except BaseException as exc:
                        if job._status is not _RUNNING:  # abandoned: no longer the pool's
                            if isinstance(exc, (Exception, runtime.cancelled_exc)):
                                return None
                            raise
                        job._scope = None
                        propagate = self._attempt_raised_in_worker(job, exc)
                        if propagate is exc:
                            raise
                        if propagate is not None:
                            raise propagate from None
                    else:
                        if job._status is not _RUNNING:  # abandoned
                            return None
                        job._scope = None
                        self._attempt_completed(job, value)
                    if ended._cancel_reason is not None:
                        break  # spent
                    if fence is not None:
                        if scope.cancel_called:  # a fenced attempt: its reason was cleared
                            break
                        scope.deadline = _INF
                    if stray_cancel is not None and stray_cancel():
                        await runtime.absorb_stray_cancel()
                ready_in_a_row += 1
                if ready_in_a_row >= _YIELD_EVERY:
                    ready_in_a_row = 0
                    await runtime.checkpoint()  # never starve the rest of the program
                if self._workers > self._max_workers:  # surplus after a resize
                    self._workers -= 1
                    return None
                next_job = self._take()
                if next_job is None:
                    ready_in_a_row = 0
                    next_job = await self._idle_wait(slot)
                    if next_job is None:
                        return None
                job = next_job
        return await self._next_job(slot)

    def _attempt_raised_in_worker(
        self, job: JobHandle[Any], exc: BaseException
    ) -> BaseException | None:
        """Record how an attempt of ``job`` that raised ``exc`` ended; return what the worker
        must raise (``exc`` itself, or another exception), ``None`` for nothing."""
        if isinstance(exc, Exception):
            self._attempt_raised(job, exc)
            return None
        return self._job_base_exception(job, exc, self._runtime.cancelled_exc)

    def _job_base_exception(
        self, job: JobHandle[Any], exc: BaseException, cancelled_exc: type[BaseException]
    ) -> BaseException | None:
        """Record how a job that raised a ``BaseException`` ended; return what must propagate.

        * The job's own cancel scope was cancelled (by id, timeout or shutdown): the job ends
          cancelled or timed out; its scope catches the cancellation on the way out.
        * Something around the pool is being cancelled: the job ends cancelled and the
          cancellation goes on (if the job's tasks raised errors as well, they become the
          cause, and one plain cancellation goes on).
        * The job raised a cancellation although nothing cancelled it (on asyncio, for
          example, by awaiting a task that someone else cancelled): that is the job's own
          outcome; it ends cancelled and the worker carries on.
        * ``KeyboardInterrupt``, ``SystemExit`` and the like are never swallowed: the job ends
          cancelled and the exception goes on.
        """
        cancelled: BaseException
        rest: BaseExceptionGroup[BaseException] | None
        if isinstance(exc, BaseExceptionGroup):
            cancelled_part, rest = exc.split(cancelled_exc)
            if cancelled_part is None or (
                rest is not None and not isinstance(rest, ExceptionGroup)
            ):
                self._end_cancelled(job, None, interrupted(exc))
                return exc
            cancelled = first_leaf(cancelled_part)
        elif isinstance(exc, cancelled_exc):
            cancelled, rest = exc, None
        else:
            self._end_cancelled(job, None, interrupted(exc))
            return exc
        if job._cancel_reason is not None:  # this job's scope
            self._attempt_ended(job, job._cancel_reason.kind.status, None, cause=rest)
            return exc if rest is None else None
        if self._runtime.outer_cancelled():
            self._end_cancelled(job, rest)
            return exc if rest is None else cancelled
        self._runtime.forget_stray_cancel()
        job._cancel_reason = OWN_CODE
        self._attempt_ended(job, JobStatus.CANCELLED, None, cause=exc)
        return None

    def _fence_deadline(self, job: JobHandle[Any]) -> float:
        """A distributed pool's hook: when (pool clock) the running ``job`` must stop because
        its lease may lapse; its scope's deadline while it runs (see ``_run_jobs``)."""
        return _INF

    async def _next_job(self, slot: Slot) -> JobHandle[Any] | None:
        """The next job for this worker, parking if none waits; ``None``: exit (uncounted)."""
        if self._workers > self._max_workers:
            self._workers -= 1
            return None
        job = self._take()
        if job is None:
            job = await self._idle_wait(slot)
        return job

    async def _idle_wait(self, slot: Slot) -> JobHandle[Any] | None:
        """Park as an idle worker until handed a job; ``None``: exit (already uncounted)."""
        if self._journal is not None and not self._stopping and not self._starts_paused:
            # Commit the ends of this worker's jobs now rather than with a later job's start;
            # a failed commit is raised to whoever needs it next: a submit, a start.
            with contextlib.suppress(StoreError):
                await self._journal.flush()
            if self._workers <= self._max_workers:
                ready = self._take()
                if ready is not None:
                    return ready
        if self._stopping or self._workers > self._max_workers:
            self._workers -= 1
            return None
        _current_job.set(None)
        self._idle.append(slot)
        job: JobHandle[Any] | None = await self._runtime.park(slot)
        return job

    def _shut_down(self) -> None:
        """Close, cancel every live job, and tell every worker to exit (idempotent, sync)."""
        self.close()
        if not self._stopping:
            self._stopping = True
            self._abandon_at = self._now() + self._config.shutdown_grace
            self._no_more_workers.set()
            for job in list(self._live.values()):
                self._cancel_job(job, SHUTDOWN)
            idle, self._idle = self._idle, []
            for slot in idle:
                if not slot.abandoned:
                    self._workers -= 1
                    self._runtime.unpark(slot, None)
            self._watch_scope.cancel()
        if self._worker_tasks == 0:
            self._workers_gone.set()

    def _abort(self) -> None:
        """Cancel everything at once, including the pool's own tasks (the block failed)."""
        self._abort_workers()
        self._nursery.cancel_scope.cancel()

    def _abort_workers(self) -> None:
        """Cancel every job and the workers' task group (they are going away)."""
        self._shut_down()
        if self._workers_group is not None:
            self._workers_group.cancel_scope.cancel()

    def _abandon(self) -> None:
        """Stop waiting for the jobs still running after the shutdown's grace: they ignored
        their cancellation. Each is logged, ended ``CANCELLED`` here (counted in
        ``total_cancelled``, no longer in ``active_workers``) and left as it was in the store;
        its worker, when the job finally ends, leaves without touching the pool."""
        if self._abandoned:
            return
        self._abandoned = True
        grace = self._config.shutdown_grace
        for job in self._running_oldest_first():
            logger.warning(
                "job %r was still running %g s after the pool's shutdown cancelled it: "
                "abandoned; it runs on in the background (name: %s)%s",
                job.job_id,
                grace,
                job.name,
                "" if not self._named_jobs else ", and stays running in the store",
            )
            self._abandoned_ids.append(job.job_id)
            job._cancel_reason = ABANDONED
            job._scope = None
            self._attempt_over(job)
            self._end_abandoned(job)
        self._workers_gone.set()
        self._workers_settled.set()

    def _end_abandoned(self, job: JobHandle[Any]) -> None:
        """End the handle of an abandoned job, counted in ``total_cancelled``, writing nothing
        to the store: its record stays ``running``, so the next pool on the file counts a
        crash and runs it again."""
        self._counters.cancelled += 1
        self._end(job, _CANCELLED, NO_CAUSE, self._now())
