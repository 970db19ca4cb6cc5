-- Signalbox fleet feedback: answers remembered for rating, by every Envoy
-- replica, so a rating posted to any replica counts once for the fleet.
--
-- An answer is a hash `sb:{<tenant>}:fb:<request id>` (the tenant's hash
-- tag: one Cluster slot per tenant): r = the answer's record as
-- src/feedback.rs encodes it (hex), rated = 1 once a rating counted. It is
-- forgotten `keep_ms` after it was remembered.
--
-- ARGV[1] = "remember": KEYS[i] gets record ARGV[2 + i] (ARGV[2] is keep_ms)
--   unless the key exists already (a retried remember changes nothing, and
--   never clears a rating). A record whose rating was counted before it got
--   here (the store was down) carries the prefix "rated:", and marks an
--   existing key rated too.
--   Reply: {"remembered", how many were new}.
-- ARGV[1] = "rate": KEYS[1] is the answer rated; ARGV[2] = keep_ms; ARGV[3]
--   = the rating Envoy's own record of that answer, or "" (it is stored, as
--   rated, when Redis has none yet: its remember call may still be queued).
--   Reply: {"counted", record} the first time; {"again", ""} after;
--   {"unknown", ""} when neither Redis nor the caller knows the answer.

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
  local record = redis.call('HGET', key, 'r')
  if not record then
    if ARGV[3] == '' then
      return {'unknown', ''}
    end
    redis.call('HSET', key, 'r', ARGV[3], 'rated', 1)
    redis.call('PEXPIRE', key, keep_ms)
    return {'counted', ARGV[3]}
  end
  if redis.call('HGET', key, 'rated') == '1' then
    return {'again', ''}
  end
  redis.call('HSET', key, 'rated', 1)
  return {'counted', record}
end

return redis.error_reply('unknown mode ' .. tostring(mode))
