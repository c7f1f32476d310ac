// Package redisstate keeps a sharedstate.State in Redis (or a server that
// speaks its protocol, such as Valkey), for an app whose workers run on more
// than one host.
//
// # When to switch
//
// sharedstate.Open shares a state between the processes of one host, with no
// server to run. Once the workers of an app run on several machines, their
// state must live outside all of them: keep it in Redis. The State is the
// same type with the same methods, so the switch is one line at startup:
//
//	st, err := sharedstate.Open(ctx, "myapp")
//
// becomes
//
//	st, err := redisstate.OpenURL(ctx, "redis://redis.internal:6379/0", "myapp")
//
// Counters, maps (with Update and TTLs), mutexes and pub/sub work as before,
// and map values are stored as the same msgpack bytes with either engine.
//
// # What changes
//
// Every operation is still atomic (a single command or a Lua script) and
// linearizable per key, as long as one Redis primary serves the state. What
// the guarantees rest on changes:
//
//   - Durability is Redis's: an acknowledged write survives what Redis's
//     persistence settings make it survive (appendonly and appendfsync).
//     A Redis without persistence loses the state when it restarts, and
//     a failover to a replica may lose the latest writes (replication is
//     asynchronous).
//   - A lock is a lease. Redis cannot see a process die, so a lock is
//     held for a lease (10 seconds, or sharedstate.WithLockLease) that its
//     holder renews while it holds it, and released by Unlock, by closing
//     the State, or when the lease runs out unrenewed: the holder died, or
//     was paused or cut off from Redis for that long. Such a holder learns it from Mutex.Held,
//     and fencing tokens (Mutex.Token) tell a lapsed holder from the next.
//   - Exactly once holds within a time limit. Each write carries a request
//     id, and Redis keeps its result for two minutes, so a write sent again
//     after its answer was lost is not applied twice. A call retries while
//     Redis is unreachable until its context ends; a write that may already
//     have reached Redis is retried for at most a minute, and then fails
//     with ErrUnavailable, saying that it may or may not have been applied.
//   - Expiry (WithTTL) follows the Redis server's clock.
//
// # Redis keys
//
// The keys of the state called name start with "sharedstate:{name}:". The
// braces are a hash tag, placing a whole state in one slot of a Redis
// Cluster (OpenClient with a *redis.ClusterClient), as its scripts need; its
// messages go through sharded pub/sub on that slot's node. Do not let a maxmemory policy evict them
// (use noeviction): an evicted lock or entry is lost like any other key.
package redisstate

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sharedstate/sharedstate"
	"github.com/sharedstate/sharedstate/transport"
)

// Timing of retries and of the results kept for them.
const (
	minBackoff = 5 * time.Millisecond
	maxBackoff = 200 * time.Millisecond
	// resultTTL is how long Redis keeps the result of a write, for a retry
	// of the write to find it.
	resultTTL = 2 * time.Minute
	// retryWindow bounds how long a write that may have reached Redis is
	// retried: well within resultTTL, so that its result is still there.
	retryWindow = time.Minute
)

// Limits on names and keys, as with the embedded engine. Values are bounded
// by sharedstate.WithMaxFrame.
const (
	maxNameLen = 1 << 10
	maxKeyLen  = 64 << 10
)

// Open returns the state called name, kept in the Redis server that opts
// describe. It waits until Redis answers, or ctx ends (ErrUnavailable).
// Name is 1 to 64 letters, digits, '.', '_' or '-', not starting with '.'.
//
// The engine retries calls itself, with request ids that make retrying a
// write safe, and bounds each call with its context, so it uses a copy of
// opts with MaxRetries -1, DialerRetries 1 and ContextTimeoutEnabled. The
// options in stOpts that concern the embedded engine (WithDir,
// WithDurability and the like) have no effect; WithLockLease sets the lease
// of locks.
func Open(ctx context.Context, opts *redis.Options, name string, stOpts ...sharedstate.Option) (*sharedstate.State, error) {
	return open(ctx, opts, name, stOpts)
}

// OpenURL is Open with the options that url gives, as redis.ParseURL reads
// them: "redis://user:password@host:6379/0", "rediss://..." for TLS, or
// "unix:///run/redis.sock?db=0".
func OpenURL(ctx context.Context, url, name string, stOpts ...sharedstate.Option) (*sharedstate.State, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redisstate: %w", err)
	}
	return Open(ctx, opts, name, stOpts...)
}

// OpenClusterURL is OpenClient with a Redis Cluster client of the options
// that url gives, as redis.ParseClusterURL reads them:
// "redis://user:password@node1:6379?addr=node2:6379&addr=node3:6379". The
// client follows MOVED and ASK redirects as the cluster reshards; the
// State closes it on Close.
func OpenClusterURL(ctx context.Context, url, name string, stOpts ...sharedstate.Option) (*sharedstate.State, error) {
	opts, err := redis.ParseClusterURL(url)
	if err != nil {
		return nil, fmt.Errorf("redisstate: %w", err)
	}
	opts.ContextTimeoutEnabled = true
	return start(ctx, newEngine(redis.NewClusterClient(opts), true, name, stOpts), stOpts)
}

// OpenFailoverURL is OpenClient with a Sentinel failover client of the
// options that url gives, as redis.ParseFailoverURL reads them:
// "redis://sentinel1:26379?master_name=mymaster&addr=sentinel2:26379". The
// client asks the sentinels for the current primary, and follows a
// failover; the State closes it on Close.
func OpenFailoverURL(ctx context.Context, url, name string, stOpts ...sharedstate.Option) (*sharedstate.State, error) {
	opts, err := redis.ParseFailoverURL(url)
	if err != nil {
		return nil, fmt.Errorf("redisstate: %w", err)
	}
	opts.ContextTimeoutEnabled = true
	return start(ctx, newEngine(redis.NewFailoverClient(opts), true, name, stOpts), stOpts)
}

// OpenClient returns the state called name, kept through client: a
// *redis.Client, a Redis Cluster's *redis.ClusterClient, or a Sentinel
// failover client (redis.NewFailoverClient, or redis.NewUniversalClient
// with a MasterName), the one the app already has. It waits until Redis
// answers, or ctx ends (ErrUnavailable). The State uses client without
// changing it, and its Close leaves client open: client belongs to the
// caller.
//
// A whole state lives in one slot of a Cluster (its keys share a hash tag,
// see "Redis keys"), so its scripts run on one node, and its messages go
// through sharded pub/sub (SPUBLISH, SSUBSCRIBE: Redis 7) on that node.
//
// The engine retries calls itself, with request ids that make retrying a
// write safe, until a call's context ends. For a call to end with its
// context while Redis does not answer, make client with
// ContextTimeoutEnabled: true (Open does); client's own retries
// (MaxRetries) are safe, and only add to the time a call may take.
func OpenClient(ctx context.Context, client redis.UniversalClient, name string, stOpts ...sharedstate.Option) (*sharedstate.State, error) {
	return start(ctx, newEngine(client, false, name, stOpts), stOpts)
}

// WithReplicas makes every write wait, once Redis has applied it, until n
// replicas have it too (Redis WAIT), for up to timeout: for the writes that
// must survive a failover, which otherwise loses what the primary had not
// yet sent to its replicas. A write that n replicas do not confirm in time
// is retried, with its request id (so it is applied once), and waits again,
// until its call's context ends or a minute passes; then it fails with
// ErrUnavailable, saying that it may or may not have been applied (it was,
// on the primary, where a failover may lose it). Each write costs a round
// trip from the primary to a replica more.
func WithReplicas(n int, timeout time.Duration) sharedstate.Option {
	return sharedstate.WithEngineOption(replicas{n: n, timeout: timeout})
}

// replicas is WithReplicas's setting.
type replicas struct {
	n       int
	timeout time.Duration
}

// settings returns the engine's settings in stOpts: the lease of locks, and
// the replicas a write waits for.
func settings(stOpts []sharedstate.Option) (lease time.Duration, r replicas) {
	cfg := sharedstate.EngineOptions(stOpts...)
	lease = cmp.Or(max(cfg.LockLease, 0), defaultLease)
	for _, v := range cfg.Values {
		if v, ok := v.(replicas); ok {
			r = v
		}
	}
	return lease, r
}

func open(ctx context.Context, opts *redis.Options, name string, stOpts []sharedstate.Option) (*sharedstate.State, error) {
	var o redis.Options // nil opts: go-redis's defaults
	if opts != nil {
		o = *opts
	}
	o.MaxRetries = -1
	o.DialerRetries = 1
	o.ContextTimeoutEnabled = true
	st, err := start(ctx, newEngine(redis.NewClient(&o), true, name, stOpts), stOpts)
	if err != nil {
		return nil, fmt.Errorf("%w (at %s)", err, o.Addr)
	}
	return st, nil
}

// start makes the State of e and waits for Redis to answer.
func start(ctx context.Context, e *engine, stOpts []sharedstate.Option) (*sharedstate.State, error) {
	st, err := sharedstate.NewState(e.name, e, stOpts...)
	if err != nil {
		e.Close()
		return nil, err
	}
	if err := e.start(ctx); err != nil {
		st.Close()
		return nil, fmt.Errorf("redisstate: open %q: %w", e.name, err)
	}
	return st, nil
}

// engine is a transport.Engine on Redis: one server, a Cluster or a
// Sentinel-watched primary.
type engine struct {
	rdb     redis.UniversalClient
	owned   bool // Close closes rdb: Open made it
	sharded bool // a Cluster: messages through sharded pub/sub
	name    string
	keys    keys
	client  string        // random: tells this engine's locks and results apart
	lease   time.Duration // of a lock, renewed every third of it
	// replicas is what a write waits for (WithReplicas).
	replicas replicas
	seq      atomic.Uint64 // numbers requests and Lock calls
	acks     acks

	ps      *redis.PubSub // lock wake-ups and the channels subscribed to
	subs    subscriptions
	wakeups wakeups
	held    heldLocks

	mu     sync.RWMutex
	closed bool
	calls  sync.WaitGroup  // Do calls in progress
	bg     sync.WaitGroup  // goroutines that end on Close
	ctx    context.Context // ends on Close
	cancel context.CancelFunc
}

func newEngine(rdb redis.UniversalClient, owned bool, name string, stOpts []sharedstate.Option) *engine {
	var id [8]byte
	rand.Read(id[:])
	lease, replicas := settings(stOpts)
	_, sharded := rdb.(*redis.ClusterClient)
	e := &engine{
		rdb:      rdb,
		owned:    owned,
		sharded:  sharded,
		name:     name,
		keys:     keys{prefix: "sharedstate:{" + name + "}:"},
		client:   hex.EncodeToString(id[:]),
		lease:    lease,
		replicas: replicas,
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	return e
}

// start waits for Redis to answer, then listens for lock releases and
// starts renewing the leases of held locks.
func (e *engine) start(ctx context.Context) error {
	err := e.retry(ctx, false, func(ctx context.Context) error { return e.rdb.Ping(ctx).Err() })
	if err != nil {
		return err
	}
	if e.sharded {
		// Named at once: the connection goes to the node of the
		// channel's slot, where all the state's channels live.
		e.ps = e.rdb.SSubscribe(e.ctx, e.keys.unlocked())
	} else {
		e.ps = e.rdb.Subscribe(e.ctx)
	}
	msgs := e.ps.ChannelWithSubscriptions()
	e.bg.Add(1)
	go func() {
		defer e.bg.Done()
		e.dispatch(msgs)
	}()
	if err := e.listen(ctx, e.keys.unlocked(), nil); err != nil {
		return err
	}
	e.bg.Add(1)
	go func() {
		defer e.bg.Done()
		e.renew()
	}()
	return nil
}

// Close releases the locks this engine holds, ends its subscriptions and
// closes its connections. Calls in progress and later return ErrClosed.
func (e *engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.mu.Unlock()
	e.cancel()
	e.calls.Wait()
	if e.ps != nil { // else start failed before it subscribed
		e.releaseAll()
		e.ps.Close()
	}
	e.bg.Wait()
	e.subs.closeAll()
	if !e.owned {
		return nil
	}
	return e.rdb.Close()
}

// Do performs one operation: see transport.Op for what each one does.
func (e *engine) Do(ctx context.Context, req *transport.Request) (transport.Response, error) {
	switch {
	case req.Name == "" && req.Op.Named():
		return refuse(transport.StatusBadRequest, "empty name")
	case len(req.Name) > maxNameLen:
		return refuse(transport.StatusTooLarge, "name longer than 1 KiB")
	case len(req.Key) > maxKeyLen:
		return refuse(transport.StatusTooLarge, "key longer than 64 KiB")
	}
	e.mu.RLock()
	if e.closed {
		e.mu.RUnlock()
		return transport.Response{}, sharedstate.ErrClosed
	}
	e.calls.Add(1)
	e.mu.RUnlock()
	defer e.calls.Done()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(e.ctx, cancel)()
	resp, err := e.do(ctx, req)
	if err != nil && e.ctx.Err() != nil {
		return transport.Response{}, fmt.Errorf("%w (%v)", sharedstate.ErrClosed, err)
	}
	resp.ID = req.ID
	return resp, err
}

func refuse(s transport.Status, msg string) (transport.Response, error) {
	return transport.Response{Status: s, Msg: msg}, nil
}

func (e *engine) do(ctx context.Context, req *transport.Request) (transport.Response, error) {
	k, name, ttl := e.keys, req.Name, ttlArg(req.TTL, req.KeepTTL)
	var r result
	var err error
	switch req.Op {
	case transport.OpAdd:
		r, err = e.write(ctx, scriptAdd, []string{k.counter(name)}, req.Int)
	case transport.OpGet:
		r, err = e.get(ctx, k.counter(name))
	case transport.OpSet:
		r, err = e.write(ctx, scriptSet, []string{k.counter(name)}, req.Int)
	case transport.OpDeleteCounter:
		r, err = e.write(ctx, scriptDeleteCounter, []string{k.counter(name)})
	case transport.OpSwap:
		r, err = e.write(ctx, scriptSwap, []string{k.counter(name)}, req.Int)
	case transport.OpCAS:
		r, err = e.write(ctx, scriptCAS, []string{k.counter(name)}, req.OldInt, req.Int)
	case transport.OpLoad:
		r, err = e.load(ctx, req)
	case transport.OpStore:
		r, err = e.writeEntry(ctx, scriptStore, req, req.Value, ttl)
	case transport.OpLoadOrStore:
		r, err = e.writeEntry(ctx, scriptLoadOrStore, req, req.Value, ttl)
	case transport.OpLoadAndDelete:
		r, err = e.writeEntry(ctx, scriptLoadAndDelete, req)
	case transport.OpDelete:
		r, err = e.writeEntry(ctx, scriptDelete, req)
	case transport.OpMapSwap:
		r, err = e.writeEntry(ctx, scriptSwapEntry, req, req.Value, ttl)
	case transport.OpCompareAndSwap:
		r, err = e.writeEntry(ctx, scriptCompareAndSwap, req, req.Value, ttl, req.Old)
	case transport.OpCompareAndDelete:
		r, err = e.writeEntry(ctx, scriptCompareAndDelete, req, req.Old)
	case transport.OpStoreIfVersion:
		r, err = e.writeEntry(ctx, scriptStoreIfVersion, req, req.Value, ttl, req.Version)
	case transport.OpMapAdd:
		keys := []string{k.entry(name, req.Key), k.index(name), k.expiries(name), k.versions(), k.scratch()}
		r, err = e.write(ctx, scriptMapAdd, keys, req.Key, k.entryPrefix(name), req.Int, ttlMillis(req.TTL))
	case transport.OpTake:
		micro := func(ns int64) int64 { return (ns + 999) / 1000 }
		r, err = e.writeEntry(ctx, scriptTake, req, micro(req.Int), micro(req.OldInt), max(req.Limit, 1))
		r.n *= 1000 // the wait, from microseconds
	case transport.OpLen:
		err = e.retry(ctx, false, func(ctx context.Context) (err error) {
			r.n, err = scriptLen.Run(ctx, e.rdb, []string{k.index(name), k.expiries(name)}, k.entryPrefix(name)).Int64()
			return err
		})
	case transport.OpClear:
		r, err = e.write(ctx, scriptClear, []string{k.index(name), k.expiries(name)}, k.entryPrefix(name))
	case transport.OpRange:
		return e.page(ctx, name, req.Key, req.Int == transport.RangeInclusive, req.Limit)
	case transport.OpLock:
		return e.lock(ctx, name, true, nil)
	case transport.OpTryLock:
		return e.lock(ctx, name, false, nil)
	case transport.OpCompute:
		return e.compute(ctx, req)
	case transport.OpTouch:
		keys, terr := touchedKeys(req.Value)
		if terr != nil {
			return refuse(transport.StatusBadRequest, terr.Error())
		}
		err = e.touch(ctx, name, keys)
	case transport.OpUnlock:
		return e.unlock(ctx, name, req.Version)
	case transport.OpLockHeld:
		return e.lockHeld(ctx, name, req.Version)
	case transport.OpPublish:
		err = e.retry(ctx, false, func(ctx context.Context) (err error) {
			if e.sharded {
				r.n, err = e.rdb.SPublish(ctx, k.channel(name), req.Value).Result()
			} else {
				r.n, err = e.rdb.Publish(ctx, k.channel(name), req.Value).Result()
			}
			return err
		})
	default:
		return refuse(transport.StatusUnsupported, "the Redis engine does not perform "+req.Op.String())
	}
	if status, msg, ok := refused(err); ok {
		return refuse(status, msg)
	}
	if err != nil {
		return transport.Response{}, err
	}
	// The write is done whatever becomes of its eviction: the next bounded
	// write evicts what this one could not.
	e.bound(ctx, req)
	if req.Op == transport.OpStore && req.Version != 0 {
		// The Store that ends a Compute releases its claim; if it cannot,
		// the claim's lease runs out.
		e.unlock(ctx, transport.ClaimName(name, req.Key), req.Version)
	}
	return transport.Response{Found: r.found, Value: r.value, Version: r.version, Int: r.n, TTL: r.ttl}, nil
}

// refused turns the errors the scripts raise for bad requests into the
// statuses the embedded engine answers with.
func refused(err error) (transport.Status, string, bool) {
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return 0, "", false
	}
	switch msg := rerr.Error(); {
	case strings.HasPrefix(msg, "SSWRONGTYPE "):
		return transport.StatusWrongType, strings.TrimPrefix(msg, "SSWRONGTYPE "), true
	case strings.HasPrefix(msg, "SSRANGE "):
		return transport.StatusBadRequest, strings.TrimPrefix(msg, "SSRANGE "), true
	}
	return 0, "", false
}

// ttlMillis returns d in milliseconds, rounded up so that a TTL never
// becomes none.
func ttlMillis(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// ttlArg is the TTL argument of the scripts that store an entry (see put
// in scripts.go): milliseconds, after a '+' if an existing entry keeps its
// expiry.
func ttlArg(d time.Duration, keep bool) string {
	ms := strconv.FormatInt(ttlMillis(d), 10)
	if keep {
		return "+" + ms
	}
	return ms
}

// result is the answer of a write script, or of a read.
type result struct {
	found   bool
	value   []byte
	version uint64
	n       int64
	ttl     time.Duration // left; 0: none
}

// parseResult reads the {found, value, version, int} that write scripts
// return.
func parseResult(v any) (result, error) {
	a, ok := v.([]any)
	if !ok || len(a) != 5 {
		return result{}, fmt.Errorf("redisstate: unexpected reply %v", v)
	}
	found, _ := a[0].(int64)
	value, _ := a[1].(string)
	version, err1 := strconv.ParseUint(fmt.Sprint(a[2]), 10, 64)
	n, err2 := strconv.ParseInt(fmt.Sprint(a[3]), 10, 64)
	ms, err3 := strconv.ParseInt(fmt.Sprint(a[4]), 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return result{}, fmt.Errorf("redisstate: unexpected reply %v: %w", v, err)
	}
	r := result{found: found == 1, version: version, n: n, ttl: time.Duration(ms) * time.Millisecond}
	if value != "" {
		r.value = []byte(value)
	}
	return r, nil
}

// write runs a write script exactly once, retrying it with the same
// request id while Redis cannot be reached: see once in scripts.go. It
// piggybacks on the request the deletion of results no longer needed.
func (e *engine) write(ctx context.Context, s *redis.Script, keys []string, args ...any) (result, error) {
	done := e.keys.result(e.client, e.seq.Add(1))
	acked := e.acks.take()
	keys = append(append(append([]string(nil), keys...), done), acked...)
	args = append(args, resultTTL.Milliseconds(), len(acked))
	var reply any
	err := e.retry(ctx, true, func(ctx context.Context) (err error) {
		reply, err = e.run(ctx, s, keys, args)
		return err
	})
	if err != nil {
		e.acks.add(acked...) // perhaps not deleted: again with the next write
	}
	e.acks.add(done)
	if err != nil {
		return result{}, err
	}
	return parseResult(reply)
}

// run runs a write script, and then, on the same connection, waits for the
// replicas that WithReplicas asks for.
func (e *engine) run(ctx context.Context, s *redis.Script, keys []string, args []any) (any, error) {
	if e.replicas.n <= 0 {
		return s.Run(ctx, e.rdb, keys, args...).Result()
	}
	// WAIT counts the replicas that have this connection's writes: the
	// script and WAIT go in one pipeline, to the node of the state's slot.
	var node interface {
		redis.Scripter
		Pipelined(context.Context, func(redis.Pipeliner) error) ([]redis.Cmder, error)
	} = e.rdb
	if c, ok := e.rdb.(*redis.ClusterClient); ok {
		n, err := c.MasterForKey(ctx, keys[0])
		if err != nil {
			return nil, err
		}
		node = n
	}
	for loaded := false; ; loaded = true {
		var eval *redis.Cmd
		var wait *redis.Cmd
		node.Pipelined(ctx, func(p redis.Pipeliner) error { // each command has its error
			eval = s.EvalSha(ctx, p, keys, args...)
			wait = p.Do(ctx, "wait", e.replicas.n, e.replicas.timeout.Milliseconds())
			return nil
		})
		if !loaded && redis.HasErrorPrefix(eval.Err(), "NOSCRIPT") {
			if err := s.Load(ctx, node).Err(); err != nil {
				return nil, err
			}
			continue
		}
		if eval.Err() != nil {
			return nil, eval.Err()
		}
		got, err := wait.Int()
		switch {
		case err != nil:
			return nil, err
		case got < e.replicas.n:
			return nil, fmt.Errorf("the write reached %d of %d replicas within %v", got, e.replicas.n, e.replicas.timeout)
		}
		return eval.Val(), nil
	}
}

// retry calls attempt until it succeeds, fails in a way that trying again
// cannot fix, or ctx ends. A write that may have reached Redis is retried
// for retryWindow at most.
func (e *engine) retry(ctx context.Context, write bool, attempt func(context.Context) error) error {
	var last error     // the latest failure that retrying may fix
	var sent time.Time // when a write may first have reached Redis
	unresolved := ""
	wait := minBackoff
	for {
		err := attempt(ctx)
		if write && err != nil && sent.IsZero() && mayHaveApplied(err) {
			sent = time.Now()
			unresolved = "; the write may or may not have been applied"
		}
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil && last == nil:
			return fmt.Errorf("redisstate: %w%s", ctx.Err(), unresolved)
		case ctx.Err() != nil:
			return fmt.Errorf("%w: %w (last attempt: %v)%s", sharedstate.ErrUnavailable, ctx.Err(), last, unresolved)
		case !e.transient(err):
			return fmt.Errorf("redisstate: %w", err)
		case !sent.IsZero() && time.Since(sent) > retryWindow:
			return fmt.Errorf("%w: retried for %v: %w%s", sharedstate.ErrUnavailable, retryWindow, err, unresolved)
		}
		last = err
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w: %w (last attempt: %v)%s", sharedstate.ErrUnavailable, ctx.Err(), last, unresolved)
		}
		wait = min(2*wait, maxBackoff)
	}
}

// transient reports whether err may go away by trying again: Redis is
// unreachable, restarting, loading its data, or failing over.
func (e *engine) transient(err error) bool {
	if errors.Is(err, redis.ErrClosed) {
		return false
	}
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return true // the connection failed
	}
	return redis.IsLoadingError(err) || redis.IsReadOnlyError(err) ||
		redis.IsMasterDownError(err) || redis.IsClusterDownError(err) ||
		redis.IsTryAgainError(err) || redis.IsMaxClientsError(err) ||
		redis.HasErrorPrefix(err, "BUSY") ||
		// A Cluster moving the state's slot: its client follows a few
		// redirects itself, and a command redirected was not run. (Any
		// other client is not a Cluster's: a redirect tells it so.)
		e.sharded && (redis.HasErrorPrefix(err, "ASK") || redis.HasErrorPrefix(err, "MOVED"))
}

// mayHaveApplied reports whether a command that failed with err may have
// been carried out: unless it was never sent, or Redis refused it.
func mayHaveApplied(err error) bool {
	var op *net.OpError
	var rerr redis.Error
	return !(errors.As(err, &op) && op.Op == "dial") &&
		!errors.Is(err, redis.ErrPoolTimeout) &&
		!errors.As(err, &rerr)
}

// writeEntry runs a script that writes the entry req.Key of the map
// req.Name, with the keys and first arguments that mapLib expects.
func (e *engine) writeEntry(ctx context.Context, s *redis.Script, req *transport.Request, args ...any) (result, error) {
	k := e.keys
	keys := []string{k.entry(req.Name, req.Key), k.index(req.Name), k.expiries(req.Name), k.versions()}
	return e.write(ctx, s, keys, append([]any{req.Key, k.entryPrefix(req.Name)}, args...)...)
}

// get reads a counter.
func (e *engine) get(ctx context.Context, key string) (result, error) {
	var r result
	err := e.retry(ctx, false, func(ctx context.Context) (err error) {
		r.n, err = e.rdb.Get(ctx, key).Int64()
		if errors.Is(err, redis.Nil) {
			r.n, err = 0, nil
		}
		return err
	})
	return r, err
}

// load reads a map entry, and the time it has left; a read of a bounded
// map records the key's use.
func (e *engine) load(ctx context.Context, req *transport.Request) (result, error) {
	keys := []string{e.keys.entry(req.Name, req.Key)}
	if req.MaxEntries != 0 || req.MaxBytes != 0 {
		keys = append(keys, e.keys.recency(req.Name))
	}
	var v []any
	err := e.retry(ctx, false, func(ctx context.Context) (err error) {
		v, err = scriptLoad.Run(ctx, e.rdb, keys, req.Key).Slice()
		return err
	})
	if errors.Is(err, redis.Nil) {
		return result{}, nil
	}
	if err != nil || len(v) != 3 {
		return result{}, err
	}
	value, _ := v[0].(string)
	version, _ := v[1].(string)
	ms, _ := v[2].(int64)
	r := result{found: true, value: []byte(value), ttl: time.Duration(ms) * time.Millisecond}
	r.version, err = strconv.ParseUint(version, 10, 64)
	return r, err
}

// rangeBudget bounds the bytes of one Range page, as with the embedded
// engine.
const rangeBudget = 1 << 20

// page answers a Range.
func (e *engine) page(ctx context.Context, name, start string, inclusive bool, limit uint64) (transport.Response, error) {
	k := e.keys
	from := "(" + start // ZRANGEBYLEX's exclusive bound
	if inclusive {
		from = "[" + start
	}
	var v []any
	err := e.retry(ctx, false, func(ctx context.Context) (err error) {
		v, err = scriptRange.Run(ctx, e.rdb, []string{k.index(name), k.expiries(name)}, k.entryPrefix(name), from, limit, rangeBudget).Slice()
		return err
	})
	if err != nil {
		return transport.Response{}, err
	}
	entries, _ := v[0].([]any)
	more, _ := v[1].(int64)
	resp := transport.Response{Found: more == 1, Entries: make([]transport.Entry, 0, len(entries))}
	for _, x := range entries {
		f, _ := x.([]any)
		if len(f) != 4 {
			return transport.Response{}, fmt.Errorf("redisstate: unexpected range entry %v", x)
		}
		key, _ := f[0].(string)
		value, _ := f[1].(string)
		ms, _ := f[3].(int64)
		version, err := strconv.ParseUint(fmt.Sprint(f[2]), 10, 64)
		if err != nil {
			return transport.Response{}, fmt.Errorf("redisstate: range entry %q: %w", key, err)
		}
		resp.Entries = append(resp.Entries, transport.Entry{Key: key, Value: []byte(value), Version: version, TTL: time.Duration(ms) * time.Millisecond})
	}
	return resp, nil
}

// keys names the Redis keys of one state. Every one starts with the
// state's prefix, and then the kind of thing it holds, so that counters,
// maps and locks of the same name do not meet.
type keys struct{ prefix string }

func (k keys) counter(name string) string { return k.prefix + "counter:" + name }

// entryPrefix starts the Redis key of each entry of map m. The length of m
// keeps the keys of map "a:b" apart from those of map "a".
func (k keys) entryPrefix(m string) string {
	return k.prefix + "entry:" + strconv.Itoa(len(m)) + ":" + m + ":"
}
func (k keys) entry(m, key string) string { return k.entryPrefix(m) + key }
func (k keys) index(m string) string      { return k.prefix + "index:" + m }
func (k keys) expiries(m string) string   { return k.prefix + "expiries:" + m }
func (k keys) versions() string           { return k.prefix + "versions" }
func (k keys) lock(name string) string    { return k.prefix + "lock:" + name }
func (k keys) tokens(name string) string  { return k.prefix + "tokens:" + name }
func (k keys) queue(name string) string   { return k.prefix + "queue:" + name }
func (k keys) waiting(name string) string { return k.prefix + "waiting:" + name }
func (k keys) result(client string, id uint64) string {
	return k.prefix + "result:" + client + ":" + strconv.FormatUint(id, 10)
}
func (k keys) channel(name string) string { return k.prefix + "channel:" + name }
func (k keys) unlocked() string           { return k.prefix + "unlocked" }
func (k keys) scratch() string            { return k.prefix + "scratch" }
func (k keys) recency(m string) string    { return k.prefix + "recency:" + m }
func (k keys) sizes(m string) string      { return k.prefix + "sizes:" + m }
func (k keys) bytes(m string) string      { return k.prefix + "bytes:" + m }

// acks holds the result keys of the requests whose answers arrived (or
// that were given up), for the next write to delete. Those that do not fit
// expire after resultTTL.
type acks struct {
	mu   sync.Mutex
	keys []string
}

const (
	maxAcksPerWrite = 64
	maxAcks         = 4096
)

func (a *acks) add(keys ...string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.keys = append(a.keys, keys[:min(len(keys), maxAcks-len(a.keys))]...)
}

func (a *acks) take() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := min(len(a.keys), maxAcksPerWrite)
	taken := append([]string(nil), a.keys[len(a.keys)-n:]...)
	a.keys = a.keys[:len(a.keys)-n]
	return taken
}
