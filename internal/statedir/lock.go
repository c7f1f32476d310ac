package statedir

import (
	"errors"
	"io/fs"
	"os"
)

// Lock is a held election lock: an flock on a file of the directory. The
// kernel releases it when its holder exits, however it exits, so at most
// one live process holds it and no stale lock outlives a crash.
type Lock struct {
	f  *os.File
	id FileID
}

// TryLock takes the lock on name, creating the file if needed, unless
// another process holds it: then it returns nil and no error.
//
// An flock locks a file, not a name: if the file is deleted and created
// again between the open and the flock, the lock taken is on a file nobody
// else will open. So TryLock checks, once it holds the lock, that name
// still is the file it locked, and tries again if not.
func (d *Dir) TryLock(name string) (*Lock, error) {
	for {
		f, err := d.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, err
		}
		if err := sysFlock(f, true); err != nil {
			f.Close()
			if errors.Is(err, errLocked) {
				return nil, nil
			}
			return nil, &os.PathError{Op: "flock", Path: d.Join(name), Err: err}
		}
		held, err := IDOf(f)
		if err != nil {
			f.Close()
			return nil, err
		}
		now, err := d.Stat(name)
		if err == nil && now == held {
			return &Lock{f: f, id: held}, nil
		}
		f.Close()
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
}

// ID returns the identity of the locked file.
func (l *Lock) ID() FileID { return l.id }

// Release gives the lock up.
func (l *Lock) Release() error { return l.f.Close() }
