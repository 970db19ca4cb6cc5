-- settle.lua: settlement of one admitted request (sent after prelude.lua).
--
-- Replaces the reservation's estimate by what the request actually used:
-- the windows' tokens are corrected in the minute they were booked (if it is
-- still inside the window), each quota's reservation is released (if its
-- period is still current) and the actual amounts are added to the current
-- period; the cost ledger gets each attempt's part on its model; a
-- quota whose settled spend reaches the alert share for the first time in
-- its period raises its soft alert (once: the flag is kept in the record).
-- Idempotent: the reservation id is the guard. A retried settlement, or one
-- for a reservation that expired (already charged in full), changes nothing;
-- one for an id never admitted leaves a tombstone so a late admit books nothing.
--
-- KEYS: see prelude.lua (KEYS[5]: the same user window as at admission).
-- ARGV: id, test_clock_ms (0: Redis TIME),
--   actual: requests, tokens, micro-USD,
--   alert share in permille (e.g. 800),
--   quota count n, then per quota: period (day|month), caps on requests,
--   tokens, micro-USD (-1: none) - as at admission,
--   ledger entry count m (0: nothing reached a provider), then per entry:
--   model, input, cached input, cache write, output tokens, micro-USD,
--   estimated (1: the provider reported no usage, 0: it did).
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
sweep(now, quotas)

local text = redis.call('HGET', KEYS[1], id)
if not text then
  close_reservation(id, 'u', now)
  return { 'unknown', now }
end
local reservation = parse_reservation(text)
if reservation.state == 'x' then
  return { 'expired', now }
elseif reservation.state == 'u' then
  return { 'unknown', now }
elseif reservation.state ~= 'o' then
  return { 'duplicate', now }
end

-- Windows: only tokens change (the request itself was counted at admission).
local estimate = reservation.estimate
for index, booked in ipairs({ reservation.tenant_booked, reservation.user_booked }) do
  if booked then
    local key = KEYS[3 + index]
    local window = load_window(key, now)
    local bucket = nil
    if reservation.minute == window.minute then
      bucket = 'current'
    elseif reservation.minute + 1 == window.minute then
      bucket = 'previous'
    end
    if bucket then
      window.tokens[bucket] = math.max(window.tokens[bucket] - estimate[2], 0) + actual[2]
      save_window(key, window)
    end
  end
end

local share, alerts = 0, {}
for index, quota in ipairs(quotas) do
  local booked = reservation.periods[index]
  if booked ~= nil and booked ~= NONE then
    local record = load_quota(quota, now)
    if record.period == booked then
      add(record.reserved, estimate, -1)
    end
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
end

for _, entry in ipairs(entries) do
  for index, dimension in ipairs(LEDGER_DIMENSIONS) do
    redis.call('HINCRBY', KEYS[3], dimension .. ' ' .. entry.model, entry.amounts[index])
  end
end
if #entries > 0 then
  redis.call('PEXPIRE', KEYS[3], LEDGER_IDLE_MS)
end
close_reservation(id, 's', now)

local reply = { 'settled', now, share, #alerts / 3 }
for _, value in ipairs(alerts) do
  reply[#reply + 1] = value
end
return reply
