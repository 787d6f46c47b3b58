-- KEYS: session, user index, due, outbox
-- ARGV[5..]: sid uid app th csrf ip ua attrs idle_ms abs_expiry_ms
--            retain_until_ms max_sessions limit_mode previous_sid
local sid, uid, app = ARGV[5], ARGV[6], ARGV[7]
local it, ea, retain = tonumber(ARGV[13]), tonumber(ARGV[14]), tonumber(ARGV[15])
local max, mode, prev = tonumber(ARGV[16]), ARGV[17], ARGV[18]
if redis.call('EXISTS', KEYS[1]) == 1 then return {'conflict'} end

-- End the user's sessions that timed out, so they do not count.
for _, s in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local sk = BASE .. 's:' .. s
  local h = load(sk)
  if not h or not live(h.st) then
    redis.call('ZREM', KEYS[2], s)
    redis.call('ZREM', DUE, s)
  else
    expire_if_due(sk, s, h)
  end
end

local evicted = {}
local n = redis.call('ZCARD', KEYS[2])
if max > 0 and n >= max then
  if mode == 'deny' then return {'session_limit_reached'} end
  for _, s in ipairs(redis.call('ZRANGE', KEYS[2], 0, n - max)) do
    local sk = BASE .. 's:' .. s
    end_session(sk, s, load(sk), 'evicted', 'max_sessions')
    evicted[#evicted + 1] = s
  end
end

local h = {uid = uid, app = app, ip = ARGV[10], ua = ARGV[11]}
redis.call('HSET', KEYS[1], 'uid', uid, 'app', app, 'th', ARGV[8], 'csrf', ARGV[9],
  'st', 'active', 'ca', NOWS, 'la', NOWS, 'ea', ARGV[14], 'it', ARGV[13],
  'ip', h.ip, 'ua', h.ua, 'at', ARGV[12])
redis.call('PEXPIREAT', KEYS[1], retain)
redis.call('ZADD', KEYS[2], NOW, sid)
-- The user index lives as long as the longest-lived session in it.
local pttl = redis.call('PTTL', KEYS[2])
if pttl < 0 or NOW + pttl < retain then redis.call('PEXPIREAT', KEYS[2], retain) end
redis.call('ZADD', DUE, math.min(NOW + it, ea), sid)
emit('session.created', sid, h, h.ip, h.ua, '', '', '', prev)
return {'ok', unpack(evicted)}
