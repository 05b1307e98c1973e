"""The job queue in Redis under the distributed pool (``RedisStore``, ``_distributed.py``).

Each step is one Lua script (atomic on the server, one round trip, a batch of jobs per call):

* ``submit``: store jobs and queue them, in (priority, submission) order across every process,
  while the waiting set is below the submitter's bound.
* ``end_and_claim``: record the ends of a process's jobs, then pop the best waiting jobs for
  it and give each a lease (server time); ``claim`` and ``end`` are its two halves.
* ``renew``: extend the leases of a process's running jobs; say which it no longer holds.
* ``retry``: put a running job aside until its backoff is over (no process holds it meanwhile);
  a claim returns it to the queue, in its place, once it is due.
* ``give_back``: a process shutting down puts its unfinished jobs back in their place.
* ``reap``: put jobs whose lease lapsed (their process died or lost Redis) back in the queue,
  counting a crash against each (and noting whose lease lapsed, ``lapsed_by``: if that process
  reports a stall with its hand-back, the crash becomes a stall); a job with more lapses than
  ``max_crashes`` ends failed (``PoisonJob``, or ``LeaseLapsed`` if some were stalls).
* ``cancel``: end a waiting or retrying job at once; for a running one, tell its process
  (pub/sub).
* ``fetch``, ``stats``: read jobs, and the queue's counters.

Keys (one hash tag, so that every script works on Redis Cluster), for queue ``q``:
``{q}:seq`` (submission counter), ``{q}:job:<id>`` (a hash per job), ``{q}:waiting`` (a sorted
set scored by priority whose members start with the zero-padded submission number, so that
Redis orders one priority first in, first out), ``{q}:leases`` (job id scored by the lease's
expiry, in milliseconds of server time), ``{q}:retrying`` (job id scored by when it is due),
``{q}:stats`` (counters), ``{q}:settings`` (how long ended jobs are kept), ``{q}:processes``
and ``{q}:seen`` (each process's stats, and when it was last seen), ``{q}:full`` (a submit
found no room), ``{q}:reaper`` (who reaps, for how long), and the channels ``{q}:events`` (every
process) and ``{q}:events:<process>`` (the ends of the jobs it submitted).

``{q}:epoch`` names the queue's current run: the first pool to open the queue writes it, and
every script checks it (``KEYS[2]``, the epoch its caller knows) before touching anything. A
Redis that lost the queue's keys (a restart without persistence, FLUSHALL, eviction) no longer
has it, or has a newer one: the script refuses with an error that :class:`RedisQueue` raises as
:class:`QueueLost`, at no extra round trip.
"""

from __future__ import annotations

import functools
import json
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import coredis

__all__ = [
    "DUPLICATE",
    "FULL",
    "MAX_PRIORITY",
    "Claimed",
    "Fields",
    "QueueLost",
    "QueueStats",
    "RedisQueue",
    "never_sent",
    "redis_errors",
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
        "Unable to establish a connection"  # (coredis: connecting or its handshake failed)
    )


MAX_PRIORITY: Final = 2**53  # a priority is a sorted-set score: a double holds ints this big

_LOST_CODE: Final = "JOBPOOL_QUEUE_LOST"  # the error the scripts answer with a stale epoch (_LIB)


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


# Lua shared by every script: one definition of each step on a job's keys.
_LIB: Final = """
local prefix = KEYS[1]

-- The caller's epoch must be the queue's (see the module): else Redis lost the queue.
if redis.call('GET', prefix .. ':epoch') ~= KEYS[2] then
  return redis.error_reply('JOBPOOL_QUEUE_LOST ' .. KEYS[2])
end

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

local function publish(message)
  redis.call('PUBLISH', prefix .. ':events', message)
end

-- The queue's counters (cluster_stats): submitted, retried and one per way of ending.
local function count(name)
  redis.call('HINCRBY', prefix .. ':stats', name, 1)
end

-- Jobs left the waiting set: if a submit was refused for want of room, say there is some.
local function room()
  if redis.call('DEL', prefix .. ':full') == 1 then
    publish('room')
  end
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

-- The job is no longer held: store the fields its holder sent (a list of name, value, ...),
-- drop its owner and its lease.
local function release(id, flat)
  local key = job_key(id)
  if #flat > 0 then
    redis.call('HSET', key, unpack(flat))
  end
  redis.call('HDEL', key, 'owner')
  redis.call('ZREM', prefix .. ':leases', id)
end

-- How long an ended job stays readable (ms; 0: until deleted), as the queue's settings say.
local keep_ms = nil

local function finish(id, status, now)
  local key = job_key(id)
  redis.call('HSET', key, 'status', status, 'finished_at', now / 1000)
  count(status)
  if keep_ms == nil then
    keep_ms = tonumber(redis.call('HGET', prefix .. ':settings', 'keep_ms') or '0')
  end
  if keep_ms > 0 then
    redis.call('PEXPIRE', key, keep_ms)
  end
end

-- A running job that was cancelled while its process may not have heard (pub/sub is not
-- kept): wherever it would go next (a retry, back to the queue), it ends cancelled instead.
local function cancel_if_asked(id, now)
  if redis.call('HGET', job_key(id), 'cancel_requested') then
    redis.call('HSET', job_key(id), 'error_message', 'cancelled')
    finish(id, 'cancelled', now)
    return true
  end
  return false
end

-- A job whose lease lapsed more than max_crashes times (crashes, and stalls its process
-- reported) ends failed: as poison if every lapse was a crash, else as LeaseLapsed.
local function lapsed_too_often(id, max_crashes, now)
  local job = redis.call('HMGET', job_key(id), 'crashes', 'stalls')
  local crashes, stalls = tonumber(job[1] or '0'), tonumber(job[2] or '0')
  if crashes + stalls <= max_crashes then
    return false
  end
  local kind = 'trio_jobpool.PoisonJob'
  local message = 'interrupted by ' .. crashes .. ' crashes of the process running it'
  if stalls > 0 then
    kind = 'trio_jobpool.LeaseLapsed'
    message = 'its lease lapsed ' .. (crashes + stalls) .. ' times: ' .. stalls
      .. ' times its process stalled past the lease (its event loop was blocked, or the'
      .. ' process was paused), ' .. crashes .. ' times its process crashed or was not heard of'
  end
  redis.call('HSET', job_key(id), 'error_type', kind, 'error_message', message,
             'error_traceback', '')
  finish(id, 'failed', now)
  return true
end

-- Tell the processes that submitted the jobs that they ended: one message per submitter, on
-- its own channel (the others need not hear of it).
local function announce(ended)
  local by = {}
  for _, id in ipairs(ended) do
    local who = redis.call('HGET', job_key(id), 'submitter') or ''
    if not by[who] then
      by[who] = {}
    end
    table.insert(by[who], id)
  end
  for who, ids in pairs(by) do
    redis.call('PUBLISH', prefix .. ':events:' .. who, 'ended:' .. cjson.encode(ids))
  end
end

-- Record the ends (a JSON list of [id, status, fields] of owner's jobs); return the ids whose
-- end is recorded: by this call (it still held them), or by an earlier call of the same owner
-- whose answer it did not get (a resent end: the job names who ended it, in ended_by).
local function end_jobs(owner, ends, now)
  local done, new = {}, {}
  for _, e in ipairs(cjson.decode(ends)) do
    local id = e[1]
    if holds(id, owner) then
      release(id, e[3])
      finish(id, e[2], now)
      redis.call('HSET', job_key(id), 'ended_by', owner)
      done[#done+1] = id
      new[#new+1] = id
    else
      local job = redis.call('HMGET', job_key(id), 'ended_by', 'status')
      if job[1] == owner and job[2] == e[2] then
        done[#done+1] = id
      end
    end
  end
  announce(new)
  return done
end

-- Put due retries back in their place, pop up to count jobs for owner with a lease each, as
-- one JSON list of [id, name, args, priority, options, attempts, crashes, seq, interrupted,
-- submitted_at, retry_at] (built from the stored JSON text as it is, not decoded and encoded
-- again); also say in how many ms the next retry is due (-1: none).
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
      local job = redis.call('HMGET', key, 'name', 'args', 'priority', 'options', 'crashes',
                             'seq', 'interrupted', 'retry_at', 'submitted_at')
      out[#out+1] = '[' .. cjson.encode(id) .. ',' .. cjson.encode(job[1]) .. ',' .. job[2]
        .. ',' .. job[3] .. ',' .. (job[4] ~= '' and job[4] or 'null') .. ',' .. attempts
        .. ',' .. job[5] .. ',' .. job[6] .. ',' .. (job[7] or '0') .. ',' .. job[9]
        .. ',' .. (job[8] or 'null') .. ']'
    end
    if #popped > 0 then
      room()
    end
  end
  local first = redis.call('ZRANGE', prefix .. ':retrying', 0, 0, 'WITHSCORES')
  local next_retry = -1
  if #first > 0 then
    next_retry = math.max(0, tonumber(first[2]) - now)
  end
  return '[' .. table.concat(out, ',') .. ']', next_retry
end
"""

# ARGV: the bound on waiting jobs (-1: none), the submitter (whose channel hears of the ends),
# then a JSON list of [id, name, args (JSON text), priority, options (JSON text, or "" for
# none)] per job. Returns (per job its number, -1 if a
# live job has its id, -2 if there was no room; the number of waiting jobs after).
_SUBMIT: Final = (
    _LIB
    + """
local now = now_ms()
local bound = tonumber(ARGV[1])
local waiting = redis.call('ZCARD', prefix .. ':waiting')
local out = {}
for _, job in ipairs(cjson.decode(ARGV[3])) do
  local id, name, args, priority, options = job[1], job[2], job[3], job[4], job[5]
  local key = job_key(id)
  local status = redis.call('HGET', key, 'status')
  if status == 'queued' or status == 'running' or status == 'retrying' then
    out[#out+1] = -1
  elseif bound >= 0 and waiting >= bound then
    redis.call('SET', prefix .. ':full', 1)
    out[#out+1] = -2
  else
    local seq = redis.call('INCR', prefix .. ':seq')
    redis.call('DEL', key)
    redis.call('HSET', key, 'name', name, 'args', args, 'priority', priority,
               'options', options, 'status', 'queued', 'attempts', 0, 'crashes', 0,
               'interrupted', 0, 'seq', seq, 'submitted_at', now / 1000,
               'submitter', ARGV[2])
    redis.call('ZADD', prefix .. ':waiting', priority, member(seq, id))
    count('submitted')
    waiting = waiting + 1
    out[#out+1] = seq
  end
end
publish('new')
return {out, waiting}
"""
)

# ARGV: owner, count, lease_ms, the ends (see end_jobs): a process ends some jobs and takes as
# many new ones in one round trip.
_END_AND_CLAIM: Final = (
    _LIB
    + """
local now = now_ms()
local done = end_jobs(ARGV[1], ARGV[4], now)
local claimed, next_retry = claim(ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), now)
return {done, claimed, next_retry}
"""
)

# ARGV: owner, a JSON list of [id, delay in ms, fields] per job.
_RETRY: Final = (
    _LIB
    + """
local owner, now = ARGV[1], now_ms()
local done, cancelled = {}, {}
for _, r in ipairs(cjson.decode(ARGV[2])) do
  local id, due = r[1], now + r[2]
  if holds(id, owner) then
    release(id, r[3])
    if cancel_if_asked(id, now) then
      cancelled[#cancelled+1] = id
    else
      redis.call('HSET', job_key(id), 'status', 'retrying', 'retry_at', due / 1000)
      redis.call('ZADD', prefix .. ':retrying', due, id)
      count('retried')
    end
    done[#done+1] = id
  end
end
if #done > #cancelled then
  publish('retry')
end
announce(cancelled)
return done
"""
)

# ARGV: owner, a JSON list of [id, fields] per job: progress of running jobs, if owner holds
# them.
_PROGRESS: Final = (
    _LIB
    + """
local owner = ARGV[1]
for _, p in ipairs(cjson.decode(ARGV[2])) do
  if holds(p[1], owner) and #p[2] > 0 then
    redis.call('HSET', job_key(p[1]), unpack(p[2]))
  end
end
return 0
"""
)

# ARGV: owner, a JSON list of [id, 1 if it never started else 0, fields, 1 if its process
# stalled else 0] per job, max_crashes: jobs a process hands back unfinished (it is shutting
# down, or it fenced them): they go back to their place, no crash counted; an attempt that never
# started is not counted either. A stall (the process's loop was blocked or it was paused past
# the lease) counts as a lapse of its own kind; if the reaper had counted it as a crash of this
# process meanwhile (``lapsed_by``), that crash becomes the stall.
_GIVE_BACK: Final = (
    _LIB
    + """
local owner, now, max_crashes = ARGV[1], now_ms(), tonumber(ARGV[3])
local done, cancelled = {}, {}
for _, g in ipairs(cjson.decode(ARGV[2])) do
  local id = g[1]
  local key = job_key(id)
  if holds(id, owner) then
    release(id, g[3])
    if g[2] == 1 then
      redis.call('HINCRBY', key, 'attempts', -1)
    end
    if g[4] == 1 then
      redis.call('HINCRBY', key, 'stalls', 1)
    end
    if cancel_if_asked(id, now) or (g[4] == 1 and lapsed_too_often(id, max_crashes, now)) then
      cancelled[#cancelled+1] = id
    else
      requeue(id)
    end
    done[#done+1] = id
  elseif g[4] == 1 and redis.call('HGET', key, 'lapsed_by') == owner then
    redis.call('HDEL', key, 'lapsed_by')
    redis.call('HINCRBY', key, 'crashes', -1)
    redis.call('HINCRBY', key, 'stalls', 1)
    redis.call('HINCRBY', key, 'interrupted', 1)
  end
end
if #done > #cancelled then
  publish('new')
end
announce(cancelled)
return done
"""
)

# ARGV: owner, lease_ms, the process's stats (JSON), then the ids. Also records that the
# process is alive (cluster_stats). Returns (the ids it no longer holds, the ids it holds
# that were cancelled meanwhile).
_RENEW: Final = (
    _LIB
    + """
local owner, now = ARGV[1], now_ms()
local until_ms = now + tonumber(ARGV[2])
redis.call('HSET', prefix .. ':processes', owner, ARGV[3])
redis.call('ZADD', prefix .. ':seen', now, owner)
local lost, cancel = {}, {}
for i = 4, #ARGV do
  local id = ARGV[i]
  if holds(id, owner) then
    redis.call('ZADD', prefix .. ':leases', 'XX', until_ms, id)
    if redis.call('HGET', job_key(id), 'cancel_requested') then
      cancel[#cancel+1] = id
    end
  else
    lost[#lost+1] = id
  end
end
return {lost, cancel}
"""
)

# ARGV: max_crashes, every_ms. Only one process reaps per every_ms (the others return at once).
_REAP: Final = (
    _LIB
    + """
local max_crashes, now = tonumber(ARGV[1]), now_ms()
if tonumber(ARGV[2]) > 0 and not redis.call('SET', prefix .. ':reaper', 1, 'NX', 'PX', ARGV[2]) then
  return {0, 0}
end
-- processes not seen for an hour are forgotten
local gone = redis.call('ZRANGEBYSCORE', prefix .. ':seen', '-inf', now - 3600000)
for _, owner in ipairs(gone) do
  redis.call('HDEL', prefix .. ':processes', owner)
  redis.call('ZREM', prefix .. ':seen', owner)
end
local lapsed = redis.call('ZRANGEBYSCORE', prefix .. ':leases', '-inf', now, 'LIMIT', 0, 1000)
local requeued, ended = 0, {}
for _, id in ipairs(lapsed) do
  local holder = redis.call('HGET', job_key(id), 'owner')
  release(id, {})
  -- a crash, unless its process reports a stall later (see _GIVE_BACK)
  redis.call('HINCRBY', job_key(id), 'crashes', 1)
  if holder then
    redis.call('HSET', job_key(id), 'lapsed_by', holder)
  end
  if cancel_if_asked(id, now) or lapsed_too_often(id, max_crashes, now) then
    ended[#ended+1] = id
  else
    requeue(id)
    requeued = requeued + 1
  end
end
if requeued > 0 then
  publish('new')
end
announce(ended)
return {requeued, #ended}
"""
)

# ARGV: a new epoch. The queue's epoch: the one it has, else the new one (now the queue's).
# (No epoch check: this is how a caller learns it.)
_OPEN: Final = """
local key = KEYS[1] .. ':epoch'
local epoch = redis.call('GET', key)
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', key, epoch)
end
return epoch
"""

# ARGV: the id.
_CANCEL: Final = (
    _LIB
    + """
local id = ARGV[1]
local job = redis.call('HMGET', job_key(id), 'status', 'seq')
if job[1] == 'queued' then
  redis.call('ZREM', prefix .. ':waiting', member(job[2], id))
  room()
elseif job[1] == 'retrying' then
  redis.call('ZREM', prefix .. ':retrying', id)
elseif job[1] == 'running' then
  -- its process is told now; and if it does not hear, the job ends at its next step
  redis.call('HSET', job_key(id), 'cancel_requested', 1)
  publish('cancel:' .. id)
  return 'running'
else
  return 'not live'
end
redis.call('HSET', job_key(id), 'error_message', 'cancelled')
finish(id, 'cancelled', now_ms())
announce({id})
return 'cancelled'
"""
)

# ARGV: the ids. Every field of each job (an empty list for an unknown id).
_FETCH: Final = (
    _LIB
    + """
local out = {}
for i = 1, #ARGV do
  out[i] = redis.call('HGETALL', job_key(ARGV[i]))
end
return out
"""
)

# ARGV: how long ago (ms) a process must have been seen to count. Returns (counters as a flat
# list, waiting, retrying, running, the stats (JSON) of the processes seen since).
_STATS: Final = (
    _LIB
    + """
local now = now_ms()
local seen = redis.call('ZRANGEBYSCORE', prefix .. ':seen', now - tonumber(ARGV[1]), '+inf')
local processes = {}
if #seen > 0 then
  processes = redis.call('HMGET', prefix .. ':processes', unpack(seen))
end
return {
  redis.call('HGETALL', prefix .. ':stats'),
  redis.call('ZCARD', prefix .. ':waiting'),
  redis.call('ZCARD', prefix .. ':retrying'),
  redis.call('ZCARD', prefix .. ':leases'),
  processes,
}
"""
)


Fields = dict[str, str | int | float]
"""Fields of a job's hash that its holder writes (values as Redis stores them)."""

DUPLICATE: Final = -1
"""What :meth:`RedisQueue.submit` answers for a job whose id a live job has."""
FULL: Final = -2
"""What :meth:`RedisQueue.submit` answers for a job there was no room for."""


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


@dataclass(frozen=True, slots=True)
class QueueStats:
    """What :meth:`RedisQueue.stats` reads: the queue's counters and its processes' stats."""

    counters: dict[str, int]
    waiting: int
    retrying: int
    running: int
    processes: list[dict[str, Any]]


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
        self._open = client.register_script(_OPEN)
        self._submit = client.register_script(_SUBMIT)
        self._renew = client.register_script(_RENEW)
        self._end_and_claim = client.register_script(_END_AND_CLAIM)
        self._retry = client.register_script(_RETRY)
        self._give_back = client.register_script(_GIVE_BACK)
        self._progress = client.register_script(_PROGRESS)
        self._reap = client.register_script(_REAP)
        self._cancel = client.register_script(_CANCEL)
        self._fetch = client.register_script(_FETCH)
        self._stats = client.register_script(_STATS)

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
                return await script(keys=keys, args=args)
            except coredis.exceptions.ConnectionError:
                if not read_only:
                    raise
            return await script(keys=keys, args=args)
        except coredis.exceptions.ResponseError as exc:
            if _LOST_CODE in str(exc):
                raise QueueLost(keys[1]) from None
            raise

    @property
    def events(self) -> str:
        """The pub/sub channel of every process: ``new``, ``room``, ``retry`` and
        ``cancel:<id>``."""
        return f"{self.prefix}:events"

    def events_of(self, submitter: str) -> str:
        """The channel of one submitter: ``ended:<JSON list of ids>`` for its jobs."""
        return f"{self.prefix}:events:{submitter}"

    async def submit(
        self,
        jobs: list[tuple[str, str, list[Any], int, dict[str, Any]]],
        bound: int | None,
        submitter: str = "",
    ) -> tuple[list[int], int]:
        """Queue ``(job_id, name, args, priority, options)`` jobs in one round trip while fewer
        than ``bound`` jobs wait (``None``: no bound). For each job, its submission number, or
        :data:`DUPLICATE` (a live job has its id) or :data:`FULL` (no room): then nothing was
        queued. Also the number of jobs waiting after.

        Raises:
            ValueError: a priority a sorted-set score cannot hold exactly.
        """
        batch = []
        for job_id, name, args, priority, options in jobs:
            if not -MAX_PRIORITY < priority < MAX_PRIORITY:
                raise ValueError(f"priority {priority} is out of range for the Redis queue")
            settings = json.dumps(options) if any(v is not None for v in options.values()) else ""
            batch.append([job_id, name, json.dumps(args), priority, settings])
        argv: list[str | int] = [-1 if bound is None else bound, submitter, json.dumps(batch)]
        reply: list[Any] = await self._run(self._submit, argv)
        return [int(seq) for seq in reply[0]], int(reply[1])

    async def claim(
        self, owner: str, count: int, lease_ms: int
    ) -> tuple[list[Claimed], int | None]:
        """Pop up to ``count`` of the best waiting jobs for ``owner``, each with a lease of
        ``lease_ms`` (server time), after putting the retries that are due back in the queue.
        Also return in how many milliseconds the next retry is due (``None``: no retry)."""
        _, claimed, next_retry = await self.end_and_claim(owner, [], count, lease_ms)
        return claimed, next_retry

    async def end_and_claim(
        self,
        owner: str,
        ends: list[tuple[str, str, Fields]],
        count: int,
        lease_ms: int,
    ) -> tuple[list[str], list[Claimed], int | None]:
        """:meth:`end` and then :meth:`claim`, in one round trip: (the ids whose end was
        recorded, the jobs claimed, when the next retry is due)."""
        batch = [[job_id, status, _flat(fields)] for job_id, status, fields in ends]
        argv: list[str | int] = [owner, count, lease_ms, json.dumps(batch)]
        reply: list[Any] = await self._run(self._end_and_claim, argv)
        return list(reply[0]), _claimed(reply[1]), _next_retry(reply[2])

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

    async def retry(self, owner: str, retries: list[tuple[str, int, Fields]]) -> list[str]:
        """Put ``owner``'s running jobs aside for a retry: ``(job_id, delay_ms, fields)`` (the
        error of the failed attempt among the fields); return the ids it still held."""
        if not retries:
            return []
        batch = [[job_id, delay_ms, _flat(fields)] for job_id, delay_ms, fields in retries]
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

    async def keep_ended(self, seconds: float | None) -> None:
        """Let ended jobs expire ``seconds`` after their end (``None``: keep them)."""
        keep_ms = 0 if seconds is None else max(1, round(seconds * 1000))
        await self.client.hset(f"{self.prefix}:settings", {"keep_ms": keep_ms})

    async def leave(self, owner: str) -> None:
        """Forget ``owner``'s stats: its process is gone (cluster_stats)."""
        await self.client.hdel(f"{self.prefix}:processes", [owner])
        await self.client.zrem(f"{self.prefix}:seen", [owner])

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
        """The queue's counters, its waiting, retrying and running jobs, and the stats of the
        processes seen in the last ``seen_within_ms``."""
        reply: list[Any] = await self._run(self._stats, [seen_within_ms], read_only=True)
        counters = {name: int(value) for name, value in _pairs(reply[0]).items()}
        processes = [json.loads(text) for text in reply[4] if text]
        return QueueStats(counters, int(reply[1]), int(reply[2]), int(reply[3]), processes)


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
        Claimed(row[0], row[1], row[2], row[3], row[4] or {}, *row[5:11])
        for row in json.loads(text)
    ]


def _next_retry(value: Any) -> int | None:
    return None if int(value) < 0 else int(value)
