package sharedstatetest

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/sharedstate/sharedstate"
)

// Pair opens a new state twice, as two worker processes would: owner owns
// it, and proxy reaches it through owner's socket, so that what a test does
// through proxy crosses the socket as in production. Both use the embedded
// engine in a directory of t's, log nothing, and close when t ends.
func Pair(t testing.TB) (owner, proxy *sharedstate.State) {
	t.Helper()
	dir := t.TempDir()
	open := func() *sharedstate.State {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st, err := sharedstate.Open(ctx, "pair", sharedstate.WithDir(dir),
			sharedstate.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	owner, proxy = open(), open()
	if !owner.IsOwner() || proxy.IsOwner() {
		t.Fatal("sharedstatetest.Pair: the first State does not own the state, or the second does")
	}
	return owner, proxy
}
