//go:build unix

package sharedstate_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/sharedstate/sharedstate"
)

// stateNames returns the names States lists in dir.
func stateNames(t *testing.T, dir string) []string {
	t.Helper()
	states, err := sharedstate.States(sharedstate.WithDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range states {
		names = append(names, s.Name)
	}
	return names
}

func TestStatesAndRemove(t *testing.T) {
	ctx := testContext(t)
	dir := t.TempDir()
	if names := stateNames(t, filepath.Join(dir, "missing")); names != nil {
		t.Errorf("States of a missing directory = %q; want none", names)
	}
	if _, err := os.Stat(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("States made the directory it lists: %v", err)
	}

	app := open(t, dir, "app")
	if _, err := app.Counter("c").Add(ctx, 1); err != nil {
		t.Fatal(err)
	}
	old := open(t, dir, "old.v1")
	if err := sharedstate.NewMap[string](old, "m").Store(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	old.Close()
	// Files that are not a state's, and a journal Repair set aside.
	for _, f := range []string{"notes.txt", ".hidden.lock", "gone.journal.damaged-20261201T000000Z"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := stateNames(t, dir), []string{"app", "gone", "old.v1"}; !slices.Equal(got, want) {
		t.Fatalf("States = %q; want %q", got, want)
	}
	states, _ := sharedstate.States(sharedstate.WithDir(dir))
	if s := states[2]; s.Bytes == 0 || !slices.Contains(s.Files, filepath.Join(dir, "old.v1.journal")) {
		t.Errorf("States: %+v; want its journal, and bytes of data", s)
	}
	if s := states[1]; s.Bytes != 0 || len(s.Files) != 1 || s.Locked() {
		t.Errorf("States: %+v; want a state of one set-aside file, with no data and no lock file", s)
	}
	if !states[0].Locked() {
		t.Errorf("States: %+v; want the lock file of the running state", states[0])
	}

	// Refused while a process uses the state: this one, or another.
	if err := sharedstate.Remove(ctx, "app", sharedstate.WithDir(dir)); !errors.Is(err, sharedstate.ErrUnavailable) {
		t.Errorf("Remove of a state in use = %v; want ErrUnavailable", err)
	}
	app.Close()
	w, _, _ := serveWorker(t, dir)
	if err := sharedstate.Remove(ctx, "app", sharedstate.WithDir(dir)); !errors.Is(err, sharedstate.ErrUnavailable) {
		t.Errorf("Remove of a state another process uses = %v; want ErrUnavailable", err)
	}
	if runtime.GOOS == "linux" {
		// The lock file deleted under the owner: its beacon still tells.
		if err := os.Remove(filepath.Join(dir, "app.lock")); err != nil {
			t.Fatal(err)
		}
		if err := sharedstate.Remove(ctx, "app", sharedstate.WithDir(dir)); !errors.Is(err, sharedstate.ErrUnavailable) {
			t.Errorf("Remove of a state whose owner lost its lock file = %v; want ErrUnavailable", err)
		}
	}
	w.cmd.Process.Kill()
	w.cmd.Wait()

	for _, bad := range []struct {
		name string
		want error
	}{{"nosuch", fs.ErrNotExist}, {"../etc", sharedstate.ErrInvalidName}, {"", sharedstate.ErrInvalidName}} {
		if err := sharedstate.Remove(ctx, bad.name, sharedstate.WithDir(dir)); !errors.Is(err, bad.want) {
			t.Errorf("Remove(%q) = %v; want %v", bad.name, err, bad.want)
		}
	}
	for _, name := range []string{"old.v1", "gone"} {
		if err := sharedstate.Remove(ctx, name, sharedstate.WithDir(dir)); err != nil {
			t.Fatalf("Remove(%q) = %v", name, err)
		}
	}
	if got, want := stateNames(t, dir), []string{"app"}; !slices.Equal(got, want) {
		t.Errorf("States after Remove = %q; want %q", got, want)
	}
	for _, f := range []string{"notes.txt", ".hidden.lock"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("Remove took a file that is not the state's: %v", err)
		}
	}
	// A state removed opens empty.
	old = open(t, dir, "old.v1")
	if n, err := sharedstate.NewMap[string](old, "m").Len(ctx); n != 0 || err != nil {
		t.Errorf("Len of a map of a removed state = %d, %v; want 0", n, err)
	}
}
