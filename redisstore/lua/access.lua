-- KEYS: session
-- ARGV[5..]: sid th owner ip ua path csrf
local sid, th, owner, ip, ua, path, csrf = ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11]
-- The common case in one pass, reading only the fields it answers with:
-- the right secret (compared first and always, in constant time), an
-- active session of the caller's app within both timeouts, and the CSRF
-- token when one is given. Anything else takes the full path below, which
-- decides and records it.
local v = redis.call('HMGET', KEYS[1], 'th', 'st', 'app', 'uid', 'ca', 'la', 'ea', 'it', 'at', 'csrf')
if ct_eq32(v[1], th) and v[2] == 'active' and v[4] and (owner == '' or v[3] == owner)
  and (csrf == '' or ct_eq(v[10], csrf)) then
  if NOW < math.min(tonumber(v[6]) + tonumber(v[8]), tonumber(v[7])) then
    redis.call('HSET', KEYS[1], 'la', NOWS, 'ip', ip, 'ua', ua)
    emit('session.accessed', sid, {uid = v[4], app = v[3]}, ip, ua, '', '', path)
    -- The session as one string, its values separated by US as in the
    -- outbox: uid app ip ua ca la ea it st at csrf.
    return {'ok', v[4] .. '\031' .. v[3] .. '\031' .. ip .. '\031' .. ua .. '\031' .. v[5] .. '\031' .. NOWS .. '\031' .. v[7]
      .. '\031' .. v[8] .. '\031active\031' .. (v[9] or '') .. '\031' .. (v[10] or '')}
  end
end

local h = load(KEYS[1])
if not h then return {'session_not_found'} end
local code = check(KEYS[1], sid, h, th, owner, ip, ua, path)
if code then return {code} end
if csrf ~= '' and not ct_eq(h.csrf, csrf) then
  emit('session.rejected', sid, h, ip, ua, 'csrf_mismatch', '', path)
  return {'csrf_mismatch'}
end
h.la, h.ip, h.ua = NOW, ip, ua
redis.call('HSET', KEYS[1], 'la', NOWS, 'ip', ip, 'ua', ua)
emit('session.accessed', sid, h, ip, ua, '', '', path)
return reply(h)
