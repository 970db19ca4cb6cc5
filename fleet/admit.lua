-- admit.lua: admission of one request (sent after prelude.lua).
--
-- Checks the tenant's and the user's sliding minute and every quota; if all
-- have room, books the estimate in each and records an open reservation,
-- due at now + ttl. settle.lua closes it; one still open when due is charged
-- in full by the sweep of the tenant's next call. Atomic: a refusal books
-- nothing. Same semantics as src/govern (window.rs, quota.rs).
--
-- KEYS: see prelude.lua.
-- ARGV: id (1-64 of [A-Za-z0-9._-], chosen by the caller), ttl_ms,
--   test_clock_ms (0: Redis TIME),
--   estimate: requests, tokens, micro-USD,
--   tenant limits: requests/min, tokens/min; user limits: requests/min,
--   tokens/min (-1: none; the user's are -1 for a request without a user),
--   quota count n, then per quota: period (day|month), caps on requests,
--   tokens, micro-USD (-1: none).
-- Reply, a flat array (-1: no limit, or never):
--   {"admitted", now_ms, reset_ms, tenant_requests_left, tenant_tokens_left,
--    user_requests_left, user_tokens_left, share_permille}
--     share: the highest share of any quota cap used by settled spend.
--     A retried admit of a still open reservation books nothing and answers
--     the same way.
--   {"refused", now_ms, scope ("tenant"|"user"|"quota"), quota_index
--    (0-based; -1 for a window), dimension ("requests"|"tokens"|"cost"),
--    retry_after_ms (-1: the request alone is over the limit),
--    reset_ms, requests_left, tokens_left (the window's; -1 for a quota)}
--   {"closed", now_ms}: the id was settled or expired already; nothing booked.

local DIMENSIONS = { 'requests', 'tokens', 'cost' }

-- The previous minute's share still inside the window, plus this minute.
local function window_estimate(buckets, elapsed)
  return math.floor(buckets.previous * (MINUTE_MS - elapsed) / MINUTE_MS) + buckets.current
end

-- Milliseconds until `amount` more fits under `limit` (nil: never).
local function wait_for(buckets, amount, limit, elapsed)
  if amount > limit then
    return nil
  end
  local room = limit - amount
  if buckets.current <= room then
    -- The previous minute's share has to shrink: solve
    -- previous * (60000 - t) / 60000 + current <= room for t.
    if buckets.previous == 0 then
      return 0
    end
    local needed = math.max(MINUTE_MS - math.floor((room - buckets.current) * MINUTE_MS / buckets.previous), 0)
    return math.max(needed - elapsed, 0) + 1
  end
  -- This minute alone is too full: wait into the next one.
  local into_next = math.max(MINUTE_MS - math.floor(room * MINUTE_MS / math.max(buckets.current, 1)), 0)
  return MINUTE_MS - elapsed + into_next + 1
end

local function remaining(window, limits, elapsed)
  local left = { NONE, NONE }
  if window then
    for index, buckets in ipairs({ window.requests, window.tokens }) do
      if limits[index] ~= NONE then
        left[index] = math.max(limits[index] - window_estimate(buckets, elapsed), 0)
      end
    end
  end
  return left
end

local id = next_arg()
if #id > 64 or not string.match(id, '^[%w%._%-]+$') then
  error('signalbox: a reservation id is 1 to 64 of [A-Za-z0-9._-]')
end
local ttl = int_arg(false)
if ttl < 1 or ttl > DAY_MS then
  error('signalbox: ttl_ms must be within 1 ms and a day')
end
local now = now_ms(int_arg(false))
local estimate = { int_arg(false), int_arg(false), int_arg(false) }
local windows = {
  { scope = 'tenant', key = KEYS[4], limits = { int_arg(true), int_arg(true) } },
  { scope = 'user', key = KEYS[5], limits = { int_arg(true), int_arg(true) } },
}
local quotas = read_quotas()
sweep(now, quotas)

local elapsed = now % MINUTE_MS
local reset_ms = MINUTE_MS - elapsed
for _, window in ipairs(windows) do
  if window.limits[1] ~= NONE or window.limits[2] ~= NONE then
    window.state = load_window(window.key, now)
  end
end

local function admitted(share)
  local tenant = remaining(windows[1].state, windows[1].limits, elapsed)
  local user = remaining(windows[2].state, windows[2].limits, elapsed)
  return { 'admitted', now, reset_ms, tenant[1], tenant[2], user[1], user[2], share }
end

local existing = redis.call('HGET', KEYS[1], id)
if existing then
  if string.sub(existing, 1, 1) ~= 'o' then
    return { 'closed', now }
  end
  local share = 0
  for _, quota in ipairs(quotas) do
    share = math.max(share, share_permille(quota.caps, load_quota(quota, now).used))
  end
  return admitted(share)
end

-- Check everything first: nothing is booked unless all of it has room.
for _, window in ipairs(windows) do
  local state = window.state
  if state then
    local wait, dimension = 0, nil
    for index, buckets in ipairs({ state.requests, state.tokens }) do
      local limit, amount = window.limits[index], estimate[index]
      if limit ~= NONE and window_estimate(buckets, elapsed) + amount > limit then
        local needed = wait_for(buckets, amount, limit, elapsed)
        dimension = dimension or DIMENSIONS[index]
        if needed == nil then
          wait, dimension = NONE, DIMENSIONS[index]
          break
        end
        wait = math.max(wait, needed)
      end
    end
    if wait ~= 0 then
      local left = remaining(state, window.limits, elapsed)
      return { 'refused', now, window.scope, NONE, dimension, wait, reset_ms, left[1], left[2] }
    end
  end
end
local records = {}
for index, quota in ipairs(quotas) do
  local record = load_quota(quota, now)
  for dimension = 1, 3 do
    local cap = quota.caps[dimension]
    local total = record.used[dimension] + record.reserved[dimension] + estimate[dimension]
    if cap ~= NONE and total > cap then
      return { 'refused', now, 'quota', index - 1, DIMENSIONS[dimension], record.ends - now, NONE, NONE, NONE }
    end
  end
  records[index] = record
end

-- Book.
local booked = {}
for index, window in ipairs(windows) do
  local state = window.state
  booked[index] = state and '1' or '0'
  if state then
    state.requests.current = state.requests.current + estimate[1]
    state.tokens.current = state.tokens.current + estimate[2]
    save_window(window.key, state)
  end
end
local share = 0
local fields = { 'o', string.format('%d', now + ttl), string.format('%d', estimate[1]),
  string.format('%d', estimate[2]), string.format('%d', estimate[3]),
  string.format('%d', math.floor(now / MINUTE_MS)), booked[1], booked[2] }
for index, quota in ipairs(quotas) do
  local record = records[index]
  add(record.reserved, estimate, 1)
  save_quota(quota, record, now)
  fields[#fields + 1] = string.format('%d', record.period)
  share = math.max(share, share_permille(quota.caps, record.used))
end
redis.call('HSET', KEYS[1], id, table.concat(fields, ' '))
redis.call('ZADD', KEYS[2], now + ttl, id)
redis.call('PEXPIRE', KEYS[1], RESERVATIONS_IDLE_MS)
redis.call('PEXPIRE', KEYS[2], RESERVATIONS_IDLE_MS)
return admitted(share)
