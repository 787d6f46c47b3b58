-- KEYS: user index
-- ARGV[5..]: user_id owner except state reason
local owner, except, st, reason = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local n = 0
for _, s in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local sk = BASE .. 's:' .. s
  local h = load(sk)
  if not h then
    redis.call('ZREM', KEYS[1], s)
  elseif s ~= except and (owner == '' or h.app == owner) and not expire_if_due(sk, s, h) and live(h.st) then
    end_session(sk, s, h, st, reason, '')
    n = n + 1
  end
end
return {'ok', n}
