package store

import (
	"log/slog"
	"testing"
	"time"

	"github.com/sharedstate/sharedstate/internal/statedir"
	"github.com/sharedstate/sharedstate/transport"
)

// TestRetryAppliedOnce sends the same write twice to one store, as a client
// does when its owner dies before answering: the second gets the first's
// answer, through a restart too.
func TestRetryAppliedOnce(t *testing.T) {
	dir, err := statedir.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	opts := Options{Clock: time.Now, Logger: slog.New(slog.DiscardHandler)}
	s, _, err := Recover(dir, "app", opts, func(error) {})
	if err != nil {
		t.Fatal(err)
	}
	sess := s.NewSession(42, 1, func(transport.Response) {})
	add := &transport.Request{ID: 7, Ack: 7, Op: transport.OpAdd, Name: "c", Int: 5}
	first, _ := s.Apply(sess, add)
	again, _ := s.Apply(sess, add)
	if first.Int != 5 || again.Int != 5 {
		t.Fatalf("answers %d then %d, want 5 both times", first.Int, again.Int)
	}
	s.Close()
	s, _, err = Recover(dir, "app", opts, func(error) {})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sess = s.NewSession(42, 1, func(transport.Response) {})
	if resp, _ := s.Apply(sess, add); resp.Int != 5 {
		t.Errorf("after recovery a retry answers %d, want 5", resp.Int)
	}
	// Once acknowledged, the saved answer goes.
	s.Apply(sess, &transport.Request{ID: 8, Ack: 8, Op: transport.OpGet, Name: "c"})
	s.Apply(sess, &transport.Request{ID: 9, Ack: 9, Op: transport.OpAdd, Name: "c", Int: 1})
	if n := len(s.clients[42].results); n != 1 {
		t.Errorf("%d answers saved after acks, want 1", n)
	}
}
