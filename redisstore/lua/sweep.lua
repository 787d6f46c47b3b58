-- KEYS: due
-- ARGV[5..]: limit
-- Ends up to limit sessions whose idle or absolute timeout has passed and
-- returns how many it looked at; the caller repeats while that is limit.
local due_now = redis.call('ZRANGEBYSCORE', DUE, '-inf', NOW, 'LIMIT', 0, tonumber(ARGV[5]))
local expired = 0
for _, s in ipairs(due_now) do
  local sk = BASE .. 's:' .. s
  local h = load(sk)
  if not h or not live(h.st) then
    redis.call('ZREM', DUE, s)
  elseif expire_if_due(sk, s, h) then
    expired = expired + 1
  else
    redis.call('ZADD', DUE, due(h), s)
  end
end
return {'ok', #due_now, expired}
