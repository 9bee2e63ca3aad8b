-- Check and add to a caller's meters atomically: every key of one call shares a hash tag, so the
-- script runs on one node of a Redis Cluster (and on Valkey) unchanged.
--
-- KEYS: the meters. ARGV[1]: "check" (all or nothing) or "force" (add without checking: what was
-- spent is spent). ARGV[2]: per meter in the order below, 20 characters: a calendar window's end
-- (Unix ms; read only to create its key); then, unless the rates are KEYS' first ones, per meter in
-- that order a character: its index in KEYS ("A" the first). Then per rate: its increment (µs),
-- window (µs) and expiry (ms); then per calendar window: its amount and limit (so the count of
-- arguments says how many are rates).
--   rate: GCRA. The key holds the theoretical arrival time (µs, Redis's clock); each call moves it
--     by the increment (amount x window / limit, rounded up: the gateway computes it), and a request
--     passes while it stays within one window of now. The expiry is the window's (+1 ms): a key
--     outlives the time it holds.
--   calendar window: the key's name says which. The key holds what was spent and expires at the
--     window's end (or a second from now by Redis's clock, if later), set when the key is created.
--     A forced amount may be negative (a refund).
-- Rates are checked first, then calendar windows, each in order. Returns {0, 0} when added, else
-- {index in KEYS of the first refusing meter, microseconds to wait}.
--
-- ARGV[1] "lease": a check (all or nothing, the same refusal) that, once every amount is added,
-- also adds per meter an extra amount when it still fits within the limit (a lease the gateway
-- keeps for its next requests, routing/leases.py); never refused for an extra. The extras follow
-- the other arguments, one per meter in the order above (a rate's as an increment in µs), and
-- the answer is {0, 0, then per meter in that order 1 when its extra was added, else 0}.
-- "force" with a negative rate increment moves the arrival time back (a lease returned), never
-- before now.
--
-- Redis's time here is per call and per conversion, so the script keeps both few: the steady state
-- is one MGET of the rates, TIME, one INCRBY per calendar window (checked by its answer: no read
-- first; undone when a later meter refuses) and one SET per rate. The arguments are passed to Redis
-- as they came (a Lua number costs a "%.17g" on its way back), and numbers are compared through
-- Lua's arithmetic, which converts a string without a function call.
local call, format = redis.call, string.format
local lease = ARGV[1] == 'lease'
local check, n, keys = lease or ARGV[1] == 'check', #KEYS, KEYS
local rates, placed = #ARGV - 2 - 2 * n - (lease and n or 0), #ARGV[2] == 20 * n
local extras, granted = #ARGV - n, {0, 0}
if not placed then
  keys = {}
  for p = 1, n do keys[p] = KEYS[string.byte(ARGV[2], 20 * n + p) - 64] end
end
local now, after, spent = 0, {}, {}
if rates > 0 then
  local tats, t = call('MGET', unpack(keys, 1, rates)), call('TIME')
  now = t[1] * 1000000 + t[2]
  for p = 1, rates do
    local tat = tats[p]
    if tat then tat = tat + 0 end
    if not tat or tat < now then tat = now end
    local ahead = tat - now + ARGV[3 * p]
    if check and ahead - ARGV[3 * p + 1] > 0 then
      return {placed and p or string.byte(ARGV[2], 20 * n + p) - 64, ahead - ARGV[3 * p + 1]}
    end
    after[p] = tat + ARGV[3 * p]
  end
end
local added = {}
for p = rates + 1, n do
  local amount = ARGV[rates + 2 * p + 1]
  if amount ~= '0' then
    spent[p] = call('INCRBY', keys[p], amount)
    added[p] = amount + 0
  elseif check then -- nothing to add, but a window already past its limit refuses all the same
    spent[p] = (call('GET', keys[p]) or 0) + 0
  end
  if check and spent[p] and spent[p] - ARGV[rates + 2 * p + 2] > 0 then
    for q = rates + 1, p do -- undo what this call added
      local added = ARGV[rates + 2 * q + 1]
      if added ~= '0' then
        if spent[q] - added == 0 then call('DEL', keys[q]) else call('DECRBY', keys[q], added) end
      end
    end
    local ttl = call('PTTL', keys[p])
    if ttl < 0 then
      if now == 0 then local t = call('TIME') now = t[1] * 1000000 + t[2] end
      ttl = string.sub(ARGV[2], 20 * p - 19, 20 * p) - math.floor(now / 1000)
    end
    return {placed and p or string.byte(ARGV[2], 20 * n + p) - 64, math.max(ttl, 1) * 1000}
  end
end
if lease then -- every amount fits: each extra is added where it fits too
  for p = 1, rates do
    local extra = ARGV[extras + p] + 0
    granted[2 + p] = 0
    if extra > 0 and after[p] + extra - now - ARGV[3 * p + 1] <= 0 then
      after[p] = after[p] + extra
      granted[2 + p] = 1
    end
  end
  for p = rates + 1, n do
    local extra = ARGV[extras + p]
    granted[2 + p] = 0
    if extra ~= '0' then
      local total = call('INCRBY', keys[p], extra)
      if total - ARGV[rates + 2 * p + 2] > 0 then
        call('DECRBY', keys[p], extra)
      else
        spent[p] = total
        added[p] = (added[p] or 0) + extra
        granted[2 + p] = 1
      end
    end
  end
end
for p = 1, rates do
  local expiry = ARGV[3 * p + 2]
  if after[p] - now - ARGV[3 * p + 1] > 0 then -- forced past the window: kept until its time
    expiry = format('%d', math.ceil((after[p] - now) / 1000) + 1)
  end
  call('SET', keys[p], format('%d', after[p]), 'PX', expiry)
end
for p = rates + 1, n do
  local amount = added[p]
  if amount then
    if spent[p] <= 0 then -- refunded to nothing (a refund of nothing stays nothing)
      call('DEL', keys[p])
    elseif spent[p] - amount == 0 then -- created by this call: it expires with its window
      -- The window's end by the gateway's clock; at least a second from now by Redis's, so that a
      -- gateway clock behind Redis's cannot create a key already expired (and its spend lost).
      if now == 0 then local t = call('TIME') now = t[1] * 1000000 + t[2] end
      local ends = math.max(string.sub(ARGV[2], 20 * p - 19, 20 * p) + 0, math.floor(now / 1000) + 1000)
      call('PEXPIREAT', keys[p], format('%d', ends))
    end
  end
end
return granted
