"""The job queue in Redis under the distributed pool (``RedisStore``, ``_distributed.py``).

Each step is one Lua script (atomic on the server, one round trip, a batch of jobs per call):

* ``submit``: store jobs and queue them, in (priority, submission) order across every process,
  while the waiting set is below the submitter's bound.
* ``end_and_claim``: record the ends of a process's jobs, then pop the best waiting jobs for
  it and give each a lease (server time); ``claim`` and ``end`` are its two halves.
* ``renew``: extend the leases of a process's running jobs; say which it no longer holds.
* ``submit`` also takes jobs due later (``delay=``/``at=``): they wait in a sorted set by due
  time, beyond the bound, until a claim (or the reaper) lets them in.
* ``retry``: put a running job aside until its backoff is over (no process holds it meanwhile);
  a claim returns it to the queue, in its place, once it is due. The same call schedules the
  jobs that deferred themselves (``Defer``).
* ``give_back``: a process shutting down puts its unfinished jobs back in their place.
* ``reap``: put jobs whose lease lapsed (their process died or lost Redis) back in the queue,
  counting a crash against each (and noting whose lease lapsed, ``lapsed_by``: if that process
  reports a stall with its hand-back, the crash becomes a stall); a job with more lapses than
  ``max_crashes`` ends failed (``PoisonJob``, or ``LeaseLapsed`` if some were stalls).
* ``cancel``: end a waiting or retrying job at once; for a running one, tell its process
  (pub/sub).
* ``fetch``, ``stats``: read jobs, and the queue's counters.
* the queue's periodic schedules (``load_schedules``, ``declare_schedule``,
  ``remove_schedule``, ``restore_schedules``, and ``fire_schedule``, a tick's step with its
  job): the distributed pool's ``ScheduleBook`` is these, through its own handling of a lost
  Redis (``_shared_schedules.py``); how a schedule is stored is in ``_redis_book.py``.

The scripts' Lua source, and the keys they keep for queue ``q`` (all under the hash tag
``{q}``), are in ``_redis_scripts.py``.

``{q}:epoch`` names the queue's current run: the first pool to open the queue writes it, and
every script checks it (``KEYS[2]``, the epoch its caller knows) before touching anything. A
Redis that lost the queue's keys (a restart without persistence, FLUSHALL, eviction) no longer
has it, or has a newer one: the script refuses with an error that :class:`RedisQueue` raises as
:class:`QueueLost`, at no extra round trip.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from . import _redis_scripts as scripts
from ._base import JobRecord, ScheduleRecord
from ._redis_book import (
    declaration_fields,
    definition_text,
    position_text,
    schedule_from_fields,
    state_fields,
    step_fields,
)

if TYPE_CHECKING:
    import coredis

__all__ = [
    "DUPLICATE",
    "FULL",
    "MAX_PRIORITY",
    "Claimed",
    "Fired",
    "NewJob",
    "Fields",
    "QueueLost",
    "QueueStats",
    "RedisQueue",
    "never_sent",
    "redis_errors",
    "schedule_message",
]


@functools.cache
def redis_errors() -> tuple[type[BaseException], ...]:
    """What a lost or unreachable Redis raises: a command that fails with one of these is
    retried later (ends, leases) or reported as a :class:`StoreError` (submits).

    coredis (the ``redis`` extra) is imported here, on first use, not with the package: this
    module is imported by every pool, and only a pool on Redis needs coredis.
    """
    import coredis.exceptions

    return (coredis.exceptions.RedisError, OSError, TimeoutError)


def never_sent(exc: BaseException) -> bool:
    """Whether the command that raised ``exc`` (one of :func:`redis_errors`) surely never
    reached Redis: no connection could be made. Anything else (a timeout, a connection lost
    while sending or waiting for the answer) leaves it unknown whether the command ran."""
    import coredis.exceptions

    if isinstance(exc, ConnectionRefusedError):
        return True
    return isinstance(exc, coredis.exceptions.ConnectionError) and str(exc).startswith(
        "Unable to establish a connection"  # coredis: connecting or its handshake failed
    )


MAX_PRIORITY: Final = 2**53  # a priority is a sorted-set score: a double holds ints this big


class QueueLost(Exception):
    """Redis no longer has the queue this process was working on: its epoch key is gone or
    is another one (Redis restarted without persistence, was flushed, or evicted the key).
    Not one of :func:`redis_errors`: retrying the same call cannot succeed.

    Attributes:
        epoch: the epoch the refused call was made in.
    """

    def __init__(self, epoch: str) -> None:
        super().__init__(f"Redis no longer has the queue's epoch {epoch!r}")
        self.epoch = epoch


Fields = dict[str, str | int | float]
"""Fields of a job's hash that its holder writes (values as Redis stores them)."""

DUPLICATE: Final = -1
"""What :meth:`RedisQueue.submit` answers for a job whose id a live job has."""
FULL: Final = -2
"""What :meth:`RedisQueue.submit` answers for a job there was no room for."""


class NewJob(NamedTuple):
    """A job to submit (:meth:`RedisQueue.submit`)."""

    job_id: str
    name: str
    args: list[Any]
    priority: int
    options: dict[str, Any]
    delay_ms: int | None = None
    """``None``: queue it now (within the bound); else scheduled, due this many milliseconds
    from when Redis takes it (server time; ``0``: it enters the queue at once, beyond the
    bound)."""
    key: str | None = None
    """Its flow-control key (see the scripts' module: it waits in its key's set)."""


@dataclass(frozen=True, slots=True)
class Claimed:
    """A job a process claimed: it holds its lease until it ends it or the lease lapses."""

    job_id: str
    name: str
    args: list[Any]
    priority: int
    options: dict[str, Any]
    attempts: int
    crashes: int
    seq: int
    interrupted: int
    submitted_at: float  # server time
    retry_at: float | None  # when it came back from its latest retry, if it did
    scheduled_for: float | None  # when it was (last) due, if it was ever scheduled
    deferrals: int  # its attempts that ended with Defer (not failures for its retry policy)
    key: str | None = None  # its flow-control key

    @property
    def ready_at(self) -> float:
        """When (server time) it last entered the queue: its wait for this attempt runs from
        here (its submission, the end of a retry's backoff, or its due time)."""
        return max(self.submitted_at, self.retry_at or 0.0, self.scheduled_for or 0.0)


class Fired(NamedTuple):
    """What a tick's step (:meth:`RedisQueue.fire_schedule`) did."""

    kept: ScheduleRecord | None
    """The schedule kept: ``after`` if the step was made (with the tick's job submitted, or
    skipped: then ``after`` with the run counted as skipped), the schedule as Redis has it if
    not, ``None`` if it was removed."""
    seq: int = 0
    """The submission number of the tick's job, if it was submitted."""
    early_ms: int = 0
    """If the step was refused because its tick is ahead of Redis's clock: by how much (ms)."""


@dataclass(frozen=True, slots=True)
class QueueStats:
    """What :meth:`RedisQueue.stats` reads: the queue's counters and its processes' stats."""

    counters: dict[str, int]
    waiting: int
    retrying: int
    running: int
    processes: list[dict[str, Any]]
    scheduled: int


class RedisQueue:
    """The scripts of one queue on one Redis (or Redis Cluster) client (see the module)."""

    def __init__(self, client: coredis.Redis[str], queue: str) -> None:
        if not queue or any(c in queue for c in "{}:"):
            raise ValueError(
                f"queue must be a non-empty name without '{{', '}}' or ':', got {queue!r}"
            )
        self.client = client
        self.prefix = f"{{{queue}}}"
        self.epoch = ""  # the queue's epoch this object works in (open_epoch)
        self._keys = [self.prefix, self.epoch]
        self._open = client.register_script(scripts.OPEN)
        self._submit = client.register_script(scripts.SUBMIT)
        self._renew = client.register_script(scripts.RENEW)
        self._end_and_claim = client.register_script(scripts.END_AND_CLAIM)
        self._retry = client.register_script(scripts.RETRY)
        self._give_back = client.register_script(scripts.GIVE_BACK)
        self._progress = client.register_script(scripts.PROGRESS)
        self._reap = client.register_script(scripts.REAP)
        self._cancel = client.register_script(scripts.CANCEL)
        self._fetch = client.register_script(scripts.FETCH)
        self._stats = client.register_script(scripts.STATS)
        self._load_schedules = client.register_script(scripts.LOAD_SCHEDULES)
        self._declare_schedule = client.register_script(scripts.DECLARE_SCHEDULE)
        self._remove_schedule = client.register_script(scripts.REMOVE_SCHEDULE)
        self._restore_schedules = client.register_script(scripts.RESTORE_SCHEDULES)
        self._fire_schedule = client.register_script(scripts.FIRE_SCHEDULE)
        self._set_limit = client.register_script(scripts.SET_LIMIT)
        self._limits = client.register_script(scripts.LIMITS)

    async def open_epoch(self) -> str:
        """Learn the queue's epoch (making one if the queue has none: it is new, or Redis lost
        it) and work in it from now on; return it."""
        fresh = f"{self.prefix}:epoch:{secrets.token_hex(8)}"
        epoch = str(await self._open(keys=[self.prefix], args=[fresh]))
        self.epoch = epoch
        self._keys = [self.prefix, epoch]
        return epoch

    async def eviction_policy(self) -> str | None:
        """The server's ``maxmemory-policy``, or ``None`` if it does not say (CONFIG may be
        forbidden or renamed, as on many managed services; a cluster client cannot route it
        to one node)."""
        import coredis.exceptions

        try:
            reply: Any = await self.client.config_get(["maxmemory-policy"])
        except (coredis.exceptions.ResponseError, coredis.exceptions.RedisClusterError):
            return None
        value = reply.get("maxmemory-policy") if isinstance(reply, dict) else None
        return None if value is None else str(value)

    async def _run(self, script: Any, args: list[Any], *, read_only: bool = False) -> Any:
        """Call a script in this object's epoch.

        A script that only reads (``read_only``) is called once more if its connection was
        lost (not on a timeout): a connection that broke while no command was on it, as after
        a restart of Redis, is noticed only by the next command, and reading again is safe.
        A script that writes is never sent twice: it may have run.

        Raises:
            QueueLost: Redis no longer has the queue (a script's epoch check).
        """
        import coredis.exceptions

        keys = self._keys
        try:
            try:
                return await self._evalsha(script, keys, args)
            except coredis.exceptions.ConnectionError:
                if not read_only:
                    raise
            return await self._evalsha(script, keys, args)
        except coredis.exceptions.ResponseError as exc:
            if scripts.LOST_CODE in str(exc):
                raise QueueLost(keys[1]) from None
            raise

    async def _evalsha(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """``EVALSHA`` of a registered script; if the server does not have the script (it
        restarted, or its scripts were flushed), load it and send the call once more: a
        script the server did not have did not run.

        The client's ``evalsha``, not the call of coredis's ``Script``: that wraps every call
        in a retry policy and a transform of its own, for this one case, which cost 35-45 µs
        of CPU more per call on the 2-core test machine (Trio and asyncio; a pool makes one
        such call per link trip, every 4 to 10 jobs).
        """
        import coredis.exceptions

        client = self.client
        try:
            return await client.evalsha(script.sha, keys=keys, args=args)
        except coredis.exceptions.NoScriptError:
            await client.script_load(script.script)
        return await client.evalsha(script.sha, keys=keys, args=args)

    @property
    def events(self) -> str:
        """The pub/sub channel of every process: ``room``, ``cancel:<id>``, ``due:<ms>`` (a
        job was scheduled, due in that many milliseconds, earlier than every scheduled job
        before it), and ``schedule:<JSON>`` and ``unschedule:<JSON>`` (a periodic schedule
        was declared or removed: :func:`schedule_message`)."""
        return f"{self.prefix}:events"

    def events_of(self, submitter: str) -> str:
        """The channel of one process: ``new`` (a wake-up of its idle workers), and for the
        jobs it submitted ``ended:<JSON list of ids>`` and ``scheduled:<JSON list of ids>``
        (deferred by another process)."""
        return f"{self.prefix}:events:{submitter}"

    async def submit(
        self,
        jobs: Sequence[NewJob],
        bound: int | None,
        submitter: str = "",
    ) -> tuple[list[int], int]:
        """Queue jobs in one round trip while fewer than ``bound`` jobs wait (``None``: no
        bound); a job with a ``delay_ms`` is scheduled instead, whatever the bound. For each
        job, its submission number, or :data:`DUPLICATE` (a live job has its id) or
        :data:`FULL` (no room): then nothing was queued. Also the number of jobs waiting after.

        Raises:
            ValueError: a priority a sorted-set score cannot hold exactly.
        """
        batch = []
        for job_id, name, args, priority, options, delay_ms, key in jobs:
            if not -MAX_PRIORITY < priority < MAX_PRIORITY:
                raise ValueError(f"priority {priority} is out of range for the Redis queue")
            settings = json.dumps(options) if any(v is not None for v in options.values()) else ""
            delay = -1 if delay_ms is None else max(0, delay_ms)
            batch.append([job_id, name, json.dumps(args), priority, settings, delay, key or ""])
        argv: list[str | int] = [-1 if bound is None else bound, submitter, json.dumps(batch)]
        reply: list[Any] = await self._run(self._submit, argv)
        return [int(seq) for seq in reply[0]], int(reply[1])

    async def claim(
        self, owner: str, count: int, lease_ms: int
    ) -> tuple[list[Claimed], int | None]:
        """Pop up to ``count`` of the best waiting jobs for ``owner``, each with a lease of
        ``lease_ms`` (server time), after putting the retries that are due back in the queue
        and letting the scheduled jobs that are due in. Also return in how many milliseconds
        the next retry or scheduled job is due (``None``: none waits; ``0``: more are due)."""
        _, claimed, next_due = await self.end_and_claim(owner, [], count, lease_ms)
        return claimed, next_due

    async def end_and_claim(
        self,
        owner: str,
        ends: list[tuple[str, str, Fields]],
        count: int,
        lease_ms: int,
    ) -> tuple[list[str], list[Claimed], int | None]:
        """:meth:`end` and then :meth:`claim`, in one round trip: (the ids whose end was
        recorded, the jobs claimed, when the next retry or scheduled job is due, in ms from
        now). ``count`` is every worker of
        ``owner`` that is free: those left without a job are registered as idle, and the next
        job to wait wakes the process (a message ``new`` on its own channel)."""
        batch = [[job_id, status, _flat(fields)] for job_id, status, fields in ends]
        argv: list[str | int] = [owner, count, lease_ms, json.dumps(batch)]
        reply: list[Any] = await self._run(self._end_and_claim, argv)
        return list(reply[0]), _claimed(reply[1]), _next_due(reply[2])

    async def end(self, owner: str, ends: list[tuple[str, str, Fields]]) -> list[str]:
        """Record the end of ``owner``'s running jobs (``(job_id, status, fields)``); return
        the ids it still held, whose end was recorded."""
        return (await self.end_and_claim(owner, ends, 0, 0))[0]

    async def renew(
        self, owner: str, job_ids: list[str], lease_ms: int, stats: dict[str, Any] | None = None
    ) -> tuple[list[str], list[str]]:
        """Extend ``owner``'s leases of ``job_ids`` and record it as alive with ``stats``;
        return (the ids it no longer holds, those it holds that someone cancelled: a cancel
        its process may have missed)."""
        argv: list[str | int] = [owner, lease_ms, json.dumps(stats or {}), *job_ids]
        reply: list[Any] = await self._run(self._renew, argv)
        return list(reply[0]), list(reply[1])

    async def retry(
        self, owner: str, retries: Sequence[tuple[str, int, Fields, bool]]
    ) -> list[str]:
        """Put ``owner``'s running jobs aside until due: ``(job_id, delay_ms, fields,
        deferred)``. A retry (``deferred`` false; the error of the failed attempt among the
        fields) waits out its backoff; a job that raised ``Defer`` is scheduled (with a delay
        of 0, queued at once behind its priority). Return the ids it still held."""
        if not retries:
            return []
        batch = [
            [i, delay_ms, _flat(fields), int(deferred)] for i, delay_ms, fields, deferred in retries
        ]
        return list(await self._run(self._retry, [owner, json.dumps(batch)]))

    async def progress(self, owner: str, jobs: list[tuple[str, Fields]]) -> None:
        """Store the progress ``(job_id, fields)`` of ``owner``'s running jobs."""
        batch = [[job_id, _flat(fields)] for job_id, fields in jobs]
        await self._run(self._progress, [owner, json.dumps(batch)])

    async def give_back(
        self, owner: str, jobs: list[tuple[str, bool, Fields, bool]], max_crashes: int
    ) -> list[str]:
        """Put ``owner``'s unfinished jobs back in their place: ``(job_id, started, fields,
        stalled)``; return the ids it still held. A stalled job (its process's loop was
        blocked, or the process paused, past its lease) counts a stall; one more lapse than
        ``max_crashes`` ends it failed (``LeaseLapsed``)."""
        if not jobs:
            return []
        batch = [
            [job_id, 0 if started else 1, _flat(fields), 1 if stalled else 0]
            for job_id, started, fields, stalled in jobs
        ]
        args = [owner, json.dumps(batch), max_crashes]
        return list(await self._run(self._give_back, args))

    async def set_limit(self, key: str, limit: dict[str, Any] | None) -> None:
        """Keep ``limit`` (JSON form, see ``Limit.to_json``) as ``key``'s own, or remove it
        (``None``); the key ``""`` is the queue's default (``key_limit``). Takes effect for the
        next claim of every process: the key's best waiting job is offered again under it."""
        text = "" if limit is None else json.dumps(limit, separators=(",", ":"))
        await self._run(self._set_limit, [key, text])

    async def limits(self) -> dict[str, dict[str, Any]]:
        """Every limit the queue keeps (JSON form), by key; the key ``""`` is the default."""
        reply: Any = await self._run(self._limits, [], read_only=True)
        if isinstance(reply, dict):
            pairs = list(reply.items())
        else:
            pairs = list(zip(reply[::2], reply[1::2], strict=True))
        return {str(key): json.loads(value) for key, value in pairs}

    async def keep_ended(self, seconds: float | None) -> None:
        """Let ended jobs expire ``seconds`` after their end (``None``: keep them)."""
        keep_ms = 0 if seconds is None else max(1, round(seconds * 1000))
        await self.client.hset(f"{self.prefix}:settings", {"keep_ms": keep_ms})

    async def leave(self, owner: str) -> None:
        """Forget ``owner``'s stats and idle workers: its process is gone (cluster_stats, and
        no wake-up goes to it any more)."""
        await self.client.hdel(f"{self.prefix}:processes", [owner])
        await self.client.zrem(f"{self.prefix}:seen", [owner])
        await self.client.hdel(f"{self.prefix}:idle", [owner])

    async def reap(self, max_crashes: int, every_ms: int = 0) -> tuple[int, int]:
        """Requeue the jobs whose lease lapsed (a crash each), unless some process reaped in
        the last ``every_ms``; return (requeued, ended as poison)."""
        counts: list[int] = await self._run(self._reap, [max_crashes, every_ms])
        return int(counts[0]), int(counts[1])

    async def cancel(self, job_id: str) -> str:
        """``"cancelled"`` (it was waiting or retrying), ``"running"`` (its process is told) or
        ``"not live"``."""
        return str(await self._run(self._cancel, [job_id]))

    async def fetch(self, job_ids: list[str]) -> list[dict[str, str]]:
        """Every stored field of each job (empty for an unknown id), in one round trip."""
        if not job_ids:
            return []
        rows: list[Any] = await self._run(self._fetch, job_ids, read_only=True)
        return [_pairs(row) for row in rows]

    async def job(self, job_id: str) -> dict[str, str]:
        """Every stored field of a job (empty if unknown)."""
        return (await self.fetch([job_id]))[0]

    async def stats(self, seen_within_ms: int) -> QueueStats:
        """The queue's counters, its waiting, retrying, running and scheduled jobs, and the
        stats of the processes seen in the last ``seen_within_ms``."""
        reply: list[Any] = await self._run(self._stats, [seen_within_ms], read_only=True)
        counters = {name: int(value) for name, value in _pairs(reply[0]).items()}
        processes = [json.loads(text) for text in reply[4] if text]
        waiting, retrying, running, scheduled = map(int, (*reply[1:4], reply[5]))
        return QueueStats(counters, waiting, retrying, running, processes, scheduled)

    # -- periodic schedules (the pool's book; see _redis_book.py for how one is kept) --------

    async def load_schedules(self) -> list[ScheduleRecord]:
        """Every schedule of the queue, sorted by name."""
        rows: list[Any] = await self._run(self._load_schedules, [], read_only=True)
        return sorted(_schedules(rows), key=lambda record: record.name)

    async def declare_schedule(self, record: ScheduleRecord, owner: str) -> ScheduleRecord:
        """Keep ``record`` unless a schedule of its name has the same definition; return the
        schedule kept (a replaced one keeps its counters and last run). A schedule written is
        announced to every process (``owner`` names this one)."""
        argv = [
            owner,
            record.name,
            definition_text(record),
            json.dumps(declaration_fields(record)),
            json.dumps(state_fields(record)),
        ]
        reply: list[Any] = await self._run(self._declare_schedule, argv)
        return schedule_from_fields(record.name, _pairs(reply[1]))

    async def remove_schedule(self, name: str, owner: str) -> bool:
        """Remove the schedule ``name`` (announced); ``False`` if there was none."""
        return bool(await self._run(self._remove_schedule, [owner, name]))

    async def restore_schedules(
        self, records: Sequence[ScheduleRecord], owner: str
    ) -> list[ScheduleRecord]:
        """Put back each of ``records`` unless the queue has a schedule of its name (after
        Redis lost the queue: see docs/distributed.md); return the schedules kept."""
        if not records:
            return []
        argv = [owner]
        for record in records:
            argv += [
                record.name,
                json.dumps(declaration_fields(record)),
                json.dumps(state_fields(record)),
            ]
        return _schedules(await self._run(self._restore_schedules, argv))

    async def fire_schedule(
        self,
        before: ScheduleRecord,
        after: ScheduleRecord,
        job: JobRecord | None,
        owner: str,
        ahead_ms: int,
    ) -> Fired:
        """A tick's step, all in one script: if the schedule is still ``before`` (its
        definition, anchor and ``handled_until``), move it to ``after`` and submit ``job`` (a
        tick's, whose submitter is ``owner``), unless ``after.overlap`` is ``"skip"`` and
        ``before.last_job_id`` is live, or the job's own id is: then the tick is counted as
        skipped instead. The step is refused while its tick (``after.last_run`` with a job,
        else ``before.next_run``, on the caller's clock) is more than ``ahead_ms`` ahead of
        Redis's clock. See :class:`Fired`."""
        skipped = None
        job_json = ""
        if job is not None:
            tick = after.last_run if after.last_run is not None else before.next_run
            skipped = _skipped(before, after)
            options = {"timeout": job.timeout, "retry": job.retry}
            settings = json.dumps(options) if any(v is not None for v in options.values()) else ""
            job_json = json.dumps(
                [job.job_id, job.name, json.dumps(job.args), str(job.priority), settings,
                 repr(float(tick))]
            )  # fmt: skip
        else:
            tick = before.next_run
        argv = [
            owner,
            before.name,
            *position_text(before),
            json.dumps(step_fields(after)),
            "" if skipped is None else json.dumps(step_fields(skipped)),
            job_json,
            before.last_job_id or "",
            "1" if after.overlap == "skip" else "0",
            math.floor(tick * 1000),
            ahead_ms,
        ]
        reply: list[Any] = await self._run(self._fire_schedule, argv)
        outcome = str(reply[0])
        if outcome == "gone":
            return Fired(None)
        if outcome == "kept":
            return Fired(schedule_from_fields(before.name, _pairs(reply[1])))
        if outcome == "early":
            return Fired(before, early_ms=max(1, int(reply[1])))
        if outcome == "skipped":
            assert skipped is not None
            return Fired(skipped)
        return Fired(after, seq=int(reply[1]))


def schedule_message(payload: str) -> tuple[str, ScheduleRecord | str]:
    """The process that sent a ``schedule:`` or ``unschedule:`` message (:attr:`events`) and
    what it says: the schedule declared (its fields), or the name of the one removed. Takes
    the message without its ``schedule:``/``unschedule:``."""
    data = json.loads(payload)
    if len(data) == 2:
        return str(data[0]), str(data[1])
    return str(data[0]), schedule_from_fields(str(data[1]), _pairs(data[2]))


def _skipped(before: ScheduleRecord, after: ScheduleRecord) -> ScheduleRecord:
    """``after`` with its tick counted as skipped, not run (a shared book's overlap rule)."""
    return dataclasses.replace(
        after,
        runs=before.runs,
        last_run=before.last_run,
        last_job_id=before.last_job_id,
        skipped=after.skipped + 1,
    )


def _schedules(rows: list[Any]) -> list[ScheduleRecord]:
    """Schedules as the scripts return them: a list of [name, fields]."""
    return [schedule_from_fields(str(name), _pairs(fields)) for name, fields in rows]


def _flat(fields: Fields) -> list[str | int | float]:
    """Fields as the list of names and values that the scripts' ``release`` takes. Text that
    is not valid Unicode (a lone surrogate, from a file name say) is escaped: Redis's JSON
    decoder refuses it."""
    flat: list[str | int | float] = []
    for name, value in fields.items():
        if isinstance(value, str):
            value = value.encode("utf-8", "backslashreplace").decode("utf-8")
        flat += [name, value]
    return flat


def _pairs(value: Any) -> dict[str, str]:
    """A hash as the scripts return it: a flat list (RESP2 style) or a map (RESP3)."""
    if isinstance(value, dict):
        return {str(k): str(v) for k, v in value.items()}
    items = list(value)
    return {str(items[i]): str(items[i + 1]) for i in range(0, len(items), 2)}


def _claimed(text: str) -> list[Claimed]:
    """The jobs a claim returned (one JSON text, see the scripts' ``claim``)."""
    return [
        Claimed(row[0], row[1], row[2], row[3], row[4] or {}, *row[5:14])
        for row in json.loads(text)
    ]


def _next_due(value: Any) -> int | None:
    return None if int(value) < 0 else int(value)
