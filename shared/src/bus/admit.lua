-- Admission under the per-user connection cap, on presence's keys (see
-- services/presence/src/store/redis.rs): a connection is admitted while its
-- user has fewer than max connections, counting the registered ones
-- (presence:user:{id}, a SET presence keeps) and those admitted within the
-- expiry and not registered yet (presence:admitted:{id}, a ZSET conn id ->
-- admitted at; presence's script removes an entry when it registers the
-- connection). One run answers a batch atomically, so two gateways never
-- both admit the one over the cap.
--
-- Each answer also carries the user's unread notifications, as the api
-- keeps them in notif:unread:{id} (absent: none), for the `welcome`.
--
-- ARGV: 1 now (ms), 2 expiry (ms), 3 key TTL (ms), 4 max, then conn id and
-- user id pairs. Reply: two integers per pair, in order: 1 (admitted) or
-- 0, and the unread count.
local now = tonumber(ARGV[1])
local expiry = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local max = tonumber(ARGV[4])
local out = {}
local pruned = {}
for i = 5, #ARGV - 1, 2 do
  local c, user = ARGV[i], ARGV[i + 1]
  local akey = 'presence:admitted:' .. user
  if not pruned[user] then
    pruned[user] = true
    redis.call('ZREMRANGEBYSCORE', akey, '-inf', '(' .. string.format('%.0f', now - expiry))
  end
  local count = redis.call('SCARD', 'presence:user:' .. user) + redis.call('ZCARD', akey)
  if count < max then
    redis.call('ZADD', akey, now, c)
    redis.call('PEXPIRE', akey, ttl)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
  out[#out + 1] = tonumber(redis.call('GET', 'notif:unread:' .. user) or '0') or 0
end
return out
