package redisstate

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sharedstate/sharedstate/transport"
)

// A bounded map (sharedstate.WithMaxEntries, WithMaxBytes) keeps, besides
// its entries, the time each key was last written or read by a bounded Map
// (a sorted set: recency) and, when bounded by bytes, each key's bytes and
// their sum. After each bounded write a script evicts the least recently
// used keys, exactly so rather than by a sample, until the map is within
// its bound. Redis's own maxmemory is for the whole server; this bounds one
// map of one state. What differs from the embedded engine: the eviction
// runs just after the write, not in its step (the map is over its bound
// for that moment); keys written only by unbounded Maps count once a
// bounded write has drawn them from the map (a few per write, oldest
// first); the bytes of entries deleted or expired otherwise are counted
// until they come up for eviction; and evictions are not counted (Stats is
// unsupported here) nor watched (Watch is the embedded engine's).

// evictBudget bounds the keys one bounded write evicts, as the embedded
// engine's does.
const evictBudget = 64

// KEYS = {index, expiries, recency, sizes, bytes}, ARGV = {key, prefix,
// max entries (0: none), max bytes (0: none), the entry's bytes, now (ms)}
// → the number of entries evicted.
var scriptBound = redis.NewScript(lib + `
local index, expiries, recency, sizes, bytes = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local key, prefix = ARGV[1], ARGV[2]
local maxEntries, maxBytes, size = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
forget(index, expiries, prefix, 100)
local t = now()
if redis.call('EXISTS', prefix .. key) == 1 then
  redis.call('ZADD', recency, t, key)
  if maxBytes > 0 then
    local old = tonumber(redis.call('HGET', sizes, key) or '0')
    redis.call('HSET', sizes, key, size)
    redis.call('INCRBY', bytes, size - old)
  end
end
-- Keys the recency set lacks (written by unbounded Maps) join it as the
-- oldest, a few at a time.
if redis.call('ZCARD', recency) < redis.call('ZCARD', index) then
  for _, k in ipairs(redis.call('ZRANDMEMBER', index, 8)) do
    redis.call('ZADD', recency, 'NX', 0, k)
  end
end
local evicted = 0
for _ = 1, ` + strconv.Itoa(evictBudget) + ` do
  local over = maxEntries > 0 and redis.call('ZCARD', index) > maxEntries or
    maxBytes > 0 and tonumber(redis.call('GET', bytes) or '0') > maxBytes
  if not over then
    break
  end
  local oldest = redis.call('ZPOPMIN', recency)
  if #oldest == 0 then
    break
  end
  local k = oldest[1]
  if k == key then -- the entry written is all that is left to evict: it stays
    redis.call('ZADD', recency, oldest[2], k)
    break
  end
  local s = redis.call('HGET', sizes, k)
  if s then
    redis.call('HDEL', sizes, k)
    redis.call('DECRBY', bytes, s)
  end
  if redis.call('DEL', prefix .. k) == 1 then
    evicted = evicted + 1
  end
  redis.call('ZREM', index, k)
  redis.call('ZREM', expiries, k)
end
return evicted`)

// KEYS = {recency}, ARGV = {keys...}: the keys were read.
var scriptTouch = redis.NewScript(lib + `
local t = now()
for i = 1, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', t, ARGV[i])
end
return 0`)

// bound evicts from the map req wrote, if req carries a bound.
func (e *engine) bound(ctx context.Context, req *transport.Request) error {
	if req.MaxEntries == 0 && req.MaxBytes == 0 || !req.Op.Mutates() {
		return nil
	}
	k, name := e.keys, req.Name
	keys := []string{k.index(name), k.expiries(name), k.recency(name), k.sizes(name), k.bytes(name)}
	return e.retry(ctx, true, func(ctx context.Context) error {
		return scriptBound.Run(ctx, e.rdb, keys, req.Key, k.entryPrefix(name), req.MaxEntries, req.MaxBytes,
			len(req.Key)+len(req.Value), time.Now().UnixMilli()).Err()
	})
}

// touch records reads of a bounded map's keys: those of a Touch, or the
// key a bounded Load found.
func (e *engine) touch(ctx context.Context, name string, keys []any) error {
	return e.retry(ctx, false, func(ctx context.Context) error {
		return scriptTouch.Run(ctx, e.rdb, []string{e.keys.recency(name)}, keys...).Err()
	})
}

// touchedKeys decodes the keys of an OpTouch.
func touchedKeys(value []byte) ([]any, error) {
	var keys []any
	err := transport.EachTouched(value, func(key []byte) { keys = append(keys, string(key)) })
	return keys, err
}
