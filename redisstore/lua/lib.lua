-- The shared part of the sessionmon Redis function library, loaded once
-- with FUNCTION LOAD. Each function (one per file beside this one) starts
-- with begin(ARGV), which sets the per-call values below from:
--   ARGV[1] base    key prefix of the partition, "sm:{07}:"; every key a
--                   script touches starts with it, so all of them hash to
--                   one Redis Cluster slot
--   ARGV[2] now     milliseconds since the epoch, the service's clock
--   ARGV[3] evid    event ID of the operation; further events add "-N"
--   ARGV[4] actor   API key name of the caller
-- Session hash fields: uid app th (SHA-256 of the token secret) pth (hashes
-- of previous secrets) csrf st (state) why (end reason) ca la ea (created,
-- last seen, absolute expiry, ms) it (idle timeout, ms) ip ua (last seen)
-- at (attributes, JSON) ena (ended at, ms).
-- Redis runs one function at a time, so module-level state set by begin is
-- the current call's.
-- NOW is the time as a number, for arithmetic; NOWS as given, for writing
-- (a Lua number passed to redis.call is formatted with printf, which costs
-- more than the rest of a write).
local BASE, NOW, NOWS, EVID, ACTOR, DUE, OUTBOX
local evn = 0
local function begin(ARGV)
  BASE, NOWS, EVID, ACTOR = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
  NOW = tonumber(NOWS)
  DUE, OUTBOX = BASE .. 'x', BASE .. 'o'
  evn = 0
end

-- emit appends one event to the partition's outbox, in the same atomic step
-- as the change it records. The entry is one field, e1: the event's fields
-- in a fixed order, separated by US (\031), which no field can contain
-- (the service rejects control characters in every text it is given):
--   id type time sid uid actor app ip ua reason rule path previous_sid
-- One field instead of one per attribute makes XADD, the relay's XREAD
-- and its decoding several times cheaper (redisstore.decodeEntry).
local function emit(typ, sid, h, ip, ua, reason, rule, path, prev)
  local id = EVID
  if evn > 0 then id = EVID .. '-' .. evn end
  evn = evn + 1
  redis.call('XADD', OUTBOX, '*', 'e1', id .. '\031' .. typ .. '\031' .. NOWS .. '\031' .. sid .. '\031' .. h.uid
    .. '\031' .. ACTOR .. '\031' .. (h.app or '') .. '\031' .. (ip or '') .. '\031' .. (ua or '') .. '\031' .. (reason or '')
    .. '\031' .. (rule or '') .. '\031' .. (path or '') .. '\031' .. (prev or ''))
end

-- ct_eq32 compares two 32-byte strings (secret hashes) in constant time:
-- eight 32-bit words each, summed squared differences, no branch on data.
local W8 = '>I4I4I4I4I4I4I4I4'
local function ct_eq32(a, b)
  if not a or not b or #a ~= 32 or #b ~= 32 then return false end
  local a1, a2, a3, a4, a5, a6, a7, a8 = struct.unpack(W8, a)
  local b1, b2, b3, b4, b5, b6, b7, b8 = struct.unpack(W8, b)
  local d = (a1 - b1) ^ 2 + (a2 - b2) ^ 2 + (a3 - b3) ^ 2 + (a4 - b4) ^ 2
    + (a5 - b5) ^ 2 + (a6 - b6) ^ 2 + (a7 - b7) ^ 2 + (a8 - b8) ^ 2
  return d == 0
end

-- ct_eq compares two strings in time that depends only on their length.
local function ct_eq(a, b)
  if not a or not b or #a ~= #b then return false end
  local d = 0
  local x, y = {string.byte(a, 1, -1)}, {string.byte(b, 1, -1)}
  for i = 1, #x do d = bit.bor(d, bit.bxor(x[i], y[i])) end
  return d == 0
end

-- in_prev reports whether th is one of the previous secret hashes (32 bytes
-- each), comparing every one in constant time.
local function in_prev(pth, th)
  local found = false
  if not pth then return false end
  for i = 1, #pth, 32 do
    if ct_eq32(string.sub(pth, i, i + 31), th) then found = true end
  end
  return found
end

local FIELDS = {'uid', 'app', 'th', 'pth', 'csrf', 'st', 'ca', 'la', 'ea', 'it', 'ip', 'ua', 'at'}
local function load(skey)
  local v = redis.call('HMGET', skey, unpack(FIELDS))
  if not v[1] then return nil end
  return {uid = v[1], app = v[2] or '', th = v[3], pth = v[4] or '', csrf = v[5] or '',
    st = v[6], ca = tonumber(v[7]), la = tonumber(v[8]), ea = tonumber(v[9]),
    it = tonumber(v[10]), ip = v[11] or '', ua = v[12] or '', at = v[13] or ''}
end

local function live(st) return st == 'active' or st == 'reauth_required' end
local function due(h) return math.min(h.la + h.it, h.ea) end
local function timeout_reason(h)
  if NOW >= h.ea then return 'absolute_timeout' end
  return 'idle_timeout'
end

local END_EVENT = {expired = 'session.expired', terminated = 'session.terminated',
  revoked = 'session.revoked', evicted = 'session.evicted', replaced = 'session.replaced'}

-- end_session moves a live session to a final state and records it.
local function end_session(skey, sid, h, st, reason, rule)
  redis.call('HSET', skey, 'st', st, 'why', reason, 'ena', NOWS)
  redis.call('ZREM', BASE .. 'u:' .. h.uid, sid)
  redis.call('ZREM', DUE, sid)
  h.st = st
  emit(END_EVENT[st], sid, h, h.ip, h.ua, reason, rule)
end

-- expire_if_due ends a live session whose idle or absolute timeout passed.
local function expire_if_due(skey, sid, h)
  if live(h.st) and NOW >= due(h) then
    end_session(skey, sid, h, 'expired', timeout_reason(h))
    return true
  end
  return false
end

local DEAD_CODE = {expired = 'session_expired', reauth_required = 'reauth_required'}

-- check authenticates a token against a loaded session and returns nil when
-- the session may be used, or the error code. Reuse of a dead or rotated
-- token is recorded as session.rejected: replay after logout is a theft
-- signal.
local function check(skey, sid, h, th, owner, ip, ua, path)
  if not ct_eq32(h.th, th) then
    if in_prev(h.pth, th) then
      emit('session.rejected', sid, h, ip, ua, 'rotated_token', '', path)
      return 'session_revoked'
    end
    emit('session.rejected', sid, h, ip, ua, 'invalid_secret', '', path)
    return 'session_not_found'
  end
  if owner ~= '' and h.app ~= owner then return 'forbidden' end
  expire_if_due(skey, sid, h)
  if h.st == 'active' then return nil end
  emit('session.rejected', sid, h, ip, ua, h.st, '', path)
  return DEAD_CODE[h.st] or 'session_revoked'
end

-- reply is the session as returned to Go.
local function reply(h)
  return {'ok', h.uid, h.app, h.ip, h.ua, h.ca, h.la, h.ea, h.it, h.st, h.at, h.csrf}
end
