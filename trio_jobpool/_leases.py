"""Leases and fencing of a distributed pool (see docs/distributed.md).

A process holds each job it claimed under a lease in Redis, renewed by the keeper
(:mod:`._link`) every third of the lease timeout. *Fencing*: no job runs here once its lease
may have lapsed. While a job runs, its cancel scope's deadline is its *fence*: the lease's lapse
as of the last renewal Redis confirmed (counted from when that renewal was sent), minus a tenth
of the lease. Each renewal moves the deadlines of the jobs it renewed. So a job is cancelled by
the scope itself (no task has to run first): when Redis cannot be reached, and also when this
process could not run at all (paused, or its event loop blocked by a job), then at the job's
first checkpoint after the loop runs again, before the keeper. A job that ends after its fence
(it reached no checkpoint) is treated the same way: its outcome is dropped, its end not
reported; it goes back to Redis and runs again.

:class:`Leases` is the first of the classes that make up a distributed pool, on top of
:class:`JobPool`: ``Leases`` (the state, fences) → ``SharedEnds`` (:mod:`._shared_ends`: how
jobs end here, and handles of jobs that ran elsewhere) → ``Link`` (:mod:`._link`: the service
tasks that talk to Redis) → ``SharedSchedules`` (:mod:`._shared_schedules`: periodic schedules
kept in Redis) → ``DistributedPool`` (:mod:`._distributed`: the public API).
"""

from __future__ import annotations

import asyncio
import math
import os
import secrets
import socket
from typing import Any, Final

import anyio

from ._config import PoolConfig
from ._errors import (
    StoreError,
)
from ._excgroups import every_leaf
from ._job import (
    CancelKind,
    CancelReason,
    JobHandle,
    JobStatus,
    RecordedJob,
)
from ._limits import Limit
from ._outbox import Outbox
from ._pool import JobPool
from ._runtime import CancelScopeLike, EventLike, Runtime, TaskGroupLike
from .stores._redis_queue import (
    RedisQueue,
)
from .stores.redis import RedisStore

__all__ = ["Leases"]


_RUNNING: Final = JobStatus.RUNNING
FENCED: Final = CancelReason(
    CancelKind.FENCED,
    "cancelled here: its lease could not be renewed, so it runs again elsewhere",
)
STALLED: Final = CancelReason(
    CancelKind.STALLED,
    "cancelled here: this process stalled (its event loop blocked, or the process paused) "
    "until its lease may have lapsed, so it runs again elsewhere",
)
RECONNECT_DELAY: Final = 0.05  # seconds before a first retry after Redis was lost; doubles
# The message of the cancellation a fence delivers itself on asyncio (see _TaskFence)
_FENCE_CANCEL: Final = "trio_jobpool: the job's lease may have lapsed (fenced)"


class Leases(JobPool):
    """A distributed pool's state, and the fences of the jobs it runs (see the module)."""

    _shared_queue = True

    def __init__(
        self,
        config: PoolConfig,
        runtime: Runtime,
        nursery: TaskGroupLike,
        store: RedisStore,
        queue: RedisQueue,
    ) -> None:
        super().__init__(config, runtime, nursery)
        self._redis = store
        self._queue = queue
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._lease = store.lease_timeout
        self._lease_ms = max(1, round(store.lease_timeout * 1000))
        # The jobs this process submitted, until they end (wherever they run), by key.
        self._remote: dict[str | int, RecordedJob[Any]] = {}
        self._out = Outbox()  # what the link has to send
        # Ids of jobs that ended here and whose ends Redis has not confirmed yet (acancel
        # answers for them as Redis soon will: not live).
        self._ending: set[str] = set()
        self._sending = False  # a trip is under way; what it carries is in no batch
        self._trips_done = 0
        self._claiming = 0  # jobs the trips under way are claiming
        self._delay = RECONNECT_DELAY  # before the next try, while Redis is lost
        self._more = True  # Redis may have jobs for idle workers
        # A trip must go even with no worker free: to pass on a wake-up this process cannot
        # serve (its claim leaves the jobs to other idle workers), or to move due retries.
        self._trip_due = False
        self._news = 0  # "new" messages so far; one may pass a claim in flight
        self._draining = False  # stop() began: no more claims
        self._retry_due = math.inf  # when the next retry of this process comes due (pool clock)
        # When the next retry or scheduled job in Redis is due (pool clock), as the latest claim
        # or "due:" message said; then a claim lets it in, if a worker is free (see _link)
        self._due_at = math.inf
        # The handles of jobs submitted here that are scheduled in Redis as far as this process
        # knows (a subset of _remote), by key
        self._scheduled: dict[str | int, RecordedJob[Any]] = {}
        # The pool's own (native) events and scopes on the busy paths: AnyIO's wrappers cost
        # more than the rest of a trip's bookkeeping.
        self._wake = runtime.Event()
        self._wake.set()  # a first trip at once: claim what waits already
        # set (and dropped) whenever join() should look again; made only when someone waits
        self._changed: EventLike | None = None
        self._room = runtime.Event()  # set (and replaced) when Redis says there is room
        # Held here (claimed, running, or ended with the end not yet confirmed by Redis): job
        # id -> when its lease lapses (pool clock, counted from the sending of the claim or of
        # the last renewal Redis confirmed).
        self._leases: dict[str, float] = {}
        self._margin = self._lease / 10  # a job is fenced this long before its lease lapses
        self._keeper_ran = runtime.clock()()  # when the keeper last ran (stall detection)
        self._stall = (math.inf, math.inf)  # the latest stall the keeper saw: (from, to)
        # asyncio: the fences of the running jobs, by id (see _TaskFence); Trio: None
        self._task_fences: dict[str, _TaskFence] | None = None if runtime.name == "trio" else {}
        self._epoch_lost: str | None = None  # the epoch Redis lost, until a new one is adopted
        self._cancels_seen: set[str] = set()  # cancels for jobs a claim in flight may bring
        self._waiting_estimate = 0  # jobs waiting in Redis, as of the latest submit
        # the keys' own limits as this process last set or read them (put back if Redis
        # loses the queue; key_stats shows them)
        self._known_limits: dict[str, Limit] = {}
        self._service_scope = anyio.CancelScope()
        self._link_scope = runtime.CancelScope()  # the link's wait; its deadline: a timer
        self._lost: BaseException | None = None  # the error while Redis is unreachable

    def _fence_deadline(self, job: JobHandle[Any]) -> float:
        """The running ``job``'s fence (see the module): its scope's deadline on Trio; on
        asyncio, a timer of its own (:class:`_TaskFence`; the scope gets no deadline)."""
        deadline = self._leases.get(job.job_id, -math.inf) - self._margin
        if self._task_fences is None:
            return deadline
        task = asyncio.current_task()
        assert task is not None
        assert job._scope is not None
        self._task_fences[job.job_id] = fence = _TaskFence(task, job._scope)
        self._arm(job.job_id, fence, deadline)
        return math.inf

    def _arm(self, job_id: str, fence: _TaskFence, deadline: float) -> None:
        if fence.handle is not None:
            fence.handle.cancel()
        loop = asyncio.get_running_loop()
        fence.handle = loop.call_at(max(deadline, loop.time()), self._task_fence_passed, job_id)

    def _task_fence_passed(self, job_id: str) -> None:
        """asyncio: a running job's fence passed (see :class:`_TaskFence`)."""
        assert self._task_fences is not None
        fence = self._task_fences.get(job_id)
        job = self._live.get(self._key(job_id))
        if fence is None or job is None or job._scope is not fence.scope:
            return
        scope, task = fence.scope, fence.task
        if job._cancel_reason is None:
            job._cancel_reason = self._fence_reason(job_id, self._now())
        requests = task.cancelling()
        scope.cancel()
        if task.cancelling() == requests and not _shielded_within(task, scope):
            fence.fired = True  # AnyIO did not deliver it: what the task awaits is done
            task.cancel(_FENCE_CANCEL)

    def _set_fence(self, job: JobHandle[Any], deadline: float) -> None:
        """Move the fence of the running ``job`` (a renewal)."""
        if self._task_fences is None:
            if job._scope is not None:
                job._scope.deadline = deadline
            return
        fence = self._task_fences.get(job.job_id)
        if fence is not None and not fence.fired:
            self._arm(job.job_id, fence, deadline)

    def _attempt_over(self, job: JobHandle[Any]) -> float:
        if self._task_fences is not None:
            fence = self._task_fences.pop(job.job_id, None)
            if fence is not None:
                if fence.handle is not None:
                    fence.handle.cancel()
                if fence.fired:
                    fence.task.uncancel()
        return super()._attempt_over(job)

    def _stalled(self, fence: float, now: float) -> bool:
        """Whether a fence that passed at ``fence`` passed because this process could not run
        (a stall: its event loop was blocked, or it was paused) rather than because Redis
        could not be reached. The keeper runs at least every third of the lease while the
        loop runs: a stall is a time it did not run for over half a lease."""
        if now - self._keeper_ran > self._lease / 2 and fence >= self._keeper_ran:
            return True  # a stall that is just over, which the keeper has not seen yet
        start, end = self._stall
        return start <= fence <= end

    def _fence_reason(self, job_id: str, now: float) -> CancelReason:
        fence = self._leases.get(job_id, now) - self._margin
        return STALLED if self._stalled(fence, now) else FENCED

    def _check_fence(self, job: RecordedJob[Any]) -> None:
        """An attempt of ``job`` is ending: if its fence has passed and nothing else cancelled
        it, it ends as fenced (whatever its outcome)."""
        if job._cancel_reason is None:
            now = self._now()
            if now >= self._leases.get(job.job_id, math.inf) - self._margin:
                job._cancel_reason = self._fence_reason(job.job_id, now)

    def _attempt_raised(self, job: JobHandle[Any], exc: Exception) -> None:
        assert isinstance(job, RecordedJob)
        self._check_fence(job)
        super()._attempt_raised(job, exc)

    def _job_base_exception(
        self, job: JobHandle[Any], exc: BaseException, cancelled_exc: type[BaseException]
    ) -> BaseException | None:
        """As the base pool's, and: a cancellation that a fence delivered itself (asyncio,
        see :class:`_TaskFence`) is taken here, as the job's scope takes its own (no AnyIO
        scope takes it: it is not AnyIO's). Anything else it came with still propagates; an
        outer cancellation is AnyIO's, which delivers it again at the worker's next await."""
        assert isinstance(job, RecordedJob)
        self._check_fence(job)  # its scope's deadline is its fence
        fence = None if self._task_fences is None else self._task_fences.get(job.job_id)
        fired = fence is not None and fence.fired  # read now: the attempt's end drops the fence
        propagate = super()._job_base_exception(job, exc, cancelled_exc)
        if fired and propagate is exc and _only_cancellations(exc, cancelled_exc):
            return None
        return propagate

    def _renewed(self, held: list[str], lapse: float, sent: float) -> None:
        """Redis renewed the leases of ``held`` (those it still gave this process) until
        ``lapse``: move their fences, the deadlines of the running ones' scopes too. A fence
        that had passed when the renewal was sent stays where it is: that job stops."""
        margin = self._margin
        deadline = lapse - margin
        for job_id in held:
            if self._leases.get(job_id, -math.inf) - margin > sent:
                self._leases[job_id] = lapse
                job = self._live.get(self._key(job_id))
                if job is not None and job._status is _RUNNING:
                    self._set_fence(job, deadline)

    def _fence(self, job_id: str) -> None:
        """Stop running a job whose lease this process may no longer hold."""
        job = self._live.get(self._key(job_id))
        reason = self._fence_reason(job_id, self._now())
        self._leases.pop(job_id, None)
        if job is None:
            return
        if job._cancel_reason is not None:
            return  # cancelled or timed out already: it ends as such
        job._cancel_reason = reason
        if job._status is _RUNNING and job._scope is not None:
            job._scope.cancel()

    def _process_stats(self) -> dict[str, Any]:
        """What this process tells the others (with each lease renewal) for cluster_stats."""
        c = self._counters
        p50, p95, p99 = c.exec_percentiles()
        return {
            "owner": self._owner,
            "max_workers": self._max_workers,
            "active_workers": c.running,
            "exec_total": c.exec_total,
            "exec_count": c.exec_count,
            "wait_total": c.wait_total,
            "wait_count": c.wait_count,
            "p50": p50,
            "p95": p95,
            "p99": p99,
        }

    def _lost_error(self, what: str, exc: BaseException) -> StoreError:
        return StoreError(f"{what}: Redis at {self._redis.url} did not answer: {exc!r}")

    def _wake_link(self) -> None:
        self._wake.set()

    def _wake_link_at(self, when: float) -> None:
        """Have the link's wait end by ``when`` (pool clock) at the latest: a timer moved
        nearer (a retry, a due time). The link sets its wait's deadline from ``_retry_due`` and
        ``_due_at`` each time it waits; this moves the wait under way."""
        if when < self._link_scope.deadline:
            self._link_scope.deadline = when

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def _wait_changed(self) -> None:
        if self._changed is None:
            self._changed = self._runtime.Event()
        await self._changed.wait()

    def _release(self, job: RecordedJob[Any]) -> None:
        """This process no longer holds ``job`` (it went to retry or was handed back)."""
        del self._live[job._key]
        self._leases.pop(job.job_id, None)
        self._out.forget_progress(job.job_id)  # its end or hand-back carries the last one
        if not self._live:
            self._notify()


class _TaskFence:
    """On asyncio, a running job's fence: a timer that cancels the job's scope, and if AnyIO
    does not deliver that to the task, the task itself.

    AnyIO's delivery does not do alone: it never cancels a task whose awaited future is
    already done, and after a stall the loop runs the callbacks of every expired timer (the
    job's own sleep, due before its fence, among them) before it resumes any task; so a job
    would resume and run on, up to its next await. ``Task.cancel()`` is delivered however the
    task resumes; it is used only when the task is not inside a shielded scope of the job's
    (AnyIO's task state says; unknown counts as shielded: the job is then cancelled at its
    next await, and its outcome is dropped all the same). That cancel request is the pool's,
    not AnyIO's (its message is :data:`_FENCE_CANCEL`, which no AnyIO scope takes as its own):
    the worker takes its delivery when the attempt ends (see ``_job_base_exception``), and the
    request is taken back (``uncancel``) when the attempt is over.
    """

    __slots__ = ("fired", "handle", "scope", "task")

    def __init__(self, task: asyncio.Task[Any], scope: CancelScopeLike) -> None:
        self.task = task
        self.scope = scope
        self.handle: asyncio.TimerHandle | None = None
        self.fired = False


def _shielded_within(task: asyncio.Task[Any], scope: CancelScopeLike) -> bool:
    """Whether ``task`` runs inside a shielded AnyIO scope within ``scope`` (or not within
    ``scope`` at all), by AnyIO's record of the task's innermost scope; ``True`` if unknown."""
    try:
        from anyio._backends._asyncio import _task_states

        inner: Any = _task_states[task].cancel_scope
        while inner is not None and inner is not scope:
            if inner.shield:
                return True
            inner = inner._parent_scope
    except (ImportError, KeyError, AttributeError):  # another AnyIO: unknown
        return True
    return inner is None


def _only_cancellations(exc: BaseException, cancelled_exc: type[BaseException]) -> bool:
    """Whether ``exc`` is a cancellation, or a group of nothing else."""
    return every_leaf(exc, lambda leaf: isinstance(leaf, cancelled_exc))
