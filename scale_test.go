//go:build unix

package sharedstate_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/sharedstate/sharedstate"
)

var takeoverKeys = flag.Int("takeover.keys", 0, "keys TestTakeoverAtScale fills the state with before it kills the owner (5000000 for issue 16's run; 0 skips it)")

func init() {
	// filler: become the owner, store SS_KEYS keys itself, and wait to be
	// killed.
	workerRoles["filler"] = func() int {
		ctx := context.Background()
		st, err := sharedstate.Open(ctx, "app", sharedstate.WithDir(os.Getenv("SS_DIR")), quietLogger(os.Stderr))
		if err != nil || !st.IsOwner() {
			fmt.Fprintln(os.Stderr, "not the owner:", err)
			return 1
		}
		n, _ := strconv.Atoi(os.Getenv("SS_KEYS"))
		m := sharedstate.NewMap[int](st, "big")
		for i := range n {
			if err := m.Store(ctx, scaleKey(i), i); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		fmt.Println("filled")
		select {}
	}
}

func scaleKey(i int) string { return fmt.Sprintf("key:%012d", i) }

// TestTakeoverAtScale: an owner holding -takeover.keys keys is SIGKILLed;
// the next one has every key, and the test logs how long the takeover
// took. Behind a flag: filling millions of keys takes a while.
func TestTakeoverAtScale(t *testing.T) {
	n := *takeoverKeys
	if n == 0 {
		t.Skip("run with -takeover.keys=5000000")
	}
	dir := t.TempDir()
	ctx := testContext(t)
	owner := startWorker(t, "filler", "SS_DIR="+dir, "SS_KEYS="+strconv.Itoa(n))
	owner.expectLine(t, "filled")
	st := open(t, dir, "app")
	m := sharedstate.NewMap[int](st, "big")
	if v, ok, err := m.Load(ctx, scaleKey(n-1)); err != nil || !ok || v != n-1 {
		t.Fatalf("the last key before the kill: %d, %v, %v", v, ok, err)
	}
	killed := time.Now()
	owner.cmd.Process.Signal(syscall.SIGKILL)
	owner.cmd.Wait()
	if _, err := st.Counter("after").Add(ctx, 1); err != nil {
		t.Fatal(err)
	}
	took := time.Since(killed)
	if l, err := m.Len(ctx); err != nil || l != n {
		t.Fatalf("Len after the takeover = %d, %v; want %d", l, err, n)
	}
	for _, i := range []int{0, n / 2, n - 1} {
		if v, ok, err := m.Load(ctx, scaleKey(i)); err != nil || !ok || v != i {
			t.Fatalf("%s after the takeover: %d, %v, %v", scaleKey(i), v, ok, err)
		}
	}
	t.Logf("%d keys: the first write after the kill returned after %v", n, took)
}
