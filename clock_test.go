package sharedstate

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/sharedstate/sharedstate/transport"
)

// withClock runs the state's wall clock off by shift.
func withClock(shift time.Duration) Option {
	return func(c *config) { c.clock = func() time.Time { return time.Now().Add(shift) } }
}

// TestClockAheadAcrossOwners: after an owner whose clock ran an hour ahead,
// a new owner with the right time still expires entries and ends lock
// graces in real time; a clock step between owners shifts the store's time
// once, instead of freezing it until the wall clock catches up.
func TestClockAheadAcrossOwners(t *testing.T) {
	for _, d := range []Durability{DurabilityProcess, DurabilityMemory} {
		t.Run(d.String(), func(t *testing.T) {
			dir := t.TempDir()
			ctx := context.Background()
			const grace = 300 * time.Millisecond
			ahead := openIn(t, dir, withClock(time.Hour), WithLockGrace(grace), WithDurability(d))
			// A client holding a lock that stays through the handover and never
			// connects to the next owner.
			nc, err := transport.Dial(ctx, filepath.Join(dir, "app.sock"))
			if err != nil {
				t.Fatal(err)
			}
			cfg := ahead.embedded.transportConfig()
			cfg.ID = 99
			conn, _, err := transport.Connect(ctx, nc, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if err := conn.Send(&transport.Request{ID: 1, Op: transport.OpLock, Name: "l"}); err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Recv(); err != nil {
				t.Fatal(err)
			}
			m := NewMap[int](ahead, "m")
			if err := m.Store(ctx, "later", 1, WithTTL(time.Hour)); err != nil {
				t.Fatal(err)
			}
			ahead.Close()

			st := openIn(t, dir, WithLockGrace(grace), WithDurability(d))
			defer st.Close()
			m = NewMap[int](st, "m")
			if err := m.Store(ctx, "soon", 1, WithTTL(time.Second)); err != nil {
				t.Fatal(err)
			}
			within(t, 5*time.Second, "an entry with a TTL of 1s expires", func() bool {
				_, ok, err := m.Load(ctx, "soon")
				return err == nil && !ok
			})
			within(t, 5*time.Second, "the lock of a holder that did not come back is released", func() bool {
				ok, err := st.Mutex("l").TryLock(ctx)
				return err == nil && ok
			})
			if d == DurabilityProcess {
				if _, ok, err := m.Load(ctx, "later"); err != nil || !ok {
					t.Errorf("an entry with an hour to live written by the owner ahead: Load = %v, %v", ok, err)
				}
			}
		})
	}
}

// within waits up to d for cond, and fails the test if it never holds.
func within(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
