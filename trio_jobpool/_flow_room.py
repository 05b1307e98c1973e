"""The keyed waiting room: per-key limits, rate windows, fair turns and aging.

A pool uses it instead of :class:`~trio_jobpool._waiting_room.WaitingJobs` once flow control is
in use (a job with a key, a limit, ``fair`` or ``aging``); until then it costs nothing.

Shape (see docs/flow-control.md and docs/design.md, "Flow control"):

* Each key (jobs without a key form the key ``None``) has a :class:`KeyState`: its running
  count, its window of recent starts, and its *own queue* of waiting jobs, best first.
* The *line* is a heap with one entry per **eligible** key with jobs in its own queue (a key
  under its limit): the key's best job (``fair=False``) or its turn (``fair=True``).
* A key at its limit is **parked**, out of the line: until one of its running jobs stops
  (:meth:`FlowRoom.stopped`), or until its rate window frees a start (one heap of those times;
  the pool's deadline watcher sleeps until the earliest, see :meth:`FlowRoom.next_release`).
  So a key's backlog never delays another key's jobs (no head-of-line blocking).
* Without ``fair`` and ``aging`` (the common case), there is also the **shared order**: one
  FIFO per priority, as in the plain waiting room, which holds the jobs without a key and the
  keyed jobs that arrive while their key is under its limit (or at it, behind jobs of the key
  already there), at most ``_SHARED_PER_KEY`` of one key. A free worker takes the better of
  the shared order's first job and the line's first key. A job that reaches the front of the
  shared order while its key is parked is *set aside* into its key's own queue (each job at
  most once: O(1) amortised, and at most ``_SHARED_PER_KEY`` of one key in one take); other
  keyed jobs enter their key's own queue directly. A key's own queue keeps the jobs set aside
  and those that entered directly apart, each in its order, and merges their heads, so a key's
  jobs keep their order wherever they waited. So a key that is under its limit when its jobs
  come up costs no heap operation at all, and the line holds only keys with jobs of their own
  queue.

Invariants, between calls: a key is in the line only while it has jobs in its own queue and is
under its limit now (a start re-checks it at once: :meth:`started`); a key with waiting jobs
that is not parked is under its limit now; a parked key has waiting jobs; ``size`` is the
number of live waiting jobs.

Orders. Without aging a job ranks by ``(priority, order of entry)``: the shared order and every
own queue keep that order, and the line and the shared order are merged by it, so the best
eligible job is always the one taken. With ``aging=s`` a job ranks by ``priority·s + the time
it entered the waiting room`` (a job that has waited ``k·s`` seconds ranks exactly as one of
priority ``priority - k`` entering now, and ahead of it), which never changes while it waits:
no re-sorting. With ``fair=True`` the line orders keys by the rank of their best job's priority
and then by *turn*: a key takes a new turn (behind every key already in line) each time it
enters the line, that is when it gets an eligible job and after each of its starts; with aging,
a key's place ages from the moment it took its turn.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, Final

from ._job import JobHandle, JobStatus
from ._limits import KeyStats, Limit, in_force
from ._waiting_room import WaitingJobs

__all__ = ["FlowRoom", "KeyState"]

_QUEUED: Final = JobStatus.QUEUED
_INF: Final = math.inf
_COMPACT_MIN_DEAD = 64
_COMPACT_MIN_STALE = 1024
# Idle keys (nothing waiting or running) keep their state while the pool has at most this many
# keys: a key that comes back soon (a tenant's next job) finds it; beyond, idle keys are dropped.
_KEPT_KEYS = 4096
# A key has at most this many jobs in the shared order; its later ones wait in its own queue
# (and the key in the line) until it has fewer. So a take sets aside at most this many jobs of
# one key, however many were submitted while the key was under its limit.
_SHARED_PER_KEY = 1024

# A waiting job's place is its ``_seq`` (a waiting job is in no heap of due jobs, the slot's
# other use), for the n-th entry into the room: ``4·n`` in the shared order (``-4·n`` put back
# in front), ``4·n + 1`` once set aside from there into its key's own queue, ``4·n + 3`` for a
# job that entered its key's own queue directly (``-4·n - 1`` put back in front). So ``_seq``
# orders the jobs of one priority, its two lowest bits tell where a job waits (mod 4), and
# ``abs(_seq) <= key.unparked_at`` (``4·m + 3`` for the m-th entry, at the unpark) tells at
# its start whether its key was parked at some moment while it waited (``delayed``).


class _FifoJobs(WaitingJobs):
    """A key's waiting jobs without aging: a deque per priority, FIFO (the plain room's)."""

    __slots__ = ()

    def head(self) -> JobHandle[Any]:
        """Its best live job (dead ones on top are dropped); only while it has one."""
        job = self.peek()
        assert job is not None
        return job

    def take(self) -> JobHandle[Any]:
        """Remove and return :meth:`head`."""
        job = self.pop()
        assert job is not None
        return job

    def clear(self) -> None:
        self._buckets.clear()
        self._priorities.clear()
        self.size = self._dead = 0


class _MergedJobs:
    """A key's own queue beside a shared order: the jobs set aside from the shared order (which
    brings them out in their order) and the jobs that entered directly (in their order of
    entry), each FIFO per priority; the better of the two heads is the key's best job."""

    __slots__ = ("aside", "direct")

    def __init__(self) -> None:
        self.aside = _FifoJobs()
        self.direct = _FifoJobs()

    def push(self, job: JobHandle[Any]) -> None:
        self.direct.push(job)

    def push_front(self, job: JobHandle[Any]) -> None:
        self.direct.push_front(job)

    def put_aside(self, job: JobHandle[Any]) -> None:
        self.aside.push(job)

    def head(self) -> JobHandle[Any]:
        """Its best live job; only while it has one."""
        first = self.aside.peek()
        other = self.direct.peek()
        if first is None:
            assert other is not None
            return other
        if other is None:
            return first
        if other._priority < first._priority or (
            other._priority == first._priority and other._seq < first._seq
        ):
            return other
        return first

    def take(self) -> JobHandle[Any]:
        """Remove and return :meth:`head`."""
        job = self.head()
        (self.aside if job._seq & 2 == 0 else self.direct).pop()
        return job

    def discard(self, job: JobHandle[Any]) -> None:
        (self.aside if job._seq & 2 == 0 else self.direct).discard(job)

    def clear(self) -> None:
        self.aside.clear()
        self.direct.clear()


class _AgedJobs:
    """A key's waiting jobs with aging: a heap of ``(priority·aging + entry time, order,
    job)``; lazy deletion of cancelled jobs, compacted once they are the majority."""

    __slots__ = ("_aging", "_dead", "_heap", "size")

    def __init__(self, aging: float) -> None:
        self._aging = aging
        self._heap: list[tuple[float, int, JobHandle[Any]]] = []
        self._dead = 0
        self.size = 0

    def push(self, job: JobHandle[Any]) -> None:
        rank = job._priority * self._aging + job._ready_m
        heapq.heappush(self._heap, (rank, job._seq, job))
        self.size += 1

    push_front = push  # its order (negative) puts it ahead of its rank

    def head(self) -> JobHandle[Any]:
        heap = self._heap
        while heap[0][2]._status is not _QUEUED:
            heapq.heappop(heap)
            self.size -= 1
            if self._dead:
                self._dead -= 1
        return heap[0][2]

    def take(self) -> JobHandle[Any]:
        self.head()
        self.size -= 1
        return heapq.heappop(self._heap)[2]

    def discard(self, item: JobHandle[Any] | None = None) -> None:
        self._dead += 1
        if self._dead > _COMPACT_MIN_DEAD and self._dead * 2 > self.size:
            self._heap = [e for e in self._heap if e[2]._status is _QUEUED and e[2] is not item]
            heapq.heapify(self._heap)
            self.size = len(self._heap)
            self._dead = 0

    def clear(self) -> None:
        self._heap.clear()
        self.size = self._dead = 0


class KeyState:
    """One key's running count, recent starts, own queue and place (see the module
    docstring)."""

    __slots__ = (
        "aside",
        "entry",
        "forgetting",
        "in_shared",
        "jobs",
        "limit",
        "max_running",
        "name",
        "parked",
        "rate_per",
        "release_at",
        "running",
        "since",
        "unparked_at",
        "waiting",
        "window",
    )

    def __init__(
        self, name: str | None, limit: Limit | None, aging: float | None, merged: bool
    ) -> None:
        self.name = name
        self.running = 0  # its jobs started and not yet stopped (not counted for None)
        self.waiting = 0  # its live waiting jobs, in its own queue and in the shared order
        self.aside = 0  # its live jobs in ``jobs``, its own queue
        self.in_shared = 0  # its entries in the shared order, dead ones not yet dropped included
        self.jobs: _FifoJobs | _MergedJobs | _AgedJobs = (
            _AgedJobs(aging) if aging is not None else _MergedJobs() if merged else _FifoJobs()
        )
        self.entry: list[Any] | None = None  # [rank, tie, self]: its entry in the line
        self.since = 0.0  # when it took its current turn (fair, with aging)
        self.parked = False
        self.release_at = _INF  # parked: when its rate window frees a start (inf: at a stop)
        self.unparked_at = 0  # the room's 4·order + 3 when it was last unparked
        self.forgetting = False  # in FlowRoom._forget
        self.window: deque[float] | None = None  # its latest starts, oldest first (rate only)
        self.limit: Limit | None = None
        self.max_running: float = _INF
        self.rate_per = 0.0
        self.apply(limit)

    def apply(self, limit: Limit | None) -> None:
        """Take ``limit`` as the key's limit from now on. The starts already in the window
        stay (the newest ones, as many as the new ``count``)."""
        self.limit = limit
        running = None if limit is None else limit.max_running
        self.max_running = _INF if running is None else running
        rate = None if limit is None else limit.rate
        if rate is None:
            self.window = None
            return
        self.rate_per = rate.per
        self.window = deque(() if self.window is None else self.window, maxlen=rate.count)

    def free_at(self) -> float:
        """When the key may start a job (pool clock): ``-inf`` if its limit allows a start at
        any time now, ``inf`` while it is at its ``max_running``, else when its rate window
        frees a start (which may have passed). No clock is read."""
        if self.running >= self.max_running:
            return _INF
        window = self.window
        if window is not None and len(window) == window.maxlen:
            return window[0] + self.rate_per
        return -_INF


class _SharedJobs(WaitingJobs):
    """The shared order: the plain room's FIFO per priority. A dead entry is dropped exactly
    when ``_alive`` first finds it dead (at the front, or in a compaction); its key's
    ``in_shared`` count is taken down then."""

    __slots__ = ("_room",)

    def __init__(self, room: FlowRoom) -> None:
        super().__init__()
        self._room = room

    def pop_first(self) -> None:
        """Remove the first job, which :meth:`peek` has just returned (so it is alive)."""
        priorities = self._priorities
        bucket = self._buckets[priorities[0]]
        bucket.popleft()
        self.size -= 1
        if not bucket and len(priorities) > 1:
            del self._buckets[heapq.heappop(priorities)]

    def _alive(self, item: JobHandle[Any]) -> bool:
        if item._status is _QUEUED:
            return True
        name = item._flow_key
        if name is not None:
            self._room._dropped_from_shared(name)
        return False


class FlowRoom:
    """The waiting room of a pool with flow control (see the module docstring).

    The pool calls :meth:`push`/:meth:`push_front` for a job that waits, :meth:`pop` (or
    :meth:`peek`) when a worker is free, :meth:`may_start` before handing a job straight to an
    idle worker, :meth:`started` for every start, :meth:`stopped` at the end of every attempt,
    and :meth:`discard` when a waiting job is cancelled. ``stopped``, ``set_limit`` and
    ``release_due`` return ``True`` when jobs of a key became eligible: the pool then hands jobs
    to its idle workers.
    """

    def __init__(
        self,
        clock: Callable[[], float],
        wake_at: Callable[[float], None],
        *,
        key_limit: Limit | None = None,
        fair: bool = False,
        aging: float | None = None,
    ) -> None:
        self._now = clock
        self._wake_at = wake_at  # the pool's watcher must wake at this time (a rate release)
        self._default = in_force(key_limit)
        self._own: dict[str, Limit] = {}
        self._fair = fair
        self._aging = aging
        # The shared order, only where jobs rank by (priority, order of entry) alone.
        self._shared = _SharedJobs(self) if not fair and aging is None else None
        self._keys: dict[str | None, KeyState] = {None: KeyState(None, None, aging, False)}
        self._line: list[list[Any]] = []
        self._stale = 0  # entries in the line that no longer stand for their key
        self._timers: list[tuple[float, int, KeyState]] = []  # rate releases
        self._forget: list[tuple[float, int, KeyState]] = []  # idle keys whose window lapses
        self._order = 0
        self._turn = 0
        self.size = 0
        """The live waiting jobs."""
        self.delayed = 0
        """Jobs started that a limit held back while they waited (their key was parked at
        some moment between their entry and their start)."""

    def __len__(self) -> int:
        return self.size

    # -- limits ----------------------------------------------------------------------------

    def limit_of(self, name: str) -> Limit | None:
        """The limit that applies to the key ``name``: its own, else the pool's default."""
        return self._own.get(name, self._default)

    @property
    def own_limits(self) -> dict[str, Limit]:
        """The keys' own limits (a copy)."""
        return dict(self._own)

    def set_limit(self, name: str, limit: Limit | None) -> bool:
        """Give the key ``name`` its own ``limit`` (``None`` or ``Limit()``: remove it, so the
        default applies). Running jobs are not touched: a lowered ``max_running`` holds new
        starts until the key is under it. ``True``: jobs of the key became eligible."""
        limit = in_force(limit)
        if limit is None:
            self._own.pop(name, None)
        else:
            self._own[name] = limit
        state = self._keys.get(name)
        if state is None:
            return False
        state.apply(self.limit_of(name))
        if not state.waiting:
            self._maybe_forget(state)
            return False
        self._leave(state)
        return self._enter_or_park(state)

    # -- the waiting jobs ------------------------------------------------------------------

    def push(self, job: JobHandle[Any]) -> None:
        """``job`` waits, behind the jobs of its rank already waiting."""
        order = self._order = self._order + 1
        name = job._flow_key
        shared = self._shared
        if shared is not None:
            if name is None:
                job._seq = 4 * order
                shared.push(job)
                self.size += 1
                return
            state = self._keys.get(name)
            if state is None:
                state = self._new_state(name)
            if not state.parked and (
                state.running >= state.max_running or state.window is not None
            ):
                self._park_if_limited(state, None)
            shared_jobs = state.in_shared
            if shared_jobs < _SHARED_PER_KEY and (shared_jobs or not state.parked):
                # under its limit; or at it, behind its jobs already in the shared order
                # (like them, set aside only if it comes up while the key is still parked)
                job._seq = 4 * order
                shared.push(job)
                state.in_shared += 1
                state.waiting += 1
                self.size += 1
                return
        job._seq = 4 * order + 3
        self._add(job)

    def push_front(self, job: JobHandle[Any]) -> None:
        """``job`` (taken, then returned) waits ahead of the jobs of its rank."""
        order = self._order = self._order + 1
        shared = self._shared
        if shared is not None and job._flow_key is None:
            job._seq = -4 * order
            shared.push_front(job)
            self.size += 1
            return
        job._seq = -4 * order - 1  # a keyed job goes back in its key's own queue
        self._add(job)

    def _add(self, job: JobHandle[Any]) -> None:
        """``job`` (its ``_seq`` set: ``4·n + 3``, or negative for the front) waits in its
        key's own queue."""
        name = job._flow_key
        state = self._keys.get(name)
        if state is None:
            state = self._new_state(name)  # type: ignore[arg-type]  # None is always there
        if job._seq > 0:
            state.jobs.push(job)
        else:
            state.jobs.push_front(job)
        state.waiting += 1
        state.aside += 1
        self.size += 1
        entry = state.entry
        if entry is None:
            if not state.parked:
                self._enter_or_park(state)
            return
        if self._fair:
            key_rank = self._key_rank(job, state)
            if key_rank < entry[0]:
                self._replace(state, [key_rank, entry[1], state])
        elif (rank := self._rank(job)) < entry[0] or (rank == entry[0] and job._seq < entry[1]):
            self._replace(state, [rank, job._seq, state])

    def discard(self, job: JobHandle[Any]) -> None:
        """The waiting ``job`` died in place (cancelled): it no longer counts."""
        self.size -= 1
        name = job._flow_key
        if not job._seq & 1:  # in the shared order, where it is dropped when it surfaces
            self._shared.discard(job)  # type: ignore[union-attr]
            if name is None:
                return
            state = self._keys[name]
        else:
            state = self._keys[name]
            state.aside -= 1
            if state.aside:
                state.jobs.discard(job)
            else:
                state.jobs.clear()
                self._drop_entry(state)
        state.waiting -= 1
        if not state.waiting:
            self._leave(state)
            self._maybe_forget(state)

    def peek(self) -> JobHandle[Any] | None:
        """The job :meth:`pop` would return, left in place."""
        best = self._best()
        return best.jobs.head() if isinstance(best, KeyState) else best

    def pop(self) -> JobHandle[Any] | None:
        """Remove and return the best eligible job; ``None`` if none is eligible. Its key is
        out of the line until :meth:`started` (which must follow at once) counts the start."""
        best = self._best()
        if best is None:
            return None
        if isinstance(best, KeyState):
            return self._take_from(best)
        job = best  # the shared order's first
        self._shared.pop_first()  # type: ignore[union-attr]
        self.size -= 1
        name = job._flow_key
        if name is not None:
            state = self._keys[name]
            state.in_shared -= 1
            state.waiting -= 1
            if job._seq <= state.unparked_at:
                self.delayed += 1
        return job

    def _take_from(self, state: KeyState) -> JobHandle[Any]:
        """Remove and return the best job of ``state``, the key at the front of the line."""
        heapq.heappop(self._line)
        state.entry = None
        job = state.jobs.take()
        self.size -= 1
        state.waiting -= 1
        state.aside -= 1
        if state.name is not None and abs(job._seq) <= state.unparked_at:
            self.delayed += 1
        return job

    def _set_aside(self, job: JobHandle[Any], state: KeyState) -> None:
        """Move ``job``, first in the shared order, into its parked key's own queue (behind
        the key's jobs there: the shared order has brought them out in their order)."""
        self._shared.pop_first()  # type: ignore[union-attr]
        state.in_shared -= 1
        job._seq += 1
        state.jobs.put_aside(job)  # type: ignore[union-attr]  # a _MergedJobs beside shared
        state.aside += 1

    @staticmethod
    def _ahead(front: KeyState, job: JobHandle[Any]) -> bool:
        """Whether the best job of ``front`` (in line) comes before ``job`` (shared)."""
        rank, seq, _ = front.entry  # type: ignore[misc]
        priority = job._priority
        return rank < priority or (rank == priority and seq < job._seq)  # type: ignore[no-any-return]

    def _best(self) -> KeyState | JobHandle[Any] | None:
        """Where the best eligible job is: the key at the front of the line (its entry true to
        its best job), or the shared order's first job; ``None``: no job is eligible. The jobs
        at the front of the shared order whose keys are parked are set aside first."""
        shared = self._shared
        if shared is not None:
            keys = self._keys
            while (job := shared.peek()) is not None:
                name = job._flow_key
                if name is not None and (state := keys[name]).parked:
                    self._set_aside(job, state)
                    continue
                front = self._front() if self._line else None
                return front if front is not None and self._ahead(front, job) else job
        return self._front()

    def _front(self) -> KeyState | None:
        """The key at the front of the line, its entry true to its best job; ``None``: the
        line is empty."""
        line = self._line
        fair = self._fair
        while line:
            entry = line[0]
            state: KeyState = entry[2]
            if state.entry is not entry:
                heapq.heappop(line)
                self._stale -= 1
                continue
            job = state.jobs.head()
            if fair:
                key_rank = self._key_rank(job, state)
                if key_rank != entry[0]:  # its best job was cancelled: a lower rank now
                    state.entry = [key_rank, entry[1], state]
                    heapq.heapreplace(line, state.entry)
                    continue
            else:
                rank = self._rank(job)
                if rank != entry[0] or job._seq != entry[1]:  # its best job was cancelled
                    state.entry = [rank, job._seq, state]
                    heapq.heapreplace(line, state.entry)
                    continue
            return state
        return None

    # -- starts and stops ------------------------------------------------------------------

    def may_start(self, job: JobHandle[Any]) -> bool:
        """Whether ``job`` (not waiting here) may start now as far as its key goes: its key is
        under its limit and has no job waiting (which would come first)."""
        name = job._flow_key
        if name is None:
            return True
        state = self._keys.get(name)
        if state is None:
            limit = self.limit_of(name)
            return limit is None or limit.max_running != 0
        if state.waiting:
            return False
        free = state.free_at()
        return free == -_INF or (free < _INF and free <= self._now())

    def started(self, job: JobHandle[Any], now: float) -> None:
        """``job`` starts at ``now`` (taken by :meth:`pop`, or handed straight to a worker):
        count it against its key, and put the key back in the line, or park it."""
        name = job._flow_key
        if name is None:
            if self._shared is None:
                none = self._keys[None]
                if none.aside and none.entry is None:
                    self._enter_or_park(none, now)
            return
        state = self._keys.get(name)
        if state is None:
            state = self._new_state(name)
        running = state.running = state.running + 1
        window = state.window
        if window is not None:
            window.append(now)
        if not state.waiting or state.parked:
            return
        if window is None and running >= state.max_running:
            # at its max_running with jobs waiting (the common case of a limited key)
            if state.entry is not None:  # taken from the shared order while in line
                self._drop_entry(state)
            state.parked = True
            state.release_at = _INF
        elif state.entry is None:
            if state.aside:
                self._enter_or_park(state, now)
            elif window is not None:
                self._park_if_limited(state, now)
        elif window is not None and self._park_if_limited(state, now):
            self._drop_entry(state)  # taken from the shared order while in line

    def stopped(self, job: JobHandle[Any]) -> bool:
        """An attempt of ``job`` that :meth:`started` counted is over (the job ended, or
        retries, or was deferred, or goes back to wait). ``True``: its key, parked until a
        stop, is eligible again."""
        name = job._flow_key
        if name is None:
            return False
        state = self._keys.get(name)
        if state is None:  # pragma: no cover - every start of a keyed job made its state
            return False
        running = state.running = state.running - 1
        if state.parked:
            if state.release_at == _INF:
                state.parked = False  # _unpark, written out
                state.unparked_at = 4 * self._order + 3
                if not state.aside and state.window is None and running < state.max_running:
                    return True  # _enter_or_park's answer, for jobs all in the shared order
                return self._enter_or_park(state)
        elif not state.waiting and not state.running:
            self._maybe_forget(state)
        return False

    # -- rate releases ---------------------------------------------------------------------

    def next_release(self) -> float:
        """When (pool clock) the earliest parked key's rate window frees a start; ``inf``."""
        timers = self._timers
        while timers:
            release, _, state = timers[0]
            if state.parked and state.release_at == release:
                return release
            heapq.heappop(timers)
        return _INF

    def release_due(self, now: float) -> bool:
        """Let the keys whose rate window has freed a start by ``now`` into the line (or park
        them again, for their ``max_running``). ``True``: jobs of a key became eligible."""
        timers = self._timers
        released = False
        while timers and timers[0][0] <= now:
            release, _, state = heapq.heappop(timers)
            if state.parked and state.release_at == release:
                self._unpark(state)
                released = self._enter_or_park(state, now) or released
        return released

    # -- views -----------------------------------------------------------------------------

    def key_stats(self, name: str) -> KeyStats:
        """The key's running and waiting jobs and its limit; O(1)."""
        state = self._keys.get(name)
        if state is None:
            return KeyStats(name, 0, 0, self.limit_of(name))
        return KeyStats(name, state.running, state.waiting, state.limit)

    def parked_keys(self) -> Iterator[KeyStats]:
        """The keys at their limit with jobs waiting (O(keys): for views)."""
        for name, state in list(self._keys.items()):
            if name is not None and state.parked:
                yield KeyStats(name, state.running, state.waiting, state.limit)

    # -- the line --------------------------------------------------------------------------

    def _rank(self, job: JobHandle[Any]) -> float:
        """A job's rank (lower first): its priority, with aging ``priority·aging + the time
        it entered``."""
        aging = self._aging
        return job._priority if aging is None else job._priority * aging + job._ready_m

    def _key_rank(self, job: JobHandle[Any], state: KeyState) -> float:
        """A key's rank in a fair line, its best waiting job being ``job``."""
        aging = self._aging
        return job._priority if aging is None else job._priority * aging + state.since

    def _park_if_limited(self, state: KeyState, now: float | None) -> bool:
        """Park ``state`` (not parked) if it is at its limit now; ``True`` if it was. ``now``:
        the pool's clock, if the caller has read it (else it is read only if needed)."""
        free = state.free_at()
        if free == -_INF:
            return False
        if free < _INF:
            if now is None:
                now = self._now()
            if free <= now:
                return False
        state.parked = True
        state.release_at = free
        if free < _INF:
            self._order += 1
            heapq.heappush(self._timers, (free, self._order, state))
            self._wake_at(free)
        return True

    def _unpark(self, state: KeyState) -> None:
        state.parked = False
        state.release_at = _INF
        state.unparked_at = 4 * self._order + 3

    def _enter_or_park(self, state: KeyState, now: float | None = None) -> bool:
        """``state``, neither in line nor parked, with waiting jobs: park it if it is at its
        limit now (``False``); else put it in the line if it has jobs in its own queue, and
        return ``True`` (jobs of it are eligible). ``now`` as for :meth:`_park_if_limited`."""
        if self._park_if_limited(state, now):
            return False
        if not state.aside:
            return True  # its waiting jobs are all in the shared order
        job = state.jobs.head()
        if self._fair:
            self._turn += 1
            if self._aging is not None:  # its place ages from now (see _key_rank)
                state.since = self._now() if now is None else now
            entry = [self._key_rank(job, state), self._turn, state]
        else:
            entry = [self._rank(job), job._seq, state]
        state.entry = entry
        heapq.heappush(self._line, entry)
        return True

    def _replace(self, state: KeyState, entry: list[Any]) -> None:
        state.entry = entry
        heapq.heappush(self._line, entry)
        self._stale += 1
        self._compact_line()

    def _drop_entry(self, state: KeyState) -> None:
        """Take ``state`` out of the line (its entry goes stale), if it is there."""
        if state.entry is not None:
            state.entry = None
            self._stale += 1
            self._compact_line()

    def _leave(self, state: KeyState) -> None:
        """Take ``state`` out of the line and unpark it."""
        self._drop_entry(state)
        if state.parked:
            self._unpark(state)

    def _compact_line(self) -> None:
        if self._stale > _COMPACT_MIN_STALE and self._stale * 2 > len(self._line):
            self._line = [entry for entry in self._line if entry[2].entry is entry]
            heapq.heapify(self._line)
            self._stale = 0

    # -- key states ------------------------------------------------------------------------

    def _dropped_from_shared(self, name: str) -> None:
        """A dead job of the key ``name`` has left the shared order."""
        state = self._keys.get(name)
        if state is not None:
            state.in_shared -= 1
            if not state.waiting and not state.running:
                self._maybe_forget(state)

    def _new_state(self, name: str) -> KeyState:
        forget = self._forget
        if forget:  # forget the idle keys whose rate window has lapsed (amortised O(1))
            now = self._now()
            while forget and forget[0][0] <= now:
                _, _, old = heapq.heappop(forget)
                old.forgetting = False
                self._maybe_forget(old)
        state = self._keys[name] = KeyState(
            name, self.limit_of(name), self._aging, self._shared is not None
        )
        return state

    def _maybe_forget(self, state: KeyState) -> None:
        """Drop an idle key's state (no job waiting, running or dead in the shared order)
        once the pool has more than ``_KEPT_KEYS`` keys, unless its rate window still holds a
        start that counts: then once it lapses (see ``_new_state``)."""
        if (
            state.name is None
            or state.waiting
            or state.running
            or state.in_shared
            or len(self._keys) <= _KEPT_KEYS
        ):
            return
        window = state.window
        if window:
            lapses = window[-1] + state.rate_per
            if lapses > self._now():
                if not state.forgetting:  # one entry per key: the heap stays within the keys
                    state.forgetting = True
                    self._order += 1
                    heapq.heappush(self._forget, (lapses, self._order, state))
                return
        if self._keys.get(state.name) is state:
            del self._keys[state.name]
