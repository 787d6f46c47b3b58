-- KEYS: user index
-- ARGV[5..]: owner
-- Returns, for each live session the owner may see, 11 values: sid uid app
-- ip ua ca la ea it st at. Sessions past their expiry are left out (the
-- sweeper ends them).
local owner = ARGV[5]
local out = {'ok'}
for _, s in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local h = load(BASE .. 's:' .. s)
  if h and live(h.st) and NOW < due(h) and (owner == '' or h.app == owner) then
    for _, v in ipairs({s, h.uid, h.app, h.ip, h.ua, h.ca, h.la, h.ea, h.it, h.st, h.at}) do
      out[#out + 1] = v
    end
  end
end
return out
