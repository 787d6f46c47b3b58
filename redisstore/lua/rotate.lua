-- KEYS: session
-- ARGV[5..]: sid th owner ip ua path csrf new_th new_csrf
local sid, ip, ua, path, csrf = ARGV[5], ARGV[8], ARGV[9], ARGV[10], ARGV[11]
local h = load(KEYS[1])
if not h then return {'session_not_found'} end
local code = check(KEYS[1], sid, h, ARGV[6], ARGV[7], ip, ua, path)
if code then return {code} end
if csrf ~= '' and not ct_eq(h.csrf, csrf) then
  emit('session.rejected', sid, h, ip, ua, 'csrf_mismatch', '', path)
  return {'csrf_mismatch'}
end
-- Keep the last four secret hashes, so reuse of a rotated token is seen.
local pth = string.sub(h.th .. h.pth, 1, 4 * 32)
h.la, h.ip, h.ua, h.csrf = NOW, ip, ua, ARGV[13]
redis.call('HSET', KEYS[1], 'th', ARGV[12], 'pth', pth, 'csrf', h.csrf, 'la', NOWS, 'ip', ip, 'ua', ua)
emit('session.regenerated', sid, h, ip, ua, 'regenerate', '', path)
return reply(h)
