//go:build linux && !race

// The race detector's shadow memory takes page faults of its own as the
// journal's pages are written: scripts/test.sh runs this test without it.

package journal

import (
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// TestAppendsRarelyFault: the pages records go into are made ready for
// writing many at a time, so that one Append in hundreds waits for the
// file system, not one per page of records (a page's first write faults:
// 2-10 µs here, inside an owner's answer). It counts the appends during
// which the thread took a page fault.
func TestAppendsRarelyFault(t *testing.T) {
	j, err := Create(openDir(t), "j", 1, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	payload := make([]byte, 48) // a 64-byte record, as an Add's
	const n = 16_000            // 1 MiB of records: 256 pages
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	faults := func() int64 {
		var ru unix.Rusage
		if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
			t.Fatal(err)
		}
		return ru.Minflt
	}
	faulted := 0
	for range n {
		if err := j.Reserve(len(payload)); err != nil {
			t.Fatal(err)
		}
		before := faults()
		if err := j.Append(payload); err != nil {
			t.Fatal(err)
		}
		if faults() > before {
			faulted++
		}
	}
	if most := n*64/prefaultAhead + 4; faulted > most {
		t.Fatalf("%d of %d appends took a page fault; want at most %d", faulted, n, most)
	}
}
