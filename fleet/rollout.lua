-- Signalbox fleet rollouts: one canary rollout's record, shared by every
-- Envoy replica, changed only by compare-and-set.
--
-- Each replica counts what it sees locally and, about once a second, adds
-- that to the record it last read and judges the result (the judgement is
-- the filter's, in Rust); this script stores that proposal only if nobody
-- stored another since. A replica that lost the race gets the current
-- record back and proposes again on its next turn.
--
-- A caller whose answer was lost (a timeout) cannot tell whether its
-- proposal was stored. So every call carries the caller's id and a number
-- that grows with each call; the record remembers, per caller, the highest
-- number seen (`p:<id>`) and the number of its last stored proposal
-- (`l:<id>`). A call numbered at or below the highest seen arrived after a
-- later one and changes nothing; so once a later call of the caller is
-- answered, `l:<id>` says for good whether the lost proposal was stored.
--
--   KEYS[1]  sb:rollout:{<tier>:<model>}  hash: v = version, r = record (hex),
--            p:<id> and l:<id> per caller
--   ARGV[1]  the version the proposal was made from (0: none yet; -1: only
--            read the record)
--   ARGV[2]  the proposed record, hex
--   ARGV[3]  ms of idleness after which the record is forgotten
--   ARGV[4]  the caller's id
--   ARGV[5]  the call's number (1, 2, ...)
--
-- Reply: {1, new version, "", l} when stored; {0, current version, current
-- record or "", l} otherwise; l is the caller's last stored number (0: none).

local key = KEYS[1]
local seen_field = 'p:' .. ARGV[4]
local stored_field = 'l:' .. ARGV[4]
local number = tonumber(ARGV[5]) or 0
-- Versions and numbers are integers; anything else in the hash reads as 0
-- (and is overwritten by the next store) rather than wedging the rollout.
local function integer(field)
  return math.floor(tonumber(redis.call('HGET', key, field) or '0') or 0)
end

local version = integer('v')
local seen = integer(seen_field)
local stored = 0
if number > seen then
  redis.call('HSET', key, seen_field, number)
  if tonumber(ARGV[1]) == version then
    version = version + 1
    redis.call('HSET', key, 'v', version, 'r', ARGV[2], stored_field, number)
    stored = 1
  end
  redis.call('PEXPIRE', key, ARGV[3])
end
local record = ''
if stored == 0 then
  record = redis.call('HGET', key, 'r') or ''
end
return {stored, version, record, integer(stored_field)}
