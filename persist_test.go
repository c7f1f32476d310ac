//go:build unix

package sharedstate

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func quiet() Option { return WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))) }

func openIn(t *testing.T, dir string, opts ...Option) *State {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := Open(ctx, "app", append([]Option{WithDir(dir), quiet()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// fill makes some state of every kind and returns what reading it back
// should show.
func fill(t *testing.T, st *State) string {
	ctx := context.Background()
	c := st.Counter("c")
	m := NewMap[string](st, "m")
	for i := range 100 {
		if _, err := c.Add(ctx, int64(i)); err != nil {
			t.Fatal(err)
		}
		if err := m.Store(ctx, fmt.Sprint("k", i%10), fmt.Sprint("v", i)); err != nil {
			t.Fatal(err)
		}
	}
	m.Delete(ctx, "k3")
	st.Counter("deleted").Add(ctx, 7)
	if existed, err := st.Counter("deleted").Delete(ctx); !existed || err != nil {
		t.Fatalf("Delete of a counter = %v, %v; want true, nil", existed, err)
	}
	m.Store(ctx, "short", "gone soon", WithTTL(time.Millisecond))
	m.Store(ctx, "long", "stays", WithTTL(time.Hour))
	if _, err := m.Update(ctx, "k4", func(old string, _ bool) (string, error) { return old + "+", nil }); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond)
	return dump(t, st)
}

func dump(t *testing.T, st *State) string {
	t.Helper()
	ctx := context.Background()
	n, err := st.Counter("c").Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "c=%d counters:", n)
	err = st.Names(ctx, KindCounter, func(name string, v int64) bool {
		fmt.Fprintf(&b, " %s=%d", name, v)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	err = NewMap[string](st, "m").Range(ctx, func(k, v string) bool {
		fmt.Fprintf(&b, " %s=%s", k, v)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestRestartKeepsState: a state opened again has what it had, whether the
// table is adopted or, after a reboot, rebuilt from the files.
func TestRestartKeepsState(t *testing.T) {
	for _, d := range []Durability{DurabilityProcess, DurabilityDisk} {
		for _, reboot := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/reboot=%v", d, reboot), func(t *testing.T) {
				dir := t.TempDir()
				st := openIn(t, dir, WithDurability(d))
				want := fill(t, st)
				st.Close()
				if reboot {
					os.Remove(filepath.Join(dir, "app.table"))
				}
				st = openIn(t, dir, WithDurability(d))
				defer st.Close()
				if got := dump(t, st); got != want {
					t.Errorf("after restart:\n got %s\nwant %s", got, want)
				}
			})
		}
	}
}

// TestMemoryDurabilityKeepsOnlyLocks: a memory-only state forgets its
// counters and maps with its owner, and journals its locks alone.
func TestMemoryDurabilityKeepsOnlyLocks(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	st := openIn(t, dir, WithDurability(DurabilityMemory))
	fill(t, st)
	mu := st.Mutex("l")
	if err := mu.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	first := mu.Token()
	st.Close()
	st = openIn(t, dir, WithDurability(DurabilityMemory))
	defer st.Close()
	if got := dump(t, st); got != "c=0 counters:" {
		t.Errorf("memory-only state after restart: %s", got)
	}
	mu = st.Mutex("l")
	if err := mu.Lock(ctx); err != nil || mu.Token() <= first {
		t.Errorf("Lock after restart: token %d (before %d), %v", mu.Token(), first, err)
	}
	journal, err := os.ReadFile(filepath.Join(dir, "app.journal"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(journal, []byte("stays")) {
		t.Error("a memory-only state journaled a map's value")
	}
}

// awaitCompacted waits until the journal of the state "app" in dir
// continues a snapshot: a compaction that began has replaced the journal
// (it writes the snapshot first, in the background, and the state's files
// are a readable pair in between, the old journal's records intact).
func awaitCompacted(t *testing.T, dir string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		j, _ := os.ReadFile(filepath.Join(dir, "app.journal"))
		s, _ := os.ReadFile(filepath.Join(dir, "app.snapshot"))
		if len(j) >= 40 && len(s) >= 40 && binary.LittleEndian.Uint64(j[8:]) > 0 && bytes.Equal(j[24:32], s[16:24]) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no compaction replaced the journal within 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCompaction(t *testing.T) {
	dir := t.TempDir()
	st := openIn(t, dir)
	ctx := context.Background()
	m := NewMap[[]byte](st, "big")
	// 20 keys of 512 KiB, past the journal's least size for a compaction,
	// rewritten over and over: the journal would grow to 40 MiB.
	value := bytes.Repeat([]byte{7}, 512<<10)
	for i := range 80 {
		if err := m.Store(ctx, fmt.Sprint(i%20), value); err != nil {
			t.Fatal(err)
		}
	}
	st.Counter("c").Add(ctx, 5)
	// Compactions run beside the writes, and copy what was written
	// meanwhile into the next journal: once the writes slow down, the
	// journal comes back to about the live state.
	live := 20 * len(value)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		stats, err := st.Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if stats.JournalBytes <= int64(2*live) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the journal still holds %d bytes for %d live bytes", stats.JournalBytes, live)
		}
		st.Counter("d").Add(ctx, 1)
	}
	awaitCompacted(t, dir)
	st.Close()
	journal, _ := os.Stat(filepath.Join(dir, "app.journal"))
	snap, err := os.Stat(filepath.Join(dir, "app.snapshot"))
	if err != nil {
		t.Fatal("no snapshot written:", err)
	}
	// The journal file is preallocated; what matters is what it holds.
	st = openIn(t, dir)
	defer st.Close()
	stats, err := st.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	used := int(stats.JournalBytes)
	t.Logf("live %d, snapshot %d, journal file %d, records %d", live, snap.Size(), journal.Size(), used)
	if used > 2*live || snap.Size() > int64(2*live) {
		t.Errorf("journal holds %d bytes and snapshot %d for %d live bytes", used, snap.Size(), live)
	}
	if n, _ := NewMap[[]byte](st, "big").Len(ctx); n != 20 {
		t.Errorf("%d keys after compaction, want 20", n)
	}
	if n, _ := st.Counter("c").Load(ctx); n != 5 {
		t.Errorf("counter %d after compaction, want 5", n)
	}
}

// TestJournalFull runs the owner on a 2 MiB tmpfs (root only), so that the
// journal cannot grow: writes fail with ErrJournalFull, nothing panics, and
// what was acknowledged stays readable and survives a restart.
func TestJournalFull(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
	}
	defer exec.Command("umount", dir).Run()
	st := openIn(t, dir)
	ctx := context.Background()
	m := NewMap[[]byte](st, "m")
	value := bytes.Repeat([]byte{1}, 32<<10)
	stored := 0
	var err error
	for i := range 200 {
		if err = m.Store(ctx, fmt.Sprint(i), value); err != nil {
			break
		}
		stored++
	}
	if !errors.Is(err, ErrJournalFull) {
		t.Fatalf("after %d stores: %v, want ErrJournalFull", stored, err)
	}
	if n, err := m.Len(ctx); err != nil || n != stored {
		t.Errorf("Len = %d, %v; want %d", n, err, stored)
	}
	st.Close()
	st = openIn(t, dir)
	defer st.Close()
	if n, err := NewMap[[]byte](st, "m").Len(ctx); err != nil || n != stored {
		t.Errorf("after restart Len = %d, %v; want %d", n, err, stored)
	}
}

func TestAckTracker(t *testing.T) {
	a := ackTracker{done: make(map[uint64]struct{})}
	w1, r2, w3 := a.begin(), a.next(), a.begin()
	if got := a.low(); got != w1 {
		t.Fatalf("low = %d with write %d in flight", got, w1)
	}
	a.finish(w1)
	if got := a.low(); got != w3 {
		t.Fatalf("low = %d after %d finished, want %d: read %d does not count", got, w1, w3, r2)
	}
	w4, w5 := a.begin(), a.begin()
	a.finish(w4) // out of order: w3 is still in flight
	if got := a.low(); got != w3 {
		t.Fatalf("low = %d with %d in flight, want %d", got, w3, w3)
	}
	a.finish(w3)
	if got := a.low(); got != w5 {
		t.Fatalf("low = %d with %d in flight, want %d", got, w5, w5)
	}
	a.finish(w5)
	if got := a.low(); got != w5+1 {
		t.Fatalf("low = %d with nothing in flight, want %d", got, w5+1)
	}
}

// TestReplayExpiresAsLive: an entry that expired with no record of the
// time (the owner's sweeper expired it, or a read, and reads are not
// journaled) is gone during replay too, before the writes that followed,
// even a write that records no time. After a read, the replayed write once
// found the entry still there, so an acknowledged LoadOrStore was lost
// after a restart.
func TestReplayExpiresAsLive(t *testing.T) {
	for _, expire := range []struct {
		by   string
		wait func(m *Map[string])
	}{
		// No operation runs meanwhile, so only the sweeper can.
		{"the sweeper", func(*Map[string]) { time.Sleep(3 * sweepInterval) }},
		{"a read", func(m *Map[string]) {
			time.Sleep(5 * time.Millisecond)
			m.Load(context.Background(), "other")
		}},
	} {
		t.Run(expire.by, func(t *testing.T) {
			dir := t.TempDir()
			st := openIn(t, dir)
			ctx := context.Background()
			m := NewMap[string](st, "m")
			m.Store(ctx, "k", "old", WithTTL(time.Millisecond))
			expire.wait(m)
			if _, loaded, _ := m.LoadOrStore(ctx, "k", "new"); loaded {
				t.Fatal("expired entry loaded")
			}
			st.Close()
			st = openIn(t, dir)
			defer st.Close()
			if v, _, _ := NewMap[string](st, "m").Load(ctx, "k"); v != "new" {
				t.Errorf("after replay k = %q, want new", v)
			}
		})
	}
}
