package sharedstate

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/sharedstate/sharedstate/internal/statedir"
	"github.com/sharedstate/sharedstate/internal/wire"
)

// openStateDir opens the directory of cfg, made if missing.
func openStateDir(cfg config) (*statedir.Dir, error) {
	if err := cmp.Or(statedir.Unsupported, wire.Unsupported); err != nil {
		return nil, fmt.Errorf("sharedstate: Open's engine keeps a state in the memory of its workers, who reach each other through Unix sockets: %w; "+
			"here, use another engine (the Redis engine of module github.com/sharedstate/sharedstate/redisstate), or a Linux, macOS or FreeBSD host (WSL on Windows)", err)
	}
	path, err := stateDir(cfg.dir)
	if err != nil {
		return nil, err
	}
	dir, err := statedir.Open(path)
	if err != nil {
		return nil, fmt.Errorf("sharedstate: %w", err)
	}
	return dir, nil
}

// DefaultDir returns the directory that holds the states of Open without
// WithDir: sharedstate-UID in $XDG_RUNTIME_DIR (the user's own, in memory,
// cleared at boot), or in os.TempDir if that is not set. Open makes it if needed, readable by its user alone.
func DefaultDir() string {
	base := os.Getenv("XDG_RUNTIME_DIR")
	if !filepath.IsAbs(base) {
		base = os.TempDir()
	}
	return filepath.Join(base, "sharedstate-"+strconv.Itoa(os.Getuid()))
}

// stateDir returns the directory of a state, dir or DefaultDir if dir is "",
// made if missing, after checking that it is safe to use.
func stateDir(dir string) (string, error) {
	private := dir == ""
	if private {
		dir = DefaultDir()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("sharedstate: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return "", fmt.Errorf("sharedstate: %w", err)
	}
	owner, _ := statedir.OwnerOf(fi)
	switch mode := fi.Mode(); {
	case !fi.IsDir():
		return "", fmt.Errorf("sharedstate: %s is not a directory", dir)
	case owner != os.Getuid():
		return "", fmt.Errorf("%w: directory %s belongs to uid %d, not %d", ErrUnauthorized, dir, owner, os.Getuid())
	case private && mode.Perm()&0o077 != 0, mode.Perm()&0o022 != 0:
		return "", fmt.Errorf("%w: directory %s has mode %v; it must not be open to other users (chmod 700)", ErrUnauthorized, dir, mode.Perm())
	}
	return dir, nil
}
