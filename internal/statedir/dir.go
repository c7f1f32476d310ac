// Package statedir is the directory that holds the files of a state: its
// lock file, socket, journal and snapshot.
//
// Every file is opened relative to the directory, never through a symbolic
// link, and only if it is a regular file, so that nothing placed in the
// directory can make an owner read or write elsewhere, or block on a FIFO.
// Files are replaced atomically, through a temporary file created anew
// beside them.
package statedir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Dir is an open state directory. It is the directory at its path as it
// was when opened, or when Reopen last looked: a directory deleted and
// made again is another one.
//
// Every process holding a Dir holds a shared flock on the directory, which
// systemd-tmpfiles (since version 242) takes as a sign to leave the
// directory and everything in it alone.
type Dir struct {
	path string
	mu   sync.RWMutex // held across each use of f, which Reopen replaces
	f    *os.File     // the directory itself
	id   FileID
}

// Open opens the directory at path, which must be a directory itself and
// not a symbolic link to one.
func Open(path string) (*Dir, error) {
	f, id, err := openDir(path)
	if err != nil {
		return nil, err
	}
	return &Dir{path: path, f: f, id: id}, nil
}

func openDir(path string) (*os.File, FileID, error) {
	f, err := sysOpenDir(path)
	if err != nil {
		return nil, FileID{}, &os.PathError{Op: "open", Path: path, Err: err}
	}
	id, err := IDOf(f)
	if err == nil {
		if err = sysFlock(f, false); err != nil {
			err = &os.PathError{Op: "flock", Path: path, Err: err}
		}
	}
	if err != nil {
		f.Close()
		return nil, FileID{}, err
	}
	return f, id, nil
}

// Reopen opens the directory at the path again if it is no longer the one
// d holds (deleted, or deleted and made again), and reports whether it
// did. Files opened before stay open.
func (d *Dir) Reopen() (bool, error) {
	f, id, err := openDir(d.path)
	if err != nil {
		return false, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if id == d.id {
		f.Close()
		return false, nil
	}
	d.f.Close()
	d.f, d.id = f, id
	return true, nil
}

// Path returns the directory's path.
func (d *Dir) Path() string { return d.path }

// Join returns the path of name in the directory, for messages and for
// what must be named by path (a Unix socket).
func (d *Dir) Join(name string) string { return filepath.Join(d.path, name) }

// Close closes the directory.
func (d *Dir) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.f.Close()
}

// use runs fn with the directory, which Reopen does not close meanwhile.
func (d *Dir) use(fn func(dir *os.File) error) error {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return fn(d.f)
}

// OpenFile opens name in the directory with flag (os.O_RDWR, os.O_CREATE
// and the like) and, if it creates the file, mode perm. It refuses a
// symbolic link and anything but a regular file, without blocking on a FIFO
// or a device first.
func (d *Dir) OpenFile(name string, flag int, perm uint32) (*os.File, error) {
	var f *os.File
	err := d.use(func(dir *os.File) (err error) {
		f, err = sysOpenAt(dir, name, flag, perm, d.Join(name))
		return err
	})
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: d.Join(name), Err: err}
	}
	return f, nil
}

// ErrNotRegular reports a state file that is a FIFO, a directory, a device
// or a socket where a regular file belongs.
var ErrNotRegular = errors.New("not a regular file")

// ReadFile reads the whole of name. A missing file is an error matching
// fs.ErrNotExist.
func (d *Dir) ReadFile(name string) ([]byte, error) {
	f, err := d.OpenFile(name, os.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	data := make([]byte, fi.Size())
	if _, err := f.ReadAt(data, 0); err != nil {
		return nil, fmt.Errorf("reading %s: %w", d.Join(name), err)
	}
	return data, nil
}

// Replace writes a new version of name with write, and puts it in place
// at once with a rename: a crash leaves the old version or the new one.
// With sync, the file and the rename reach the disk before Replace
// returns. It returns the new file, still open.
func (d *Dir) Replace(name string, sync bool, write func(*os.File) error) (*os.File, error) {
	f, err := d.CreateTemp(name)
	if err != nil {
		return nil, err
	}
	if err = write(f); err == nil {
		err = d.Commit(f, name, sync)
	}
	if err != nil {
		d.Discard(f, name)
		return nil, err
	}
	return f, nil
}

// CreateTemp creates the file that will replace name once Commit puts it in
// place. It is created anew: a stale one, or a link put in its place, is
// removed first.
func (d *Dir) CreateTemp(name string) (*os.File, error) {
	tmp := name + ".tmp"
	if err := d.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return d.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
}

// Commit puts f, from CreateTemp, in place of name. With sync, f and the
// rename reach the disk first.
func (d *Dir) Commit(f *os.File, name string, sync bool) error {
	if sync {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	if err := d.Rename(name+".tmp", name); err != nil {
		return err
	}
	if sync {
		return d.use(func(dir *os.File) error { return dir.Sync() })
	}
	return nil
}

// Discard closes and removes f, from CreateTemp for name, not committed.
func (d *Dir) Discard(f *os.File, name string) {
	f.Close()
	d.Remove(name + ".tmp")
}

// Remove removes name from the directory; a link is removed, not followed.
func (d *Dir) Remove(name string) error {
	if err := d.use(func(dir *os.File) error { return sysRemoveAt(dir, name) }); err != nil {
		return &os.PathError{Op: "remove", Path: d.Join(name), Err: err}
	}
	return nil
}

// Rename renames old to new within the directory.
func (d *Dir) Rename(old, new string) error {
	if err := d.use(func(dir *os.File) error { return sysRenameAt(dir, old, new) }); err != nil {
		return &os.LinkError{Op: "rename", Old: d.Join(old), New: d.Join(new), Err: err}
	}
	return nil
}

// FileID identifies a file whatever its name: a file replaced, or deleted
// and created again, has another.
type FileID struct{ Dev, Ino uint64 }

// fileStat is what the system tells of a file.
type fileStat struct {
	id      FileID
	size    int64
	touched time.Time // the later of its access and modification times
}

// Stat returns the identity of name, not following a link.
func (d *Dir) Stat(name string) (FileID, error) {
	st, err := d.stat(name)
	return st.id, err
}

// Size returns the size of name, not following a link.
func (d *Dir) Size(name string) (int64, error) {
	st, err := d.stat(name)
	return st.size, err
}

func (d *Dir) stat(name string) (st fileStat, err error) {
	err = d.use(func(dir *os.File) (err error) {
		st, err = sysStatAt(dir, name)
		return err
	})
	if err != nil {
		return fileStat{}, &os.PathError{Op: "stat", Path: d.Join(name), Err: err}
	}
	return st, nil
}

// List returns the names of the files in the directory, in no order.
func (d *Dir) List() ([]string, error) {
	var names []string
	err := d.use(func(dir *os.File) (err error) {
		names, err = sysListAt(dir)
		return err
	})
	if err != nil {
		return nil, &os.PathError{Op: "list", Path: d.path, Err: err}
	}
	return names, nil
}

// Touch sets the access and modification times of name, or of the
// directory itself if name is "", to now, unless both are more recent than
// age: age-based cleaners of temporary directories (systemd-tmpfiles,
// tmpreaper, tmpwatch) remove what has not been touched for days.
func (d *Dir) Touch(name string, age time.Duration) error {
	return d.use(func(dir *os.File) error {
		if name == "" {
			name = "."
		}
		st, err := sysStatAt(dir, name)
		if err != nil {
			return &os.PathError{Op: "stat", Path: d.Join(name), Err: err}
		}
		if st.touched.After(time.Now().Add(-age)) {
			return nil
		}
		if err := sysTouchAt(dir, name); err != nil {
			return &os.PathError{Op: "utimes", Path: d.Join(name), Err: err}
		}
		return nil
	})
}

// IDOf returns the identity of an open file.
func IDOf(f *os.File) (FileID, error) {
	id, err := sysFileID(f)
	if err != nil {
		return FileID{}, &os.PathError{Op: "stat", Path: f.Name(), Err: err}
	}
	return id, nil
}

// OwnerOf returns the user id that owns the file fi describes, where the
// system has one.
func OwnerOf(fi os.FileInfo) (uid int, ok bool) { return sysOwner(fi) }
