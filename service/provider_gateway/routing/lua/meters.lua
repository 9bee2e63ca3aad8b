-- Check and add to a caller's meters atomically: every key of one call shares a hash tag, so the
-- script runs on one node of a Redis Cluster (and on Valkey) unchanged.
--
-- KEYS: the meters. ARGV[1]: "check" (all or nothing) or "force" (add without checking: what was
-- spent is spent). ARGV[2]: four values per key, separated by spaces: kind, amount, limit, window
-- in microseconds (one argument, not 4 per key: each argument costs the client and the server).
--   kind "rate": GCRA. The key holds the theoretical arrival time (µs, Redis's clock); each unit
--     moves it by window/limit, and a request passes while it stays within one window of now.
--   kind "window": a calendar window (the key's name says which). The key holds what was spent;
--     `window` is the time left in it, the key's expiry. A forced amount may be negative (a refund).
-- Returns {0, 0} when added, else {index of the first refusing meter, microseconds to wait}.
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local check = ARGV[1] == 'check'
local spec = {}
for value in string.gmatch(ARGV[2], '%S+') do spec[#spec + 1] = value end
local planned = {}
for i, key in ipairs(KEYS) do
  local base = 1 + (i - 1) * 4
  local kind, amount = spec[base], tonumber(spec[base + 1])
  local limit, window = tonumber(spec[base + 2]), tonumber(spec[base + 3])
  if kind == 'rate' then
    local tat = tonumber(redis.call('GET', key) or '0')
    if tat < now then tat = now end
    local after = math.ceil(tat + amount * window / limit)
    if check and after - now > window then return {i, after - now - window} end
    planned[i] = after
  else
    local spent = tonumber(redis.call('GET', key) or '0')
    if check and spent + amount > limit then
      local ttl = redis.call('PTTL', key)
      if ttl < 0 then return {i, window} end
      return {i, ttl * 1000}
    end
  end
end
for i, key in ipairs(KEYS) do
  local base = 1 + (i - 1) * 4
  local amount, window = tonumber(spec[base + 1]), tonumber(spec[base + 3])
  if planned[i] then
    local ttl_ms = math.ceil((planned[i] - now) / 1000) + 1
    redis.call('SET', key, string.format('%.0f', planned[i]), 'PX', ttl_ms)
  elseif amount ~= 0 then
    local spent = redis.call('INCRBY', key, amount)
    if spent <= 0 then
      redis.call('DEL', key)
    elseif redis.call('PTTL', key) < 0 then
      redis.call('PEXPIRE', key, math.max(math.ceil(window / 1000), 1))
    end
  end
end
return {0, 0}
