-- What each meter holds now, for a report. KEYS: the meters (one hash tag).
-- Returns {now in µs, then per key: its value (0 when absent), its remaining ttl in ms (<= 0 when none)}.
local now_parts = redis.call('TIME')
local out = {tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])}
for _, key in ipairs(KEYS) do
  out[#out + 1] = tonumber(redis.call('GET', key) or '0')
  out[#out + 1] = redis.call('PTTL', key)
end
return out
