-- KEYS: session
-- ARGV[5..]: sid reason rule
local sid, reason, rule = ARGV[5], ARGV[6], ARGV[7]
local h = load(KEYS[1])
if not h then return {'session_not_found'} end
if expire_if_due(KEYS[1], sid, h) or h.st ~= 'active' then return {'ok', h.st} end
redis.call('HSET', KEYS[1], 'st', 'reauth_required', 'why', reason)
emit('session.reauth_required', sid, h, h.ip, h.ua, reason, rule)
return {'ok', 'reauth_required'}
