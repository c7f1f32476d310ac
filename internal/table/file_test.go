//go:build unix

package table

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sharedstate/sharedstate/internal/statedir"
)

func testDir(t *testing.T) *statedir.Dir {
	t.Helper()
	dir, err := statedir.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dir.Close() })
	return dir
}

const envReader = "TABLE_TEST_READER" // the table's directory, in a reader process

// TestAcrossProcesses: another process reads the table while this one
// writes it, growing the file far beyond its first size: the reader sees
// whole entries, versions that never go back, and, once the writer says it
// is done, every key at its last version.
func TestAcrossProcesses(t *testing.T) {
	dir := testDir(t)
	file, tb, err := Create(dir, "s.table")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	tx := tb.Begin()
	sp := tx.NewSpace("m:kv", 0).Space()
	commit(t, tx)

	cmd := exec.Command(os.Args[0], "-test.run=^TestReaderProcess$", "-test.timeout=1m")
	cmd.Env = append(os.Environ(), envReader+"="+dir.Path())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	lines := bufio.NewScanner(out)
	if !lines.Scan() || lines.Text() != "reading" {
		t.Fatalf("the reader process said %q", lines.Text())
	}

	const keys = 500
	last := map[string]uint64{}
	start := time.Now()
	var version uint64
	for time.Since(start) < time.Second || word(tb.m, hSize) < 8*growStep {
		version++
		key := fmt.Sprintf("key%d", version%keys)
		tx := tb.Begin()
		tx.Put(sp, key, selfChecking(key, version), version, 0)
		if version%3 == 0 { // and entries that only add up, to grow the file
			tx.Put(sp, fmt.Sprintf("filler%d", version), make([]byte, 200), version, 0)
		}
		commit(t, tx)
		last[key] = version
	}
	tx = tb.Begin()
	tx.Put(Root, "done", []byte(strconv.FormatUint(version, 10)), version+1, 0)
	commit(t, tx)

	var said []string
	for lines.Scan() {
		if line := lines.Text(); line != "PASS" {
			said = append(said, line)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the reader process failed: %v\n%s", err, strings.Join(said, "\n"))
	}
	t.Logf("%d writes, file of %d bytes; the reader: %s", version, word(tb.m, hSize), strings.Join(said, "; "))
}

// TestReaderProcess is the reader of TestAcrossProcesses, in its own process.
func TestReaderProcess(t *testing.T) {
	path := os.Getenv(envReader)
	if path == "" {
		t.Skip("run by TestAcrossProcesses")
	}
	dir, err := statedir.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	file, v, err := OpenView(dir, "s.table", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	fmt.Println("reading")
	seen := map[string]uint64{}
	reads, busy := 0, 0
	for {
		done, err := v.Get("", "done", nil)
		if errors.Is(err, ErrBusy) {
			busy++
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for i := range 100 {
			key := fmt.Sprintf("key%d", (reads+i*7)%500)
			r, err := v.Get("m:kv", key, nil)
			if errors.Is(err, ErrBusy) {
				busy++
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			if !r.Found {
				continue
			}
			if err := checkSelfChecking(key, r.Version, r.Value); err != nil {
				t.Fatal(err)
			}
			if r.Version < seen[key] {
				t.Fatalf("%s: version %d after %d", key, r.Version, seen[key])
			}
			seen[key] = r.Version
		}
		reads += 100
		if done.Found {
			final, _ := strconv.ParseUint(string(done.Value), 10, 64)
			for i := range uint64(500) {
				key := fmt.Sprintf("key%d", i)
				want := final - (final-i)%500 // the last version written to key
				if r, err := v.Get("m:kv", key, nil); err != nil || r.Version != want {
					t.Fatalf("%s after done: version %d (%v), want %d", key, r.Version, err, want)
				}
			}
			fmt.Printf("%d reads, %d busy\n", reads, busy)
			return
		}
	}
}

// TestTruncatedUnderAReader: a file cut short beneath a reader's mapping,
// as only something other than its owner would, is an error, not a crash.
func TestTruncatedUnderAReader(t *testing.T) {
	dir := testDir(t)
	file, tb, err := Create(dir, "s.table")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	tx := tb.Begin()
	tx.Put(Root, "k", make([]byte, 100<<10), 1, 0)
	commit(t, tx)
	vf, v, err := OpenView(dir, "s.table", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer vf.Close()
	if r, err := v.Get("", "k", nil); err != nil || len(r.Value) != 100<<10 {
		t.Fatalf("Get = %d bytes, %v", len(r.Value), err)
	}
	if err := os.Truncate(dir.Join("s.table"), hEnd+4096); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Get("", "k", nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Get of a truncated table: %v, want ErrCorrupt", err)
	}
}

// TestOtherBoot: a table from before the host booted is not trusted.
func TestOtherBoot(t *testing.T) {
	dir := testDir(t)
	file, _, err := Create(dir, "s.table")
	if err != nil {
		t.Fatal(err)
	}
	file.m[hBoot] ^= 0xff
	file.Close()
	if _, _, err := OpenOwner(dir, "s.table"); !errors.Is(err, ErrOtherBoot) {
		t.Fatalf("OpenOwner = %v, want ErrOtherBoot", err)
	}
}

// TestClaimAndRetire: a view reads the table only while the owner it was
// opened for writes it, and tells the time as that owner does.
func TestClaimAndRetire(t *testing.T) {
	dir := testDir(t)
	file, tb, err := Create(dir, "s.table")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	vf, v, err := OpenView(dir, "s.table", 7)
	if err != nil {
		t.Fatal(err)
	}
	defer vf.Close()
	if _, err := v.Get("", "k", nil); !errors.Is(err, ErrRetired) {
		t.Fatalf("before the owner claims it: %v, want ErrRetired", err)
	}
	const clock = int64(1e18)
	if err := tb.Claim(7, clock); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Get("", "k", nil); err != nil {
		t.Fatalf("once claimed: %v", err)
	}
	before := Monotonic() + clock
	now := v.Now()
	if after := Monotonic() + clock; now < before || now > after {
		t.Fatalf("Now = %d, not within %d..%d", now, before, after)
	}
	if err := tb.Retire(); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Get("", "k", nil); !errors.Is(err, ErrRetired) {
		t.Fatalf("once retired: %v, want ErrRetired", err)
	}
}
