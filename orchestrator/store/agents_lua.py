"""The Lua scripts of the members' Redis state (``store.agents``). Each script is a
module constant with a comment naming its KEYS, ARGV and return value; keys are always
passed in KEYS (all under one tenant's hash tag), never built inside a script.
"""
from __future__ import annotations

# Shared Lua prelude: Redis's clock in ms (scripts are effect-replicated in Redis >= 5,
# so TIME is allowed in a script that writes).
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS[2i-1] = {t:T}:agent:<emp_i>, KEYS[2i] = {t:T}:agent:<emp_i>:ch  (i = 1..n, in the
#   order the strategy wants them tried); KEYS[2n+1] = {t:T}:offers;
#   KEYS[2n+2] = {t:T}:queue:<dept>, KEYS[2n+3] = {t:T}:queue:<dept>:lease
# ARGV[1] = call uuid, ARGV[2] = lease ms, ARGV[3] = how many to take at most,
# ARGV[4] = department id, ARGV[5] = "1" when the department queues callers,
# ARGV[6] = tenant id, ARGV[6+i] = employee id of candidate i, ARGV[6+n+j] = channel
#   uuids of legs this call rang itself (ended): not counted as a member's live call
# Returns {now ms, status_1, ..., status_n}; status: "offered" (taken for this call),
# "paused", "offered_elsewhere", "wrapup", "busy" (a live channel), "skipped" (enough
# taken), "queued" (callers who waited longer come first: nothing was taken).
# Queue order: a caller may take a member when fewer callers wait ahead of it (alive
# leases; a new caller is behind all of them) than members are available now, so the
# first k callers in line can take k free members at the same time instead of one after
# the other. A queued caller who takes a member leaves the queue; when members remain
# available and callers still wait, "<tenant>:<dept>:<count>" is published so that that
# many of the next in line look at once.
RESERVE_LUA = _NOW + """
local n = (#KEYS - 3) / 2
local Q, QL = KEYS[#KEYS - 1], KEYS[#KEYS]
local want = tonumber(ARGV[3])
local taken = 0
local out = {now}
redis.call('ZREMRANGEBYSCORE', KEYS[2 * n + 1], '-inf', now)  -- expired offers (inspection index)
local state = {}
local avail = 0
local own = {}
for j = 7 + n, #ARGV do own[#own + 1] = ARGV[j] end
local function live_channels(key)
  local count = redis.call('ZCARD', key)
  for _, u in ipairs(own) do
    if count == 0 then break end
    if redis.call('ZSCORE', key, u) then count = count - 1 end
  end
  return count
end
for i = 1, n do
  local f = redis.call('HMGET', KEYS[2 * i - 1], 'offer', 'offer_until', 'wrapup_until', 'paused')
  redis.call('ZREMRANGEBYSCORE', KEYS[2 * i], '-inf', now)
  if f[4] == '1' then
    state[i] = 'paused'
  elseif f[1] and f[1] ~= '' and f[1] ~= ARGV[1] and tonumber(f[2] or '0') > now then
    state[i] = 'offered_elsewhere'
  elseif tonumber(f[3] or '0') > now then
    state[i] = 'wrapup'
  elseif live_channels(KEYS[2 * i]) > 0 then
    state[i] = 'busy'
  else
    state[i] = false
    avail = avail + 1
  end
end
if ARGV[5] == '1' then
  local dead = redis.call('ZRANGEBYSCORE', QL, '-inf', now)
  for _, u in ipairs(dead) do
    redis.call('ZREM', Q, u)
    redis.call('ZREM', QL, u)
  end
  local rank = redis.call('ZRANK', Q, ARGV[1]) or redis.call('ZCARD', Q)
  if rank >= avail then
    for i = 1, n do out[#out + 1] = 'queued' end
    return out
  end
end
for i = 1, n do
  local st = state[i]
  if st then
    -- not available (above)
  elseif taken >= want then
    st = 'skipped'
  else
    local until_ms = now + tonumber(ARGV[2])
    redis.call('HSET', KEYS[2 * i - 1], 'offer', ARGV[1], 'offer_until', until_ms, 'offer_dept', ARGV[4])
    redis.call('ZADD', KEYS[2 * n + 1], until_ms, ARGV[6 + i])
    taken = taken + 1
    st = 'offered'
  end
  out[#out + 1] = st
end
if taken > 0 and ARGV[5] == '1' then
  if redis.call('ZREM', Q, ARGV[1]) == 1 then
    redis.call('ZREM', QL, ARGV[1])
  end
  if avail > taken and redis.call('ZCARD', Q) > 0 then
    redis.call('PUBLISH', 'pbx:members-free', ARGV[6] .. ':' .. ARGV[4] .. ':' .. (avail - taken))
  end
end
return out
"""

# KEYS[1] = {t:T}:queue:<dept>, KEYS[2] = {t:T}:queue:<dept>:lease
# ARGV[1] = call uuid, ARGV[2] = place (ms first queued), ARGV[3] = lease ms
# The place is only set the first time (NX): a caller coming back keeps it.
JOIN_QUEUE_LUA = _NOW + """
redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
return redis.call('ZRANK', KEYS[1], ARGV[1])
"""

# KEYS[1] = {t:T}:queue:<dept>, KEYS[2] = {t:T}:queue:<dept>:lease; ARGV[1] = call uuid
# Returns the caller's place in line: 1 + the waiting callers and callbacks ahead whose
# lease is alive (a dead orchestrator's callers do not count, as in AgentStore.queue);
# 0 when the caller is not in the queue. Read only.
QUEUE_POSITION_LUA = _NOW + """
local rank = redis.call('ZRANK', KEYS[1], ARGV[1])
if not rank then return 0 end
local place = 1
if rank > 0 then
  for _, ahead in ipairs(redis.call('ZRANGE', KEYS[1], 0, rank - 1)) do
    local lease = redis.call('ZSCORE', KEYS[2], ahead)
    if lease and tonumber(lease) > now then place = place + 1 end
  end
end
return place
"""

# KEYS[1] = {t:T}:queue:<dept>:lease; ARGV[1] = call uuid, ARGV[2] = lease ms
# Renews the lease of a caller still in the queue (XX: never re-adds one that left).
RENEW_QUEUE_LUA = _NOW + """
return redis.call('ZADD', KEYS[1], 'XX', 'CH', now + tonumber(ARGV[2]), ARGV[1])
"""

# KEYS[i] = {t:T}:agent:<emp_i> (i = 1..n); KEYS[n+1] = {t:T}:offers
# ARGV[1] = call uuid, ARGV[2] = lease ms, ARGV[2+i] = employee id i
# Extends the lease of every offer this call holds. Returns how many were renewed.
RENEW_LUA = _NOW + """
local n = #KEYS - 1
local renewed = 0
for i = 1, n do
  if redis.call('HGET', KEYS[i], 'offer') == ARGV[1] then
    local until_ms = now + tonumber(ARGV[2])
    redis.call('HSET', KEYS[i], 'offer_until', until_ms)
    redis.call('ZADD', KEYS[n + 1], until_ms, ARGV[2 + i])
    renewed = renewed + 1
  end
end
return renewed
"""

# KEYS[i] = {t:T}:agent:<emp_i> (i = 1..n); KEYS[n+1] = {t:T}:offers;
# KEYS[n+2] = {t:T}:stats:<today>; KEYS[n+3] = {t:T}:dept:<id>:last
# ARGV[1] = call uuid, ARGV[2] = stats TTL s, ARGV[3] = tenant id,
# then per member i, 5 values from ARGV[4+5(i-1)]:
#   employee id, outcome ("answered" | "missed" | "free" | "settle"), wrap-up ms (for
#   "settle": how long the offer still holds), talk ms, pause after N misses (0 = never)
# Only offers held by this call are touched (a lease that expired and was taken by another
# call is left alone). "answered": wrap-up starts now, last_end = now, today's stats grow,
# the miss streak and any pause end, the department remembers who answered; "missed":
# the streak grows and may pause the member; "free": the offer just ends; "settle": the
# offer ends after a short while (the phone's leg is still being cancelled: LOSE_RACE /
# ORIGINATOR_CANCEL legs get their CANCEL a few ms after the event we act on, P01/P01d).
# Members free at once (no wrap-up, not paused) are announced on pbx:members-free.
# Returns {now ms, paused employee ids...} (members paused by this release).
RELEASE_LUA = _NOW + """
local n = #KEYS - 3
local out = {now}
local freed = false
for i = 1, n do
  local b = 4 + 5 * (i - 1)
  local emp, outcome = ARGV[b], ARGV[b + 1]
  local h = KEYS[i]
  if redis.call('HGET', h, 'offer') == ARGV[1] and outcome == 'settle' then
    local until_ms = now + tonumber(ARGV[b + 2])
    redis.call('HSET', h, 'offer_until', until_ms)
    redis.call('ZADD', KEYS[n + 1], until_ms, emp)
  elseif redis.call('HGET', h, 'offer') == ARGV[1] then
    redis.call('HDEL', h, 'offer', 'offer_until', 'offer_dept')
    redis.call('ZREM', KEYS[n + 1], emp)
    if outcome == 'answered' then
      redis.call('HSET', h, 'wrapup_until', now + tonumber(ARGV[b + 2]), 'last_end', now, 'missed', 0, 'paused', 0)
      redis.call('HINCRBY', KEYS[n + 2], 'c:' .. emp, 1)
      redis.call('HINCRBY', KEYS[n + 2], 't:' .. emp, tonumber(ARGV[b + 3]))
      redis.call('EXPIRE', KEYS[n + 2], ARGV[2])
      redis.call('SET', KEYS[n + 3], emp)
      if tonumber(ARGV[b + 2]) <= 0 then
        freed = true  -- no wrap-up: free now (otherwise announced when it ends)
      end
    elseif outcome == 'missed' then
      local missed = redis.call('HINCRBY', h, 'missed', 1)
      local limit = tonumber(ARGV[b + 4])
      if limit > 0 and missed >= limit and redis.call('HGET', h, 'paused') ~= '1' then
        redis.call('HSET', h, 'paused', 1)
        out[#out + 1] = emp
      else
        freed = true
      end
    else
      freed = true
    end
  end
end
if freed then
  redis.call('PUBLISH', 'pbx:members-free', ARGV[3])
end
return out
"""

# KEYS[1] = {t:T}:agent:<emp>:ch, KEYS[2] = {t:T}:agent:<emp>
# ARGV[1] = channel uuid, ARGV[2] = ttl ms, ARGV[3] = "1" when the member placed this call
#   (it ends an automatic pause: "resumes on their next call")
CHANNEL_UP_LUA = _NOW + """
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[2], 'paused', 0, 'missed', 0)
end
return 1
"""


# KEYS[i] = {t:T}:agent:<emp_i> (i = 1..n), KEYS[n+j] = {t:T}:stats:<day_j> (j = 1..d),
#   KEYS[#KEYS] = {t:T}:dept:<dept>:last
# ARGV[1] = n, ARGV[1+i] = employee id of member i
# Returns {last answered employee id or "", then per member: last_end ms or "", calls
# and talk ms summed over the days}: what the strategies order by, in one round trip
# and a flat reply (the members' full hashes are ~3x more to read).
ORDER_VIEWS_LUA = """
local n = tonumber(ARGV[1])
local d = #KEYS - n - 1
local out = {redis.call('GET', KEYS[#KEYS]) or ''}
for i = 1, n do
  local emp = ARGV[1 + i]
  out[#out + 1] = redis.call('HGET', KEYS[i], 'last_end') or ''
  local c, t = 0, 0
  for j = 1, d do
    local v = redis.call('HMGET', KEYS[n + j], 'c:' .. emp, 't:' .. emp)
    c = c + (tonumber(v[1]) or 0)
    t = t + (tonumber(v[2]) or 0)
  end
  out[#out + 1] = c
  out[#out + 1] = t
end
return out
"""
