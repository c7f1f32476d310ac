package journal

import (
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/sharedstate/sharedstate/internal/statedir"
)

func openDir(t *testing.T) *statedir.Dir {
	t.Helper()
	d, err := statedir.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func payloads(n, from int) [][]byte {
	var p [][]byte
	for i := range n {
		p = append(p, []byte(fmt.Sprintf("payload %d of %d", from+i, n)))
	}
	return p
}

func collect(j *Journal) []string {
	var got []string
	for r := range j.Records(HeaderSize) {
		got = append(got, string(r))
	}
	return got
}

// TestJournalAppendReopen: records appended are read back by the next
// opener, which appends after them; a journal that grows past its first
// size keeps its records.
func TestJournalAppendReopen(t *testing.T) {
	for _, sync := range []bool{false, true} {
		t.Run(fmt.Sprint("sync=", sync), func(t *testing.T) {
			d := openDir(t)
			j, err := Create(d, "j", 4, 99, sync)
			if err != nil {
				t.Fatal(err)
			}
			if sync {
				j.StartSyncer(func(err error) { t.Error(err) })
			}
			var want []string
			for _, p := range payloads(5000, 0) { // past 1 MiB, so the file grows
				if err := j.Reserve(len(p)); err != nil {
					t.Fatal(err)
				}
				if err := j.Append(p); err != nil {
					t.Fatal(err)
				}
				want = append(want, string(p))
			}
			durable := make(chan struct{})
			j.WhenDurable(func() { close(durable) })
			select {
			case <-durable:
			case <-time.After(time.Minute):
				t.Fatal("WhenDurable never ran")
			}
			j.Close()

			j, torn, err := Open(d, "j", sync)
			if err != nil || torn {
				t.Fatalf("Open = %v, torn %v", err, torn)
			}
			defer j.Close()
			if h := j.Header(); h.Gen != 4 || h.Link != 99 || h.Salt == 0 {
				t.Errorf("header %+v", h)
			}
			if got := collect(j); !slices.Equal(got, want) {
				t.Fatalf("read back %d records, want %d", len(got), len(want))
			}
			j.Append([]byte("after reopening"))
			if got := collect(j); got[len(got)-1] != "after reopening" {
				t.Errorf("last record %q", got[len(got)-1])
			}
		})
	}
}

// TestJournalPrepareSwitch: a journal prepared to replace another is not
// in place until Switch, and Discard leaves the old one as it was.
func TestJournalPrepareSwitch(t *testing.T) {
	d := openDir(t)
	j, err := Create(d, "j", 0, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	j.Append([]byte("old"))
	next, err := j.Prepare(1, 42)
	if err != nil {
		t.Fatal(err)
	}
	j.Discard(next)
	c, err := Read(d, "j")
	if err != nil || c.Gen != 0 || c.End == HeaderSize {
		t.Fatalf("after Discard: %+v, %v", c, err)
	}
	if next, err = j.Prepare(1, 42); err != nil {
		t.Fatal(err)
	}
	release, err := j.Switch(next)
	if err != nil {
		t.Fatal(err)
	}
	release()
	j.Append([]byte("new"))
	c, err = Read(d, "j")
	if err != nil || c.Gen != 1 || c.Link != 42 {
		t.Fatalf("after Switch: %+v, %v", c, err)
	}
	var got []string
	records, err := c.RecordsFrom(HeaderSize)
	if err != nil {
		t.Fatal(err)
	}
	for r := range records {
		got = append(got, string(r))
	}
	if !slices.Equal(got, []string{"new"}) {
		t.Errorf("records after Switch: %q", got)
	}
}

// TestSnapshotRoundTrip: a snapshot reads back as written, and any byte
// changed in it is damage.
func TestSnapshotRoundTrip(t *testing.T) {
	d := openDir(t)
	h := Header{Gen: 2, Salt: NewSalt(), Link: 5, End: 100}
	want := payloads(100, 0)
	size, _, err := WriteSnapshot(d, "s", h, false, func(w *SnapshotWriter) error {
		for _, p := range want {
			w.Record(p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got, records, n, err := ReadSnapshot(d, "s")
	if err != nil || got != h || n != size {
		t.Fatalf("ReadSnapshot = %+v, %d, %v", got, n, err)
	}
	i := 0
	for r := range records {
		if string(r) != string(want[i]) {
			t.Fatalf("record %d = %q", i, r)
		}
		i++
	}
	data, _ := d.ReadFile("s")
	for _, at := range []int{3, 9, HeaderSize + 2, HeaderSize + 20, len(data) / 2, len(data) - 1} {
		b := slices.Clone(data)
		b[at] ^= 0x40
		f, err := d.Replace("s", false, func(f *os.File) error { _, err := f.Write(b); return err })
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		if _, _, _, err := ReadSnapshot(d, "s"); err == nil {
			t.Errorf("byte %d of the snapshot changed: no error", at)
		}
	}
}
