-- KEYS: session
-- ARGV[5..]: sid th ('' = by session ID) owner user_id ('' = any) state reason rule
local sid, th, owner, uid = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local h = load(KEYS[1])
if not h then return {'session_not_found'} end
if th ~= '' and not ct_eq32(h.th, th) then
  if in_prev(h.pth, th) then
    emit('session.rejected', sid, h, h.ip, h.ua, 'rotated_token')
    return {'session_revoked'}
  end
  emit('session.rejected', sid, h, h.ip, h.ua, 'invalid_secret')
  return {'session_not_found'}
end
if owner ~= '' and h.app ~= owner then return {'forbidden'} end
if uid ~= '' and h.uid ~= uid then return {'session_not_found'} end
if expire_if_due(KEYS[1], sid, h) then return {'ok', 'expired'} end
if not live(h.st) then
  -- Ending a dead session changes nothing; presenting its token again
  -- is a reuse worth recording.
  if th ~= '' then emit('session.rejected', sid, h, h.ip, h.ua, h.st) end
  return {'ok', h.st}
end
end_session(KEYS[1], sid, h, ARGV[9], ARGV[10], ARGV[11])
return {'ok', ARGV[9]}
