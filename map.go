package sharedstate

import (
	"context"
	"fmt"
	"time"

	"github.com/sharedstate/sharedstate/internal/store"

	"github.com/sharedstate/sharedstate/transport"
)

// Map is a shared map from string keys to values of type V, with the
// methods of sync.Map plus a context and an error, Update for atomic
// read-modify-write, and per-entry TTLs (WithTTL).
//
// Values are encoded with msgpack (struct fields by name, map keys sorted),
// so every process must use a V with a compatible encoding. CompareAndSwap
// and CompareAndDelete compare encodings, not Go values.
type Map[V any] struct {
	st    *State
	name  string
	codec valueCodec
	mapOptions
}

// NewMap returns the map called name, holding values of type V.
func NewMap[V any](st *State, name string, opts ...MapOption) *Map[V] {
	m := &Map[V]{st: st, name: name, codec: codecFor[V]()}
	for _, o := range opts {
		o(&m.mapOptions)
	}
	return m
}

func (m *Map[V]) do(ctx context.Context, req transport.Request) (transport.Response, error) {
	if err := m.request(&req); err != nil {
		return transport.Response{}, err
	}
	return m.send(ctx, req)
}

// request makes req the map's, with its bound, and refuses it if the map's
// options are invalid or its key and values cannot fit in a frame.
func (m *Map[V]) request(req *transport.Request) error {
	req.Name = m.name
	req.MaxEntries, req.MaxBytes = m.maxEntries, m.maxBytes
	if m.err != nil {
		return fmt.Errorf("sharedstate: map %q: %v %q: %w", m.name, req.Op, req.Key, m.err)
	}
	if size := len(req.Key) + len(req.Value) + len(req.Old) + len(req.Name); size > m.st.cfg.maxFrame-1024 {
		return fmt.Errorf("sharedstate: map %q: %v %q: %w: %d bytes of key and values; the frame limit is %d",
			m.name, req.Op, req.Key, ErrTooLarge, size, m.st.cfg.maxFrame)
	}
	return nil
}

// send performs req, made by request.
func (m *Map[V]) send(ctx context.Context, req transport.Request) (transport.Response, error) {
	resp, err := m.st.do(ctx, req)
	if err != nil {
		err = fmt.Errorf("sharedstate: map %q: %v %q: %w", m.name, req.Op, req.Key, err)
	}
	return resp, err
}

// decodeFound decodes resp.Value if resp.Found.
func (m *Map[V]) decodeFound(resp transport.Response, err error) (V, bool, error) {
	var v V
	if err != nil || !resp.Found {
		return v, false, err
	}
	if err := m.codec.decode(resp.Value, &v); err != nil {
		return v, true, fmt.Errorf("sharedstate: map %q: %w", m.name, err)
	}
	return v, true, nil
}

// Load returns the value stored for key, and whether there is one.
func (m *Map[V]) Load(ctx context.Context, key string) (value V, ok bool, err error) {
	return m.decodeFound(m.load(ctx, key))
}

// load reads key's entry: from the owner's table, in a proxy that can, with
// nothing else of a call to the owner (State.readLocal).
func (m *Map[V]) load(ctx context.Context, key string) (transport.Response, error) {
	req := transport.Request{Op: transport.OpLoad, Key: key}
	if err := m.request(&req); err != nil {
		return transport.Response{}, err
	}
	if resp, ok := m.st.readLocal(ctx, &req); ok {
		return resp, nil
	}
	return m.send(ctx, req)
}

// Store sets the value for key.
func (m *Map[V]) Store(ctx context.Context, key string, value V, opts ...WriteOption) error {
	req, err := m.write(transport.OpStore, key, value, opts)
	if err != nil {
		return err
	}
	_, err = m.do(ctx, req)
	return err
}

// LoadOrStore returns the existing value for key if there is one. Otherwise
// it stores value and returns it. Loaded reports whether the value existed.
func (m *Map[V]) LoadOrStore(ctx context.Context, key string, value V, opts ...WriteOption) (actual V, loaded bool, err error) {
	req, err := m.write(transport.OpLoadOrStore, key, value, opts)
	if err != nil {
		return actual, false, err
	}
	actual, loaded, err = m.decodeFound(m.do(ctx, req))
	if err != nil || !loaded {
		return value, false, err
	}
	return actual, true, nil
}

// LoadAndDelete deletes the value for key, returning the previous value if
// any. Loaded reports whether there was one.
func (m *Map[V]) LoadAndDelete(ctx context.Context, key string) (value V, loaded bool, err error) {
	return m.decodeFound(m.do(ctx, transport.Request{Op: transport.OpLoadAndDelete, Key: key}))
}

// Delete deletes the value for key.
func (m *Map[V]) Delete(ctx context.Context, key string) error {
	_, err := m.do(ctx, transport.Request{Op: transport.OpDelete, Key: key})
	return err
}

// Swap stores value for key and returns the previous value if any. Loaded
// reports whether there was one.
func (m *Map[V]) Swap(ctx context.Context, key string, value V, opts ...WriteOption) (previous V, loaded bool, err error) {
	req, err := m.write(transport.OpMapSwap, key, value, opts)
	if err != nil {
		return previous, false, err
	}
	return m.decodeFound(m.do(ctx, req))
}

// CompareAndSwap stores new for key if the stored value encodes like old, and
// reports whether it did.
func (m *Map[V]) CompareAndSwap(ctx context.Context, key string, old, new V, opts ...WriteOption) (swapped bool, err error) {
	req, err := m.write(transport.OpCompareAndSwap, key, new, opts)
	if err != nil {
		return false, err
	}
	if req.Old, err = m.codec.encode(old); err != nil {
		return false, err
	}
	resp, err := m.do(ctx, req)
	return resp.Found, err
}

// CompareAndDelete deletes the entry for key if its value encodes like old,
// and reports whether it did.
func (m *Map[V]) CompareAndDelete(ctx context.Context, key string, old V) (deleted bool, err error) {
	b, err := m.codec.encode(old)
	if err != nil {
		return false, err
	}
	resp, err := m.do(ctx, transport.Request{Op: transport.OpCompareAndDelete, Key: key, Old: b})
	return resp.Found, err
}

// Update atomically replaces the value for key with fn(old, ok), where ok
// reports whether a value existed, and returns the value stored. It is the
// read-modify-write that Load then Store is not: if another process changes
// the entry between the read and the write, Update calls fn again with the
// newer value. So fn may run more than once and should have no side effects
// besides computing the value. If fn returns an error, Update stores nothing
// and returns that error.
//
// Updates of one key from the goroutines of a process queue and go in
// batches: each batch writes once for all its calls, each of whose fn sees
// the value the one before it returned. So a hot key costs a round trip
// per batch, however many goroutines update it. For a counter, Add is one
// step at the owner and cheaper still.
func (m *Map[V]) Update(ctx context.Context, key string, fn func(old V, ok bool) (V, error), opts ...WriteOption) (V, error) {
	var zero, result V
	w, err := applyWriteOptions(opts)
	if err != nil {
		return zero, fmt.Errorf("sharedstate: map %q: update %q: %w", m.name, key, err)
	}
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	_, err = m.update(ctx, key, func(b []byte, ok bool) ([]byte, error) {
		var old V
		if ok {
			if err := m.codec.decode(b, &old); err != nil {
				return nil, fmt.Errorf("sharedstate: map %q: %w", m.name, err)
			}
		}
		v, err := fn(old, ok)
		if err != nil {
			return nil, err
		}
		result = v // the last run's is the one stored
		enc, err := m.codec.encode(v)
		if err != nil {
			return nil, fmt.Errorf("sharedstate: map %q: %w", m.name, err)
		}
		return enc, nil
	}, w)
	if err != nil {
		return zero, err
	}
	return result, nil
}

// Add adds delta to the integer stored for key and returns the sum, in one
// step at the owner, as sync/atomic's Add does for a variable and Redis's
// INCRBY for a key. A missing entry counts as 0, and is made with the TTL
// of WithTTL, if given; an existing entry keeps its expiry, so a count
// started for a window of time ends with it. The entry must hold an
// integer (V is an integer type): else Add returns ErrWrongType. A sum
// beyond an int64 is ErrInvalidArgument. Either changes nothing.
func (m *Map[V]) Add(ctx context.Context, key string, delta int64, opts ...WriteOption) (int64, error) {
	n, _, err := m.AddTTL(ctx, key, delta, opts...)
	return n, err
}

// AddTTL is Add, and also returns the time the entry has left before it
// expires, or 0 if it never does.
func (m *Map[V]) AddTTL(ctx context.Context, key string, delta int64, opts ...WriteOption) (int64, time.Duration, error) {
	w, err := applyWriteOptions(opts)
	if err != nil {
		return 0, 0, fmt.Errorf("sharedstate: map %q: add %q: %w", m.name, key, err)
	}
	resp, err := m.do(ctx, transport.Request{Op: transport.OpMapAdd, Key: key, Int: delta, TTL: w.ttl})
	return resp.Int, resp.TTL, err
}

// LoadTTL is Load, and also returns the time the entry has left before it
// expires, or 0 if it never does.
func (m *Map[V]) LoadTTL(ctx context.Context, key string) (value V, ttl time.Duration, ok bool, err error) {
	resp, err := m.load(ctx, key)
	value, ok, err = m.decodeFound(resp, err)
	return value, resp.TTL, ok, err
}

// Len returns the number of entries.
func (m *Map[V]) Len(ctx context.Context) (int, error) {
	resp, err := m.do(ctx, transport.Request{Op: transport.OpLen})
	return int(resp.Int), err
}

// Clear deletes every entry.
func (m *Map[V]) Clear(ctx context.Context) error {
	_, err := m.do(ctx, transport.Request{Op: transport.OpClear})
	return err
}

// Change is an entry of a Map written or removed, as Watch reports it.
type Change struct {
	Key     string
	Deleted bool // removed (deleted, expired, cleared or evicted); else written
	Evicted bool // removed by a bounded map to make room (WithMaxEntries, WithMaxBytes)
}

// Watch returns the changes to the map's entries from now on, until ctx ends
// or the State closes, when the channel is closed. Like messages (see
// Publish) changes are delivered at most once: a watcher that falls behind
// misses some, and changes during a takeover may be missed. Load the key
// for its value. Watch needs the embedded engine (Open); on another it fails
// with ErrUnsupported.
func (m *Map[V]) Watch(ctx context.Context) (<-chan Change, error) {
	if m.st.embedded == nil {
		return nil, fmt.Errorf("sharedstate: map %q: watch: %w: only a state from Open has its changes published", m.name, ErrUnsupported)
	}
	msgs, err := m.st.subscribe(ctx, store.WatchPrefix+m.name)
	if err != nil {
		return nil, fmt.Errorf("sharedstate: map %q: watch: %w", m.name, err)
	}
	changes := make(chan Change, subscriptionBuffer)
	go func() {
		defer close(changes)
		for msg := range msgs {
			if len(msg) == 0 {
				continue
			}
			select {
			case changes <- Change{Key: string(msg[1:]), Deleted: store.Change(msg[0]) != store.Written, Evicted: store.Change(msg[0]) == store.Evicted}:
			default: // the reader is behind: drop, as documented
			}
		}
	}()
	return changes, nil
}

// rangePage is how many entries Range fetches per request.
const rangePage = 1000

// Range calls fn for each entry in key order, until fn returns false. Like
// sync.Map.Range, it is not a snapshot: entries are fetched a page at a time,
// and each is seen as it was when its page was read.
func (m *Map[V]) Range(ctx context.Context, fn func(key string, value V) bool) error {
	return m.RangeTTL(ctx, func(key string, value V, _ time.Duration) bool { return fn(key, value) })
}

// RangeTTL is Range, with the time each entry had left before it expires
// when its page was read, or 0 if it never does.
func (m *Map[V]) RangeTTL(ctx context.Context, fn func(key string, value V, ttl time.Duration) bool) error {
	req := transport.Request{Op: transport.OpRange, Int: transport.RangeInclusive, Limit: rangePage} // from "" on
	for {
		resp, err := m.do(ctx, req)
		if err != nil {
			return err
		}
		for _, e := range resp.Entries {
			var v V
			if err := m.codec.decode(e.Value, &v); err != nil {
				return fmt.Errorf("sharedstate: map %q: key %q: %w", m.name, e.Key, err)
			}
			if !fn(e.Key, v, e.TTL) {
				return nil
			}
			req.Key, req.Int = e.Key, 0 // the next page starts after it
		}
		if !resp.Found {
			return nil
		}
	}
}

// write builds the request that writes value for key.
func (m *Map[V]) write(op transport.Op, key string, value V, opts []WriteOption) (transport.Request, error) {
	w, err := applyWriteOptions(opts)
	if err != nil {
		return transport.Request{}, fmt.Errorf("sharedstate: map %q: %v %q: %w", m.name, op, key, err)
	}
	b, err := m.codec.encode(value)
	if err != nil {
		return transport.Request{}, fmt.Errorf("sharedstate: map %q: %w", m.name, err)
	}
	return transport.Request{Op: op, Key: key, Value: b, TTL: w.ttl, KeepTTL: w.keepTTL}, nil
}
