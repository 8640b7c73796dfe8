"""The Lua scripts of the Redis store: each makes one step of a message a single round trip.

Every script is safe to run twice (a timed-out call may have run already).
"""

# KEYS: seen, inbox. ARGV: dedupe ttl, message JSON. Returns 1 when new, 0 for a duplicate.
ENQUEUE = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  redis.call('XADD', KEYS[2], '*', 'message', ARGV[2])
  return 1
end
return 0
"""

# KEYS: conv, convmeta, answered, inbox, lock.
# ARGV: window_start, reply, max_stored, conv ttl, dedupe ttl, group, entry id, owner, turns...
COMPLETE = """
if redis.call('EXISTS', KEYS[3]) == 0 then
  for i = 9, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
  redis.call('LTRIM', KEYS[1], -tonumber(ARGV[3]), -1)
  redis.call('HSET', KEYS[2], 'window_start', ARGV[1])
  redis.call('SET', KEYS[3], ARGV[2], 'EX', ARGV[5])
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.pcall('XACK', KEYS[4], ARGV[6], ARGV[7])
redis.pcall('XDEL', KEYS[4], ARGV[7])
if redis.call('GET', KEYS[5]) == ARGV[8] then redis.call('DEL', KEYS[5]) end
return 1
"""

# KEYS: lock. ARGV: owner, ttl ms. Takes a free lock or renews one this owner holds.
ACQUIRE_LOCK = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

# KEYS: channel, conv, convmeta, answered, rate, lock.
# ARGV: max turns, rate window s, message id, lock owner ('' = no lock), lock ttl ms.
# Reads only the window: the turns from window_start on, found by their contiguous seq.
LOAD_CONTEXT = """
if ARGV[4] ~= '' and not redis.call('SET', KEYS[6], ARGV[4], 'NX', 'PX', ARGV[5]) then
  if redis.call('GET', KEYS[6]) ~= ARGV[4] then return {0} end
  redis.call('PEXPIRE', KEYS[6], ARGV[5])
end
local window_start = tonumber(redis.call('HGET', KEYS[3], 'window_start') or '0')
local length = redis.call('LLEN', KEYS[2])
local first = math.max(length - tonumber(ARGV[1]), 0)
if first < length then
  local ok, head = pcall(cjson.decode, redis.call('LINDEX', KEYS[2], first))
  if ok and type(head) == 'table' and tonumber(head[3]) then
    first = first + math.max(window_start - tonumber(head[3]), 0)
  end
end
local turns = {}
if first < length then turns = redis.call('LRANGE', KEYS[2], first, -1) end
redis.call('SADD', KEYS[5], ARGV[3])
redis.call('EXPIRE', KEYS[5], ARGV[2], 'NX')
return {1, redis.call('GET', KEYS[1]), '[' .. table.concat(turns, ',') .. ']',
        window_start, redis.call('GET', KEYS[4]), redis.call('SCARD', KEYS[5])}
"""

RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: inbox, dead letters. ARGV: group, entry id, platform, reason, dead letters maxlen.
# Moves a pending inbox entry to the dead letters, once: a repeat finds it acknowledged.
BURY = """
local record = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])[1]
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  local payload = ''
  if record then
    local fields = record[2]
    payload = cjson.encode(fields)
    for i = 1, #fields, 2 do
      if fields[i] == 'message' then payload = fields[i + 1] end
    end
  end
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'platform', ARGV[3],
             'source', 'inbox', 'reason', ARGV[4], 'payload', string.sub(payload, 1, 16384))
end
redis.call('XDEL', KEYS[1], ARGV[2])
return 1
"""
