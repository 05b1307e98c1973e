"""The Lua scripts of the Redis job queue (:class:`RedisQueue` in ``_redis_queue.py``), as
source text: each is one step of the queue, atomic on the server.

Keys (one hash tag, so that every script works on Redis Cluster), for queue ``q``:
``{q}:seq`` (submission counter), ``{q}:job:<id>`` (a hash per job), ``{q}:waiting`` (a sorted
set scored by priority whose members start with the zero-padded submission number, so that
Redis orders one priority first in, first out), ``{q}:leases`` (job id scored by the lease's
expiry, in milliseconds of server time), ``{q}:retrying`` (job id scored by when it is due),
``{q}:scheduled`` (jobs given ``delay=``/``at=`` or deferred, not yet due: members as in the
waiting set, scored by their due time in milliseconds of server time),
``{q}:stats`` (counters), ``{q}:settings`` (how long ended jobs are kept), ``{q}:processes``
and ``{q}:seen`` (each process's stats, and when it was last seen), ``{q}:idle`` (per process,
how many of its workers wait for a job and have not been woken), ``{q}:full`` (a submit found no
room), ``{q}:reaper`` (who reaps, for how long), ``{q}:schedule:<name>`` (a hash per periodic
schedule, see ``_redis_book.py``) and ``{q}:schedules`` (their names), and the channels
``{q}:events`` (every process: room in the queue, cancels, a nearer due time, a schedule declared
or removed) and ``{q}:events:<process>`` (the ends of the jobs it submitted, those of them
deferred elsewhere, and its wake-ups).

Due jobs: a retry waits in ``{q}:retrying`` and goes back to its own place in the waiting set
when due; a scheduled job waits in ``{q}:scheduled`` and, when due, *enters* the waiting set
behind the jobs of its priority already waiting (a place number drawn from ``{q}:seq`` after
every job submitted before, kept in its hash as ``place``). ``promote_due`` moves both, at most
a batch of each per call, earliest due first, in the script of whichever process calls first:
every claim, and the reaper. Each claim answers when the next job of either set is due; a script
that schedules a job due earlier than every scheduled job before it says so to every process
(``due:<ms from now>`` on ``{q}:events``). See docs/distributed.md, "Later jobs".

Wake-ups: no job waits while a worker that has not been woken for it is idle. Invariant, after
every script: ``{q}:waiting`` is empty or ``{q}:idle`` is. A process's claim that leaves some of
its workers without a job registers them in ``{q}:idle`` (it found the waiting set empty); every
script that adds to the waiting set (or leaves jobs in it) then calls ``wake``, which takes
registered workers up to the number of waiting jobs, one message ``new`` to each process woken.
So a job costs one wake-up message and one claim, however many processes are idle.

Periodic schedules: a tick's step (:data:`FIRE_SCHEDULE`) is one script that checks that the
schedule is still in the state its caller planned from, writes the next state and submits the
tick's job, entering the waiting set as a scheduled job that came due does. A declaration or a
removal is announced to every process (``schedule:`` and ``unschedule:`` on ``{q}:events``), so
that each keeps its copy of the schedules without reading them again. See docs/distributed.md,
"Periodic schedules".

Flow control (keys and their limits): a job with a key waits in its key's sorted set
``{q}:kq:<key>`` (members and scores as in the waiting set); ``{q}:waiting`` holds at most one
of them per key, the key's best (its *head*, noted in ``{q}:khead``), and only while the key is
under its limit. So a claim pops eligible jobs only, O(log n), whatever the backlog of the keys
at their limit (no scan). ``{q}:krun`` counts each key's running jobs (one more at each claim,
one less when the job stops running: its end, a retry or deferral, a hand-back, a lapsed lease);
``{q}:kwin:<key>`` is the list of a rate-limited key's latest starts (ms, newest first, at most
``count``, expiring after ``per``); a key whose window holds ``count`` starts younger than
``per`` is parked in ``{q}:krate`` (scored by when its window frees a start; ``promote_due`` lets
it in again, and the earliest such time is announced and answered like a due time). A key at its
``max_running`` leaves the waiting set until one of its jobs stops. ``{q}:limits`` holds each
key's own limit (JSON) and, under the field ``""``, the queue's default (``key_limit``);
``{q}:kwait`` the keys with jobs in their set, and ``{q}:kwaiting`` how many jobs those sets
hold (the queue's waiting jobs are ``ZCARD {q}:waiting + {q}:kwaiting - HLEN {q}:khead``).

Every script but :data:`OPEN` begins with the shared library ``_LIB`` and is called with
``KEYS[1]`` the prefix ``{q}`` and ``KEYS[2]`` the epoch its caller knows: unless that is the
queue's ``{q}:epoch``, it touches nothing and answers an error whose text holds
:data:`LOST_CODE`. The comment above each script says what its ``ARGV`` holds and what it
returns.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CANCEL",
    "DECLARE_SCHEDULE",
    "END_AND_CLAIM",
    "FETCH",
    "FIRE_SCHEDULE",
    "GIVE_BACK",
    "LIMITS",
    "LOAD_SCHEDULES",
    "LOST_CODE",
    "OPEN",
    "PROGRESS",
    "REAP",
    "REMOVE_SCHEDULE",
    "RENEW",
    "RESTORE_SCHEDULES",
    "RETRY",
    "SET_LIMIT",
    "STATS",
    "SUBMIT",
]

LOST_CODE: Final = "JOBPOOL_QUEUE_LOST"  # the error the scripts answer with a stale epoch

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

-- Wake registered idle workers for the jobs waiting (see the module): take them from
-- {q}:idle up to the number of waiting jobs, and send each process woken one 'new'.
local function wake()
  local idle_key = prefix .. ':idle'
  if redis.call('EXISTS', idle_key) == 0 then
    return
  end
  local n = redis.call('ZCARD', prefix .. ':waiting')
  if n == 0 then
    return
  end
  local idle = redis.call('HGETALL', idle_key)
  for i = 1, #idle, 2 do
    if n <= 0 then
      break
    end
    local owner, workers = idle[i], tonumber(idle[i + 1])
    if workers <= n then
      redis.call('HDEL', idle_key, owner)
    else
      redis.call('HINCRBY', idle_key, owner, -n)
    end
    n = n - workers
    redis.call('PUBLISH', prefix .. ':events:' .. owner, 'new')
  end
end

-- Record that owner has idle workers left without a job (0: none) after its claim.
local function register_idle(owner, idle)
  if idle > 0 then
    redis.call('HSET', prefix .. ':idle', owner, idle)
  else
    redis.call('HDEL', prefix .. ':idle', owner)
  end
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

-- The server's time (ms), read once per script.
local clock_ms = nil
local function clock()
  if clock_ms == nil then
    clock_ms = now_ms()
  end
  return clock_ms
end

-- Flow control (see the module). A key's limit: its own, else the queue's default (field ''),
-- decoded once per script; false for none.
local limits_read = {}
local function limit_of(k)
  local l = limits_read[k]
  if l == nil then
    local raw = redis.call('HGET', prefix .. ':limits', k)
    if not raw then
      raw = redis.call('HGET', prefix .. ':limits', '')
    end
    l = false
    if raw then
      l = cjson.decode(raw)
      if l['max_running'] == cjson.null then
        l['max_running'] = nil
      end
      if l['rate'] == cjson.null then
        l['rate'] = nil
      end
    end
    limits_read[k] = l
  end
  return l
end

-- A rate's window in ms, one more: the starts are ms of server time rounded down, so a start
-- is never within ``per`` of the count-th before it.
local function window_ms(rate)
  return math.ceil(rate['per'] * 1000) + 1
end

-- When key k may start a job: now if it may now, nil while it runs its max_running, else
-- when its window of starts frees one (ms).
local function key_free_at(k, now, running)
  local l = limit_of(k)
  if not l then
    return now
  end
  if l['max_running'] then
    if running == nil then
      running = tonumber(redis.call('HGET', prefix .. ':krun', k) or '0')
    end
    if running >= l['max_running'] then
      return nil
    end
  end
  local rate = l['rate']
  if rate then
    local win = prefix .. ':kwin:' .. k
    if redis.call('LLEN', win) >= rate['count'] then
      local free = tonumber(redis.call('LINDEX', win, rate['count'] - 1)) + window_ms(rate)
      if free > now then
        return free
      end
    end
  end
  return now
end

-- Put key k's best waiting job in the waiting set, unless one is there already, if k may
-- start a job now; else leave k parked (for its window: in {q}:krate, the earliest of which
-- is announced as a due time). Returns the (score, member) put in the waiting set, if any.
-- no_head: the caller knows k has no head in the waiting set; running: its running count, if
-- the caller has it.
local function key_offer(k, no_head, running)
  if not no_head and redis.call('HEXISTS', prefix .. ':khead', k) == 1 then
    return nil
  end
  local head = redis.call('ZRANGE', prefix .. ':kq:' .. k, 0, 0, 'WITHSCORES')
  if #head == 0 then
    return nil
  end
  local now = clock()
  local free = key_free_at(k, now, running)
  if free == nil then
    return nil  -- at its max_running: the stop of one of its jobs offers it again
  end
  if free > now then
    if not redis.call('ZSCORE', prefix .. ':krate', k) then
      redis.call('ZADD', prefix .. ':krate', free, k)
      if redis.call('ZRANGE', prefix .. ':krate', 0, 0)[1] == k then
        publish('due:' .. (free - now))
      end
    end
    return nil
  end
  local l = limit_of(k)
  if l and l['rate'] then
    redis.call('ZREM', prefix .. ':krate', k)  -- (a parked key let in by a stop)
  end
  redis.call('ZADD', prefix .. ':waiting', head[2], head[1])
  redis.call('HSET', prefix .. ':khead', k, head[1])
  return {tonumber(head[2]), head[1]}
end

-- Take key k's head out of the waiting set (its limit changed: offer it again after).
local function key_withdraw(k)
  local head = redis.call('HGET', prefix .. ':khead', k)
  if head then
    redis.call('ZREM', prefix .. ':waiting', head)
    redis.call('HDEL', prefix .. ':khead', k)
  end
  redis.call('ZREM', prefix .. ':krate', k)
end

-- A job of key k starts waiting: score its priority, m its member.
local function key_add(k, score, m)
  local kq = prefix .. ':kq:' .. k
  if redis.call('ZADD', kq, score, m) == 1 then
    redis.call('INCR', prefix .. ':kwaiting')
    redis.call('SADD', prefix .. ':kwait', k)
  end
  local head = redis.call('HGET', prefix .. ':khead', k)
  if head then
    local best = redis.call('ZRANGE', kq, 0, 0)[1]
    if best ~= head then  -- it goes before the key's head: it takes the head's place
      redis.call('ZREM', prefix .. ':waiting', head)
      redis.call('ZADD', prefix .. ':waiting', score, best)
      redis.call('HSET', prefix .. ':khead', k, best)
    end
  else
    key_offer(k)
  end
end

-- A waiting job of key k (member m) leaves: claimed (popped: then it was the key's head) or
-- cancelled. If it was the key's head, the key is out of the waiting set until offered again.
local function key_remove(k, m, popped)
  local kq = prefix .. ':kq:' .. k
  if redis.call('ZREM', kq, m) == 1 then
    redis.call('DECR', prefix .. ':kwaiting')
    if redis.call('ZCARD', kq) == 0 then
      redis.call('SREM', prefix .. ':kwait', k)
    end
  end
  if popped then
    redis.call('HDEL', prefix .. ':khead', k)
  elseif redis.call('HGET', prefix .. ':khead', k) == m then
    redis.call('HDEL', prefix .. ':khead', k)
    redis.call('ZREM', prefix .. ':waiting', m)
  end
end

-- A job of key k was claimed at now (its head, popped and removed: key_remove): count it
-- running and its start in the window; offer the key's next job. Returns what key_offer put
-- in the waiting set.
local function key_started(k, now)
  local running = redis.call('HINCRBY', prefix .. ':krun', k, 1)
  local l = limit_of(k)
  if l and l['rate'] then
    local win = prefix .. ':kwin:' .. k
    redis.call('LPUSH', win, now)
    redis.call('LTRIM', win, 0, l['rate']['count'] - 1)
    redis.call('PEXPIRE', win, window_ms(l['rate']))
  end
  return key_offer(k, true, running)
end

-- A running job of key k stopped running (ended, retrying, deferred, handed back, lapsed): its
-- slot is free; offer the key's next job. Called once per claim of the job, by the script that
-- takes it from its holder (the checks of its owner and lease make that one script).
local function key_stopped(k)
  local running = redis.call('HINCRBY', prefix .. ':krun', k, -1)
  if running <= 0 then
    redis.call('HDEL', prefix .. ':krun', k)
    running = 0
  end
  key_offer(k, false, running)
end

-- The waiting jobs (the bound counts them): the waiting set, and the keys' sets but their
-- heads (which are in both).
local function waiting_count()
  return redis.call('ZCARD', prefix .. ':waiting')
    + tonumber(redis.call('GET', prefix .. ':kwaiting') or '0')
    - redis.call('HLEN', prefix .. ':khead')
end

-- A job waits (score: its priority; m: its member): in the waiting set, or in its key's set.
local function queue_job(k, score, m)
  if k then
    key_add(k, score, m)
  else
    redis.call('ZADD', prefix .. ':waiting', score, m)
  end
end

-- Put a job back in the waiting set, in the place its priority and number give it (its
-- submission number, or the place it took when it came due after being scheduled).
local function requeue(id)
  local key = job_key(id)
  local job = redis.call('HMGET', key, 'priority', 'seq', 'place', 'key')
  redis.call('HSET', key, 'status', 'queued')
  queue_job(job[4], job[1], member(job[3] or job[2], id))
end

-- A scheduled job that is due enters the waiting set behind every job of its priority
-- already there (a place numbered after every job submitted so far), beyond the bound.
local function enter(id)
  local key = job_key(id)
  local place = redis.call('INCR', prefix .. ':seq')
  local job = redis.call('HMGET', key, 'priority', 'key')
  redis.call('HSET', key, 'status', 'queued', 'place', place)
  queue_job(job[2], job[1], member(place, id))
end

-- When a job given a delay (ms, > 0) at now is due: now_ms() rounds the server's time down,
-- so one ms more, and a job is never due before its delay has passed.
local function due_after(now, delay)
  return now + delay + 1
end

-- The job (submitted as number seq) waits in {q}:scheduled until due (ms, server time).
local function schedule(id, seq, due)
  redis.call('HSET', job_key(id), 'status', 'scheduled', 'scheduled_for', due / 1000)
  redis.call('ZADD', prefix .. ':scheduled', due, member(seq, id))
end

-- Schedule the jobs of later, a list of {id, seq, due}; if the earliest of them is due before
-- every job scheduled so far, tell every process, so that their timers move to it (due:<ms
-- from now>; see docs/distributed.md, "Later jobs").
local function schedule_all(later, now)
  if #later == 0 then
    return
  end
  local first = redis.call('ZRANGE', prefix .. ':scheduled', 0, 0, 'WITHSCORES')
  local nearest = nil
  for _, s in ipairs(later) do
    schedule(s[1], s[2], s[3])
    if nearest == nil or s[3] < nearest then
      nearest = s[3]
    end
  end
  if #first == 0 or nearest < tonumber(first[2]) then
    publish('due:' .. math.max(0, nearest - now))
  end
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
  local k = redis.call('HGET', key, 'key')
  if k then
    key_stopped(k)
  end
end

-- How long an ended job stays readable (ms; 0: until deleted), as the queue's settings say.
local keep_ms = nil

-- An ended job's hash expires keep_ms from now (if the queue's settings say so).
local function expire(key)
  if keep_ms == nil then
    keep_ms = tonumber(redis.call('HGET', prefix .. ':settings', 'keep_ms') or '0')
  end
  if keep_ms > 0 then
    redis.call('PEXPIRE', key, keep_ms)
  end
end

local function finish(id, status, now)
  local key = job_key(id)
  redis.call('HSET', key, 'status', status, 'finished_at', now / 1000)
  count(status)
  expire(key)
end

-- Commands that take any number of members (ZADD, ZREM) get them in slices: unpack() of a
-- Lua table has a limit, and a call may carry the ends or claims of thousands of workers.
local SLICE = 1000

local function zadd_all(key, score, ids)
  for i = 1, #ids, SLICE do
    local args = {}
    for j = i, math.min(i + SLICE - 1, #ids) do
      args[#args+1] = score
      args[#args+1] = ids[j]
    end
    redis.call('ZADD', key, unpack(args))
  end
end

local function zrem_all(key, ids)
  for i = 1, #ids, SLICE do
    redis.call('ZREM', key, unpack(ids, i, math.min(i + SLICE - 1, #ids)))
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
-- What release, finish and announce do for each job, with one HMGET and one HSET per job and
-- the leases, counters and announcements once per call (end_and_claim runs once per trip of
-- every busy process).
local function end_jobs(owner, ends, now)
  local done, ended, counts, by, stopped = {}, {}, {}, {}, {}
  local finished_at = now / 1000
  for _, e in ipairs(cjson.decode(ends)) do
    local id, status, fields = e[1], e[2], e[3]
    local key = job_key(id)
    local job = redis.call('HMGET', key, 'owner', 'status', 'submitter', 'ended_by', 'key')
    if job[1] == owner and job[2] == 'running' then
      if job[5] then
        stopped[#stopped+1] = job[5]
      end
      -- the fields its holder sent, then the end's own (never among them)
      fields[#fields+1] = 'status'
      fields[#fields+1] = status
      fields[#fields+1] = 'finished_at'
      fields[#fields+1] = finished_at
      fields[#fields+1] = 'ended_by'
      fields[#fields+1] = owner
      redis.call('HSET', key, unpack(fields))
      redis.call('HDEL', key, 'owner')
      expire(key)
      counts[status] = (counts[status] or 0) + 1
      local who = job[3] or ''
      if not by[who] then
        by[who] = {}
      end
      table.insert(by[who], id)
      ended[#ended+1] = id
      done[#done+1] = id
    elseif job[4] == owner and job[2] == status then
      done[#done+1] = id
    end
  end
  zrem_all(prefix .. ':leases', ended)
  for status, n in pairs(counts) do
    redis.call('HINCRBY', prefix .. ':stats', status, n)
  end
  for who, ids in pairs(by) do
    redis.call('PUBLISH', prefix .. ':events:' .. who, 'ended:' .. cjson.encode(ids))
  end
  for _, k in ipairs(stopped) do
    key_stopped(k)
  end
  return done
end

-- Let in the jobs of one due set that are due by now, earliest first, at most PROMOTE (a
-- claim's answer then says the next is due at once): a retry ({q}:retrying, members are ids)
-- goes back to its place in the waiting set, a scheduled job ({q}:scheduled, members as in the
-- waiting set) enters it (and among equal due times in submission order). Return when the
-- earliest job left is due (ms), or nil. Nothing due, the common case: one command.
local PROMOTE = 1000
local function promote_set(name, now, scheduled)
  local set = prefix .. name
  local first = redis.call('ZRANGE', set, 0, 0, 'WITHSCORES')
  if #first == 0 then
    return nil
  elseif tonumber(first[2]) > now then
    return tonumber(first[2])
  end
  local due = redis.call('ZRANGEBYSCORE', set, '-inf', now, 'LIMIT', 0, PROMOTE)
  zrem_all(set, due)
  for _, m in ipairs(due) do
    if scheduled then
      enter(string.sub(m, 18))
    else
      requeue(m)
    end
  end
  first = redis.call('ZRANGE', set, 0, 0, 'WITHSCORES')
  if #first == 0 then
    return nil
  end
  return tonumber(first[2])
end

-- Offer again the keys whose window has freed a start by now ({q}:krate), at most PROMOTE;
-- return when the next of them frees one (ms), or nil.
local function promote_keys(now)
  local set = prefix .. ':krate'
  local first = redis.call('ZRANGE', set, 0, 0, 'WITHSCORES')
  if #first == 0 then
    return nil
  elseif tonumber(first[2]) > now then
    return tonumber(first[2])
  end
  local due = redis.call('ZRANGEBYSCORE', set, '-inf', now, 'LIMIT', 0, PROMOTE)
  zrem_all(set, due)
  for _, k in ipairs(due) do
    key_offer(k)
  end
  first = redis.call('ZRANGE', set, 0, 0, 'WITHSCORES')
  if #first == 0 then
    return nil
  end
  return tonumber(first[2])
end

local function earliest(a, b)
  if a == nil or (b ~= nil and b < a) then
    return b
  end
  return a
end

-- Let in the retries and scheduled jobs that are due (promote_set), and the keys whose window
-- freed a start; return when the next of any of them is due (ms), or nil.
local function promote_due(now)
  local retry = promote_set(':retrying', now, false)
  local scheduled = promote_set(':scheduled', now, true)
  return earliest(earliest(retry, scheduled), promote_keys(now))
end

-- Put due retries back in their place and let due scheduled jobs in (promote_due), pop up to
-- count jobs for owner with a lease each, as one JSON list of [id, name, args, priority,
-- options, attempts, crashes, seq, interrupted, submitted_at, retry_at, scheduled_for,
-- deferrals] (built from the stored JSON text as it is, not decoded and encoded again); also
-- say in how many ms the next retry or scheduled job is due (0: more are due now; -1: none).
local function claim(owner, count, lease, now)
  local soonest = promote_due(now)
  local out = {}
  if count > 0 then
    local ids = {}
    -- A keyed job's claim offers its key's next job, which may go before the jobs popped
    -- with it: from the first of those it goes before, they go back (as they were), and the
    -- claim pops again for the workers left (bounded by count). best: the best job offered
    -- so far in this pop, {score, member}.
    local more = true
    while more and #out < count do
      more = false
      local best = nil
      local popped = redis.call('ZPOPMIN', prefix .. ':waiting', count - #out)
      for i = 1, #popped, 2 do
        if not more and best then
          local score = tonumber(popped[i + 1])
          more = best[1] < score or (best[1] == score and best[2] < popped[i])
        end
        if more then  -- an offered job goes first: back to the waiting set, unclaimed
          redis.call('ZADD', prefix .. ':waiting', popped[i + 1], popped[i])
        else
          local id = string.sub(popped[i], 18)
          local key = job_key(id)
          local job = redis.call('HMGET', key, 'name', 'args', 'priority', 'options', 'crashes',
                                 'seq', 'interrupted', 'retry_at', 'submitted_at', 'attempts',
                                 'scheduled_for', 'deferrals', 'key')
          local attempts = tonumber(job[10] or '0') + 1
          redis.call('HSET', key, 'attempts', attempts, 'status', 'running', 'owner', owner,
                     'started_at', now / 1000)
          if job[13] then
            key_remove(job[13], popped[i], true)
            local offered = key_started(job[13], now)
            if offered then
              if not best or offered[1] < best[1]
                  or (offered[1] == best[1] and offered[2] < best[2]) then
                best = offered
              end
            end
          end
          ids[#ids+1] = id
          out[#out+1] = '[' .. cjson.encode(id) .. ',' .. cjson.encode(job[1]) .. ',' .. job[2]
            .. ',' .. job[3] .. ',' .. (job[4] ~= '' and job[4] or 'null') .. ',' .. attempts
            .. ',' .. job[5] .. ',' .. job[6] .. ',' .. (job[7] or '0') .. ',' .. job[9]
            .. ',' .. (job[8] or 'null') .. ',' .. (job[11] or 'null') .. ',' .. (job[12] or '0')
            .. ',' .. (job[13] and cjson.encode(job[13]) or 'null') .. ']'
        end
      end
      if best then
        more = true  -- jobs were offered: the workers left may take them
      end
    end
    zadd_all(prefix .. ':leases', now + lease, ids)
    if #ids > 0 then
      room()
    end
  end
  register_idle(owner, count - #out)
  wake()
  local due_in = -1
  soonest = earliest(soonest, tonumber((redis.call('ZRANGE', prefix .. ':krate', 0, 0,
                                                   'WITHSCORES'))[2]))
  if soonest then
    due_in = math.max(0, soonest - now)
  end
  return '[' .. table.concat(out, ',') .. ']', due_in
end
"""

# ARGV: the bound on waiting jobs (-1: none), the submitter (whose channel hears of the ends),
# then a JSON list of [id, name, args (JSON text), priority, options (JSON text, or "" for
# none), delay, key ("" for none)] per job: delay is -1 for a job to queue now, else the ms
# from now (server time) until it is due: such a job is scheduled (never refused for want of
# room; with a delay of 0, it enters the waiting set at once, beyond the bound). A job with a
# key waits in its key's set (see the module). Returns (per job its number, -1
# if a live job has its id, -2 if there was no room; the number of waiting jobs after). One
# HGET and one HSET per job (and a DEL if an ended job had its id); the submission counter,
# the waiting set and the counters once per call.
SUBMIT: Final = (
    _LIB
    + """
local now = clock()
local bound = tonumber(ARGV[1])
local waiting = waiting_count()
local seq_key = prefix .. ':seq'
local first_seq = tonumber(redis.call('GET', seq_key) or '0')
local seq = first_seq
local out, members, later, keyed = {}, {}, {}, {}
for _, job in ipairs(cjson.decode(ARGV[3])) do
  local id, name, args, priority, options, delay = job[1], job[2], job[3], job[4], job[5], job[6]
  local k = job[7]
  local key = job_key(id)
  local status = redis.call('HGET', key, 'status')
  if status == 'queued' or status == 'running' or status == 'retrying'
      or status == 'scheduled' then
    out[#out+1] = -1
  elseif delay < 0 and bound >= 0 and waiting >= bound then
    redis.call('SET', prefix .. ':full', 1)
    out[#out+1] = -2
  else
    seq = seq + 1
    if status then  -- an ended job of the same id, still kept: this one replaces it
      redis.call('DEL', key)
    end
    if k ~= '' then
      redis.call('HSET', key, 'name', name, 'args', args, 'priority', priority,
                 'options', options, 'status', 'queued', 'attempts', 0, 'crashes', 0,
                 'interrupted', 0, 'seq', seq, 'submitted_at', now / 1000,
                 'submitter', ARGV[2], 'key', k)
    else
      redis.call('HSET', key, 'name', name, 'args', args, 'priority', priority,
                 'options', options, 'status', 'queued', 'attempts', 0, 'crashes', 0,
                 'interrupted', 0, 'seq', seq, 'submitted_at', now / 1000,
                 'submitter', ARGV[2])
    end
    if delay > 0 then
      later[#later+1] = {id, seq, due_after(now, delay)}
    else
      if delay == 0 then  -- due already: it entered as it came, at the end of its priority
        redis.call('HSET', key, 'scheduled_for', now / 1000)
      end
      if k ~= '' then
        keyed[#keyed+1] = {k, priority, member(seq, id)}
      else
        members[#members+1] = priority
        members[#members+1] = member(seq, id)
      end
      waiting = waiting + 1
    end
    out[#out+1] = seq
  end
end
if seq > first_seq then
  redis.call('SET', seq_key, seq)
  for i = 1, #members, 2 * SLICE do  -- (score, member) pairs
    local last = math.min(i + 2 * SLICE - 1, #members)
    redis.call('ZADD', prefix .. ':waiting', unpack(members, i, last))
  end
  for _, q in ipairs(keyed) do
    key_add(q[1], q[2], q[3])
  end
  schedule_all(later, now)
  redis.call('HINCRBY', prefix .. ':stats', 'submitted', seq - first_seq)
end
wake()
return {out, waiting}
"""
)

# ARGV: owner, count, lease_ms, the ends (see end_jobs): a process ends some jobs and takes as
# many new ones in one round trip.
END_AND_CLAIM: Final = (
    _LIB
    + """
local now = clock()
local done = end_jobs(ARGV[1], ARGV[4], now)
local claimed, due_in = claim(ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), now)
return {done, claimed, due_in}
"""
)

# ARGV: owner, a JSON list of [id, delay in ms, fields, 1 if deferred else 0] per job: owner's
# running jobs go aside until due. A retry (its failed attempt's error among the fields) waits
# in {q}:retrying and is counted as retried; a deferred job (it raised Defer) is scheduled, or
# with a delay of 0 enters the waiting set at once, and counts a deferral (not against its
# retry policy, see Claimed.deferrals). A job deferred by another process than its submitter's
# is announced on the submitter's channel (scheduled:[ids]), whose handle follows it.
RETRY: Final = (
    _LIB
    + """
local owner, now = ARGV[1], clock()
local done, cancelled, entered, later, by = {}, {}, 0, {}, {}
for _, r in ipairs(cjson.decode(ARGV[2])) do
  local id, due, deferred = r[1], now + r[2], r[4] == 1
  if holds(id, owner) then
    release(id, r[3])
    if cancel_if_asked(id, now) then
      cancelled[#cancelled+1] = id
    elseif not deferred then
      redis.call('HSET', job_key(id), 'status', 'retrying', 'retry_at', due / 1000)
      redis.call('ZADD', prefix .. ':retrying', due, id)
      count('retried')
    else
      local key = job_key(id)
      redis.call('HINCRBY', key, 'deferrals', 1)
      if r[2] > 0 then
        local job = redis.call('HMGET', key, 'seq', 'submitter')
        later[#later+1] = {id, job[1], due_after(now, r[2])}
        local who = job[2] or ''
        if who ~= owner then
          by[who] = by[who] or {}
          table.insert(by[who], id)
        end
      else
        redis.call('HSET', key, 'scheduled_for', due / 1000)
        enter(id)
        entered = entered + 1
      end
    end
    done[#done+1] = id
  end
end
wake()
schedule_all(later, now)
for who, ids in pairs(by) do
  redis.call('PUBLISH', prefix .. ':events:' .. who, 'scheduled:' .. cjson.encode(ids))
end
announce(cancelled)
return done
"""
)

# ARGV: owner, a JSON list of [id, fields] per job: progress of running jobs, if owner holds
# them.
PROGRESS: Final = (
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
GIVE_BACK: Final = (
    _LIB
    + """
local owner, now, max_crashes = ARGV[1], clock(), tonumber(ARGV[3])
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
wake()
announce(cancelled)
return done
"""
)

# ARGV: owner, lease_ms, the process's stats (JSON), then the ids. Also records that the
# process is alive (cluster_stats). Returns (the ids it no longer holds, the ids it holds
# that were cancelled meanwhile).
RENEW: Final = (
    _LIB
    + """
local owner, now = ARGV[1], clock()
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
REAP: Final = (
    _LIB
    + """
local max_crashes, now = tonumber(ARGV[1]), clock()
if tonumber(ARGV[2]) > 0 and not redis.call('SET', prefix .. ':reaper', 1, 'NX', 'PX', ARGV[2]) then
  return {0, 0}
end
-- processes not seen for an hour are forgotten
local gone = redis.call('ZRANGEBYSCORE', prefix .. ':seen', '-inf', now - 3600000)
for _, owner in ipairs(gone) do
  redis.call('HDEL', prefix .. ':processes', owner)
  redis.call('ZREM', prefix .. ':seen', owner)
  redis.call('HDEL', prefix .. ':idle', owner)
end
-- idle workers of processes not seen for three reap intervals (a lease) are gone
if tonumber(ARGV[2]) > 0 then
  for _, owner in ipairs(redis.call('HKEYS', prefix .. ':idle')) do
    local seen = redis.call('ZSCORE', prefix .. ':seen', owner)
    if seen and tonumber(seen) < now - 3 * tonumber(ARGV[2]) then
      redis.call('HDEL', prefix .. ':idle', owner)
    end
  end
end
local lapsed = redis.call('ZRANGEBYSCORE', prefix .. ':leases', '-inf', now, 'LIMIT', 0, 1000)
local requeued, ended = 0, {}
for _, id in ipairs(lapsed) do
  local holder = redis.call('HGET', job_key(id), 'owner')
  release(id, {})
  -- a crash, unless its process reports a stall later (see GIVE_BACK)
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
-- retries and scheduled jobs due (if no process claims: their timers fire only for free
-- workers, and a retry's process may be gone), and a wake-up that went to a process which
-- could not take it (gone, or stopping)
promote_due(now)
wake()
announce(ended)
return {requeued, #ended}
"""
)

# ARGV: a new epoch. The queue's epoch: the one it has, else the new one (now the queue's).
# It makes no epoch check: this script is how a caller learns the epoch.
OPEN: Final = """
local key = KEYS[1] .. ':epoch'
local epoch = redis.call('GET', key)
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', key, epoch)
end
return epoch
"""

# ARGV: the id. A waiting, retrying or scheduled job ends cancelled; a running one's process is
# told.
CANCEL: Final = (
    _LIB
    + """
local id = ARGV[1]
local job = redis.call('HMGET', job_key(id), 'status', 'seq', 'place', 'key')
if job[1] == 'queued' then
  local m = member(job[3] or job[2], id)  -- (see requeue)
  if job[4] then
    key_remove(job[4], m)
    key_offer(job[4])
    wake()
  else
    redis.call('ZREM', prefix .. ':waiting', m)
  end
  room()
elseif job[1] == 'retrying' then
  redis.call('ZREM', prefix .. ':retrying', id)
elseif job[1] == 'scheduled' then
  redis.call('ZREM', prefix .. ':scheduled', member(job[2], id))
elseif job[1] == 'running' then
  -- its process is told now; and if it does not hear, the job ends at its next step
  redis.call('HSET', job_key(id), 'cancel_requested', 1)
  publish('cancel:' .. id)
  return 'running'
else
  return 'not live'
end
redis.call('HSET', job_key(id), 'error_message', 'cancelled')
finish(id, 'cancelled', clock())
announce({id})
return 'cancelled'
"""
)

# ARGV: the key ("": the queue's default, key_limit), the limit as JSON ("" to remove it). The
# key's jobs are offered again under the new limit (for the default: every key with jobs
# waiting); a lowered limit stops nothing that runs. Returns 1.
SET_LIMIT: Final = (
    _LIB
    + """
local k, limit = ARGV[1], ARGV[2]
if limit == '' then
  redis.call('HDEL', prefix .. ':limits', k)
else
  redis.call('HSET', prefix .. ':limits', k, limit)
end
local keys = {k}
if k == '' then
  keys = redis.call('SMEMBERS', prefix .. ':kwait')
end
for _, key in ipairs(keys) do
  key_withdraw(key)
  key_offer(key)
end
wake()
return 1
"""
)

# No ARGV. Every limit: the flat list of the hash {q}:limits (key, JSON; "" for the default).
LIMITS: Final = (
    _LIB
    + """
return redis.call('HGETALL', prefix .. ':limits')
"""
)

# ARGV: the ids. Every field of each job (an empty list for an unknown id).
FETCH: Final = (
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
# list, waiting, retrying, running, the stats (JSON) of the processes seen since, scheduled).
STATS: Final = (
    _LIB
    + """
local now = clock()
local seen = redis.call('ZRANGEBYSCORE', prefix .. ':seen', now - tonumber(ARGV[1]), '+inf')
local processes = {}
if #seen > 0 then
  processes = redis.call('HMGET', prefix .. ':processes', unpack(seen))
end
return {
  redis.call('HGETALL', prefix .. ':stats'),
  waiting_count(),
  redis.call('ZCARD', prefix .. ':retrying'),
  redis.call('ZCARD', prefix .. ':leases'),
  processes,
  redis.call('ZCARD', prefix .. ':scheduled'),
}
"""
)


# What the scripts of periodic schedules share (after _LIB): a schedule's hash (its fields are
# text, copied and compared as they are; see _redis_book.py), and the announcement of its
# declaration to every process: schedule:[declaring process, name, its fields as a flat list].
_SCHEDULES: Final = (
    _LIB
    + """
local function schedule_key(name)
  return prefix .. ':schedule:' .. name
end

local function schedule_row(name)
  return redis.call('HGETALL', schedule_key(name))
end

local function announce_schedule(owner, name)
  publish('schedule:' .. cjson.encode({owner, name, schedule_row(name)}))
end

-- Whether the job id is live (it has not ended): for a schedule's overlap, and a tick's id.
local LIVE = {queued = true, running = true, retrying = true, scheduled = true}
local function live(id)
  return LIVE[redis.call('HGET', job_key(id), 'status') or ''] == true
end
"""
)

# No ARGV. Every schedule: a list of [name, its fields as a flat list].
LOAD_SCHEDULES: Final = (
    _SCHEDULES
    + """
local out = {}
for i, name in ipairs(redis.call('SMEMBERS', prefix .. ':schedules')) do
  out[i] = {name, schedule_row(name)}
end
return out
"""
)

# ARGV: the declaring process, the name, the declaration's definition (canonical text), the
# fields a declaration writes (JSON list), the counters and last run of a new schedule (JSON
# list). A schedule of that name with the same definition is kept as it is (0); else the
# declaration is written, a replaced schedule keeping its counters and last run, and announced
# (1). Returns that and the fields of the schedule kept.
DECLARE_SCHEDULE: Final = (
    _SCHEDULES
    + """
local owner, name = ARGV[1], ARGV[2]
local key = schedule_key(name)
local current = redis.call('HGET', key, 'definition')
if current == ARGV[3] then
  return {0, schedule_row(name)}
end
redis.call('HSET', key, unpack(cjson.decode(ARGV[4])))
if not current then
  redis.call('HSET', key, unpack(cjson.decode(ARGV[5])))
  redis.call('SADD', prefix .. ':schedules', name)
end
announce_schedule(owner, name)
return {1, schedule_row(name)}
"""
)

# ARGV: the removing process, the name. Returns 1 if there was such a schedule (its removal is
# announced: unschedule:[process, name]), else 0.
REMOVE_SCHEDULE: Final = (
    _SCHEDULES
    + """
if redis.call('DEL', schedule_key(ARGV[2])) == 0 then
  return 0
end
redis.call('SREM', prefix .. ':schedules', ARGV[2])
publish('unschedule:' .. cjson.encode({ARGV[1], ARGV[2]}))
return 1
"""
)

# ARGV: the restoring process, then per schedule its name, the fields a declaration writes and
# its counters and last run (JSON lists): after Redis lost the queue, a process puts back the
# schedules it has copies of, each unless the queue has one of that name already (another
# process restored it first, or it was declared anew). Each one written is announced. Returns
# [name, fields] of each schedule kept.
RESTORE_SCHEDULES: Final = (
    _SCHEDULES
    + """
local out = {}
for i = 2, #ARGV, 3 do
  local name = ARGV[i]
  local key = schedule_key(name)
  if redis.call('EXISTS', key) == 0 then
    redis.call('HSET', key, unpack(cjson.decode(ARGV[i + 1])))
    redis.call('HSET', key, unpack(cjson.decode(ARGV[i + 2])))
    redis.call('SADD', prefix .. ':schedules', name)
    announce_schedule(ARGV[1], name)
  end
  out[#out+1] = {name, schedule_row(name)}
end
return out
"""
)

# A tick's step. ARGV: 1 the firing process, 2 the name, 3-5 the state it planned from (its
# definition's text, anchor and handled_until), 6 the fields of the step (JSON list), 7 those
# of the step with its tick skipped instead ('' without a job), 8 the tick's job ('': none) as
# JSON [id, name, args (JSON text), priority (text), options (JSON text or ''), the tick
# (seconds, text)], 9 the id of the schedule's last job ('': none), 10 '1' if a tick is skipped
# while that job is live (overlap "skip"), 11 the step's tick (ms, the caller's clock), 12 how
# far (ms) that may be ahead of the server's clock.
# Unless the schedule is still in that state: nothing, and 'gone' (no such schedule) or 'kept'
# with its fields. If the tick is further ahead of the server's clock than allowed: nothing,
# and 'early' with how far ahead (ms). Else the step is written, and with a job: it is skipped
# ('skipped': the fields of ARGV 7) if the last job is live (overlap) or its own id is, else
# the job is submitted, entering the waiting set behind the jobs of its priority and beyond the
# bound as a scheduled job that came due (registered idle workers are woken), and 'fired' with
# its submission number; without a job, 'moved'.
FIRE_SCHEDULE: Final = (
    _SCHEDULES
    + """
local owner, name = ARGV[1], ARGV[2]
local key = schedule_key(name)
local kept = redis.call('HMGET', key, 'definition', 'anchor', 'handled_until')
if not kept[1] then
  return {'gone'}
end
if kept[1] ~= ARGV[3] or kept[2] ~= ARGV[4] or kept[3] ~= ARGV[5] then
  return {'kept', schedule_row(name)}
end
local now = clock()
local ahead = tonumber(ARGV[11]) - now
if ahead > tonumber(ARGV[12]) then
  return {'early', ahead}
end
local fields, outcome, seq = ARGV[6], 'moved', 0
if ARGV[8] ~= '' then
  local job = cjson.decode(ARGV[8])
  local id = job[1]
  if (ARGV[10] == '1' and ARGV[9] ~= '' and live(ARGV[9])) or live(id) then
    fields, outcome = ARGV[7], 'skipped'
  else
    seq = redis.call('INCR', prefix .. ':seq')
    local job_hash = job_key(id)
    redis.call('DEL', job_hash)  -- an ended job of the same id, still kept: this one replaces it
    redis.call('HSET', job_hash, 'name', job[2], 'args', job[3], 'priority', job[4],
               'options', job[5], 'status', 'queued', 'attempts', 0, 'crashes', 0,
               'interrupted', 0, 'seq', seq, 'submitted_at', now / 1000, 'submitter', owner,
               'scheduled_for', job[6])
    redis.call('ZADD', prefix .. ':waiting', job[4], member(seq, id))
    count('submitted')
    wake()
    outcome = 'fired'
  end
end
redis.call('HSET', key, unpack(cjson.decode(fields)))
return {outcome, seq}
"""
)
