-- Connect marks: whether a user's connect can skip the api's offline read
-- (queued DMs and DM changes, pending invitations, active announcements
-- not dismissed). See pending.rs for who writes what and why it is safe.
--
--   pending:ver:{user}    bumped by the api after it commits anything a
--                         connect of the user must read
--   pending:gen           bumped by the api for everyone (an announcement,
--                         its start, a bump it could not make per user)
--   pending:clean:{user}  "{ver}:{gen}" as the api read them before an
--                         offline read that found nothing
--
-- ARGV[1] is the operation:
--   check USER...             one integer per user: 1 when its clean mark
--                             matches the current ver and gen, else 0
--   clean USER VER GEN TTL    sets the clean mark (TTL ms) if ver and gen
--                             are still VER and GEN; the ver key is made to
--                             outlive it (a ver key that expired first would
--                             read 0 and could match an old mark). 1 if set.
local op = ARGV[1]
local gen = redis.call('GET', 'pending:gen') or '0'
local function ver_of(user) return redis.call('GET', 'pending:ver:' .. user) or '0' end
if op == 'check' then
  local out = {}
  for i = 2, #ARGV do
    local user = ARGV[i]
    local mark = redis.call('GET', 'pending:clean:' .. user)
    out[#out + 1] = (mark == ver_of(user) .. ':' .. gen) and 1 or 0
  end
  return out
elseif op == 'clean' then
  local user, ttl = ARGV[2], tonumber(ARGV[5])
  local ver = ver_of(user)
  if ver ~= ARGV[3] or gen ~= ARGV[4] then return 0 end
  redis.call('SET', 'pending:clean:' .. user, ver .. ':' .. gen, 'PX', ttl)
  if redis.call('EXISTS', 'pending:ver:' .. user) == 1 then
    redis.call('PEXPIRE', 'pending:ver:' .. user, ttl * 2)
  end
  return 1
end
return redis.error_reply('unknown operation')
