//go:build unix

package sharedstate

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestAdoptReplaysTheJournalPastTheTable: a new owner adopts the table as
// it is and replays the journal's records after the table's position only.
// An older copy of the table, put back, holds the position of an earlier
// close: the records after it are applied once, and nothing before it again.
func TestAdoptReplaysTheJournalPastTheTable(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	tablePath := filepath.Join(dir, "app.table")
	st := openIn(t, dir)
	m := NewMap[string](st, "m")
	st.Counter("c").Add(ctx, 10)
	m.Store(ctx, "early", "1")
	mu := st.Mutex("l")
	if err := mu.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	first := mu.Token()
	st.Close()
	older, err := os.ReadFile(tablePath)
	if err != nil {
		t.Fatal(err)
	}

	st = openIn(t, dir)
	st.Counter("c").Add(ctx, 5)
	NewMap[string](st, "m").Store(ctx, "late", "2", WithTTL(time.Hour))
	st.Close()
	if err := os.WriteFile(tablePath, older, 0o600); err != nil {
		t.Fatal(err)
	}

	check := func(how string) {
		t.Helper()
		st := openIn(t, dir)
		defer st.Close()
		m := NewMap[string](st, "m")
		if n, err := st.Counter("c").Load(ctx); n != 15 || err != nil {
			t.Errorf("%s: c = %d, %v; want 15", how, n, err)
		}
		if v, ok, _ := m.Load(ctx, "late"); !ok || v != "2" {
			t.Errorf("%s: late = %q, %v; want the write after the table's position", how, v, ok)
		}
		if _, ok, _ := m.Load(ctx, "early"); !ok {
			t.Errorf("%s: early is missing", how)
		}
		if n, _ := m.Len(ctx); n != 2 {
			t.Errorf("%s: Len = %d, want 2", how, n)
		}
		if stats, _ := st.Stats(ctx); stats.Entries != 2 || stats.Counters != 1 || stats.Maps != 1 {
			t.Errorf("%s: Stats = %+v, want 2 entries, 1 counter, 1 map", how, stats)
		}
		mu := st.Mutex("l")
		if err := mu.Lock(ctx); err != nil || mu.Token() <= first {
			t.Errorf("%s: Lock: token %d after %d, %v", how, mu.Token(), first, err)
		}
		mu.Unlock(ctx)
	}
	check("adopted")
	os.Remove(tablePath)
	check("rebuilt")
}

// damage flips a bit of the byte of the file at path that off picks, and
// returns the damaged file's identity.
func damage(t *testing.T, path string, off func(data []byte) int) os.FileInfo {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[off(data)] ^= 0x10
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

// awaitReplaced waits for the owner to write the file at path anew, in
// place of the damaged one.
func awaitReplaced(t *testing.T, path string, damaged os.FileInfo) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if now, err := os.Stat(path); err == nil && !os.SameFile(now, damaged) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the damaged %s is still in place after 10 s", filepath.Base(path))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestJournalDamageUnderAdoptedTable: an adopted table holds what the
// journal's records before its position did, so a new owner trusts them
// and checks them while it serves; damage there is found, and the journal
// written anew from the table, losing nothing.
func TestJournalDamageUnderAdoptedTable(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	st := openIn(t, dir)
	for range 300 {
		st.Counter("c").Add(ctx, 1)
	}
	st.Close()
	path := filepath.Join(dir, "app.journal")
	damaged := damage(t, path, func(data []byte) int {
		off := 40 // the first record; the fifth's payload gets a flipped byte
		for range 5 {
			off = (off + 16 + int(binary.LittleEndian.Uint32(data[off:])) + 7) &^ 7
		}
		return off + 18
	})
	st = openIn(t, dir)
	if n, err := st.Counter("c").Load(ctx); n != 300 || err != nil {
		t.Fatalf("c = %d, %v; want 300 from the table", n, err)
	}
	awaitReplaced(t, path, damaged)
	st.Counter("c").Add(ctx, 1)
	st.Close()
	os.Remove(filepath.Join(dir, "app.table"))
	st = openIn(t, dir)
	defer st.Close()
	if n, err := st.Counter("c").Load(ctx); n != 301 || err != nil {
		t.Errorf("rebuilt from the journal written anew: c = %d, %v; want 301", n, err)
	}
}

// TestSnapshotDamageUnderAdoptedTable: a new owner reads only the
// snapshot's header at adoption, and the whole of it in the background;
// damage there is found, and the snapshot written anew from the table.
func TestSnapshotDamageUnderAdoptedTable(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	st := openIn(t, dir)
	m := NewMap[[]byte](st, "big")
	for i := range 20 {
		m.Store(ctx, strconv.Itoa(i), make([]byte, 512<<10)) // past the first compaction
	}
	awaitCompacted(t, dir)
	st.Close()
	path := filepath.Join(dir, "app.snapshot")
	damaged := damage(t, path, func(data []byte) int { return len(data) / 2 })
	st = openIn(t, dir)
	if n, err := NewMap[[]byte](st, "big").Len(ctx); n != 20 || err != nil {
		t.Fatalf("Len = %d, %v; want 20 from the table", n, err)
	}
	awaitReplaced(t, path, damaged)
	st.Close()
	os.Remove(filepath.Join(dir, "app.table"))
	st = openIn(t, dir)
	defer st.Close()
	if n, err := NewMap[[]byte](st, "big").Len(ctx); n != 20 || err != nil {
		t.Errorf("rebuilt from the snapshot written anew: Len = %d, %v; want 20", n, err)
	}
}
