-- The presence state machine of RedisStore (store.rs describes it,
-- store/redis.rs documents every key; store/memory/machine.rs implements the
-- same semantics in Rust, function by function).
--
-- Reports apply what happened on a gateway; a heartbeat lists every live
-- connection of a node with its whole state (rooms, idle, the user's latest
-- choice) and the script converges to it, so what a lost report missed is
-- repaired and a flushed Redis is rebuilt. Choices are ordered by the time
-- a gateway received them (chosen_at): only a strictly newer one is taken.
--
-- One call applies one batch atomically: replicas sharing this Redis never
-- both observe one transition, so each change is returned to exactly one
-- caller. Key names are derived from ids inside the script instead of being
-- passed as KEYS: single-instance Redis (or a primary with replicas), not
-- Redis Cluster.
--
-- ARGV: 1 op ('reports' | 'heartbeat' | 'sweep'), 2 now (ms), 3 expiry (ms),
-- 4 grace (ms), 5 typing TTL (ms), 6 key TTL (ms), 7 payload (JSON for
-- reports and heartbeat, the batch size for sweep), 8 max rooms per conn.
-- (Admission under the per-user cap is shared/src/bus/admit.lua, on the
-- same keys: register() below moves an admitted connection out of
-- presence:admitted:{user}.)
--
-- Reply: an array of changes, each an array of strings:
--   {'p', user_id, name, status, text, last_seen_ms, cause_ms, rooms_csv,
--    choice_status, choice_text, choice_at_ms}
--     (the user's choice record; the three are '' when there is none, and
--     always for offline)
--   {'t', room, user_id, name, '1' | '0'}
--   {'x', conn_id}   (sweep: an expired connection)
--   {'more'}         (sweep: a batch was full, call again)

local op = ARGV[1]
local now = tonumber(ARGV[2])
local expiry = tonumber(ARGV[3])
local grace = tonumber(ARGV[4])
local typing_ttl = tonumber(ARGV[5])
local key_ttl = tonumber(ARGV[6])
local max_rooms = tonumber(ARGV[8])

local CONNS = 'presence:conns'
local PENDING = 'presence:pending'
local TYPING = 'presence:typing'
local TYPING_INFO = 'presence:typing:info'

local function conn_key(id) return 'presence:conn:' .. id end
local function conn_rooms_key(id) return 'presence:connrooms:' .. id end
local function user_key(id) return 'presence:user:' .. id end
local function status_key(id) return 'presence:status:' .. id end
local function seen_key(id) return 'presence:seenrooms:' .. id end
local function room_key(id) return 'presence:room:' .. id end
local function admit_key(id) return 'presence:admitted:' .. id end

-- Integral milliseconds as text (tostring would switch to exponents).
local function num(x) return string.format('%.0f', x) end

local out = {}

local function split(csv)
  local list = {}
  if not csv or csv == '' then return list end
  for part in string.gmatch(csv, '[^,]+') do list[#list + 1] = part end
  return list
end

-- A set (room -> true) as sorted comma-separated text; room ids hold no commas.
local function set_csv(set)
  local list = {}
  for room in pairs(set) do list[#list + 1] = room end
  table.sort(list)
  return table.concat(list, ',')
end

-- Records that one of user's connections joined room: the user's offline
-- must reach it (see go_offline).
local function saw_room(user, room)
  redis.call('SADD', seen_key(user), room)
  redis.call('PEXPIRE', seen_key(user), key_ttl)
end

local function user_rooms(user)
  local set = {}
  for _, c in ipairs(redis.call('SMEMBERS', user_key(user))) do
    for _, room in ipairs(redis.call('SMEMBERS', conn_rooms_key(c))) do set[room] = true end
  end
  return set_csv(set)
end

local function owned(c, user)
  return redis.call('HGET', conn_key(c), 'user_id') == user
end

local function typed(room, user, name, active)
  out[#out + 1] = {'t', room, user, name, active and '1' or '0'}
end

-- Stops user's typing in room if connection c reported it.
local function stop_typing_of(c, user, room)
  local member = room .. '|' .. user
  local info = redis.call('HGET', TYPING_INFO, member)
  if not info then return end
  local entry = cjson.decode(info)
  if entry[1] ~= c then return end
  redis.call('ZREM', TYPING, member)
  redis.call('HDEL', TYPING_INFO, member)
  typed(room, user, entry[2], false)
end

-- The chosen status (and text) if any, else away when every connection is
-- idle, else online. active: one of the user's connections is known not to
-- be idle (a connection registering), so none need be read.
local function effective(user, chosen, text, active)
  if chosen then return chosen, text or '' end
  if active then return 'online', '' end
  for _, c in ipairs(redis.call('SMEMBERS', user_key(user))) do
    if redis.call('HGET', conn_key(c), 'idle') ~= '1' then return 'online', '' end
  end
  return 'away', ''
end

-- Announces the user's effective status if it differs from the announced
-- one, with the user's choice record (an online choice has no 'chosen').
-- active: as for effective.
local function settle(user, cause, active)
  if redis.call('SCARD', user_key(user)) == 0 then return end
  local skey = status_key(user)
  local cur = redis.call('HMGET', skey, 'eff', 'etext', 'name', 'chosen', 'text', 'chosen_at')
  local status, text = effective(user, cur[4], cur[5], active)
  if cur[1] == status and (cur[2] or '') == text then return end
  redis.call('HSET', skey, 'eff', status, 'etext', text)
  local cs, ct, ca = '', '', ''
  if cur[6] then cs, ct, ca = cur[4] or 'online', cur[5] or '', cur[6] end
  out[#out + 1] = {'p', user, cur[3] or '', status, text, num(now), num(cause), user_rooms(user),
    cs, ct, ca}
end

-- rooms (a set, room -> true) plus every room the user's connections joined
-- since the user came online (presence:seenrooms), as sorted text: whoever
-- saw the user online in a room hears of the offline, even when the
-- connection that joined it closed before the last one.
local function offline_rooms(user, rooms)
  for _, room in ipairs(redis.call('SMEMBERS', seen_key(user))) do rooms[room] = true end
  return set_csv(rooms)
end

-- Forgets the user, their choice and its time and the rooms they were seen in;
-- announces offline (to rooms and every seen room) if anything was announced.
local function go_offline(user, last_seen, rooms, cause)
  local skey = status_key(user)
  local cur = redis.call('HMGET', skey, 'eff', 'name')
  local csv = offline_rooms(user, rooms)
  redis.call('DEL', skey, seen_key(user))
  redis.call('ZREM', PENDING, user)
  if cur[1] then
    out[#out + 1] = {'p', user, cur[2] or '', 'offline', '', num(last_seen), num(cause), csv,
      '', '', ''}
  end
end

-- Forgets a connection, its rooms and its typing; returns its user (or
-- false), its sorted rooms and its last heartbeat.
local function remove_conn(c)
  local ck = conn_key(c)
  local user = redis.call('HGET', ck, 'user_id')
  local score = redis.call('ZSCORE', CONNS, c)
  score = score and tonumber(score) or now
  local rooms = redis.call('SMEMBERS', conn_rooms_key(c))
  table.sort(rooms)
  for _, room in ipairs(rooms) do
    redis.call('SREM', room_key(room), c)
    if user then stop_typing_of(c, user, room) end
  end
  redis.call('ZREM', CONNS, c)
  redis.call('DEL', ck, conn_rooms_key(c))
  if user then redis.call('SREM', user_key(user), c) end
  return user, rooms, score
end

-- A connection ended: the user settles, or becomes pending offline.
local function disconnect(c)
  local user, rooms = remove_conn(c)
  if not user then return end
  if redis.call('SCARD', user_key(user)) > 0 then return settle(user, now) end
  local skey = status_key(user)
  if redis.call('HEXISTS', skey, 'eff') == 0 then
    redis.call('DEL', skey, seen_key(user))
    return
  end
  local set = {}
  for _, room in ipairs(rooms) do set[room] = true end
  redis.call('HSET', skey, 'ended', num(now), 'rooms', offline_rooms(user, set))
  redis.call('PEXPIRE', skey, key_ttl + grace)
  -- Kept through the grace: a reconnect within it continues the session.
  redis.call('PEXPIRE', seen_key(user), key_ttl + grace)
  redis.call('ZADD', PENDING, now + grace, user)
  redis.call('PEXPIRE', PENDING, key_ttl + grace)
end

-- Adds or refreshes a connection (a conn id seen under another user is first
-- disconnected from that user). The caller settles the user.
local function register(c, user, name, node, idle, rooms)
  local ck = conn_key(c)
  local owner = redis.call('HGET', ck, 'user_id')
  if owner and owner ~= user then
    disconnect(c)
    owner = false
  end
  redis.call('ZADD', CONNS, now, c)
  if owner then
    redis.call('HSET', ck, 'name', name, 'node', node)
  else
    redis.call('DEL', conn_rooms_key(c))
    redis.call('HSET', ck, 'user_id', user, 'name', name, 'node', node, 'idle', idle)
    for i, room in ipairs(rooms) do
      if i > max_rooms then break end
      redis.call('SADD', conn_rooms_key(c), room)
      redis.call('SADD', room_key(room), c)
      redis.call('PEXPIRE', room_key(room), key_ttl)
      saw_room(user, room)
    end
  end
  redis.call('PEXPIRE', ck, key_ttl)
  redis.call('PEXPIRE', conn_rooms_key(c), key_ttl)
  redis.call('SADD', user_key(user), c)
  redis.call('PEXPIRE', user_key(user), key_ttl)
  -- Admitted and now registered: counted once, as a connection.
  redis.call('ZREM', admit_key(user), c)
  local skey = status_key(user)
  redis.call('HSET', skey, 'name', name)
  redis.call('HDEL', skey, 'ended', 'rooms')
  redis.call('PEXPIRE', skey, key_ttl)
  redis.call('PEXPIRE', seen_key(user), key_ttl)
  -- A connection within the grace period: the user never went offline.
  redis.call('ZREM', PENDING, user)
end

-- c joined room (unless it is in max_rooms rooms already); returns whether
-- it was recorded.
local function join(c, user, room)
  if not owned(c, user) then return false end
  local rk = conn_rooms_key(c)
  if redis.call('SCARD', rk) >= max_rooms then return false end
  redis.call('SADD', rk, room)
  redis.call('PEXPIRE', rk, key_ttl)
  redis.call('SADD', room_key(room), c)
  redis.call('PEXPIRE', room_key(room), key_ttl)
  saw_room(user, room)
  return true
end

-- The user left room on c: once none of their connections is in it, its
-- members no longer need the user's offline.
local function leave(c, user, room)
  if owned(c, user) then
    redis.call('SREM', conn_rooms_key(c), room)
    redis.call('SREM', room_key(room), c)
    local still = false
    for _, other in ipairs(redis.call('SMEMBERS', user_key(user))) do
      if redis.call('SISMEMBER', conn_rooms_key(other), room) == 1 then
        still = true
        break
      end
    end
    if not still then redis.call('SREM', seen_key(user), room) end
  end
  stop_typing_of(c, user, room)
end

local function typing(c, user, name, room, active)
  local member = room .. '|' .. user
  if active ~= '1' then
    if redis.call('ZREM', TYPING, member) == 1 then
      redis.call('HDEL', TYPING_INFO, member)
      typed(room, user, name, false)
    end
    return
  end
  if not owned(c, user) then return end
  -- ZADD answers 1 only for a new member: a refresh announces nothing.
  local added = redis.call('ZADD', TYPING, now + typing_ttl, member)
  redis.call('HSET', TYPING_INFO, member, cjson.encode({c, name}))
  redis.call('PEXPIRE', TYPING, typing_ttl + key_ttl)
  redis.call('PEXPIRE', TYPING_INFO, typing_ttl + key_ttl)
  if added == 1 then typed(room, user, name, true) end
end

-- Records the user's choice made at `at` (ms, as text) if it is newer than
-- the recorded one (chosen_at) or none is; online clears the chosen status
-- but still records its time. Ignored for offline users (no status hash).
-- Returns whether it was recorded; the caller settles the user.
local function choose(user, name, status, text, at)
  if status == 'offline' then return false end
  local skey = status_key(user)
  if redis.call('EXISTS', skey) == 0 then return false end
  local prev = redis.call('HGET', skey, 'chosen_at')
  if prev and tonumber(at) <= tonumber(prev) then return false end
  redis.call('HSET', skey, 'name', name, 'chosen_at', at)
  if status == 'online' then
    redis.call('HDEL', skey, 'chosen', 'text')
  else
    redis.call('HSET', skey, 'chosen', status)
    if text ~= '' then redis.call('HSET', skey, 'text', text) else redis.call('HDEL', skey, 'text') end
  end
  return true
end

local function set_idle(c, user, idle)
  if not owned(c, user) then return end
  redis.call('HSET', conn_key(c), 'idle', idle)
  settle(user, now)
end

-- Brings a known connection (idle: its recorded flag) to the rooms and idle
-- flag its gateway listed: a listed room it is not recorded in is joined and
-- a recorded one not listed is left, exactly as join and leave reports would
-- (seen rooms, typing); leaves go first so a full connection can swap rooms.
-- Returns whether anything changed; the caller settles the user.
local function converge(c, user, rooms, idle, listed_idle)
  local changed = false
  if idle ~= listed_idle then
    redis.call('HSET', conn_key(c), 'idle', listed_idle)
    changed = true
  end
  local listed, recorded = {}, {}
  for _, room in ipairs(rooms) do listed[room] = true end
  local have = redis.call('SMEMBERS', conn_rooms_key(c))
  table.sort(have)
  for _, room in ipairs(have) do
    recorded[room] = true
    if not listed[room] then
      leave(c, user, room)
      changed = true
    end
  end
  for _, room in ipairs(rooms) do
    if not recorded[room] and join(c, user, room) then
      recorded[room] = true
      changed = true
    end
  end
  return changed
end

-- Converges presence to a node's heartbeat. Each entry: {conn_id, user_id,
-- name, node, idle '1'|'0', rooms_csv, choice status ('' for none), choice
-- text, choice at (ms)}. A known connection gets its last heartbeat and
-- converges to its rooms and idle flag; an unknown one is registered with
-- them; a listed choice newer than the user's is taken. Then every user
-- whose state changed settles, once, in the order first changed.
local function heartbeat(conns)
  local seen, changed, order, rooms_seen, asked = {}, {}, {}, {}, {}
  for _, l in ipairs(conns) do
    local c, user = l[1], l[2]
    local rooms = split(l[6])
    local dirty
    local cur = redis.call('HMGET', conn_key(c), 'user_id', 'idle')
    if cur[1] == user then
      redis.call('ZADD', CONNS, now, c)
      redis.call('PEXPIRE', conn_key(c), key_ttl)
      redis.call('PEXPIRE', conn_rooms_key(c), key_ttl)
      dirty = converge(c, user, rooms, cur[2], l[5])
    else
      register(c, user, l[3], l[4], l[5], rooms)
      dirty = true
    end
    -- A gateway repeats a user's choice on each of their connections: only
    -- one newer than any already weighed in this run is compared with
    -- the store's.
    local at = tonumber(l[9])
    if l[7] ~= '' and not (asked[user] and at <= asked[user]) then
      asked[user] = at
      if choose(user, l[3], l[7], l[8], l[9]) then dirty = true end
    end
    if dirty and not changed[user] then
      changed[user] = true
      order[#order + 1] = user
    end
    if not seen[user] then
      seen[user] = true
      redis.call('PEXPIRE', user_key(user), key_ttl)
      redis.call('PEXPIRE', status_key(user), key_ttl)
      redis.call('PEXPIRE', seen_key(user), key_ttl)
    end
    for _, room in ipairs(rooms) do
      if not rooms_seen[room] then
        rooms_seen[room] = true
        redis.call('PEXPIRE', room_key(room), key_ttl)
      end
    end
  end
  for _, user in ipairs(order) do settle(user, now) end
end

-- Expires stale connections, fires due pending users, expires typing.
local function sweep(batch)
  local more = false
  local ids = redis.call('ZRANGEBYSCORE', CONNS, '-inf', '(' .. num(now - expiry), 'LIMIT', 0, batch)
  if #ids == batch then more = true end
  local gone, order = {}, {}
  for _, c in ipairs(ids) do
    local user, rooms, score = remove_conn(c)
    out[#out + 1] = {'x', c}
    if user then
      local g = gone[user]
      if not g then
        g = {last = score, rooms = {}}
        gone[user] = g
        order[#order + 1] = user
      end
      if score > g.last then g.last = score end
      for _, room in ipairs(rooms) do g.rooms[room] = true end
    end
  end
  for _, user in ipairs(order) do
    local g = gone[user]
    if redis.call('SCARD', user_key(user)) > 0 then
      settle(user, g.last + expiry)
    else
      go_offline(user, g.last, g.rooms, g.last + expiry)
    end
  end
  local due = redis.call('ZRANGEBYSCORE', PENDING, '-inf', num(now), 'WITHSCORES', 'LIMIT', 0, batch)
  if #due == 2 * batch then more = true end
  for i = 1, #due, 2 do
    local user, at = due[i], tonumber(due[i + 1])
    -- The ZREM claims the user: whoever removes it announces the offline.
    if redis.call('ZREM', PENDING, user) == 1 and redis.call('SCARD', user_key(user)) == 0 then
      local p = redis.call('HMGET', status_key(user), 'ended', 'rooms')
      local rooms = {}
      for _, room in ipairs(split(p[2])) do rooms[room] = true end
      go_offline(user, tonumber(p[1]) or at, rooms, at)
    end
  end
  local typing_due = redis.call('ZRANGEBYSCORE', TYPING, '-inf', num(now), 'LIMIT', 0, batch)
  if #typing_due == batch then more = true end
  for _, member in ipairs(typing_due) do
    local info = redis.call('HGET', TYPING_INFO, member)
    redis.call('ZREM', TYPING, member)
    redis.call('HDEL', TYPING_INFO, member)
    local sep = string.find(member, '|', 1, true)
    local name = info and cjson.decode(info)[2] or ''
    typed(string.sub(member, 1, sep - 1), string.sub(member, sep + 1), name, false)
  end
  if more then out[#out + 1] = {'more'} end
end

if op == 'reports' then
  -- Each entry starts with its kind; see store/redis/codec.rs.
  for _, r in ipairs(cjson.decode(ARGV[7])) do
    local kind = r[1]
    if kind == 'c' then
      register(r[2], r[3], r[4], r[5], '0', {})
      -- A connection that is not idle makes the user online unless they
      -- chose otherwise: no scan of the user's other connections (100 of
      -- them would cost 100 reads per connect).
      settle(r[3], now, redis.call('HGET', conn_key(r[2]), 'idle') ~= '1')
    elseif kind == 'd' then disconnect(r[2])
    elseif kind == 'j' then join(r[2], r[3], r[4])
    elseif kind == 'l' then leave(r[2], r[3], r[4])
    elseif kind == 't' then typing(r[2], r[3], r[4], r[5], r[6])
    elseif kind == 's' then
      if choose(r[2], r[3], r[4], r[5], r[6]) then settle(r[2], now) end
    elseif kind == 'i' then set_idle(r[2], r[3], r[4])
    end
  end
elseif op == 'heartbeat' then
  heartbeat(cjson.decode(ARGV[7]))
elseif op == 'sweep' then
  sweep(tonumber(ARGV[7]))
end
return out
