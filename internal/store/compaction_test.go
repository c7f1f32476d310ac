package store

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sharedstate/sharedstate/internal/statedir"
	"github.com/sharedstate/sharedstate/internal/table"
	"github.com/sharedstate/sharedstate/transport"
)

// dump returns everything the store's table holds of its counters and
// maps, and its last version.
func dump(s *Store) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]string{"rev": fmt.Sprint(s.rev)}
	tx := s.txn()
	for k, e := range tx.All(table.Root) {
		switch string(k[:1]) {
		case counterKeyPrefix:
			out["c"+string(k[1:])] = fmt.Sprint(int64(tx.Word(e, 0)))
		case mapKeyPrefix:
			for key, me := range tx.All(e.Space()) {
				out["m"+string(k[1:])+"/"+string(key)] = fmt.Sprintf("%x v%d d%d", me.Value, me.Version, me.Deadline)
			}
		}
	}
	return out
}

// copyFiles copies the state's files in from to a new directory, as a
// crash at this moment would leave them.
func copyFiles(t *testing.T, from string, names ...string) *statedir.Dir {
	t.Helper()
	to := t.TempDir()
	for _, name := range names {
		b, err := os.ReadFile(filepath.Join(from, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	dir, err := statedir.Open(to)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dir.Close() })
	return dir
}

// TestCompactionWhileWriting: writes go on while a snapshot is written, and
// between the snapshot landing and the journal's replacement. The state,
// reopened from the files of either moment (rebuilt from them, or with the
// table adopted), and after the compaction, is every write's.
func TestCompactionWhileWriting(t *testing.T) {
	path, dir := testDirAt(t)
	s := recoverIn(t, dir)
	s.Connect(42, ProcessOf(os.Getpid()))
	sess := s.NewSession(42, 1, func(transport.Response) {})
	r := rand.New(rand.NewPCG(7, 8))
	id := uint64(0)
	write := func(n int) {
		for range n {
			id++
			req := &transport.Request{ID: id, Ack: id, Name: fmt.Sprint("m", r.IntN(3)), Key: fmt.Sprint("k", r.IntN(3000))}
			switch x := r.IntN(10); {
			case x < 6:
				req.Op, req.Value = transport.OpStore, []byte(fmt.Sprint("value ", id))
				if x == 0 {
					req.TTL = time.Hour
				}
			case x < 8:
				req.Op = transport.OpDelete
			default:
				req.Op, req.Name, req.Key, req.Int = transport.OpAdd, fmt.Sprint("c", r.IntN(50)), "", int64(x)
			}
			if resp, _ := s.Apply(sess, req); resp.Status != transport.StatusOK {
				t.Fatalf("%v: %v %s", req.Op, resp.Status, resp.Msg)
			}
		}
	}
	write(20_000)

	landed, resume := make(chan struct{}), make(chan struct{})
	s.afterSnapshot = func() {
		close(landed)
		<-resume
	}
	s.mu.Lock()
	s.compact()
	c := s.compacting
	s.mu.Unlock()
	write(3000) // while the snapshot is written, or after it
	<-landed
	write(2000) // past the snapshot's end, in the journal it replaces
	want := dump(s)
	names := []string{s.SnapshotName(), s.JournalName()}
	between := copyFiles(t, path, names...)
	adoptable := copyFiles(t, path, append(names, s.TableName())...)
	close(resume)
	<-c.done
	if h := s.log.Header(); h.Gen != c.snap.Gen || h.Link != c.snap.Salt {
		t.Fatalf("after the compaction, the journal is generation %d on %x; want %d on %x", h.Gen, h.Link, c.snap.Gen, c.snap.Salt)
	}
	write(2000)
	after := dump(s)
	s.Close()

	for name, tc := range map[string]struct {
		dir     *statedir.Dir
		want    map[string]string
		adopted bool
	}{
		"between, rebuilt": {between, want, false},
		"between, adopted": {adoptable, want, true},
		"after":            {dir, after, true},
	} {
		s := recoverIn(t, tc.dir)
		got := dump(s)
		if s.Adopted() != tc.adopted {
			t.Errorf("%s: adopted %v, want %v", name, s.Adopted(), tc.adopted)
		}
		s.Close()
		if len(got) != len(tc.want) {
			t.Errorf("%s: %d entries, want %d", name, len(got), len(tc.want))
		}
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("%s: %s = %q, want %q", name, k, got[k], v)
				break
			}
		}
	}
	if err := os.Remove(filepath.Join(path, TableName("app"))); err != nil {
		t.Fatal(err)
	}
	s = recoverIn(t, dir)
	defer s.Close()
	if got := dump(s); len(got) != len(after) || s.Adopted() {
		t.Errorf("rebuilt after the compaction: %d entries, want %d", len(got), len(after))
	}
}

// TestCloseStopsACompaction: a store closed while it writes a snapshot
// gives the snapshot up, leaving files that hold every write.
func TestCloseStopsACompaction(t *testing.T) {
	path, dir := testDirAt(t)
	s := recoverIn(t, dir)
	sess := s.NewSession(42, 1, func(transport.Response) {})
	const n = 100_000
	for i := range n {
		s.Apply(sess, &transport.Request{ID: uint64(i + 1), Op: transport.OpStore, Name: "m", Key: fmt.Sprint(i), Value: []byte("v")})
	}
	s.mu.Lock()
	s.compact()
	c := s.compacting
	s.mu.Unlock()
	s.Close()
	select {
	case <-c.done:
	default:
		t.Fatal("Close returned before the compaction ended")
	}
	if err := os.Remove(filepath.Join(path, TableName("app"))); err != nil {
		t.Fatal(err)
	}
	s = recoverIn(t, dir)
	defer s.Close()
	if got := s.mapLen("m"); got != n {
		t.Fatalf("%d entries after a compaction stopped by Close, want %d", got, n)
	}
}
