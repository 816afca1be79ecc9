-- switchyard limits, settle v1: a request's token reservations corrected with the upstream's
-- real usage. ARGV[1] is the day the check counted budgets on; then per key four arguments:
--   'r', period (us), count, delta   moves the arrival time ("tat:emission", as check writes
--                                    it): back (unused tokens) or ahead (an overrun: debt)
--   'd', per day, 0, delta           corrects that day's use; another day is left alone
local t = redis.call('TIME')
local now = (tonumber(t[1]) - 1735689600) * 1000000 + tonumber(t[2])
local day = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  local a = 1 + 4 * (i - 1)
  local kind, x, y, delta = ARGV[a + 1], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  if kind == 'r' then
    local emission = x / y
    local tat = nil
    local stored = redis.call('GET', key)
    if stored then
      local t, e = string.match(stored, '^([^:]+):(.+)$')
      tat, e = tonumber(t), tonumber(e)
      if tat and e and e > 0 and e ~= emission and tat > now then tat = now + (tat - now) * emission / e end
    end
    local moved = emission * delta
    local new_tat = nil
    if tat and delta < 0 then new_tat = tat + moved
    elseif tat then new_tat = math.max(tat, now) + moved
    elseif delta > 0 then new_tat = now + moved end
    if new_tat and new_tat > now then
      redis.call('SET', key, string.format('%.3f:%.6f', new_tat, emission), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
    elseif new_tat then
      redis.call('DEL', key)
    end
  else
    local stored = redis.call('HMGET', key, 'day', 'used')
    if tonumber(stored[1]) == day then
      redis.call('HSET', key, 'used', math.max((tonumber(stored[2]) or 0) + delta, 0))
    end
  end
end
return 1
