package redisstate

import "github.com/redis/go-redis/v9"

// The operations that read and write more than one key, or decide on what
// they read, run as Lua scripts: Redis runs each one alone, so each is
// atomic. A script touches only keys of its own state, and the state's
// prefix carries a hash tag, so that on Redis Cluster they share one slot.

// lib holds the functions every script may use.
const lib = `
-- now returns the server's clock in milliseconds.
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- nextid increments the counter at key and returns its new value as a
-- string. A missing counter (a new state, or a Redis that lost its data)
-- starts from the server's clock in microseconds, so that versions and
-- fencing tokens keep increasing across a loss of data.
local function nextid(key)
  if redis.call('EXISTS', key) == 0 then
    local t = redis.call('TIME')
    redis.call('SET', key, t[1] .. string.format('%06d', tonumber(t[2])))
  end
  redis.call('INCR', key)
  return redis.call('GET', key)
end

-- reply is the answer of every write: found (0 or 1), value, version, int
-- and ttl (milliseconds left), numbers as decimal strings so that no
-- precision is lost in Lua.
local function reply(found, value, version, int, ttl)
  return {found and 1 or 0, value or '', version or '0', int or '0', ttl or '0'}
end

-- get returns the map entry at the Redis key e as {value, version}, or nil.
local function get(e)
  local v = redis.call('HMGET', e, 'v', 'n')
  if v[1] then
    return v
  end
end

-- forget drops from a map's index the entries that expired, up to limit of
-- them, and reports whether there may be more. The map's expiries list the
-- keys with a TTL by expiry time: Redis drops the entry itself.
local function forget(index, expiries, prefix, limit)
  local gone = redis.call('ZRANGEBYSCORE', expiries, '-inf', '(' .. now(), 'LIMIT', 0, limit)
  if #gone > 0 then
    redis.call('ZREM', index, unpack(gone))
    redis.call('ZREM', expiries, unpack(gone))
    for i, k in ipairs(gone) do
      gone[i] = prefix .. k
    end
    redis.call('DEL', unpack(gone))
  end
  return #gone == limit
end
`

// mapLib holds the functions of the scripts that write one map entry. They
// get KEYS = {entry, index, expiries, versions} (the entry's Redis key, the
// map's index of keys, its expiries, and the state's version counter) and
// ARGV = {key, prefix, ...} (the entry's key in the map, and the prefix that
// turns a key of the map into its entry's Redis key). Each first forgets
// some expired entries, so that a map's index does not grow with them.
const mapLib = `
local entry, index, expiries, versions = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local key, prefix = ARGV[1], ARGV[2]
forget(index, expiries, prefix, 100)

-- put stores value with a new version, expiring after ttl milliseconds
-- (never if 0), and returns the version. A ttl of '+' then milliseconds
-- keeps the expiry of an existing entry (the milliseconds are a new one's).
local function put(value, ttl)
  local keep = string.sub(ttl, 1, 1) == '+'
  if keep then
    ttl = string.sub(ttl, 2)
  end
  local existed = redis.call('EXISTS', entry) == 1
  local version = nextid(versions)
  redis.call('HSET', entry, 'v', value, 'n', version)
  redis.call('ZADD', index, 0, key)
  ttl = tonumber(ttl)
  if keep and existed then
    -- HSET leaves the entry's expiry as it was.
  elseif ttl > 0 then
    local at = now() + ttl
    redis.call('PEXPIREAT', entry, at)
    redis.call('ZADD', expiries, at, key)
  else
    redis.call('PERSIST', entry)
    redis.call('ZREM', expiries, key)
  end
  return version
end

local function remove()
  redis.call('DEL', entry)
  redis.call('ZREM', index, key)
  redis.call('ZREM', expiries, key)
end

-- left returns the milliseconds the entry has left, or 0 if it never
-- expires (or is missing).
local function left()
  return math.max(redis.call('PTTL', entry), 0)
end
`

// intLib reads and writes integers in their msgpack forms (the shortest, as
// the Go encoder writes them) exactly, whatever their size: Lua's numbers
// are doubles, exact to 2^53 only, so larger ones go through decimal
// strings and limbs of 10^7, and through Redis's INCRBY for the sum.
const intLib = `
-- dec64 returns hi * 2^32 + lo (each below 2^32) in decimal.
local function dec64(hi, lo)
  local h1, h0 = math.floor(hi / 1e7), hi % 1e7
  -- 2^32 = 429 * 1e7 + 4967296
  local l0 = h0 * 4967296 + lo
  local l1 = h1 * 4967296 + h0 * 429 + math.floor(l0 / 1e7)
  l0 = l0 % 1e7
  local l2 = h1 * 429 + math.floor(l1 / 1e7)
  l1 = l1 % 1e7
  if l2 > 0 then
    return string.format('%d%07d%07d', l2, l1, l0)
  elseif l1 > 0 then
    return string.format('%d%07d', l1, l0)
  end
  return string.format('%d', l0)
end

-- mpdec returns the integer the msgpack bytes s hold, in decimal, or nil
-- if they hold another value.
local function mpdec(s)
  local n, c = #s, string.byte(s, 1)
  if n == 1 and c and (c <= 0x7f or c >= 0xe0) then
    return string.format('%d', c <= 0x7f and c or c - 256)
  end
  local size = ({[0xcc] = 1, [0xcd] = 2, [0xce] = 4, [0xcf] = 8, [0xd0] = 1, [0xd1] = 2, [0xd2] = 4, [0xd3] = 8})[c]
  if not size or n ~= size + 1 then
    return nil
  end
  local signed = c >= 0xd0
  if size < 8 then
    local v = 0
    for i = 2, n do
      v = v * 256 + string.byte(s, i)
    end
    if signed and v >= 2 ^ (size * 8 - 1) then
      v = v - 2 ^ (size * 8)
    end
    return string.format('%d', v)
  end
  local hi, lo = 0, 0
  for i = 2, 5 do
    hi = hi * 256 + string.byte(s, i)
  end
  for i = 6, 9 do
    lo = lo * 256 + string.byte(s, i)
  end
  if hi < 2147483648 then
    return dec64(hi, lo)
  elseif not signed then
    return nil -- a uint64 beyond an int64
  end
  -- Two's complement: the magnitude is the complement plus one.
  hi, lo = 4294967295 - hi, 4294967295 - lo + 1
  if lo == 4294967296 then
    hi, lo = hi + 1, 0
  end
  return '-' .. dec64(hi, lo)
end

-- split64 returns the decimal magnitude d (below 2^64) as hi, lo: its
-- halves of 32 bits, by long division in limbs of 10^7.
local function split64(d)
  local limbs, i = {}, #d
  while i > 0 do
    table.insert(limbs, 1, tonumber(string.sub(d, math.max(i - 6, 1), i)))
    i = i - 7
  end
  local parts = {}
  for round = 1, 2 do
    local r = 0
    for j, x in ipairs(limbs) do
      local cur = r * 1e7 + x
      limbs[j], r = math.floor(cur / 65536), cur % 65536
    end
    parts[round] = r
  end
  local hi = 0
  for _, x in ipairs(limbs) do
    hi = hi * 1e7 + x
  end
  return hi, parts[2] * 65536 + parts[1]
end

-- mpenc returns the decimal integer d in its shortest msgpack form.
local function mpenc(d)
  local neg = string.sub(d, 1, 1) == '-'
  local hi, lo = split64(neg and string.sub(d, 2) or d)
  if not neg then
    if hi > 0 then
      return struct.pack('>BI4I4', 0xcf, hi, lo)
    elseif lo <= 127 then
      return string.char(lo)
    elseif lo <= 255 then
      return string.char(0xcc, lo)
    elseif lo <= 65535 then
      return struct.pack('>BI2', 0xcd, lo)
    end
    return struct.pack('>BI4', 0xce, lo)
  end
  if hi == 0 and lo <= 32 then
    return string.char(256 - lo)
  elseif hi == 0 and lo <= 128 then
    return string.char(0xd0, 256 - lo)
  elseif hi == 0 and lo <= 32768 then
    return struct.pack('>BI2', 0xd1, 65536 - lo)
  elseif hi == 0 and lo <= 2147483648 then
    return struct.pack('>BI4', 0xd2, 4294967296 - lo)
  end
  -- Two's complement of the magnitude: its complement plus one.
  hi, lo = 4294967295 - hi, 4294967295 - lo + 1
  if lo == 4294967296 then
    hi, lo = hi + 1, 0
  end
  return struct.pack('>BI4I4', 0xd3, hi, lo)
end
`

// once makes the body of a write script apply at most once per request.
// The caller appends to KEYS the request's result key, then the result keys
// of earlier requests whose answers it has received, and to ARGV how long
// to keep a result (ms) and how many such earlier keys there are. A request
// sent again, because its answer was lost, finds its result saved and gets
// it instead of being applied twice.
func once(body string) string {
	return `
local function apply()
` + body + `
end
local keep, acked = ARGV[#ARGV - 1], tonumber(ARGV[#ARGV])
local result = KEYS[#KEYS - acked]
local saved = redis.call('GET', result)
if saved then
  return cmsgpack.unpack(saved)
end
local r = apply()
redis.call('SET', result, cmsgpack.pack(r), 'PX', keep)
if acked > 0 then
  redis.call('DEL', unpack(KEYS, #KEYS - acked + 1))
end
return r
`
}

// Writes to counters. KEYS = {counter}.
var (
	// ARGV = {delta} → int: the new value.
	scriptAdd = redis.NewScript(lib + once(`
redis.call('INCRBY', KEYS[1], ARGV[1])
return reply(false, nil, nil, redis.call('GET', KEYS[1]))`))

	// ARGV = {value}.
	scriptSet = redis.NewScript(lib + once(`
redis.call('SET', KEYS[1], ARGV[1])
return reply()`))

	// → found: the counter existed.
	scriptDeleteCounter = redis.NewScript(lib + once(`
return reply(redis.call('DEL', KEYS[1]) == 1)`))

	// ARGV = {value} → int: the old value.
	scriptSwap = redis.NewScript(lib + once(`
return reply(false, nil, nil, redis.call('SET', KEYS[1], ARGV[1], 'GET') or '0')`))

	// ARGV = {old, new} → found: swapped. Values are compared as the decimal
	// strings that Redis and strconv both write canonically.
	scriptCAS = redis.NewScript(lib + once(`
if (redis.call('GET', KEYS[1]) or '0') ~= ARGV[1] then
  return reply(false)
end
redis.call('SET', KEYS[1], ARGV[2])
return reply(true)`))
)

// Writes to map entries: see mapLib for KEYS and the first two ARGV.
var (
	// ARGV = {key, prefix, value, ttl} → version.
	scriptStore = redis.NewScript(lib + once(mapLib+`
return reply(false, nil, put(ARGV[3], ARGV[4]))`))

	// ARGV = {key, prefix, value, ttl} → found: loaded; value and version:
	// the entry's if loaded, else the version stored.
	scriptLoadOrStore = redis.NewScript(lib + once(mapLib+`
local e = get(entry)
if e then
  return reply(true, e[1], e[2])
end
return reply(false, nil, put(ARGV[3], ARGV[4]))`))

	// ARGV = {key, prefix} → found: deleted; value: the one deleted.
	scriptLoadAndDelete = redis.NewScript(lib + once(mapLib+`
local e = get(entry)
if not e then
  return reply(false)
end
remove()
return reply(true, e[1])`))

	// ARGV = {key, prefix}.
	scriptDelete = redis.NewScript(lib + once(mapLib+`
remove()
return reply()`))

	// ARGV = {key, prefix, value, ttl} → found: loaded; value: the previous
	// one; version: the one stored.
	scriptSwapEntry = redis.NewScript(lib + once(mapLib+`
local e = get(entry)
local version = put(ARGV[3], ARGV[4])
if e then
  return reply(true, e[1], version)
end
return reply(false, nil, version)`))

	// ARGV = {key, prefix, value, ttl, old} → found: swapped; version.
	scriptCompareAndSwap = redis.NewScript(lib + once(mapLib+`
local e = get(entry)
if not e or e[1] ~= ARGV[5] then
  return reply(false)
end
return reply(true, nil, put(ARGV[3], ARGV[4]))`))

	// ARGV = {key, prefix, old} → found: deleted.
	scriptCompareAndDelete = redis.NewScript(lib + once(mapLib+`
local e = get(entry)
if not e or e[1] ~= ARGV[3] then
  return reply(false)
end
remove()
return reply(true)`))

	// ARGV = {key, prefix, value, ttl, version (0: absent)} → found: stored;
	// version: the new one if stored, else the current entry's, with its
	// value, so that the caller's next attempt needs no Load.
	scriptStoreIfVersion = redis.NewScript(lib + once(mapLib+`
local e = get(entry)
if (e and e[2] or '0') == ARGV[5] then
  return reply(true, nil, put(ARGV[3], ARGV[4]))
end
if e then
  return reply(false, e[1], e[2])
end
return reply(false)`))
)

// Integer entries, on the Go side's Map.Add and Buckets.
var (
	// KEYS = mapLib's, then {scratch} (where INCRBY adds exactly), ARGV =
	// {key, prefix, delta, ttl} → int: the sum; version; ttl. A missing
	// entry counts as 0 and takes ttl; an existing one keeps its expiry.
	scriptMapAdd = redis.NewScript(lib + once(mapLib+intLib+`
local e = get(entry)
local base = '0'
if e then
  base = mpdec(e[1])
  if not base then
    return redis.error_reply('SSWRONGTYPE the entry holds no integer')
  end
end
local scratch = KEYS[5]
redis.call('SET', scratch, base)
local ok = redis.pcall('INCRBY', scratch, ARGV[3])
local sum = redis.call('GET', scratch)
redis.call('DEL', scratch)
if type(ok) == 'table' and ok.err then
  return redis.error_reply('SSRANGE ' .. base .. ' + ' .. ARGV[3] .. ' overflows an int64')
end
local version = put(mpenc(sum), '+' .. ARGV[4])
return reply(false, nil, version, sum, left())`))

	// KEYS = mapLib's, ARGV = {key, prefix, interval, capacity, n} (in
	// microseconds): the generic cell rate algorithm, as the embedded
	// engine's store runs it, on the server's clock. The entry holds the
	// time (µs) at which the bucket will be full. → found: allowed; int:
	// the microseconds to wait if not; ttl: until the bucket is full.
	scriptTake = redis.NewScript(lib + once(mapLib+intLib+`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval, capacity, n = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local tat = now
local e = get(entry)
if e then
  local v = mpdec(e[1])
  if not v then
    return redis.error_reply('SSWRONGTYPE the entry holds no time')
  end
  tat = math.max(tat, tonumber(v))
end
local nxt = tat + n * interval
local wait = nxt - capacity - now
if wait > 0 then
  return reply(false, nil, nil, string.format('%d', wait), string.format('%d', math.ceil((tat - now) / 1000)))
end
put(mpenc(string.format('%d', nxt)), string.format('%d', math.ceil((nxt - now) / 1000)))
return reply(true, nil, nil, '0', string.format('%d', math.ceil((nxt - now) / 1000)))`))

	// KEYS = {entry} → {value, version, ttl (ms; 0: none)}, or nil.
	scriptLoad = redis.NewScript(`
local v = redis.call('HMGET', KEYS[1], 'v', 'n')
if not v[1] then
  return nil
end
if KEYS[2] then -- a bounded map's recency (bounds.go): the key was used
  local t = redis.call('TIME')
  redis.call('ZADD', KEYS[2], 'XX', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), ARGV[1])
end
return {v[1], v[2], math.max(redis.call('PTTL', KEYS[1]), 0)}`)
)

// Whole maps. KEYS = {index, expiries}, ARGV = {prefix, ...}.
var (
	// → the number of entries.
	scriptLen = redis.NewScript(lib + `
while forget(KEYS[1], KEYS[2], ARGV[1], 1000) do end
return redis.call('ZCARD', KEYS[1])`)

	// ARGV = {prefix}: deletes every entry, a thousand at a time.
	scriptClear = redis.NewScript(lib + once(`
local index, prefix = KEYS[1], ARGV[1]
repeat
  local keys = redis.call('ZRANGE', index, 0, 999)
  if #keys > 0 then
    redis.call('ZREM', index, unpack(keys))
    for i, k in ipairs(keys) do
      keys[i] = prefix .. k
    end
    redis.call('DEL', unpack(keys))
  end
until #keys < 1000
redis.call('DEL', KEYS[2])
return reply()`))

	// ARGV = {prefix, start, limit, budget} → {entries, more}: the entries
	// {key, value, version, ttl (ms left; 0: none)} with keys from start (a ZRANGEBYLEX bound:
	// '(' then the key for exclusive, '[' for inclusive), in key
	// order, up to limit of them (no limit if 0) and, beyond the first one,
	// budget bytes of keys and values; more is 1 if entries remain. An
	// indexed key whose entry is gone without expiring (evicted by a
	// maxmemory policy) is dropped from the index.
	scriptRange = redis.NewScript(lib + `
local index, expiries, prefix = KEYS[1], KEYS[2], ARGV[1]
local limit, budget = tonumber(ARGV[3]), tonumber(ARGV[4])
while forget(index, expiries, prefix, 1000) do end
local out, size, from = {}, 0, ARGV[2]
while true do
  local keys = redis.call('ZRANGEBYLEX', index, from, '+', 'LIMIT', 0, 100)
  if #keys == 0 then
    return {out, 0}
  end
  for _, k in ipairs(keys) do
    local e = get(prefix .. k)
    if e then
      if (limit > 0 and #out == limit) or (#out > 0 and size + #k + #e[1] > budget) then
        return {out, 1}
      end
      size = size + #k + #e[1]
      out[#out + 1] = {k, e[1], e[2], math.max(redis.call('PTTL', prefix .. k), 0)}
    else
      redis.call('ZREM', index, k)
    end
    from = '(' .. k
  end
end`)
)

// Locks. A held lock is a hash {token, client, owner} that expires when its
// lease ends unless its holder renews it; the lock's tokens counter gives
// the fencing tokens. Waiters queue in a sorted set by arrival, and a second
// sorted set holds the time by which each must ask again or lose its place,
// so that a waiter whose process died does not block the queue.
var (
	// KEYS = {lock, tokens, queue, waiting}, ARGV = {owner, client, lease,
	// wait} → found: acquired; version: the fencing token. The lock goes
	// to owner if it is free and owner is first in the queue, or the queue
	// is empty. Otherwise, if wait (ms) is not 0, owner joins the queue or
	// keeps its place there for wait more milliseconds.
	scriptAcquire = redis.NewScript(lib + once(`
local lock, tokens, queue, waiting = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local owner, wait = ARGV[1], tonumber(ARGV[4])
local t = now()
local gone = redis.call('ZRANGEBYSCORE', waiting, '-inf', '(' .. t)
if #gone > 0 then
  redis.call('ZREM', queue, unpack(gone))
  redis.call('ZREMRANGEBYSCORE', waiting, '-inf', '(' .. t)
end
if redis.call('EXISTS', lock) == 0 then
  local first = redis.call('ZRANGE', queue, 0, 0)[1]
  if not first or first == owner then
    local token = nextid(tokens)
    redis.call('HSET', lock, 'token', token, 'client', ARGV[2], 'owner', owner)
    redis.call('PEXPIRE', lock, ARGV[3])
    redis.call('ZREM', queue, owner)
    redis.call('ZREM', waiting, owner)
    return reply(true, nil, token)
  end
end
if wait > 0 then
  if not redis.call('ZSCORE', queue, owner) then
    local last = redis.call('ZRANGE', queue, -1, -1, 'WITHSCORES')
    redis.call('ZADD', queue, (tonumber(last[2]) or 0) + 1, owner)
  end
  redis.call('ZADD', waiting, t + wait, owner)
end
return reply(false)`))

	// KEYS = {lock}, ARGV = {token, client, channel, name} → found:
	// released. It tells the waiters on channel that the lock is free.
	scriptRelease = redis.NewScript(lib + once(`
local held = redis.call('HMGET', KEYS[1], 'token', 'client')
if held[1] ~= ARGV[1] or held[2] ~= ARGV[2] then
  return reply(false)
end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return reply(true)`))

	// KEYS = {lock}, ARGV = {token, client, lease} → 1 if the lease was
	// renewed, 0 if the lock is no longer held with token.
	scriptRenew = redis.NewScript(`
local held = redis.call('HMGET', KEYS[1], 'token', 'client')
if held[1] == ARGV[1] and held[2] == ARGV[2] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 0`)

	// KEYS = {lock, queue, waiting}, ARGV = {owner, channel, name}: owner
	// gives up, leaving the queue, and releasing the lock if its last
	// attempt got it without hearing so. The next waiter is told.
	scriptWithdraw = redis.NewScript(`
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 0`)
)
