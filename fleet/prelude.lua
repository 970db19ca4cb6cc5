-- Signalbox fleet ledger: helpers shared by admit.lua, settle.lua and spend.lua.
--
-- A script sent to Redis is this file followed by one of those (byte
-- concatenation, nothing in between); its SHA1 is taken over that text.
--
-- Every script works on the keys of ONE tenant, all sharing the hash tag
-- `{tenant}` so they live in one Cluster slot. KEYS, the same for all three:
--   KEYS[1] sb:{T}:res        hash  reservation id -> record (see below)
--   KEYS[2] sb:{T}:due        zset  reservation id by the ms it is due
--   KEYS[3] sb:{T}:ledger     hash  running totals, fields "<dimension> <model>"
--   KEYS[4] sb:{T}:rate       hash  the tenant's sliding minute
--   KEYS[5] sb:{T}:user:<U>   hash  the user's sliding minute (`sb:{T}:user:` without a user)
--   KEYS[5+i] sb:{T}:quota:<i-1>  hash  quota i (0-based index in the tenant's config)
-- T and U are percent-encoded (`{`, `}`, `:` and `%`) by the caller.
--
-- The clock is Redis's (TIME) unless the caller passes a test clock
-- (ms since the epoch, 0 = none): the counterpart of the config's
-- `test_clock_header`, never used in production.
--
-- Amounts are integers: requests, tokens, micro-USD. Caps of -1 mean none.
--
-- A reservation record is "o <due_ms> <req> <tok> <cost> <minute> <tenant_booked>
-- <user_booked> <period_1> ... <period_n>" while open (period -1: quota not
-- booked), then "s" (settled, or charged without a reservation), "x" (expired:
-- charged in full) or "u" (settled before it was ever admitted). A closed
-- record is kept TOMBSTONE_MS so a retried settle or a late admit with the same
-- id changes nothing; the sweep then forgets it. (A late admit and the release
-- of its refused request wait in the same hung Redis's queue, so they run
-- moments apart, not minutes.)

local MINUTE_MS = 60000
local DAY_MS = 86400000
-- How long a closed reservation id is remembered.
local TOMBSTONE_MS = 300000
-- An unreserved charge is retried by its Envoy for up to a day (outbox.rs
-- CHARGE_KEEP_MS): its id is remembered a little longer, or a retry whose
-- first answer was lost would be counted again.
local CHARGE_TOMBSTONE_MS = 25 * 60 * 60 * 1000
-- Expired reservations handled per call: bounds the script's run time.
local SWEEP_LIMIT = 64
-- Reservation keys outlive a month of idleness, so a reservation left open
-- by a dead Envoy is still found (and charged) by the next call.
local RESERVATIONS_IDLE_MS = 32 * DAY_MS
-- The ledger is kept while the tenant has had spend in the last 400 days.
local LEDGER_IDLE_MS = 400 * DAY_MS
-- A sliding-minute window is gone two minutes after its last use.
local WINDOW_IDLE_MS = 2 * MINUTE_MS
local NONE = -1
-- Ledger fields are "<dimension> <model>" (a model name has no space), and
-- "<requests|tokens|cost> expired" for reservations charged in full.
local LEDGER_DIMENSIONS = { 'requests', 'input', 'cached_input', 'cache_write', 'output', 'cost', 'estimated' }

local cursor = 0
local function next_arg()
  cursor = cursor + 1
  local value = ARGV[cursor]
  if value == nil then
    error('signalbox: missing argument ' .. cursor)
  end
  return value
end

-- A non-negative integer argument, or -1 where `none_allowed`.
local function int_arg(none_allowed)
  local text = next_arg()
  local value = tonumber(text)
  if value == nil or value ~= math.floor(value) or value < 0 and not (none_allowed and value == NONE) then
    error('signalbox: argument ' .. cursor .. ' is not an integer: ' .. text)
  end
  return value
end

local function now_ms(test_clock)
  if test_clock > 0 then
    return test_clock
  end
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end

-- Civil (proleptic Gregorian) year and month of a day count since 1970-01-01.
local function year_month(days)
  local shifted = days + 719468
  local era = math.floor(shifted / 146097)
  local day_of_era = shifted % 146097
  local year_of_era = math.floor((day_of_era - math.floor(day_of_era / 1460) + math.floor(day_of_era / 36524)
    - math.floor(day_of_era / 146096)) / 365)
  local day_of_year = day_of_era - (365 * year_of_era + math.floor(year_of_era / 4) - math.floor(year_of_era / 100))
  local month_index = math.floor((5 * day_of_year + 2) / 153)
  local month = month_index < 10 and month_index + 3 or month_index - 9
  local year = year_of_era + era * 400 + (month <= 2 and 1 or 0)
  return year, month
end

-- Days since 1970-01-01 of the first day of `year`-`month`.
local function days_from_civil(year, month)
  if month <= 2 then
    year = year - 1
  end
  local era = math.floor(year / 400)
  local year_of_era = year % 400
  local month_index = month > 2 and month - 3 or month + 9
  local day_of_year = math.floor((153 * month_index + 2) / 5)
  local day_of_era = year_of_era * 365 + math.floor(year_of_era / 4) - math.floor(year_of_era / 100) + day_of_year
  return era * 146097 + day_of_era - 719468
end

-- Index of the UTC day or month containing `now`, and the ms its successor starts.
local function period_of(kind, now)
  local days = math.floor(now / DAY_MS)
  if kind == 'day' then
    return days, (days + 1) * DAY_MS
  end
  local year, month = year_month(days)
  local next_year, next_month = year, month + 1
  if next_month == 13 then
    next_year, next_month = year + 1, 1
  end
  return year * 12 + month - 1, days_from_civil(next_year, next_month) * DAY_MS
end

-- The tenant's quotas as ARGV describes them: a count, then per quota its
-- period ("day" or "month") and caps on requests, tokens and micro-USD.
local function read_quotas()
  local count = int_arg(false)
  if #KEYS ~= 5 + count then
    error('signalbox: ' .. count .. ' quotas need ' .. (5 + count) .. ' keys, got ' .. #KEYS)
  end
  local quotas = {}
  for index = 1, count do
    local kind = next_arg()
    if kind ~= 'day' and kind ~= 'month' then
      error('signalbox: quota period must be day or month, got ' .. kind)
    end
    quotas[index] = { key = KEYS[5 + index], kind = kind, caps = { int_arg(true), int_arg(true), int_arg(true) } }
  end
  return quotas
end

local QUOTA_FIELDS = { 'p', 'ur', 'ut', 'uc', 'rr', 'rt', 'rc', 'a' }

-- A quota's record as stored: its period index (nil if none), used and
-- reserved amounts, and whether the soft alert of that period has fired.
local function load_stored_quota(quota)
  local values = redis.call('HMGET', quota.key, unpack(QUOTA_FIELDS))
  local number = function(index) return tonumber(values[index]) or 0 end
  return {
    period = tonumber(values[1]),
    used = { number(2), number(3), number(4) },
    reserved = { number(5), number(6), number(7) },
    alerted = number(8),
  }
end

-- The quota's record in the period containing `now` (fresh if the stored
-- one is from an earlier period: periods roll lazily, no timers).
local function load_quota(quota, now)
  local period, ends = period_of(quota.kind, now)
  local record = load_stored_quota(quota)
  if record.period ~= period then
    record = { used = { 0, 0, 0 }, reserved = { 0, 0, 0 }, alerted = 0 }
  end
  record.period, record.ends = period, ends
  return record
end

local function save_quota(quota, record, now)
  local used, reserved = record.used, record.reserved
  redis.call('HSET', quota.key, 'p', record.period, 'ur', used[1], 'ut', used[2], 'uc', used[3],
    'rr', reserved[1], 'rt', reserved[2], 'rc', reserved[3], 'a', record.alerted)
  -- A day after its period ends nothing refers to it any more. (A duration,
  -- not PEXPIREAT: under a test clock `now` is not the server's time.)
  redis.call('PEXPIRE', quota.key, record.ends - now + DAY_MS)
end

local function add(amounts, other, sign)
  for index = 1, 3 do
    amounts[index] = math.max(amounts[index] + sign * other[index], 0)
  end
end

-- Highest share of any capped dimension that `amounts` uses, in permille.
local function share_permille(caps, amounts)
  local highest = 0
  for index = 1, 3 do
    if caps[index] ~= NONE then
      highest = math.max(highest, math.floor(amounts[index] * 1000 / math.max(caps[index], 1)))
    end
  end
  return highest
end

local function parse_reservation(text)
  local fields = {}
  for field in string.gmatch(text, '%S+') do
    fields[#fields + 1] = field
  end
  if fields[1] ~= 'o' then
    return { state = fields[1] }
  end
  local reservation = {
    state = 'o',
    due = tonumber(fields[2]),
    estimate = { tonumber(fields[3]), tonumber(fields[4]), tonumber(fields[5]) },
    minute = tonumber(fields[6]),
    tenant_booked = fields[7] == '1',
    user_booked = fields[8] == '1',
    periods = {},
  }
  for index = 9, #fields do
    reservation.periods[index - 8] = tonumber(fields[index])
  end
  return reservation
end

-- Closes a reservation: remembered as `state` until the sweep forgets it.
local function close_reservation(id, state, now, keep_ms)
  redis.call('HSET', KEYS[1], id, state)
  redis.call('ZADD', KEYS[2], now + (keep_ms or TOMBSTONE_MS), id)
  redis.call('PEXPIRE', KEYS[1], RESERVATIONS_IDLE_MS)
  redis.call('PEXPIRE', KEYS[2], RESERVATIONS_IDLE_MS)
end

-- Charges an expired reservation in full: its estimate moves from reserved
-- to used in the period it was due in, if that period's record is still
-- there (a period that is over has nothing left to enforce).
local function charge_expired(reservation, quotas, now)
  for index, quota in ipairs(quotas) do
    local booked = reservation.periods[index]
    if booked ~= nil and booked ~= NONE then
      local due_period, due_ends = period_of(quota.kind, reservation.due)
      local record = load_stored_quota(quota)
      if record.period == due_period then
        if booked == due_period then
          add(record.reserved, reservation.estimate, -1)
        end
        add(record.used, reservation.estimate, 1)
        record.ends = due_ends
        save_quota(quota, record, now)
      end
    end
  end
  local estimate = reservation.estimate
  redis.call('HINCRBY', KEYS[3], 'requests expired', estimate[1])
  redis.call('HINCRBY', KEYS[3], 'tokens expired', estimate[2])
  redis.call('HINCRBY', KEYS[3], 'cost expired', estimate[3])
  redis.call('PEXPIRE', KEYS[3], LEDGER_IDLE_MS)
end

-- Handles reservations that are due: open ones expired (charged in full),
-- closed ones forgotten. Done lazily by every call for the tenant.
local function sweep(now, quotas)
  local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, SWEEP_LIMIT)
  for _, id in ipairs(due) do
    local text = redis.call('HGET', KEYS[1], id)
    if text and string.sub(text, 1, 1) == 'o' then
      charge_expired(parse_reservation(text), quotas, now)
      close_reservation(id, 'x', now)
    else
      redis.call('HDEL', KEYS[1], id)
      redis.call('ZREM', KEYS[2], id)
    end
  end
end

-- A sliding-minute window (two one-minute buckets) rolled to `now`.
local function load_window(key, now)
  local values = redis.call('HMGET', key, 'm', 'rc', 'rp', 'tc', 'tp')
  local window = {
    minute = tonumber(values[1]) or 0,
    requests = { current = tonumber(values[2]) or 0, previous = tonumber(values[3]) or 0 },
    tokens = { current = tonumber(values[4]) or 0, previous = tonumber(values[5]) or 0 },
  }
  local minute = math.floor(now / MINUTE_MS)
  if minute ~= window.minute then
    local adjacent = minute == window.minute + 1
    for _, buckets in ipairs({ window.requests, window.tokens }) do
      buckets.previous = adjacent and buckets.current or 0
      buckets.current = 0
    end
    window.minute = minute
  end
  return window
end

local function save_window(key, window)
  redis.call('HSET', key, 'm', window.minute, 'rc', window.requests.current, 'rp', window.requests.previous,
    'tc', window.tokens.current, 'tp', window.tokens.previous)
  redis.call('PEXPIRE', key, WINDOW_IDLE_MS)
end
