"""The execution queues of a :class:`~flask_jobify.stores.redis.RedisStore`,
and the count of an owner's active jobs.

A queue's rows (see :mod:`flask_jobify.stores.slots` for the rules) are
three keys: ``{prefix}:slots:{queue}`` (a hash: the id of each job holding
a slot to ``"{run number} {bound}"``), ``{prefix}:waiting:{queue}`` (a
sorted set of the jobs waiting, scored by ``created_at``) and
``{prefix}:seen:{queue}`` (a hash: each waiting job to ``seen_until``).
:data:`ACQUIRE` applies the rules in one Lua script, atomic across every
process and machine. Thread-safe as the store is.
"""
from __future__ import annotations

import time
import typing as t

from redis.commands.core import Script

from ...models import Job
from .. import slots
from ..base import of_app
from .connect import reported
from .keys import Keys, load

__all__ = ["ACQUIRE", "RELEASE", "RedisSlots"]

#: Take a slot, or wait in line: :func:`flask_jobify.stores.slots.grant` in
#: Lua. KEYS: holders, waiting, seen. ARGV: job id, run number, limit, bound
#: ('' for none), now, :data:`~flask_jobify.stores.slots.WAITER_TTL`, the
#: prefix of job keys, then the ids of the holders known alive. Returns 1
#: (go on) or 0 (wait). Scores and times are
#: written with 17 digits: Lua's own number format keeps 14.
ACQUIRE = """
local now = tonumber(ARGV[5])
local function record(id)
  local raw = redis.call('GET', ARGV[7] .. id)
  if not raw then return nil end
  return cjson.decode(raw)
end
local function lease(job)
  if job.lease_until == cjson.null then return nil end
  return job.lease_until
end
local function holds(job, bound)
  if job and (job.status == 'pending' or job.status == 'running') then
    local expiry = lease(job)
    if expiry then return expiry > now end
  end
  return bound == '' or tonumber(bound) > now
end
local function waits(job, seen)
  if not job or job.status ~= 'pending' then return false end
  local expiry = lease(job)
  if expiry then return expiry > now end
  return seen ~= false and tonumber(seen) > now
end
local function drop(id)
  redis.call('ZREM', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
end
local alive = {}
for i = 8, #ARGV do alive[ARGV[i]] = true end
local me = record(ARGV[1])
if not me or me.status ~= 'pending' or me.attempts ~= tonumber(ARGV[2]) - 1 then return 1 end
local row = ARGV[2] .. ' ' .. ARGV[4]
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], row)
  return 1
end
redis.call('ZADD', KEYS[2], string.format('%.17g', me.created_at), ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], string.format('%.17g', now + tonumber(ARGV[6])))
local held = 0
local rows = redis.call('HGETALL', KEYS[1])
for i = 1, #rows, 2 do
  local bound = string.match(rows[i + 1], '^%S+ (.*)$')
  local job = record(rows[i])
  if alive[rows[i]] or holds(job, bound) then
    held = held + 1
  else
    redis.call('HDEL', KEYS[1], rows[i])
  end
end
local free = tonumber(ARGV[3]) - held
if free <= 0 then return 0 end
local start = 0
while true do
  local ids = redis.call('ZRANGE', KEYS[2], start, start + 99)
  if #ids == 0 then return 0 end
  for _, id in ipairs(ids) do
    if id == ARGV[1] then
      drop(id)
      redis.call('HSET', KEYS[1], id, row)
      return 1
    end
    if waits(record(id), redis.call('HGET', KEYS[3], id)) then
      free = free - 1
      if free == 0 then return 0 end
      start = start + 1
    else
      drop(id)
    end
  end
end
"""

#: Free the slot of one run. KEYS: holders. ARGV: job id, run number.
RELEASE = """
local row = redis.call('HGET', KEYS[1], ARGV[1])
if row and string.match(row, '^(%S+)') == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
"""


class RedisSlots:
    """Slots and waiting lines in Redis (see the module): a base of the store."""

    _db: t.Any
    _keys: Keys
    client: t.Any

    def _slot_scripts(self) -> tuple[Script, Script]:
        scripts: tuple[Script, Script] | None = getattr(self, "_slot_script_handles", None)
        if scripts is None:  # registering twice from two threads is harmless
            scripts = (self.client.register_script(ACQUIRE),
                       self.client.register_script(RELEASE))
            self._slot_script_handles = scripts
        return scripts

    def _queue_keys(self, queue: str) -> list[str]:
        return [self._keys.key(kind, queue) for kind in ("slots", "waiting", "seen")]

    @reported
    def acquire_slot(
        self, queue: str, job_id: str, attempt: int, limit: int, *, until: float | None,
        alive: t.Collection[str] = (),
    ) -> bool:
        """One Lua script (:data:`ACQUIRE`)."""
        bound = "" if until is None else repr(float(until))
        args: list[str | int] = [job_id, attempt, limit, bound, repr(time.time()),
                                 repr(slots.WAITER_TTL), self._keys.key("job", ""), *alive]
        return bool(self._slot_scripts()[0](keys=self._queue_keys(queue), args=args))

    @reported
    def release_slot(self, queue: str, job_id: str, attempt: int) -> None:
        self._slot_scripts()[1](keys=self._queue_keys(queue)[:1], args=[job_id, attempt])

    @reported
    def slot_holders(self, queue: str) -> tuple[str, ...]:
        rows = {job_id.decode(): value.decode() for job_id, value in
                self._db.hgetall(self._queue_keys(queue)[0]).items()}
        if not rows:
            return ()
        now = time.time()
        jobs = [load(raw) for raw in self._db.mget(
            [self._keys.key("job", job_id) for job_id in rows])]
        held = []
        for (job_id, row), job in zip(rows.items(), jobs):
            bound = row.partition(" ")[2]
            slot = slots.Slot.of(job_id, job, float(bound) if bound else None)
            if slots.holds(slot.status, slot.lease_until, slot.until, now):
                held.append(slot)
        return tuple(slot.job_id for slot in sorted(held, key=lambda slot: slot.created_at))

    @reported
    def count_active(self, owner: str, *, limit: int, app: str | None = None) -> int:
        """Two round trips: ``ZINTER`` of the owner's index with the
        ``pending`` and ``running`` ones (each walking the smaller set),
        then the records, for the app."""
        pipe = self._db.pipeline(transaction=False)
        for status in ("pending", "running"):
            pipe.zinter([self._keys.key("owner", owner), self._keys.key("status", status)])
        ids = [member.decode() for found in pipe.execute() for member in found]
        if not ids:
            return 0
        jobs: list[Job | None] = [load(raw) for raw in self._db.mget(
            [self._keys.key("job", job_id) for job_id in ids])]
        active = sum(1 for job in jobs
                     if job is not None and not job.is_final and of_app(job, app))
        return min(active, limit)
