//go:build unix

package sharedstate_test

// Damaged and planted files: a state's journal and snapshot damaged on
// purpose, byte by byte, and things put where its files belong. A torn
// tail (writes never acknowledged) may be dropped; any other damage is an
// error naming the file and offset, the files stay as they were, and
// Repair keeps what reads back whole.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sharedstate/sharedstate"
)

// The file format, as internal/journal documents it.
const (
	fileHeader   = 40
	recordHeader = 16
)

// journalRecords returns the offsets of the records of a journal file.
func journalRecords(data []byte) []int {
	var offs []int
	for off := fileHeader; off+recordHeader <= len(data); {
		n := int(binary.LittleEndian.Uint32(data[off:]))
		if n == 0 {
			break
		}
		offs = append(offs, off)
		off = (off + recordHeader + n + 7) &^ 7
	}
	return offs
}

// adds opens the state in dir, adds 1 to counter c n times, and closes it.
func adds(t *testing.T, dir string, n int) {
	t.Helper()
	st := openState(t, dir)
	for range n {
		if _, err := st.Counter("c").Add(testContext(t), 1); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
}

// openState opens "app" in dir and fails the test if it cannot.
func openState(t *testing.T, dir string) *sharedstate.State {
	t.Helper()
	st, err := openErr(dir)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func openErr(dir string) (*sharedstate.State, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return sharedstate.Open(ctx, "app", sharedstate.WithDir(dir), quietLogger(discard{}))
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func counter(t *testing.T, dir string) int64 {
	t.Helper()
	st := openState(t, dir)
	defer st.Close()
	n, err := st.Counter("c").Load(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// afterReboot removes the state's table, as a reboot makes it untrusted:
// the state is then rebuilt from its journal and snapshot alone.
func afterReboot(t *testing.T, dir string) {
	t.Helper()
	if err := os.Remove(filepath.Join(dir, "app.table")); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
}

// TestTornTailIsDropped: writes cut short and never acknowledged, at the
// end of the journal, are dropped, and the journal goes on after them:
// whether the table is adopted (a write torn after the table's position)
// or rebuilt.
func TestTornTailIsDropped(t *testing.T) {
	for name, tear := range map[string]func(data []byte, last int){
		// The process died between copying a record and writing its
		// length: the record reads as zeros, its payload after them.
		"process died": func(data []byte, last int) { clear(data[last : last+8]) },
		// The machine died with half the record on disk.
		"machine died": func(data []byte, last int) {
			n := int(binary.LittleEndian.Uint32(data[last:]))
			clear(data[last+recordHeader+n/2 : last+recordHeader+n])
		},
	} {
		for _, reboot := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/reboot=%v", name, reboot), func(t *testing.T) {
				dir := t.TempDir()
				adds(t, dir, 10)
				path := filepath.Join(dir, "app.journal")
				data, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				// An eleventh Add, appended after the records the table
				// holds (a record's bytes hold no offset of their own), then
				// torn.
				offs := journalRecords(data)
				last := offs[len(offs)-1]
				end := (last + recordHeader + int(binary.LittleEndian.Uint32(data[last:])) + 7) &^ 7
				copy(data[end:], data[last:end])
				tear(data, end)
				if err := os.WriteFile(path, data, 0o600); err != nil {
					t.Fatal(err)
				}
				if reboot {
					afterReboot(t, dir)
				}
				if got := counter(t, dir); got != 10 {
					t.Errorf("counter = %d after a torn last record, want 10", got)
				}
				adds(t, dir, 1)
				if got := counter(t, dir); got != 11 {
					t.Errorf("counter = %d after appending past a torn record, want 11", got)
				}
				afterReboot(t, dir) // the journal alone has every write
				if got := counter(t, dir); got != 11 {
					t.Errorf("counter = %d rebuilt from the journal, want 11", got)
				}
			})
		}
	}
}

// damage is a way to damage a journal of at least 20 records.
type damage struct {
	name   string
	offset func(offs []int) int // the offset the error must name
	apply  func(data []byte, offs []int)
}

func journalDamages(offs []int) []damage {
	ds := []damage{
		{"high byte of a length flipped", func(o []int) int { return o[3] },
			func(d []byte, o []int) { d[o[3]+3] ^= 0xff }},
		{"record word zeroed", func(o []int) int { return o[3] },
			func(d []byte, o []int) { clear(d[o[3] : o[3]+8]) }},
		{"payload byte flipped", func(o []int) int { return o[5] },
			func(d []byte, o []int) { d[o[5]+recordHeader+2] ^= 0x10 }},
		{"4 KiB page zeroed", func(o []int) int {
			for i, off := range o {
				if o[i+1] > 4096 { // the record that runs into the page
					return off
				}
			}
			return -1
		}, func(d []byte, o []int) { clear(d[4096:8192]) }},
	}
	// Every bit of three lengths, the first, one in the middle and the one
	// before the last: damage to the last record reads as a torn tail.
	for _, i := range []int{0, len(offs) / 2, len(offs) - 2} {
		for bit := range 32 {
			ds = append(ds, damage{fmt.Sprintf("record %d length bit %d flipped", i, bit), func(o []int) int { return o[i] },
				func(d []byte, o []int) { d[o[i]+bit/8] ^= 1 << (bit % 8) }})
		}
	}
	return ds
}

// TestDamagedJournalIsRefused: once the state's files are all there is (a
// reboot made the table untrusted), damage with acknowledged records after
// it fails Open with ErrDamaged, naming the file and offset, and changes no
// byte; Repair then keeps the records before the damage and sets the
// journal aside whole.
func TestDamagedJournalIsRefused(t *testing.T) {
	dir := t.TempDir()
	adds(t, dir, 300) // past 8 KiB of records
	afterReboot(t, dir)
	path := filepath.Join(dir, "app.journal")
	pristine, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	offs := journalRecords(pristine)
	ds := journalDamages(offs)
	for i, d := range ds {
		data := bytes.Clone(pristine)
		d.apply(data, offs)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := openErr(dir)
		if err == nil {
			n, _ := st.Counter("c").Load(testContext(t))
			st.Close()
			t.Fatalf("%s: Open succeeded, counter %d; want ErrDamaged", d.name, n)
		}
		want := fmt.Sprintf("offset %d", d.offset(offs))
		if !errors.Is(err, sharedstate.ErrDamaged) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: Open: %v; want ErrDamaged naming %s and %s", d.name, err, path, want)
		}
		if after, _ := os.ReadFile(path); !bytes.Equal(after, data) {
			t.Fatalf("%s: a failed Open changed the journal", d.name)
		}
		if i > 3 && i%5 != 0 {
			continue // Repair a sample of the bit flips
		}
		report, err := sharedstate.Repair(testContext(t), "app", sharedstate.WithDir(dir), quietLogger(discard{}))
		if err != nil {
			t.Fatalf("%s: Repair: %v", d.name, err)
		}
		if len(report.SetAside) != 1 || report.Problem == "" {
			t.Fatalf("%s: Repair = %+v", d.name, report)
		}
		if aside, _ := os.ReadFile(report.SetAside[0]); !bytes.Equal(aside, data) {
			t.Errorf("%s: the journal set aside is not the damaged one, byte for byte", d.name)
		}
		// The first two records start the owner's term (who owns it, in
		// which process); the others are Adds.
		kept := int64(0)
		for _, off := range offs[2:] {
			if off < d.offset(offs) {
				kept++
			}
		}
		if got := counter(t, dir); got != kept {
			t.Errorf("%s: counter = %d after Repair, want the %d records before the damage", d.name, got, kept)
		}
		afterReboot(t, dir)
		// Back to the pristine journal, for the next case.
		os.Remove(report.SetAside[0])
		os.Remove(filepath.Join(dir, "app.snapshot"))
		if err := os.WriteFile(path, pristine, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path, pristine, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := counter(t, dir); got != 300 {
		t.Errorf("the pristine journal reads %d, want 300", got)
	}
}

// TestMismatchedFilesAreRefused: a journal and snapshot that do not belong
// together, a header damaged, a file missing: ErrDamaged, never a state
// that silently lacks writes.
func TestMismatchedFilesAreRefused(t *testing.T) {
	// A state with a snapshot and a journal of records on top of it.
	dir := t.TempDir()
	st := openState(t, dir)
	ctx := testContext(t)
	m := sharedstate.NewMap[[]byte](st, "big")
	for i := range 20 {
		m.Store(ctx, fmt.Sprint(i), make([]byte, 512<<10)) // past the first compaction
	}
	sharedstate.AwaitCompacted(t, dir)
	for range 10 {
		st.Counter("c").Add(ctx, 1)
	}
	st.Close()
	afterReboot(t, dir)
	journal, snapshot := filepath.Join(dir, "app.journal"), filepath.Join(dir, "app.snapshot")
	pristineJ, err := os.ReadFile(journal)
	if err != nil {
		t.Fatal(err)
	}
	pristineS, err := os.ReadFile(snapshot)
	if err != nil {
		t.Fatal(err)
	}
	if len(journalRecords(pristineJ)) == 0 {
		t.Fatal("no records after the snapshot")
	}
	cases := []struct {
		name   string
		break_ func()
	}{
		{"journal generation zeroed", func() { pj := bytes.Clone(pristineJ); clear(pj[8:16]); os.WriteFile(journal, pj, 0o600) }},
		{"journal header zeroed", func() { pj := bytes.Clone(pristineJ); clear(pj[:fileHeader]); os.WriteFile(journal, pj, 0o600) }},
		{"journal cut to 20 bytes", func() { os.WriteFile(journal, pristineJ[:20], 0o600) }},
		{"snapshot generation bumped", func() { ps := bytes.Clone(pristineS); ps[8]++; os.WriteFile(snapshot, ps, 0o600) }},
		{"snapshot record damaged", func() { ps := bytes.Clone(pristineS); ps[len(ps)/2] ^= 1; os.WriteFile(snapshot, ps, 0o600) }},
		{"snapshot cut short", func() { os.WriteFile(snapshot, pristineS[:len(pristineS)-3], 0o600) }},
		{"snapshot deleted", func() { os.Remove(snapshot) }},
		{"journal deleted", func() { os.Remove(journal) }},
		{"journal of another state", func() {
			other := t.TempDir()
			adds(t, other, 1)
			b, _ := os.ReadFile(filepath.Join(other, "app.journal"))
			os.WriteFile(journal, b, 0o600)
		}},
	}
	for _, c := range cases {
		c.break_()
		j, _ := os.ReadFile(journal)
		s, _ := os.ReadFile(snapshot)
		if st, err := openErr(dir); !errors.Is(err, sharedstate.ErrDamaged) {
			if st != nil {
				st.Close()
			}
			t.Errorf("%s: Open: %v; want ErrDamaged", c.name, err)
		}
		if j2, _ := os.ReadFile(journal); !bytes.Equal(j, j2) {
			t.Errorf("%s: a failed Open changed the journal", c.name)
		}
		if s2, _ := os.ReadFile(snapshot); !bytes.Equal(s, s2) {
			t.Errorf("%s: a failed Open changed the snapshot", c.name)
		}
		os.WriteFile(journal, pristineJ, 0o600)
		os.WriteFile(snapshot, pristineS, 0o600)
	}
	if got := counter(t, dir); got != 10 {
		t.Fatalf("the pristine files read %d, want 10", got)
	}

	// A journal deleted, as by hand: Repair starts a new one on the
	// snapshot, which has most of the map but not the counter.
	os.Remove(journal)
	report, err := sharedstate.Repair(ctx, "app", sharedstate.WithDir(dir), quietLogger(discard{}))
	if err != nil || !strings.Contains(report.Problem, "missing") {
		t.Fatalf("Repair of a deleted journal: %+v, %v", report, err)
	}
	st = openState(t, dir)
	defer st.Close()
	n, err := sharedstate.NewMap[[]byte](st, "big").Len(ctx)
	c, err2 := st.Counter("c").Load(ctx)
	if err != nil || err2 != nil || n == 0 || n == 20 || c != 0 {
		t.Errorf("after Repair: %d entries and counter %d (%v, %v); want the snapshot's, short of the journal's", n, c, err, err2)
	}
}

// TestPlantedFilesAreRefused: a FIFO, a directory or a symbolic link where
// a state file belongs is refused with an error, at once, and nothing
// outside the directory is written.
func TestPlantedFilesAreRefused(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(outside, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	plants := map[string]func(path string) error{
		"fifo":      func(p string) error { return syscall.Mkfifo(p, 0o600) },
		"directory": func(p string) error { return os.Mkdir(p, 0o700) },
		"symlink":   func(p string) error { return os.Symlink(outside, p) },
	}
	for _, file := range []string{"app.snapshot", "app.journal", "app.lock"} {
		for kind, plant := range plants {
			dir := t.TempDir()
			if err := plant(filepath.Join(dir, file)); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			st, err := openErr(dir) // its context ends after 10 s
			if err == nil {
				st.Close()
				t.Errorf("a %s at %s: Open succeeded", kind, file)
				continue
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("a %s at %s: Open took %v", kind, file, took)
			}
			t.Logf("a %s at %s: %v", kind, file, err)
		}
	}
	// The temporary file of a snapshot is created anew: a link planted
	// there is replaced, not followed.
	dir := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(dir, "app.snapshot.tmp")); err != nil {
		t.Fatal(err)
	}
	st := openState(t, dir)
	m := sharedstate.NewMap[[]byte](st, "big")
	for i := range 20 {
		if err := m.Store(testContext(t), fmt.Sprint(i), make([]byte, 512<<10)); err != nil {
			t.Fatal(err)
		}
	}
	sharedstate.AwaitCompacted(t, dir)
	st.Close()
	if b, _ := os.ReadFile(outside); string(b) != "precious" {
		t.Errorf("the file a planted link pointed to now holds %d bytes", len(b))
	}
	if fi, err := os.Lstat(filepath.Join(dir, "app.snapshot")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("no snapshot written: %v", err)
	}
}
