-- Signalbox fleet feedback: answers remembered for rating, by every Envoy
-- replica, so a rating posted to any replica counts once for the fleet.
--
-- An answer is a hash `sb:{<tenant>}:fb:<request id>` (the tenant's hash
-- tag: one Cluster slot per tenant): r = the answer's record as
-- src/feedback.rs encodes it (hex), rated = 1 once a rating counted, by =
-- the id of the rate call that counted it, f:<call id> = 1 for each rate
-- call fenced off (below). It is forgotten `keep_ms` after it was
-- remembered.
--
-- ARGV[1] = "remember": KEYS[i] gets record ARGV[2 + i] (ARGV[2] is keep_ms)
--   unless it has a record already (a retried remember changes nothing, and
--   never clears a rating). A record whose rating was counted before it got
--   here (the store was down) carries the prefix "rated:", and marks an
--   existing key rated too.
--   Reply: {"remembered", how many were new}.
-- ARGV[1] = "rate": KEYS[1] is the answer rated; ARGV[2] = keep_ms; ARGV[3]
--   = the rating Envoy's own record of that answer, or "" (it is stored, as
--   rated, when Redis has none yet: its remember call may still be queued);
--   ARGV[4] = the call's id, unique to the Envoy VM and call (absent from
--   older gateways: then nothing can settle the call).
--   Reply: {"counted", record} the first time; {"again", ""} after;
--   {"unknown", ""} when neither Redis nor the caller knows the answer;
--   {"fenced", ""} when a settle call fenced this call off (it does nothing).
-- ARGV[1] = "settle": the rate call ARGV[3] on KEYS[1] timed out at its
--   Envoy (ARGV[2] = keep_ms), which cannot tell whether it ran. Reply:
--   {"yours", record} when that call counted the rating (the Envoy counts
--   it then; asked again, the answer is the same); otherwise the call is
--   fenced off, so that if it is still on its way it does nothing, and the
--   reply is {"fenced", ""}. A hash holding only fences is forgotten after
--   keep_ms.

local mode = ARGV[1]
local keep_ms = ARGV[2]

if mode == 'remember' then
  local new = 0
  for index, key in ipairs(KEYS) do
    local record = ARGV[2 + index]
    local rated = 0
    if string.sub(record, 1, 6) == 'rated:' then
      record = string.sub(record, 7)
      rated = 1
    end
    if redis.call('HSETNX', key, 'r', record) == 1 then
      redis.call('HSET', key, 'rated', rated)
      redis.call('PEXPIRE', key, keep_ms)
      new = new + 1
    elseif rated == 1 then
      -- Known already, and rated at its replica while Redis was away.
      redis.call('HSET', key, 'rated', 1)
    end
  end
  return {'remembered', new}
end

if mode == 'rate' then
  local key = KEYS[1]
  local call = ARGV[4] or ''
  if call ~= '' and redis.call('HGET', key, 'f:' .. call) then
    return {'fenced', ''}
  end
  local record = redis.call('HGET', key, 'r')
  if not record then
    if ARGV[3] == '' then
      return {'unknown', ''}
    end
    redis.call('HSET', key, 'r', ARGV[3], 'rated', 1, 'by', call)
    redis.call('PEXPIRE', key, keep_ms)
    return {'counted', ARGV[3]}
  end
  if redis.call('HGET', key, 'rated') == '1' then
    return {'again', ''}
  end
  redis.call('HSET', key, 'rated', 1, 'by', call)
  return {'counted', record}
end

if mode == 'settle' then
  local key = KEYS[1]
  local call = ARGV[3]
  local record = redis.call('HGET', key, 'r')
  if record and call ~= '' and redis.call('HGET', key, 'by') == call then
    return {'yours', record}
  end
  redis.call('HSET', key, 'f:' .. call, 1)
  if not record then
    redis.call('PEXPIRE', key, keep_ms)
  end
  return {'fenced', ''}
end

return redis.error_reply('unknown mode ' .. tostring(mode))
