-- switchyard limits, check v1: every limit of one request is checked, then all are taken or
-- none. Redis's clock (TIME), so replicas' clocks never matter. Per key, four arguments:
--   'r', period (microseconds), count, cost   a rate (GCRA: the key holds the theoretical
--                                             arrival time, microseconds since 2025-01-01, and
--                                             the emission interval it was counted with, as
--                                             "tat:emission"; a new rate keeps the units counted)
--   'd', per day, 0, cost                     a budget per UTC day (a hash: day, used)
-- Returns {1, day, remaining, reset (us), ...} per key, or {0, index, retry (us), reset (us),
-- remaining, day} for the first that refuses.
local t = redis.call('TIME')
local secs, micros = tonumber(t[1]), tonumber(t[2])
local now = (secs - 1735689600) * 1000000 + micros
local day = math.floor(secs / 86400)
local left_today = (86400 - secs % 86400) * 1000000 - micros
local out = {1, day}
local writes = {}
for i, key in ipairs(KEYS) do
  local a = 4 * (i - 1)
  local kind, x, y, cost = ARGV[a + 1], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  if kind == 'r' then
    local emission = x / y
    local tat = 0
    local stored = redis.call('GET', key)
    if stored then
      local t, e = string.match(stored, '^([^:]+):(.+)$')
      tat, e = tonumber(t) or 0, tonumber(e)
      if e and e > 0 and e ~= emission and tat > now then tat = now + (tat - now) * emission / e end
    end
    local start = math.max(tat, now)
    local new_tat = start + emission * cost
    local wait = new_tat - x - now
    -- A nanosecond of slack: sums of fractional intervals must not refuse the last unit.
    if wait > 0.001 then
      return {0, i, math.ceil(wait), math.ceil(start - now), 0, day}
    end
    writes[i] = {'r', new_tat, emission}
    out[#out + 1] = math.floor((x - (new_tat - now)) / emission + 0.000001)
    out[#out + 1] = math.ceil(new_tat - now)
  else
    local stored = redis.call('HMGET', key, 'day', 'used')
    local used = 0
    if tonumber(stored[1]) == day then used = tonumber(stored[2]) or 0 end
    if used + cost > x then
      return {0, i, left_today, left_today, math.max(x - used, 0), day}
    end
    writes[i] = {'d', used + cost}
    out[#out + 1] = x - used - cost
    out[#out + 1] = left_today
  end
end
for i, w in pairs(writes) do
  if w[1] == 'r' then
    redis.call('SET', KEYS[i], string.format('%.3f:%.6f', w[2], w[3]), 'PX', math.ceil((w[2] - now) / 1000) + 1000)
  else
    redis.call('HSET', KEYS[i], 'day', day, 'used', w[2])
    redis.call('EXPIRE', KEYS[i], 172800)
  end
end
return out
