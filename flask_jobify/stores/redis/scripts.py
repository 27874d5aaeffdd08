"""The Lua scripts of :class:`~flask_jobify.stores.redis.RedisStore`, and
their registration on a client.

Each script runs atomically in Redis: what makes a creation, a
compare-and-set and a lease renewal one step across every process. The
scripts are constants; :class:`Scripts` holds one client's handles on them
(redis-py loads a script by its SHA on first use), which are thread-safe
as the client is.
"""
from __future__ import annotations

import redis
from redis.commands.core import Script

#: Insert a record, if its id is free, with its index entries; first drop the
#: entries of an expired predecessor with this id that no purge swept yet.
#: KEYS: job, final, expiry, leases, then the indexes. ARGV: record,
#: created_at, id, lease_until (empty for none).
CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local stale = redis.call('HGET', KEYS[2], ARGV[3])
if stale then
  for _, key in ipairs(cjson.decode(stale)) do redis.call('ZREM', key, ARGV[3]) end
  redis.call('HDEL', KEYS[2], ARGV[3])
  redis.call('ZREM', KEYS[3], ARGV[3])
end
redis.call('SET', KEYS[1], ARGV[1])
if ARGV[4] ~= '' then redis.call('ZADD', KEYS[4], ARGV[4], ARGV[3]) end
for i = 5, #KEYS do redis.call('ZADD', KEYS[i], ARGV[2], ARGV[3]) end
return 1
"""

#: Keep a request if its job is active (the record is only read: cjson would
#: not give back the record's own JSON). KEYS: job, request. ARGV: request.
SAVE_REQUEST = """
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local status = cjson.decode(raw)['status']
if status ~= 'pending' and status ~= 'running' then return 0 end
redis.call('SET', KEYS[2], ARGV[1])
return 1
"""

#: Compare-and-set: run the commands only if the record is still the one the
#: caller read (byte for byte, so a lease renewal counts as a change too).
#: KEYS: job. ARGV: the record read, then each command as its argument
#: count followed by its arguments. One round trip, where WATCH, GET and
#: MULTI/EXEC take three.
APPLY = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local i = 2
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
return 1
"""

#: Renew leases: for each job, compare-and-set its record as :data:`APPLY`
#: does and score it in the leases set. KEYS: leases, then the jobs' records.
#: ARGV: until, then per job its id, the record read, the record renewed.
#: Returns a 1 (renewed) or 0 (changed since it was read) per job.
RENEW = """
local renewed = {}
for i = 2, #KEYS do
  local at = 3 * i - 4
  if redis.call('GET', KEYS[i]) == ARGV[at + 1] then
    redis.call('SET', KEYS[i], ARGV[at + 2])
    redis.call('ZADD', KEYS[1], ARGV[1], ARGV[at])
    renewed[i - 1] = 1
  else
    renewed[i - 1] = 0
  end
end
return renewed
"""


class Scripts:
    """The scripts above, registered on ``client``: call one with
    ``keys=`` and ``args=``. Thread-safe (the client pools connections)."""

    def __init__(self, client: redis.Redis) -> None:
        self.create: Script = client.register_script(CREATE)
        self.save_request: Script = client.register_script(SAVE_REQUEST)
        self.apply: Script = client.register_script(APPLY)
        self.renew: Script = client.register_script(RENEW)


__all__ = ["APPLY", "CREATE", "RENEW", "SAVE_REQUEST", "Scripts"]
