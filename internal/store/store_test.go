package store

import (
	"slices"
	"testing"
	"time"

	"github.com/sharedstate/sharedstate/internal/table"
	"github.com/sharedstate/sharedstate/transport"
)

// fakeClock is the wall and monotonic clock of a store under test: it moves
// only when the test says so, so every figure below is exact.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time          { return c.now }
func (c *fakeClock) advance(d time.Duration) { c.now = c.now.Add(d) }

// newTestStore returns a store in memory (nothing journaled) on a fake
// clock, and a client's session of it.
func newTestStore(t *testing.T) (*Store, *fakeClock, *Session) {
	t.Helper()
	c := &fakeClock{now: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	file, tab, err := table.NewMemory()
	if err != nil {
		t.Fatal(err)
	}
	s := newStore(file, tab)
	t.Cleanup(s.Close)
	s.wall, s.mono = c.Now, c.Now
	s.startClock()
	return s, c, s.NewSession(1, 100, func(transport.Response) {})
}

// do applies req for sess and fails t on a refusal it does not expect.
func do(t *testing.T, s *Store, sess *Session, req transport.Request) transport.Response {
	t.Helper()
	resp, parked := s.Apply(sess, &req)
	if parked {
		t.Fatalf("%v parked", req.Op)
	}
	return resp
}

var ids uint64

// req numbers a request as a client does.
func req(r transport.Request) transport.Request {
	ids++
	r.ID, r.Ack = ids, ids
	return r
}

func TestExpiryFollowsTheClock(t *testing.T) {
	s, clock, sess := newTestStore(t)
	do(t, s, sess, req(transport.Request{Op: transport.OpStore, Name: "m", Key: "k", Value: []byte("v"), TTL: 10 * time.Second}))
	clock.advance(9 * time.Second)
	if r := do(t, s, sess, req(transport.Request{Op: transport.OpLoad, Name: "m", Key: "k"})); !r.Found || r.TTL != time.Second {
		t.Fatalf("after 9 s: found %v, TTL %v; want found with 1s left", r.Found, r.TTL)
	}
	clock.advance(time.Second)
	if r := do(t, s, sess, req(transport.Request{Op: transport.OpLoad, Name: "m", Key: "k"})); r.Found {
		t.Fatal("found at its expiry")
	}
	if r := do(t, s, sess, req(transport.Request{Op: transport.OpLen, Name: "m"})); r.Int != 0 {
		t.Errorf("Len %d after expiry", r.Int)
	}
	if st := s.stats(); st.Entries != 0 || st.Bytes != 0 {
		t.Errorf("stats after expiry: %d entries, %d bytes", st.Entries, st.Bytes)
	}
}

func TestSweepExpiresWithoutOperations(t *testing.T) {
	s, clock, sess := newTestStore(t)
	var gone []string
	s.Changed = func(_, key string, change Change) {
		if change == Deleted {
			gone = append(gone, key)
		}
	}
	do(t, s, sess, req(transport.Request{Op: transport.OpStore, Name: "m", Key: "a", TTL: time.Second}))
	do(t, s, sess, req(transport.Request{Op: transport.OpStore, Name: "m", Key: "b", TTL: time.Hour}))
	clock.advance(2 * time.Second)
	s.Sweep()
	if len(gone) != 1 || gone[0] != "a" {
		t.Errorf("swept %q, want [a]", gone)
	}
}

func TestKeepTTL(t *testing.T) {
	s, clock, sess := newTestStore(t)
	do(t, s, sess, req(transport.Request{Op: transport.OpMapAdd, Name: "m", Key: "n", Int: 1, TTL: time.Minute}))
	clock.advance(30 * time.Second)
	r := do(t, s, sess, req(transport.Request{Op: transport.OpMapAdd, Name: "m", Key: "n", Int: 2, TTL: time.Minute}))
	if r.Int != 3 || r.TTL != 30*time.Second {
		t.Errorf("Add = %d with %v left; want 3, with the first Add's expiry (30s left)", r.Int, r.TTL)
	}
	if r := do(t, s, sess, req(transport.Request{Op: transport.OpMapAdd, Name: "m", Key: "s", Int: 1})); r.Status != transport.StatusOK {
		t.Fatal(r.Msg)
	}
	do(t, s, sess, req(transport.Request{Op: transport.OpStore, Name: "m", Key: "s", Value: []byte{0xa1, 'x'}}))
	if r := do(t, s, sess, req(transport.Request{Op: transport.OpMapAdd, Name: "m", Key: "s", Int: 1})); r.Status != transport.StatusWrongType {
		t.Errorf("Add to a string: status %v, want wrong type", r.Status)
	}
}

func TestTakeRefillsWithTime(t *testing.T) {
	s, clock, sess := newTestStore(t)
	// A bucket of 2 tokens, refilled one per second: its capacity is in
	// time, 2 s.
	take := func() transport.Response {
		return do(t, s, sess, req(transport.Request{Op: transport.OpTake, Name: "b", Key: "k",
			Int: int64(time.Second), OldInt: int64(2 * time.Second), Limit: 1}))
	}
	for i := range 2 {
		if r := take(); !r.Found {
			t.Fatalf("take %d of a full bucket refused", i+1)
		}
	}
	r := take()
	if r.Found || r.Int != int64(time.Second) {
		t.Fatalf("take of an empty bucket: allowed %v, wait %v; want refused, wait 1s", r.Found, time.Duration(r.Int))
	}
	clock.advance(time.Second)
	if r := take(); !r.Found {
		t.Error("refused after a token's interval")
	}
}

func TestLockQueue(t *testing.T) {
	s, _, a := newTestStore(t)
	var delivered []transport.Response
	b := s.NewSession(2, 200, func(r transport.Response) { delivered = append(delivered, r) })
	first := do(t, s, a, req(transport.Request{Op: transport.OpLock, Name: "l"}))
	if !first.Found || first.Version == 0 {
		t.Fatalf("Lock of a free lock: %+v", first)
	}
	if r := do(t, s, b, req(transport.Request{Op: transport.OpTryLock, Name: "l"})); r.Found {
		t.Fatal("TryLock of a held lock succeeded")
	}
	wait := req(transport.Request{Op: transport.OpLock, Name: "l"})
	if _, parked := s.Apply(b, &wait); !parked {
		t.Fatal("Lock of a held lock was not parked")
	}
	if r := do(t, s, b, req(transport.Request{Op: transport.OpUnlock, Name: "l", Version: first.Version})); r.Status != transport.StatusNotLocked {
		t.Errorf("Unlock by a non-holder: status %v", r.Status)
	}
	if r := do(t, s, a, req(transport.Request{Op: transport.OpUnlock, Name: "l", Version: first.Version + 1})); r.Status != transport.StatusNotLocked {
		t.Errorf("Unlock with another token: status %v", r.Status)
	}
	do(t, s, a, req(transport.Request{Op: transport.OpUnlock, Name: "l", Version: first.Version}))
	if len(delivered) != 1 || delivered[0].ID != wait.ID || delivered[0].Version <= first.Version {
		t.Fatalf("after Unlock the waiter got %+v; want its Lock answered with a later token", delivered)
	}
	if r := do(t, s, b, req(transport.Request{Op: transport.OpLockHeld, Name: "l", Version: delivered[0].Version})); !r.Found {
		t.Error("the waiter does not hold the lock it was given")
	}
	// A holder that disconnects for good (its process gone) loses it.
	s.Disconnect(b)
	s.ReleaseLocks(b.ID())
	if r := do(t, s, a, req(transport.Request{Op: transport.OpTryLock, Name: "l"})); !r.Found {
		t.Error("the lock of a released client is still held")
	}
}

func TestRetryAnsweredOnce(t *testing.T) {
	s, _, sess := newTestStore(t)
	add := req(transport.Request{Op: transport.OpAdd, Name: "c", Int: 5})
	first := do(t, s, sess, add)
	again := do(t, s, sess, add)
	if first.Int != 5 || again.Int != 5 {
		t.Fatalf("answers %d then %d: the retry was applied again", first.Int, again.Int)
	}
	if r := do(t, s, sess, req(transport.Request{Op: transport.OpGet, Name: "c"})); r.Int != 5 {
		t.Errorf("counter %d, want 5", r.Int)
	}
}

func TestBadRequests(t *testing.T) {
	s, _, sess := newTestStore(t)
	for _, r := range []transport.Request{
		{Op: transport.OpAdd},                       // no name
		{Op: transport.Op(250), Name: "c"},          // unknown op
		{Op: transport.OpStore, Name: "m", TTL: -1}, // negative TTL
		{Op: transport.OpStore, Name: string(make([]byte, maxNameLen+1))},
	} {
		if resp := do(t, s, sess, req(r)); resp.Status == transport.StatusOK {
			t.Errorf("%v %q accepted", r.Op, r.Name)
		}
	}
	if st := s.stats(); st.Counters+st.Maps != 0 {
		t.Errorf("refused requests created %d counters and %d maps", st.Counters, st.Maps)
	}
}

// TestRangePages: pages of a Range follow the order its first page found,
// deleted keys are skipped, a Range begun after a write sees it, and the
// cursors of Ranges that stopped go.
func TestRangePages(t *testing.T) {
	s, clock, sess := newTestStore(t)
	store := func(k string) {
		do(t, s, sess, req(transport.Request{Op: transport.OpStore, Name: "m", Key: k, Value: []byte(k)}))
	}
	for _, k := range []string{"e", "a", "d", "b", "c"} {
		store(k)
	}
	page := func(start string, inclusive bool) []string {
		r := transport.Request{Op: transport.OpRange, Name: "m", Key: start, Limit: 2}
		if inclusive {
			r.Int = transport.RangeInclusive
		}
		var keys []string
		for _, e := range do(t, s, sess, req(r)).Entries {
			keys = append(keys, e.Key)
		}
		return keys
	}
	one, two := page("", true), page("", true)
	if !slices.Equal(one, []string{"a", "b"}) || !slices.Equal(two, one) {
		t.Fatalf("first pages %v, %v", one, two)
	}
	do(t, s, sess, req(transport.Request{Op: transport.OpDelete, Name: "m", Key: "c"}))
	store("bb")
	if got := page("b", false); !slices.Equal(got, []string{"d", "e"}) {
		t.Fatalf("second page of the first Range: %v, want [d e] (c deleted; bb came after it began)", got)
	}
	// The second Range stands where the first stood: it continues from
	// the same cursor or from the keys sorted again, which have bb.
	if got := page("b", false); !slices.Equal(got, []string{"d", "e"}) && !slices.Equal(got, []string{"bb", "d"}) {
		t.Fatalf("second page of the second Range: %v", got)
	}
	if got := page("", true); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("a new Range: %v", got)
	}
	if got := page("b", false); !slices.Equal(got, []string{"bb", "d"}) {
		t.Fatalf("the new Range's second page: %v, want bb, written before it began", got)
	}
	if len(s.cursors) != 1 {
		t.Fatalf("%d cursors, want the new Range's alone", len(s.cursors))
	}
	clock.advance(cursorIdle + time.Second)
	s.Sweep()
	if len(s.cursors) != 0 {
		t.Fatalf("%d cursors after they were idle", len(s.cursors))
	}
}

// BenchmarkApply: the owner's own operations, in its process: go test
// -bench Apply -cpuprofile to see where their time goes.
func BenchmarkApply(b *testing.B) {
	file, tab, err := table.NewMemory()
	if err != nil {
		b.Fatal(err)
	}
	s := newStore(file, tab)
	defer s.Close()
	sess := s.NewOwnSession(1, 100, func(transport.Response) {})
	value := make([]byte, 64)
	s.Apply(sess, &transport.Request{Op: transport.OpAdd, Name: "hits", Int: 1})
	s.Apply(sess, &transport.Request{Op: transport.OpStore, Name: "kv", Key: "key:000000000000", Value: value})
	for _, bc := range []struct {
		name string
		req  transport.Request
	}{
		{"Counter.Add", transport.Request{Op: transport.OpAdd, Name: "hits", Int: 1}},
		{"Counter.Load", transport.Request{Op: transport.OpGet, Name: "hits"}},
		{"Map.Load", transport.Request{Op: transport.OpLoad, Name: "kv", Key: "key:000000000000"}},
		{"Map.Store", transport.Request{Op: transport.OpStore, Name: "kv", Key: "key:000000000000", Value: value}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				req := bc.req
				s.Apply(sess, &req)
			}
		})
	}
}
