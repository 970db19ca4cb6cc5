-- settle.lua: settlement of one request (sent after prelude.lua).
--
-- Replaces the reservation's estimate by what the request actually used:
-- the windows are corrected in the minute they were booked (if it is still
-- inside the window: tokens to the actual count, and a request that was never
-- served taken out again), each quota's reservation is released (if its
-- period is still current) and the actual amounts are added to the current
-- period; the cost ledger gets each attempt's part on its model; a
-- quota whose settled spend reaches the alert share for the first time in
-- its period raises its soft alert (once: the flag is kept in the record).
-- A release (a request refused after its admission's answer was lost) is a
-- settlement with zero actual amounts: it only gives the reservation back.
-- Idempotent: the reservation id is the guard. A retried settlement, or one
-- for a reservation that expired (already charged in full), changes nothing;
-- one for an id never admitted leaves a tombstone so a late admit books nothing.
--
-- Unreserved charge (unreserved = 1): the request was served on a replica's
-- local fallback while the ledger could not answer, so there may be no
-- reservation. If a late admission did book one under this id, it is settled
-- as above. Otherwise the actual amounts are added without one: to the
-- windows' minute and the quotas' period the request ended in (if still
-- current; an earlier period has nothing left to enforce), and to the cost
-- ledger; then the id is closed like a settled one, so a retried charge
-- answers "duplicate" and a late admission "closed".
--
-- KEYS: see prelude.lua (KEYS[5]: the same user window as at admission).
-- ARGV: id, test_clock_ms (0: Redis TIME),
--   actual: requests, tokens, micro-USD,
--   alert share in permille (e.g. 800),
--   quota count n, then per quota: period (day|month), caps on requests,
--   tokens, micro-USD (-1: none) - as at admission,
--   ledger entry count m (0: nothing reached a provider), then per entry:
--   model, input, cached input, cache write, output tokens, micro-USD,
--   estimated (1: the provider reported no usage, 0: it did),
--   unreserved (0: settle the reservation; 1: charge without one),
--   ended_ms_ago (how long before this call the request ended; unreserved only),
--   tenant window, user window (1: the tenant has that sliding minute; unreserved only).
-- Reply, a flat array:
--   {"settled", now_ms, share_permille, alert_count, then per alert:
--    quota_index (0-based), period_index, share_permille}
--     share: the highest share of a cap used among the quotas it booked.
--   {"expired", now_ms}: it had expired and was charged in full.
--   {"duplicate", now_ms}: settled before; nothing changed.
--   {"unknown", now_ms}: never admitted (or forgotten); nothing changed.

local id = next_arg()
local now = now_ms(int_arg(false))
local actual = { int_arg(false), int_arg(false), int_arg(false) }
local alert_permille = int_arg(false)
local quotas = read_quotas()
local entries = {}
for index = 1, int_arg(false) do
  entries[index] = {
    model = next_arg(),
    amounts = { 1, int_arg(false), int_arg(false), int_arg(false), int_arg(false), int_arg(false), int_arg(false) },
  }
end
local unreserved = int_arg(false) == 1
local ended_ago = int_arg(false)
local unreserved_windows = { int_arg(false) == 1, int_arg(false) == 1 }
sweep(now, quotas)

-- Adds `actual` to quota `index`'s record and saves it; raises the quota's
-- alert the first time settled spend reaches the alert share in its period.
local share, alerts = 0, {}
local function charge_quota(index, quota, record)
  add(record.used, actual, 1)
  local quota_share = share_permille(quota.caps, record.used)
  share = math.max(share, quota_share)
  if record.alerted == 0 and quota_share >= alert_permille then
    record.alerted = 1
    alerts[#alerts + 1] = index - 1
    alerts[#alerts + 1] = record.period
    alerts[#alerts + 1] = quota_share
  end
  save_quota(quota, record, now)
end

-- The bucket of `window` holding `minute` (nil: it has left the window).
local function bucket_of(window, minute)
  if minute == window.minute then
    return 'current'
  elseif minute + 1 == window.minute then
    return 'previous'
  end
  return nil
end

-- The ledger, then the id closed as settled; the reply.
local function finish()
  for _, entry in ipairs(entries) do
    for index, dimension in ipairs(LEDGER_DIMENSIONS) do
      redis.call('HINCRBY', KEYS[3], dimension .. ' ' .. entry.model, entry.amounts[index])
    end
  end
  if #entries > 0 then
    redis.call('PEXPIRE', KEYS[3], LEDGER_IDLE_MS)
  end
  close_reservation(id, 's', now, unreserved and CHARGE_TOMBSTONE_MS or nil)
  local reply = { 'settled', now, share, #alerts / 3 }
  for _, value in ipairs(alerts) do
    reply[#reply + 1] = value
  end
  return reply
end

local text = redis.call('HGET', KEYS[1], id)
if not text then
  if not unreserved then
    close_reservation(id, 'u', now)
    return { 'unknown', now }
  end
  -- Charged without a reservation, when the request ended.
  local ended = math.max(now - ended_ago, 0)
  local minute = math.floor(ended / MINUTE_MS)
  for index, limited in ipairs(unreserved_windows) do
    if limited then
      local key = KEYS[3 + index]
      local window = load_window(key, now)
      local bucket = bucket_of(window, minute)
      if bucket then
        window.requests[bucket] = window.requests[bucket] + actual[1]
        window.tokens[bucket] = window.tokens[bucket] + actual[2]
        save_window(key, window)
      end
    end
  end
  for index, quota in ipairs(quotas) do
    local record = load_quota(quota, now)
    local ended_period = period_of(quota.kind, ended)
    if record.period == ended_period then
      charge_quota(index, quota, record)
    end
  end
  return finish()
end
local reservation = parse_reservation(text)
if reservation.state == 'x' then
  return { 'expired', now }
elseif reservation.state == 'u' then
  return { 'unknown', now }
elseif reservation.state ~= 'o' then
  return { 'duplicate', now }
end

-- Windows: the tokens become the actual count; a request that was not
-- served (a release: actual requests 0) no longer counts either.
local estimate = reservation.estimate
for index, booked in ipairs({ reservation.tenant_booked, reservation.user_booked }) do
  if booked then
    local key = KEYS[3 + index]
    local window = load_window(key, now)
    local bucket = bucket_of(window, reservation.minute)
    if bucket then
      window.tokens[bucket] = math.max(window.tokens[bucket] - estimate[2], 0) + actual[2]
      if actual[1] < estimate[1] then
        window.requests[bucket] = math.max(window.requests[bucket] - (estimate[1] - actual[1]), 0)
      end
      save_window(key, window)
    end
  end
end

for index, quota in ipairs(quotas) do
  local booked = reservation.periods[index]
  if booked ~= nil and booked ~= NONE then
    local record = load_quota(quota, now)
    if record.period == booked then
      add(record.reserved, estimate, -1)
    end
    charge_quota(index, quota, record)
  end
end
return finish()
