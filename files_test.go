//go:build unix

package sharedstate_test

// The state's files deleted or replaced under a running owner, as an
// age-based tmp cleaner, an operator's rm -rf or a deploy script would: at
// most one owner, always; nothing acknowledged lost; new workers can join;
// the owner restores what is gone within about a second.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sharedstate/sharedstate"
)

func init() {
	// serve: open the state and say whether this process owns it, and
	// which process does; then serve until killed.
	workerRoles["serve"] = func() int {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		st, err := sharedstate.Open(ctx, "app", sharedstate.WithDir(os.Getenv("SS_DIR")), quietLogger(os.Stderr))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		stats, err := st.Stats(ctx)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println("role", map[bool]string{true: "owner", false: "proxy"}[st.IsOwner()], stats.OwnerPID)
		select {}
	}
}

// serveWorker starts a "serve" worker and returns it with its role and
// the owner's pid, as it saw them.
func serveWorker(t *testing.T, dir string) (w *worker, role string, ownerPID int) {
	t.Helper()
	w = startWorker(t, "serve", "SS_DIR="+dir)
	f := strings.Fields(w.expectLine(t, "role"))
	pid, _ := strconv.Atoi(f[1])
	return w, f[0], pid
}

// ownsLockFile reports whether pid holds the flock on the lock file now at
// path.
func ownsLockFile(path string, pid int) bool {
	pids, err := flockHolders(path)
	return err == nil && slices.Contains(pids, pid)
}

// TestLockFileDeletedUnderOwner: workers that start while the lock file is
// gone find the running owner, not an empty lock to take; the owner takes
// the new lock file within about a second.
func TestLockFileDeletedUnderOwner(t *testing.T) {
	dir := t.TempDir()
	owner, role, _ := serveWorker(t, dir)
	if role != "owner" {
		t.Fatalf("the first worker is a %s", role)
	}
	lock := filepath.Join(dir, "app.lock")
	for round := range 3 {
		if err := os.Remove(lock); err != nil {
			t.Fatal(err)
		}
		_, role, ownerPID := serveWorker(t, dir)
		if role != "proxy" || ownerPID != owner.cmd.Process.Pid {
			t.Fatalf("round %d: a worker started without the lock file is a %s of pid %d; want a proxy of the owner, pid %d",
				round, role, ownerPID, owner.cmd.Process.Pid)
		}
		within(t, 10*time.Second, "the owner holds the new lock file", func() bool { return ownsLockFile(lock, owner.cmd.Process.Pid) })
	}
}

// TestSocketDeletedUnderOwner: the owner binds its socket again, so workers
// started after its deletion can join.
func TestSocketDeletedUnderOwner(t *testing.T) {
	dir := t.TempDir()
	owner, _, _ := serveWorker(t, dir)
	if err := os.Remove(filepath.Join(dir, "app.sock")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := sharedstate.Open(ctx, "app", sharedstate.WithDir(dir), quietLogger(discard{}))
	if err != nil {
		t.Fatalf("Open after the socket was deleted: %v", err)
	}
	defer st.Close()
	if stats, err := st.Stats(ctx); err != nil || stats.OwnerPID != owner.cmd.Process.Pid {
		t.Errorf("Stats = %+v, %v; want the owner, pid %d", stats, err, owner.cmd.Process.Pid)
	}
}

// TestStateDirRemovedUnderOwner: rm -rf of the state's directory while
// workers add to a counter, and one more worker starting after it: still
// one owner, which puts every file back; the count is exact.
func TestStateDirRemovedUnderOwner(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	stop := filepath.Join(t.TempDir(), "stop")
	var workers []*worker
	for range adders - 1 {
		w := startWorker(t, "adduntil", "SS_DIR="+dir, "SS_STOP="+stop)
		w.expectLine(t, "adding")
		workers = append(workers, w)
	}
	time.Sleep(100 * time.Millisecond)
	os.RemoveAll(dir) // as an operator would, racing the owner's writes
	w := startWorker(t, "adduntil", "SS_DIR="+dir, "SS_STOP="+stop)
	w.expectLine(t, "adding")
	workers = append(workers, w)
	time.Sleep(300 * time.Millisecond)
	os.WriteFile(stop, nil, 0o600)
	total := 0
	for _, w := range workers {
		n, _ := strconv.Atoi(w.expectLine(t, "added"))
		total += n
		w.wait(t)
	}
	for _, f := range []string{"app.lock", "app.journal", "app.snapshot"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("not restored: %v", err)
		}
	}
	st := open(t, dir, "app")
	if n, err := st.Counter("hits").Load(testContext(t)); err != nil || n != int64(total) {
		t.Errorf("hits = %d, %v; want the %d acknowledged Adds", n, err, total)
	}
}

func init() {
	// adduntil: add to a counter from 8 goroutines until the file SS_STOP
	// exists, then print how many Adds were acknowledged.
	workerRoles["adduntil"] = func() int {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		st, err := sharedstate.Open(ctx, "app", sharedstate.WithDir(os.Getenv("SS_DIR")), quietLogger(os.Stderr))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer st.Close()
		fmt.Println("adding")
		var added atomic.Int64
		errs := make(chan error, addGoroutines)
		for range addGoroutines {
			go func() {
				for {
					if _, err := os.Stat(os.Getenv("SS_STOP")); err == nil {
						errs <- nil
						return
					}
					if _, err := st.Counter("hits").Add(ctx, 1); err != nil {
						errs <- err
						return
					}
					added.Add(1)
				}
			}()
		}
		for range addGoroutines {
			if err := <-errs; err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		fmt.Println("added", added.Load())
		return 0
	}
}

// TestJournalDeletedUnderOwner: the journal or snapshot deleted under the
// owner is written again from its memory: every write acknowledged before
// or after survives the owner's SIGKILL.
func TestJournalDeletedUnderOwner(t *testing.T) {
	for _, file := range []string{"app.journal", "app.snapshot"} {
		t.Run(file, func(t *testing.T) {
			dir := t.TempDir()
			ctx := testContext(t)
			owner, _, _ := serveWorker(t, dir)
			st := open(t, dir, "app")
			m := sharedstate.NewMap[[]byte](st, "big")
			for i := range 20 { // past a compaction: there is a snapshot
				if err := m.Store(ctx, strconv.Itoa(i), make([]byte, 512<<10)); err != nil {
					t.Fatal(err)
				}
			}
			sharedstate.AwaitCompacted(t, dir)
			for range 100 {
				st.Counter("c").Add(ctx, 1)
			}
			if err := os.Remove(filepath.Join(dir, file)); err != nil {
				t.Fatal(err)
			}
			for range 100 {
				st.Counter("c").Add(ctx, 1)
			}
			within(t, 10*time.Second, file+" restored", func() bool {
				_, err := os.Stat(filepath.Join(dir, file))
				return err == nil
			})
			owner.cmd.Process.Kill()
			owner.cmd.Wait()
			if n, err := st.Counter("c").Add(ctx, 1); err != nil || n != 201 {
				t.Fatalf("Add after the owner's death = %d, %v; want 201", n, err)
			}
			if n, err := m.Len(ctx); err != nil || n != 20 {
				t.Errorf("%d entries after the owner's death, %v; want 20", n, err)
			}
		})
	}
}

// TestTmpCleanersKeptAway: the owner keeps its files' times fresh, and
// holds a shared flock on the directory, which systemd-tmpfiles honours:
// an age-based clean of a parent directory leaves the state alone.
func TestTmpCleanersKeptAway(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "state")
	serveWorker(t, dir)
	old := time.Now().Add(-30 * 24 * time.Hour)
	files := []string{"", "app.lock", "app.sock", "app.journal"}
	for _, f := range files {
		if err := os.Chtimes(filepath.Join(dir, f), old, old); err != nil {
			t.Fatal(err)
		}
	}
	within(t, 10*time.Second, "the owner touches its files", func() bool {
		for _, f := range files {
			fi, err := os.Lstat(filepath.Join(dir, f))
			if err != nil || fi.ModTime().Before(time.Now().Add(-time.Hour)) {
				return false
			}
		}
		return true
	})

	tmpfiles, err := exec.LookPath("systemd-tmpfiles")
	if err != nil {
		t.Log("no systemd-tmpfiles here: its part of the test skipped")
		return
	}
	control := filepath.Join(parent, "control")
	os.Mkdir(control, 0o700)
	os.WriteFile(filepath.Join(control, "old"), nil, 0o600)
	conf := filepath.Join(t.TempDir(), "clean.conf")
	os.WriteFile(conf, []byte("d "+parent+" 0700 - - 1s\n"), 0o600)
	time.Sleep(2500 * time.Millisecond) // everything older than the age now
	if out, err := exec.Command(tmpfiles, "--clean", conf).CombinedOutput(); err != nil {
		t.Fatalf("systemd-tmpfiles --clean: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(control, "old")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("systemd-tmpfiles did not clean an unlocked directory (%v): the test proves nothing", err)
	}
	for _, f := range files {
		if _, err := os.Lstat(filepath.Join(dir, f)); err != nil {
			t.Errorf("systemd-tmpfiles removed a state file: %v", err)
		}
	}
}

// within waits up to d for cond, and fails the test if it never holds.
func within(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
