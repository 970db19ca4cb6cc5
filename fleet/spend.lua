-- spend.lua: where one tenant stands (sent after prelude.lua), for the
-- spend view. Sweeps due reservations first, so expired ones show as used.
--
-- KEYS: see prelude.lua (KEYS[4] and KEYS[5] are not read).
-- ARGV: test_clock_ms (0: Redis TIME),
--   quota count n, then per quota: period (day|month), caps (as at admission;
--   not read, the caller has them), then model count m, then m model names.
-- Reply, a flat array of integers after the tag:
--   {"spend", now_ms,
--    per quota: period_index, resets_in_ms, used requests, tokens, micro-USD,
--      reserved requests, tokens, micro-USD, alerted (0|1),
--    per model: requests, input, cached_input, cache_write, output tokens, micro-USD,
--      requests whose usage was estimated,
--    expired reservations charged in full: requests, tokens, micro-USD}

local now = now_ms(int_arg(false))
local quotas = read_quotas()
local models = {}
for index = 1, int_arg(false) do
  models[index] = next_arg()
end
sweep(now, quotas)

local reply = { 'spend', now }
local function push(values)
  for _, value in ipairs(values) do
    reply[#reply + 1] = value
  end
end
for _, quota in ipairs(quotas) do
  local record = load_quota(quota, now)
  push({ record.period, record.ends - now })
  push(record.used)
  push(record.reserved)
  push({ record.alerted })
end
local fields = {}
for _, model in ipairs(models) do
  for _, dimension in ipairs(LEDGER_DIMENSIONS) do
    fields[#fields + 1] = dimension .. ' ' .. model
  end
end
for _, dimension in ipairs({ 'requests', 'tokens', 'cost' }) do
  fields[#fields + 1] = dimension .. ' expired'
end
for _, value in ipairs(redis.call('HMGET', KEYS[3], unpack(fields))) do
  reply[#reply + 1] = tonumber(value) or 0
end
return reply
