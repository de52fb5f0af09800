-- Shared token buckets for rate limits (GCRA: one number per bucket, its
-- "theoretical arrival time"). A bucket of rate r per second and burst b
-- has interval t = 1000 / r ms and tolerance tau = b * t ms; a take of up
-- to n tokens grants as many as the bucket holds (at most n) and moves the
-- bucket's time on by t each. An empty bucket answers how long until its
-- next token. One run answers a batch of takes atomically, so the gateways
-- and api nodes sharing this Redis share each bucket exactly.
--
-- ARGV: 1 now (ms), then for each take: key, t (ms), tau (ms), n.
-- Reply: two integers per take, in order: tokens granted, and ms until the
-- next token when none was granted (else 0).
local now = tonumber(ARGV[1])
local out = {}
for i = 2, #ARGV - 3, 4 do
  local key = ARGV[i]
  local t = tonumber(ARGV[i + 1])
  local tau = tonumber(ARGV[i + 2])
  local n = tonumber(ARGV[i + 3])
  local tat = tonumber(redis.call('GET', key) or now) or now
  if tat < now then tat = now end
  local avail = math.floor((now + tau - tat) / t + 1e-9)
  local k = math.min(n, avail)
  if k >= 1 then
    tat = tat + k * t
    redis.call('SET', key, string.format('%.3f', tat), 'PX', math.ceil(tat - now) + 1)
    out[#out + 1] = k
    out[#out + 1] = 0
  else
    out[#out + 1] = 0
    out[#out + 1] = math.max(1, math.ceil(tat + t - tau - now))
  end
end
return out
