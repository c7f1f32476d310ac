package sharedstate

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/sharedstate/sharedstate/internal/statedir"
)

// The states of a directory: which there are, and removing one. A state is
// its files in the directory, named after it: NAME.lock (the owner's
// election), NAME.sock (where proxies reach the owner), NAME.journal and
// NAME.snapshot (its data), and the journals Repair set aside.

// StateInfo describes a state found in a directory, for States.
type StateInfo struct {
	Name  string
	Files []string // its files, as paths
	Bytes int64    // the size of its data on disk: journal and snapshot
}

// Locked reports whether the state has a lock file, which a process
// running the state holds (Stats through an observer says which).
func (s StateInfo) Locked() bool {
	for _, f := range s.Files {
		if filepath.Base(f) == s.Name+".lock" {
			return true
		}
	}
	return false
}

// States lists the states in the directory of opts (WithDir, or
// DefaultDir), in name order. A directory that does not exist holds none.
func States(opts ...Option) ([]StateInfo, error) {
	cfg := newConfig(opts)
	if _, err := os.Lstat(cmp.Or(cfg.dir, DefaultDir())); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	dir, err := openStateDir(cfg)
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	return scanStates(dir, "")
}

// scanStates describes the states in dir, in name order: all of them, or
// only the one called only if it is not "".
func scanStates(dir *statedir.Dir, only string) ([]StateInfo, error) {
	files, err := dir.List()
	if err != nil {
		return nil, fmt.Errorf("sharedstate: %w", err)
	}
	byName := map[string]*StateInfo{}
	for _, f := range files {
		name, data, ok := stateOf(f)
		if !ok || only != "" && name != only {
			continue
		}
		info := byName[name]
		if info == nil {
			info = &StateInfo{Name: name}
			byName[name] = info
		}
		info.Files = append(info.Files, dir.Join(f))
		if data {
			size, _ := dir.Size(f)
			info.Bytes += size
		}
	}
	out := make([]StateInfo, 0, len(byName))
	for _, info := range byName {
		slices.Sort(info.Files)
		out = append(out, *info)
	}
	slices.SortFunc(out, func(a, b StateInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// stateFiles are the endings of a state's file names; data marks its data.
var stateFiles = []struct {
	ext  string
	data bool
}{{".lock", false}, {".sock", false}, {".journal", true}, {".snapshot", true}, {".table", false}}

// stateOf returns the state a file of a state directory belongs to, and
// whether it holds the state's data (its journal or snapshot, not a copy
// being written or set aside).
func stateOf(file string) (name string, data, ok bool) {
	base, aside := file, false
	if i := strings.LastIndex(base, ".journal.damaged-"); i >= 0 {
		base, aside = base[:i+len(".journal")], true
	} else if b, tmp := strings.CutSuffix(base, ".tmp"); tmp {
		base, aside = b, true
	}
	for _, f := range stateFiles {
		if name, ok := strings.CutSuffix(base, f.ext); ok && checkName(name) == nil {
			return name, f.data && !aside, true
		}
	}
	return "", false, false
}

// Remove deletes the state called name: its files, its data with them. It
// refuses, with ErrUnavailable, while a process uses the state, and
// returns an error wrapping fs.ErrNotExist if there is no such state.
//
// Options are those of Open; WithDir must name the same directory.
func Remove(ctx context.Context, name string, opts ...Option) error {
	if err := checkName(name); err != nil {
		return err
	}
	cfg := newConfig(opts)
	if _, err := os.Lstat(cmp.Or(cfg.dir, DefaultDir())); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("sharedstate: remove %q: %w", name, err)
	}
	dir, err := openStateDir(cfg)
	if err != nil {
		return err
	}
	defer dir.Close()
	found, err := scanStates(dir, name)
	if err != nil {
		return err
	}
	if len(found) == 0 {
		return fmt.Errorf("sharedstate: remove %q: no such state in %s: %w", name, dir.Path(), fs.ErrNotExist)
	}
	release, err := claimIdle(dir, name, "remove")
	if err != nil {
		return err
	}
	defer release()
	if err := ctx.Err(); err != nil {
		return err
	}
	// Listed again, now that no process may write meanwhile.
	if found, err = scanStates(dir, name); err != nil {
		return err
	}
	// The lock file last: until it goes, a process starting meanwhile
	// waits on it, then makes the state anew.
	lock := name + ".lock"
	remove := func(f string) error {
		if err := dir.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("sharedstate: remove %q: %w", name, err)
		}
		return nil
	}
	for _, path := range found[0].Files {
		if f := filepath.Base(path); f != lock {
			if err := remove(f); err != nil {
				return err
			}
		}
	}
	if err := remove(lock); err != nil {
		return err
	}
	return nil
}

// claimIdle takes the lock file and the beacon of the state called name,
// for an operation (what) on its files that no process may use meanwhile,
// and returns the function that gives them back. It fails with
// ErrUnavailable if a process uses the state.
func claimIdle(dir *statedir.Dir, name, what string) (release func(), err error) {
	busy := fmt.Errorf("%w: %s %q: a process uses the state; stop every process using it first", ErrUnavailable, what, name)
	lock, err := dir.TryLock(name + ".lock")
	if err != nil {
		return nil, fmt.Errorf("sharedstate: %w", err)
	}
	if lock == nil {
		return nil, busy
	}
	// An owner whose lock file was deleted still holds its beacon.
	beacon, err := statedir.ClaimBeacon(dir.Path(), name)
	switch {
	case errors.Is(err, statedir.ErrOwned):
		lock.Release()
		return nil, busy
	case errors.Is(err, statedir.ErrBeaconTaken):
		// Another user's: the lock file alone tells.
	case err != nil:
		lock.Release()
		return nil, fmt.Errorf("sharedstate: %w", err)
	}
	return func() {
		if beacon != nil {
			beacon.Release()
		}
		lock.Release()
	}, nil
}
