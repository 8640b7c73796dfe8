"""The Lua scripts of the Redis store: each makes one step of a message a single round trip.

Every script is safe to run twice (a timed-out call may have run already).
"""

# KEYS: seen, inbox, order, bucket, backlog, told.
# ARGV: dedupe ttl, message JSON, bucket capacity, refill per s, max backlog, notice window s,
#       order ttl, urgent ('1': a command answered out of turn, so it takes no seq).
# Returns 1 accepted, 0 duplicate, 2 refused (tell the author), 3 refused (already told).
# The author's token bucket is filled by the time passed and must hold a whole token; the
# number of their messages waiting must be under the bound. An accepted message gets the next
# number of its conversation (``seq``), by which it is answered in order.
ENQUEUE = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local capacity, refill = tonumber(ARGV[3]), tonumber(ARGV[4])
local bucket = redis.call('HMGET', KEYS[4], 'tokens', 'at')
local tokens = tonumber(bucket[1]) or capacity
tokens = math.min(capacity, tokens + (now - (tonumber(bucket[2]) or now)) * refill)
local waiting = tonumber(redis.call('GET', KEYS[5]) or '0')
local accepted = tokens >= 1 and waiting < tonumber(ARGV[5])
if accepted then tokens = tokens - 1 end
redis.call('HSET', KEYS[4], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[4], math.ceil(capacity / refill) + 1)
if not accepted then
  if redis.call('SET', KEYS[6], '1', 'NX', 'EX', ARGV[6]) then return 2 end
  return 3
end
redis.call('INCR', KEYS[5])
redis.call('EXPIRE', KEYS[5], ARGV[7])
local seq = 0
if ARGV[8] ~= '1' then
  seq = redis.call('HINCRBY', KEYS[3], 'arrived', 1)
  redis.call('EXPIRE', KEYS[3], ARGV[7])
end
redis.call('XADD', KEYS[2], '*', 'message', ARGV[2], 'seq', seq)
return 1
"""

# KEYS: inbox, backlog, order. ARGV: group, entry id, seq, order ttl.
# Done with an entry (its reply delivered): acknowledged, deleted, no longer counted against
# its author's backlog (only once, however often this runs), and the next message of its
# conversation may start: replies reach the chat in the order the messages arrived.
ACKNOWLEDGE = """
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  if tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then redis.call('DECR', KEYS[2]) end
end
redis.call('XDEL', KEYS[1], ARGV[2])
local seq = tonumber(ARGV[3])
if seq > tonumber(redis.call('HGET', KEYS[3], 'done') or '0') then
  redis.call('HSET', KEYS[3], 'done', seq)
  redis.call('EXPIRE', KEYS[3], ARGV[4])
end
return 1
"""

# KEYS: conv, convmeta, answered, lock.
# ARGV: owner ('' = no lease: an urgent command), seq (unused), reply JSON, max stored,
#       conv ttl, dedupe ttl, then with an outcome: replaces_from (-1 = none), window_start,
#       turns...
# Returns {1} stored now, {2, reply} stored before (deliver that), {0} the lease is lost.
# The check of the lease and the writes are one atomic step: a worker that lost its lease
# (frozen past its expiry) can no longer write. A retried or undone exchange is dropped from
# the end of the list (turns whose seq is replaces_from or later) before the new turns go on.
COMPLETE = """
local stored = redis.call('GET', KEYS[3])
if stored then return {2, stored} end
if ARGV[1] ~= '' and redis.call('GET', KEYS[4]) ~= ARGV[1] then return {0} end
if #ARGV >= 8 then
  local from = tonumber(ARGV[7])
  while from >= 0 and redis.call('LLEN', KEYS[1]) > 0 do
    local ok, last = pcall(cjson.decode, redis.call('LINDEX', KEYS[1], -1))
    if not (ok and type(last) == 'table' and tonumber(last[3]) and last[3] >= from) then break end
    redis.call('RPOP', KEYS[1])
  end
  for i = 9, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
  redis.call('LTRIM', KEYS[1], -tonumber(ARGV[4]), -1)
  redis.call('HSET', KEYS[2], 'window_start', ARGV[8])
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  redis.call('EXPIRE', KEYS[2], ARGV[5])
end
redis.call('SET', KEYS[3], ARGV[3], 'EX', ARGV[6])
if ARGV[1] ~= '' then redis.call('DEL', KEYS[4]) end
return {1}
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

# KEYS: channel, conv, convmeta, answered, lock, order, handle, writing.
# ARGV: max turns, owner ('' = take no lease, keep no order: an urgent command), lease ms,
#       seq, skip order ('1' or '0'), the reply's tag (which a Stop button names).
# Returns {2, reply, handle} when the message was answered already (nothing taken),
# {0} when another owner holds the lease, {-1} when an earlier message is not done,
# else takes the lease and returns {1, settings, turns, window_start, handle}.
# Reads only the window: the turns from window_start on, found by their contiguous seq.
LOAD_CONTEXT = """
local answered = redis.call('GET', KEYS[4])
if answered then return {2, answered, redis.call('GET', KEYS[7])} end
if ARGV[2] ~= '' then
  local holder = redis.call('GET', KEYS[5])
  if holder and holder ~= ARGV[2] then return {0} end
  local seq = tonumber(ARGV[4])
  if seq > 1 and ARGV[5] ~= '1' then
    if tonumber(redis.call('HGET', KEYS[6], 'done') or '0') < seq - 1 then return {-1} end
  end
  redis.call('SET', KEYS[5], ARGV[2], 'PX', ARGV[3])
  redis.call('SET', KEYS[8], ARGV[6], 'PX', ARGV[3])
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
return {1, redis.call('GET', KEYS[1]), '[' .. table.concat(turns, ',') .. ']',
        window_start, redis.call('GET', KEYS[7])}
"""

RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: instance. ARGV: holder, ttl ms, takeover ('' or the dead holder to replace).
# Takes the instance name if free, renews it for its holder, or replaces a holder known dead.
CLAIM_INSTANCE = """
local current = redis.call('GET', KEYS[1])
if not current or current == ARGV[1] or (ARGV[3] ~= '' and current == ARGV[3]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {1}
end
return {0, current}
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

# KEYS: lock, stop, writing. ARGV: stop ttl ms, reply ('' = whatever is being written).
# Asks the lease holder to stop; 0 when there is none, or when it writes another reply.
REQUEST_STOP = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if ARGV[2] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[2] then return 0 end
local reply = ARGV[2]
if reply == '' then reply = '*' end
redis.call('SET', KEYS[2], reply, 'PX', ARGV[1])
return 1
"""

# KEYS: lock, stop, writing. ARGV: owner, lease ms. Renews the owner's lease; 1 (once) when a
# stop of its reply was asked for meanwhile (one asked of a reply that has ended is dropped).
KEEP_LEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[3], ARGV[2])
local asked = redis.call('GET', KEYS[2])
if not asked then return 0 end
redis.call('DEL', KEYS[2])
if asked == '*' or asked == redis.call('GET', KEYS[3]) then return 1 end
return 0
"""

# Redis Cluster runs a script only on keys of one slot, and the author's token bucket is not
# in the slot of the channel's partition: there admission takes two steps, ADMIT (the
# author's keys) and ARRIVE (the partition's), and a third, REFUSE (the author's), when
# ARRIVE refuses or finds a duplicate. Together they do what ENQUEUE does.

# KEYS: bucket. ARGV: capacity, refill per s. Takes a token: 1, or 0 when the bucket holds
# less than a whole one.
ADMIT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local capacity, refill = tonumber(ARGV[1]), tonumber(ARGV[2])
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(bucket[1]) or capacity
tokens = math.min(capacity, tokens + (now - (tonumber(bucket[2]) or now)) * refill)
local admitted = tokens >= 1
if admitted then tokens = tokens - 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / refill) + 1)
if admitted then return 1 end
return 0
"""

# KEYS: seen, inbox, order, backlog.
# ARGV: dedupe ttl, message JSON, max backlog, order ttl, urgent, admitted ('1': ADMIT took
#       a token).
# Returns 1 accepted, 0 duplicate, 4 refused (not admitted, or too many waiting).
ARRIVE = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then return 0 end
if ARGV[6] ~= '1' or tonumber(redis.call('GET', KEYS[4]) or '0') >= tonumber(ARGV[3]) then
  return 4
end
redis.call('INCR', KEYS[4])
redis.call('EXPIRE', KEYS[4], ARGV[4])
local seq = 0
if ARGV[5] ~= '1' then
  seq = redis.call('HINCRBY', KEYS[3], 'arrived', 1)
  redis.call('EXPIRE', KEYS[3], ARGV[4])
end
redis.call('XADD', KEYS[2], '*', 'message', ARGV[2], 'seq', seq)
return 1
"""

# KEYS: bucket, told. ARGV: capacity, refund ('1': give back the token ADMIT took), notice
# window s, tell ('1': ARRIVE refused the message). Returns as ENQUEUE does for a refusal
# (2 tell the author, 3 they were told), or 0 when there is nothing to tell (a duplicate).
REFUSE = """
if ARGV[2] == '1' then
  local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens'))
  if tokens then
    redis.call('HSET', KEYS[1], 'tokens', tostring(math.min(tonumber(ARGV[1]), tokens + 1)))
  end
end
if ARGV[4] ~= '1' then return 0 end
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[3]) then return 2 end
return 3
"""

# KEYS: inbox. ARGV: group, entry id. A dead letter's second step in a cluster, once the
# letter is written: 1 when this call acknowledged the entry.
FORGET = """
local acknowledged = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('XDEL', KEYS[1], ARGV[2])
return acknowledged
"""
