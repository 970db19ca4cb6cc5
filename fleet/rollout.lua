-- Signalbox fleet rollouts: one canary rollout's record, shared by every
-- Envoy replica, changed only by compare-and-set.
--
-- Each replica counts what it sees locally and, about once a second, adds
-- that to the record it last read and judges the result (the judgement is
-- the filter's, in Rust); this script stores that proposal only if nobody
-- stored another since. A replica that lost the race gets the current
-- record back and proposes again on its next turn.
--
--   KEYS[1]  sb:rollout:{<tier>/<model>}  hash: v = version, r = record (hex)
--   ARGV[1]  the version the proposal was made from (0: none yet; -1: only
--            read the record)
--   ARGV[2]  the proposed record, hex
--   ARGV[3]  ms of idleness after which the record is forgotten
--
-- Reply: {1, new version, ""} when stored; {0, current version, current
-- record or ""} when the proposal was made from another version.

local version = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if tonumber(ARGV[1]) ~= version then
  return {0, version, redis.call('HGET', KEYS[1], 'r') or ''}
end
version = version + 1
redis.call('HSET', KEYS[1], 'v', version, 'r', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {1, version, ''}
