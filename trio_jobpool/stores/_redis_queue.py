"""The job queue in Redis that the distributed pool (issue #5) is being built on.

Not public yet: the pool does not use it so far. What it does, each step one Lua script (atomic
on the server, one round trip, a batch of jobs per call):

* ``submit``: store jobs and queue them, in (priority, submission) order across every process.
* ``claim``: pop the best waiting jobs for one process and give each a lease (server time).
* ``renew``: extend the leases of a process's running jobs; say which it no longer holds.
* ``end``: record the end of running jobs, if the process still holds them.
* ``retry``: put a running job aside until its backoff is over (no process holds it meanwhile);
  ``claim`` returns it to the queue, in its place, once it is due.
* ``reap``: put jobs whose lease lapsed (their process died or lost Redis) back in the queue,
  counting a crash against each; a job with too many ends failed as poison.
* ``cancel``: end a waiting or retrying job at once; for a running one, tell its process
  (pub/sub).

Keys (one hash tag, so that every script works on Redis Cluster), for queue ``q``:
``{q}:seq`` (submission counter), ``{q}:job:<id>`` (a hash per job), ``{q}:waiting`` (a sorted
set scored by priority whose members start with the zero-padded submission number, so that
Redis orders one priority first in, first out), ``{q}:leases`` (job id scored by the lease's
expiry, in milliseconds of server time), ``{q}:retrying`` (job id scored by when it is due)
and the channel ``{q}:events``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

import coredis

__all__ = ["RedisQueue", "Claimed"]

_MAX_PRIORITY: Final = 2**53  # a priority is a sorted-set score: a double holds ints this big

# Lua shared by every script: one definition of each step on a job's keys.
_LIB: Final = """
local prefix = KEYS[1]

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function job_key(id)
  return prefix .. ':job:' .. id
end

-- A job's member of the waiting set: its submission number first, for FIFO in one priority.
local function member(seq, id)
  return string.format('%016d:', tonumber(seq)) .. id
end

-- Put a job back in the waiting set, in the place its priority and number give it.
local function requeue(id)
  local key = job_key(id)
  local job = redis.call('HMGET', key, 'priority', 'seq')
  redis.call('HSET', key, 'status', 'queued')
  redis.call('ZADD', prefix .. ':waiting', job[1], member(job[2], id))
end

-- Whether owner holds the running job id.
local function holds(id, owner)
  local job = redis.call('HMGET', job_key(id), 'owner', 'status')
  return job[1] == owner and job[2] == 'running'
end

-- The job is no longer held: store the fields (JSON) its holder sent, drop owner and lease.
local function release(id, fields)
  local key = job_key(id)
  for name, value in pairs(cjson.decode(fields)) do
    redis.call('HSET', key, name, value)
  end
  redis.call('HDEL', key, 'owner')
  redis.call('ZREM', prefix .. ':leases', id)
end

-- The job ended (its status among the fields given as name, value, ...): tell everyone.
local function finish(id, now, ...)
  redis.call('HSET', job_key(id), 'finished_at', now / 1000, ...)
  redis.call('PUBLISH', prefix .. ':events', 'ended:' .. id)
end

-- Record the ends in ARGV[first], ARGV[first+1], ... (id, JSON fields, status among them) of
-- owner's jobs; return the ids it still held.
local function end_jobs(owner, first, last, now)
  local done = {}
  for i = first, last, 2 do
    local id = ARGV[i]
    if holds(id, owner) then
      release(id, ARGV[i+1])
      finish(id, now)
      done[#done+1] = id
    end
  end
  return done
end

-- Put due retries back in their place, pop up to count jobs for owner with a lease each;
-- also say in how many ms the next retry is due (-1: none).
local function claim(owner, count, lease, now)
  local due = redis.call('ZRANGEBYSCORE', prefix .. ':retrying', '-inf', now, 'LIMIT', 0, 1000)
  for _, id in ipairs(due) do
    redis.call('ZREM', prefix .. ':retrying', id)
    requeue(id)
  end
  local out = {}
  if count > 0 then
    local popped = redis.call('ZPOPMIN', prefix .. ':waiting', count)
    for i = 1, #popped, 2 do
      local id = string.sub(popped[i], 18)
      local key = job_key(id)
      local attempts = redis.call('HINCRBY', key, 'attempts', 1)
      redis.call('HSET', key, 'status', 'running', 'owner', owner, 'started_at', now / 1000)
      redis.call('ZADD', prefix .. ':leases', now + lease, id)
      local job = redis.call('HMGET', key, 'name', 'args', 'priority', 'options', 'crashes', 'seq')
      out[#out+1] = {id, job[1], job[2], job[3], job[4], attempts, job[5], job[6]}
    end
  end
  local first = redis.call('ZRANGE', prefix .. ':retrying', 0, 0, 'WITHSCORES')
  local next_retry = -1
  if #first > 0 then
    next_retry = math.max(0, tonumber(first[2]) - now)
  end
  return out, next_retry
end
"""

# ARGV: (id, name, JSON args, priority, JSON options) per job.
_SUBMIT: Final = (
    _LIB
    + """
local now = now_ms()
local out = {}
for i = 1, #ARGV, 5 do
  local id, name, args, priority, options = ARGV[i], ARGV[i+1], ARGV[i+2], ARGV[i+3], ARGV[i+4]
  local key = job_key(id)
  local status = redis.call('HGET', key, 'status')
  if status == 'queued' or status == 'running' or status == 'retrying' then
    out[#out+1] = -1
  else
    local seq = redis.call('INCR', prefix .. ':seq')
    redis.call('DEL', key)
    redis.call('HSET', key, 'name', name, 'args', args, 'priority', priority,
               'options', options, 'status', 'queued', 'attempts', 0, 'crashes', 0,
               'seq', seq, 'submitted_at', now / 1000)
    redis.call('ZADD', prefix .. ':waiting', priority, member(seq, id))
    out[#out+1] = seq
  end
end
redis.call('PUBLISH', prefix .. ':events', 'new')
return out
"""
)

# ARGV: owner, count, lease_ms.
_CLAIM: Final = (
    _LIB
    + """
local claimed, next_retry = claim(ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), now_ms())
return {claimed, next_retry}
"""
)

# ARGV: owner, then (id, JSON fields) per job.
_END: Final = (
    _LIB
    + """
return end_jobs(ARGV[1], 2, #ARGV, now_ms())
"""
)

# ARGV: owner, count, lease_ms, then (id, JSON fields) per ended job: one round trip for a
# process that ends some jobs and takes as many new ones.
_END_AND_CLAIM: Final = (
    _LIB
    + """
local now = now_ms()
local done = end_jobs(ARGV[1], 4, #ARGV, now)
local claimed, next_retry = claim(ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), now)
return {done, claimed, next_retry}
"""
)

# ARGV: owner, then (id, delay in ms, JSON fields) per job.
_RETRY: Final = (
    _LIB
    + """
local owner, now = ARGV[1], now_ms()
local done = {}
for i = 2, #ARGV, 3 do
  local id, due = ARGV[i], now + tonumber(ARGV[i+1])
  if holds(id, owner) then
    release(id, ARGV[i+2])
    redis.call('HSET', job_key(id), 'status', 'retrying', 'retry_at', due / 1000)
    redis.call('ZADD', prefix .. ':retrying', due, id)
    done[#done+1] = id
  end
end
if #done > 0 then
  redis.call('PUBLISH', prefix .. ':events', 'retry')
end
return done
"""
)

# ARGV: owner, lease_ms, then the ids.
_RENEW: Final = (
    _LIB
    + """
local owner, until_ms = ARGV[1], now_ms() + tonumber(ARGV[2])
local lost = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  if holds(id, owner) then
    redis.call('ZADD', prefix .. ':leases', 'XX', until_ms, id)
  else
    lost[#lost+1] = id
  end
end
return lost
"""
)

# ARGV: max_crashes.
_REAP: Final = (
    _LIB
    + """
local max_crashes, now = tonumber(ARGV[1]), now_ms()
local lapsed = redis.call('ZRANGEBYSCORE', prefix .. ':leases', '-inf', now, 'LIMIT', 0, 1000)
local requeued, poisoned = 0, 0
for _, id in ipairs(lapsed) do
  release(id, '{}')
  local crashes = redis.call('HINCRBY', job_key(id), 'crashes', 1)
  if crashes > max_crashes then
    local message = 'interrupted by ' .. crashes .. ' crashes of the process running it'
    finish(id, now, 'status', 'failed', 'error_type', 'trio_jobpool.PoisonJob',
           'error_message', message)
    poisoned = poisoned + 1
  else
    requeue(id)
    requeued = requeued + 1
  end
end
if requeued > 0 then
  redis.call('PUBLISH', prefix .. ':events', 'new')
end
return {requeued, poisoned}
"""
)

# ARGV: the id.
_CANCEL: Final = (
    _LIB
    + """
local id = ARGV[1]
local job = redis.call('HMGET', job_key(id), 'status', 'seq')
if job[1] == 'queued' then
  redis.call('ZREM', prefix .. ':waiting', member(job[2], id))
elseif job[1] == 'retrying' then
  redis.call('ZREM', prefix .. ':retrying', id)
elseif job[1] == 'running' then
  redis.call('PUBLISH', prefix .. ':events', 'cancel:' .. id)
  return 'running'
else
  return 'not live'
end
finish(id, now_ms(), 'status', 'cancelled')
return 'cancelled'
"""
)


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


class RedisQueue:
    """The scripts of one queue on one Redis (or Redis Cluster) client (see the module)."""

    def __init__(self, client: coredis.Redis[str], queue: str) -> None:
        if not queue or any(c in queue for c in "{}:"):
            raise ValueError(
                f"queue must be a non-empty name without '{{', '}}' or ':', got {queue!r}"
            )
        self.client = client
        self.prefix = f"{{{queue}}}"
        self._submit = client.register_script(_SUBMIT)
        self._claim = client.register_script(_CLAIM)
        self._renew = client.register_script(_RENEW)
        self._end = client.register_script(_END)
        self._end_and_claim = client.register_script(_END_AND_CLAIM)
        self._retry = client.register_script(_RETRY)
        self._reap = client.register_script(_REAP)
        self._cancel = client.register_script(_CANCEL)

    @property
    def events(self) -> str:
        """The pub/sub channel: ``new``, ``ended:<id>``, ``cancel:<id>``."""
        return f"{self.prefix}:events"

    async def submit(
        self, jobs: list[tuple[str, str, list[Any], int, dict[str, Any]]]
    ) -> list[int | None]:
        """Queue ``(job_id, name, args, priority, options)`` jobs in one round trip; for each,
        its submission number, or ``None`` if a live job has its id (nothing was queued).

        Raises:
            ValueError: a priority a sorted-set score cannot hold exactly.
        """
        argv: list[str | int] = []
        for job_id, name, args, priority, options in jobs:
            if not -_MAX_PRIORITY < priority < _MAX_PRIORITY:
                raise ValueError(f"priority {priority} is out of range for the Redis queue")
            argv += [job_id, name, json.dumps(args), priority, json.dumps(options)]
        seqs: list[int] = await self._submit(keys=[self.prefix], args=argv)
        return [None if seq == -1 else int(seq) for seq in seqs]

    async def claim(
        self, owner: str, count: int, lease_ms: int
    ) -> tuple[list[Claimed], int | None]:
        """Pop up to ``count`` of the best waiting jobs for ``owner``, each with a lease of
        ``lease_ms`` (server time), after putting the retries that are due back in the queue.
        Also return in how many milliseconds the next retry is due (``None``: no retry)."""
        reply: list[Any] = await self._claim(keys=[self.prefix], args=[owner, count, lease_ms])
        return _claimed(reply[0]), _next_retry(reply[1])

    async def end_and_claim(
        self,
        owner: str,
        ends: dict[str, dict[str, str | int | float]],
        count: int,
        lease_ms: int,
    ) -> tuple[list[str], list[Claimed], int | None]:
        """:meth:`end` and then :meth:`claim`, in one round trip: (the ids whose end was
        recorded, the jobs claimed, when the next retry is due)."""
        argv: list[str | int] = [owner, count, lease_ms]
        for job_id, fields in ends.items():
            argv += [job_id, json.dumps(fields)]
        reply: list[Any] = await self._end_and_claim(keys=[self.prefix], args=argv)
        return list(reply[0]), _claimed(reply[1]), _next_retry(reply[2])

    async def renew(self, owner: str, job_ids: list[str], lease_ms: int) -> list[str]:
        """Extend ``owner``'s leases of ``job_ids``; return those it no longer holds."""
        if not job_ids:
            return []
        return list(await self._renew(keys=[self.prefix], args=[owner, lease_ms, *job_ids]))

    async def end(self, owner: str, ends: dict[str, dict[str, str | int | float]]) -> list[str]:
        """Record the end of ``owner``'s running jobs (``{job_id: fields}``, ``status`` among
        them); return the ids it still held, whose end was recorded."""
        if not ends:
            return []
        argv: list[str] = [owner]
        for job_id, fields in ends.items():
            argv += [job_id, json.dumps(fields)]
        return list(await self._end(keys=[self.prefix], args=argv))

    async def retry(
        self, owner: str, retries: dict[str, tuple[int, dict[str, str | int | float]]]
    ) -> list[str]:
        """Put ``owner``'s running jobs aside for a retry: ``{job_id: (delay_ms, fields)}``
        (the error of the failed attempt among the fields); return the ids it still held."""
        if not retries:
            return []
        argv: list[str | int] = [owner]
        for job_id, (delay_ms, fields) in retries.items():
            argv += [job_id, delay_ms, json.dumps(fields)]
        return list(await self._retry(keys=[self.prefix], args=argv))

    async def reap(self, max_crashes: int) -> tuple[int, int]:
        """Requeue the jobs whose lease lapsed (a crash each); return (requeued, poisoned)."""
        counts: list[int] = await self._reap(keys=[self.prefix], args=[max_crashes])
        return int(counts[0]), int(counts[1])

    async def cancel(self, job_id: str) -> str:
        """``"cancelled"`` (it was waiting or retrying), ``"running"`` (its process is told) or
        ``"not live"``."""
        return str(await self._cancel(keys=[self.prefix], args=[job_id]))

    async def job(self, job_id: str) -> dict[str, str]:
        """Every stored field of a job (empty if unknown)."""
        return dict(await self.client.hgetall(f"{self.prefix}:job:{job_id}"))


def _claimed(rows: list[list[Any]]) -> list[Claimed]:
    return [
        Claimed(
            job_id=row[0],
            name=row[1],
            args=json.loads(row[2]),
            priority=int(row[3]),
            options=json.loads(row[4]),
            attempts=int(row[5]),
            crashes=int(row[6]),
            seq=int(row[7]),
        )
        for row in rows
    ]


def _next_retry(value: Any) -> int | None:
    return None if int(value) < 0 else int(value)
