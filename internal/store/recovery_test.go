package store

import (
	"log/slog"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/sharedstate/sharedstate/internal/statedir"
	"github.com/sharedstate/sharedstate/transport"
)

// testDir returns a state directory, closed when the test ends.
func testDir(t *testing.T) *statedir.Dir {
	_, dir := testDirAt(t)
	return dir
}

// testDirAt returns a state directory, closed when the test ends, and its
// path.
func testDirAt(t *testing.T) (string, *statedir.Dir) {
	t.Helper()
	path := t.TempDir()
	dir, err := statedir.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dir.Close() })
	return path, dir
}

// recoverIn opens the store of the state "app" in dir, as a new owner does.
func recoverIn(t *testing.T, dir *statedir.Dir) *Store {
	t.Helper()
	s, _, err := Recover(dir, "app", Options{Clock: time.Now, Logger: slog.New(slog.DiscardHandler)}, func(error) {})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRetryAppliedOnce sends the same write twice to one store, as a client
// does when its owner dies before answering: the second gets the first's
// answer, through a restart too.
func TestRetryAppliedOnce(t *testing.T) {
	dir := testDir(t)
	s := recoverIn(t, dir)
	s.Connect(42, ProcessOf(os.Getpid())) // as the owner does for each client
	sess := s.NewSession(42, 1, func(transport.Response) {})
	add := &transport.Request{ID: 7, Ack: 7, Op: transport.OpAdd, Name: "c", Int: 5}
	first, _ := s.Apply(sess, add)
	again, _ := s.Apply(sess, add)
	if first.Int != 5 || again.Int != 5 {
		t.Fatalf("answers %d then %d, want 5 both times", first.Int, again.Int)
	}
	s.Close()
	s = recoverIn(t, dir)
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

// TestSavedAnswersSurviveAdoption: a client with more calls in flight than
// its ring of kept answers has, unacknowledged, retries every one of them
// from an owner that adopted the table: each gets its first answer, none is
// applied again; once acknowledged, the table keeps no more than the ring.
func TestSavedAnswersSurviveAdoption(t *testing.T) {
	dir := testDir(t)
	s := recoverIn(t, dir)
	const inFlight = 5 * answerRing
	s.Connect(42, ProcessOf(os.Getpid()))
	sess := s.NewSession(42, 1, func(transport.Response) {})
	add := func(id, ack uint64) *transport.Request {
		return &transport.Request{ID: id, Ack: ack, Op: transport.OpAdd, Name: "c", Int: 1}
	}
	for id := uint64(1); id <= inFlight; id++ {
		s.Apply(sess, add(id, 1)) // none acknowledged
	}
	s.Close()

	s = recoverIn(t, dir)
	defer s.Close()
	if !s.Adopted() {
		t.Fatal("the table was rebuilt, not adopted")
	}
	sess = s.NewSession(42, 1, func(transport.Response) {})
	for id := uint64(1); id <= inFlight; id++ {
		if resp, _ := s.Apply(sess, add(id, 1)); resp.Int != int64(id) {
			t.Fatalf("retry of request %d answers %d, want its first answer %d", id, resp.Int, id)
		}
	}
	for id := uint64(inFlight + 1); id <= 2*inFlight; id++ {
		s.Apply(sess, add(id, id)) // each acknowledges every answer before it
	}
	if resp, _ := s.Apply(sess, &transport.Request{ID: 2*inFlight + 1, Ack: 2*inFlight + 1, Op: transport.OpGet, Name: "c"}); resp.Int != 2*inFlight {
		t.Fatalf("c = %d, want %d", resp.Int, 2*inFlight)
	}
	for range 2 * inFlight / pruneBudget {
		s.Sweep() // each commit drops some answers acknowledged
	}
	kept := 0
	for k := range s.txn().All(s.keptSpace()) {
		if k[0] == keptAnswerPrefix[0] || k[0] == keptRingPrefix[0] {
			kept++
		}
	}
	s.commit()
	if kept > answerRing {
		t.Errorf("%d answers kept in the table after every one was acknowledged, want at most %d", kept, answerRing)
	}
}

// TestLiveOwnerTableIsNotAdopted: a table its owner left without retiring
// it is adopted only once that owner's process has exited: where no beacon
// guards the lock file, an owner whose lock file was deleted writes on,
// and a second owner must not write the same table.
func TestLiveOwnerTableIsNotAdopted(t *testing.T) {
	dir := testDir(t)
	other := exec.Command("sleep", "60")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer other.Process.Kill()
	// An owner of that process writes, and its process "dies" with no
	// Close: its files are left as they are.
	left := func() {
		s := recoverIn(t, dir)
		s.BeginTerm(7, ProcessOf(other.Process.Pid), time.Second)
		s.Apply(s.NewOwnSession(7, other.Process.Pid, func(transport.Response) {}),
			&transport.Request{ID: 1, Op: transport.OpAdd, Name: "c", Int: 1})
		s.log.Close()
		s.tabFile.Close()
	}
	left()
	s := recoverIn(t, dir)
	if s.Adopted() {
		t.Error("adopted the table of an owner whose process runs")
	}
	s.Close()

	left()
	other.Process.Kill()
	other.Wait()
	s = recoverIn(t, dir)
	defer s.Close()
	if !s.Adopted() {
		t.Error("did not adopt the table of an owner whose process has exited")
	}
	if resp, _ := s.Apply(s.NewOwnSession(8, os.Getpid(), func(transport.Response) {}), &transport.Request{ID: 1, Op: transport.OpGet, Name: "c"}); resp.Int != 2 {
		t.Errorf("c = %d, want 2", resp.Int)
	}
}
