-- Check and add to a caller's meters atomically: every key of one call shares a hash tag, so the
-- script runs on one node of a Redis Cluster (and on Valkey) unchanged.
--
-- KEYS: the meters. ARGV[1]: "check" (all or nothing) or "force" (add without checking: what was
-- spent is spent). ARGV[2]: two characters a meter: its kind ("r" rate, "w" window), then which
-- field of ARGV[3] it adds ("A" the first). ARGV[3]: the amounts, 20 characters each (a signed
-- integer, zero-padded). Then two arguments per meter: limit, window.
--   kind "rate" (r): GCRA. The key holds the theoretical arrival time (µs, Redis's clock); each unit
--     moves it by window/limit (window in µs), and a request passes while it stays within one
--     window of now.
--   kind "window" (w): a calendar window (the key's name says which). The key holds what was spent;
--     `window` is the window's end (Unix ms), the key's expiry, set when the key is created. A
--     forced amount may be negative (a refund).
-- Returns {0, 0} when added, else {index of the first refusing meter, microseconds to wait}.
--
-- Each redis.call costs the server about as much as a whole PING round trip does (1-4 µs), so the
-- script makes as few as it can: one MGET for every meter, TIME only when a rate meter or a new
-- key's expiry needs it, then one write per meter (and the expiry only when the write created the key). Each argument
-- costs too, hence the meters' amounts in one string: a check's meters add one of a few amounts.
local tonumber, byte, sub = tonumber, string.byte, string.sub
local check = ARGV[1] == 'check'
local layout, amounts = ARGV[2], ARGV[3]
local fields = {}
for f = 1, #amounts / 20 do fields[f] = tonumber(sub(amounts, f * 20 - 19, f * 20)) end
local values = redis.call('MGET', unpack(KEYS))
local now
local function clock()
  if not now then
    local parts = redis.call('TIME')
    now = tonumber(parts[1]) * 1000000 + tonumber(parts[2])
  end
  return now
end
local added, planned = {}, {}
for i = 1, #KEYS do
  local amount = fields[byte(layout, 2 * i) - 64]
  local limit, window = tonumber(ARGV[2 + 2 * i]), tonumber(ARGV[3 + 2 * i])
  added[i] = amount
  if byte(layout, 2 * i - 1) == 114 then -- 'r'
    local tat = math.max(tonumber(values[i] or '0'), clock())
    local after = math.ceil(tat + amount * window / limit)
    if check and after - now > window then return {i, after - now - window} end
    planned[i] = after
  elseif check and tonumber(values[i] or '0') + amount > limit then
    local ttl = redis.call('PTTL', KEYS[i])
    if ttl < 0 then ttl = window - math.floor(clock() / 1000) end
    return {i, math.max(ttl, 1) * 1000}
  end
end
for i = 1, #KEYS do
  local amount = added[i]
  if planned[i] then
    redis.call('SET', KEYS[i], string.format('%.0f', planned[i]), 'PX', math.ceil((planned[i] - now) / 1000) + 1)
  elseif amount ~= 0 and (values[i] or amount > 0) then -- a refund of nothing stays nothing
    local spent = redis.call('INCRBY', KEYS[i], amount)
    if spent <= 0 then
      redis.call('DEL', KEYS[i])
    elseif not values[i] then
      -- The window's end by the gateway's clock; at least a second from now by Redis's, so that a
      -- gateway clock behind Redis's cannot create a key already expired (and its spend lost).
      local ends = math.max(tonumber(ARGV[3 + 2 * i]), math.floor(clock() / 1000) + 1000)
      redis.call('PEXPIREAT', KEYS[i], string.format('%.0f', ends))
    end
  end
end
return {0, 0}
