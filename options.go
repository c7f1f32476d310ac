package sharedstate

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/sharedstate/sharedstate/internal/store"
	"github.com/sharedstate/sharedstate/internal/wire"
)

// An Option configures Open.
type Option func(*config)

type config struct {
	dir        string
	logger     *slog.Logger
	maxFrame   int
	secret     []byte
	durability Durability
	lockGrace  time.Duration
	lockLease  time.Duration
	observer   bool
	engineOpts []any            // WithEngineOption's
	clock      func() time.Time // the wall clock; tests move it
}

func newConfig(opts []Option) config {
	c := config{
		logger:    slog.Default(),
		maxFrame:  wire.DefaultMaxFrame,
		lockGrace: 2 * time.Second,
		clock:     time.Now,
	}
	for _, o := range opts {
		o(&c)
	}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// WithDir sets the directory holding the state's socket and lock file. It is
// created with mode 0700 if missing, and must belong to the current user and
// be writable by no one else. The default is $XDG_RUNTIME_DIR/sharedstate-UID,
// or sharedstate-UID in the system's temporary directory.
func WithDir(dir string) Option { return func(c *config) { c.dir = dir } }

// WithLogger sets where role changes and refused connections are logged.
// The default is slog.Default(); nil discards the logs.
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// WithMaxFrame caps the size of one message between processes, and so of a
// key plus its value. The default is 4 MiB. Every process of a state should
// use the same cap.
func WithMaxFrame(bytes int) Option { return func(c *config) { c.maxFrame = bytes } }

// WithSecret requires every process to prove knowledge of secret when it
// connects to the owner, on top of the same-user check that always applies.
func WithSecret(secret []byte) Option {
	return func(c *config) { c.secret = append([]byte(nil), secret...) }
}

// WithDurability sets what an acknowledged write survives; see Durability.
// The default is DurabilityProcess. The owner's setting applies to the
// whole state, so every process should use the same.
func WithDurability(d Durability) Option { return func(c *config) { c.durability = d } }

// WithLockGrace sets how long a new owner keeps a lock for a holder that has
// not reconnected to it yet, or an owner the lock of a live process whose
// connection dropped, before giving the lock to the next waiter. The
// default is 2 seconds. Locks of a holder whose process died are released
// at once, and the previous owner's own locks at once on takeover.
func WithLockGrace(d time.Duration) Option { return func(c *config) { c.lockGrace = d } }

// WithLockLease sets the lease of a lock with an engine whose locks are
// leases, renewed while held and lost if not renewed in time, as Redis's
// are. Open's engine has no leases (a dead holder's lock is released at
// once) and ignores it.
func WithLockLease(d time.Duration) Option { return func(c *config) { c.lockLease = d } }

// EngineConfig is what a State's options say to an engine other than
// Open's, for the engine's constructor to read with EngineOptions.
type EngineConfig struct {
	Logger    *slog.Logger
	MaxFrame  int           // the largest key plus value to accept
	LockLease time.Duration // 0: the engine's default
	// Values are what WithEngineOption passed, in order: an engine looks
	// for the values of its own types.
	Values []any
}

// EngineOptions returns the EngineConfig that opts set.
func EngineOptions(opts ...Option) EngineConfig {
	c := newConfig(opts)
	return EngineConfig{Logger: c.logger, MaxFrame: c.maxFrame, LockLease: c.lockLease, Values: c.engineOpts}
}

// WithEngineOption passes v to the engine, for settings of its own: an
// engine's package offers Options made with it (such as
// redisstate.WithReplicas), and its constructor finds v in
// EngineConfig.Values. Open's engine has none, and ignores them.
func WithEngineOption(v any) Option {
	return func(c *config) { c.engineOpts = append(c.engineOpts, v) }
}

// WithObserver opens the state without ever becoming its owner, as tools
// such as the sharedstate inspector do. If an owner runs, the observer is a
// client like any other. If none does, Open reads the state from its journal
// and serves reads from that copy, and writes fail with ErrReadOnly, until a
// process becomes the owner: the observer then connects to it.
func WithObserver() Option { return func(c *config) { c.observer = true } }

// A WriteOption modifies a single write to a Map.
type WriteOption func(*writeOptions)

type writeOptions struct {
	ttl     time.Duration
	hasTTL  bool
	keepTTL bool
	// staleAfter: LoadOrCompute's entry is fresh for this long, then
	// served while one caller computes the next (WithStaleAfter).
	staleAfter time.Duration
}

// WithTTL makes the written entry expire after d, which must be positive:
// a TTL of zero or less (time.Until of an instant already past, say) is
// refused with ErrInvalidArgument rather than taken to mean "now" or
// "never". A TTL so long that the expiry would pass the year 2262 ends
// there. Without WithTTL the entry never expires, and a write replaces an
// earlier entry's TTL (unless WithKeepTTL).
func WithTTL(d time.Duration) WriteOption {
	return func(w *writeOptions) { w.ttl, w.hasTTL = d, true }
}

// WithKeepTTL makes a write leave an existing entry's expiry as it is (or
// its lack of one), as Redis's SET KEEPTTL does: a session saved again keeps
// its end, a count updated in a window keeps the window's. An entry the
// write creates takes the TTL of WithTTL, if given.
func WithKeepTTL() WriteOption { return func(w *writeOptions) { w.keepTTL = true } }

// WithStaleAfter makes the entry that LoadOrCompute stores fresh for d, and
// stale from then until its TTL (WithTTL, longer than d) ends: a
// LoadOrCompute that finds it stale returns it at once, loaded, and one
// caller across every process computes the next value in the background,
// which replaces it (stale-while-revalidate). If that computation fails,
// the stale value stays until its TTL ends, and a later call tries again.
// Other writes check it as LoadOrCompute does, and otherwise ignore it.
func WithStaleAfter(d time.Duration) WriteOption {
	return func(w *writeOptions) { w.staleAfter = d }
}

func applyWriteOptions(opts []WriteOption) (writeOptions, error) {
	var w writeOptions
	for _, o := range opts {
		o(&w)
	}
	if w.hasTTL && w.ttl <= 0 {
		return w, fmt.Errorf("%w: TTL %v: a TTL must be positive; write without WithTTL for an entry that never expires", ErrInvalidArgument, w.ttl)
	}
	if w.staleAfter != 0 && (w.staleAfter < 0 || !w.hasTTL || w.ttl <= w.staleAfter) {
		return w, fmt.Errorf("%w: WithStaleAfter(%v) needs a positive time and WithTTL longer than it (TTL %v)", ErrInvalidArgument, w.staleAfter, w.ttl)
	}
	return w, nil
}

// A MapOption configures a Map (NewMap).
type MapOption func(*mapOptions)

type mapOptions struct {
	maxEntries, maxBytes uint64
	err                  error // an option's argument was invalid: every call reports it
}

// WithMaxEntries bounds a map to n entries, as a cache is: a write that
// leaves the map with more evicts the entries least recently used (read or
// written) until n remain. Writes never fail because of the bound, and the
// entry a write stores is never the one it evicts. Least recently used is
// approximate, as Redis's allkeys-lru is: each victim is the oldest of 16
// entries drawn at random, and the reads of other processes reach the owner
// in batches, about a round trip late. Evictions are counted in
// Stats.Evictions and reported by Watch (Change.Evicted).
//
// The bound belongs to the Map, not to the state: the writes of a Map made
// without it do not evict, so give every process's NewMap of a name the
// same options. n must be positive, or every call on the map fails with
// ErrInvalidArgument.
func WithMaxEntries(n int) MapOption {
	return bound("WithMaxEntries", int64(n), func(o *mapOptions, n uint64) { o.maxEntries = n })
}

// WithMaxBytes bounds the bytes of a map's keys and encoded values to n,
// evicting as WithMaxEntries does; with both, a write evicts until the map
// is within each. An entry larger than n on its own stays, alone. n must be
// positive, or every call on the map fails with ErrInvalidArgument.
func WithMaxBytes(n int64) MapOption {
	return bound("WithMaxBytes", n, func(o *mapOptions, n uint64) { o.maxBytes = n })
}

// bound is the MapOption called name that sets a positive bound n.
func bound(name string, n int64, set func(*mapOptions, uint64)) MapOption {
	return func(o *mapOptions) {
		if n <= 0 {
			o.err = fmt.Errorf("%w: %s(%d): a bound must be positive", ErrInvalidArgument, name, n)
			return
		}
		set(o, uint64(n))
	}
}

// storeOptions says how the owner's store keeps itself, from c.
func (c config) storeOptions() store.Options {
	return store.Options{Clock: c.clock, Sync: c.durability == DurabilityDisk,
		LocksOnly: c.durability == DurabilityMemory, Logger: c.logger}
}
