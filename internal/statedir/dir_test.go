//go:build unix

package statedir

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func open(t *testing.T) (*Dir, string) {
	t.Helper()
	path := t.TempDir()
	d, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, path
}

// TestOpenFileRefuses: a link, a FIFO or a directory where a file belongs
// is refused, at once.
func TestOpenFileRefuses(t *testing.T) {
	d, path := open(t)
	outside := filepath.Join(t.TempDir(), "outside")
	os.WriteFile(outside, []byte("x"), 0o600)
	os.Symlink(outside, filepath.Join(path, "link"))
	syscall.Mkfifo(filepath.Join(path, "fifo"), 0o600)
	os.Mkdir(filepath.Join(path, "dir"), 0o700)
	for _, name := range []string{"link", "fifo", "dir"} {
		for _, flag := range []int{os.O_RDONLY, os.O_RDWR | os.O_CREATE} {
			if f, err := d.OpenFile(name, flag, 0o600); err == nil {
				f.Close()
				t.Errorf("OpenFile(%s, %#x) succeeded", name, flag)
			}
		}
	}
	if _, err := d.ReadFile("missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadFile of a missing file: %v", err)
	}
}

// TestReplace: a link planted where the temporary file goes is removed,
// not followed; the new version is in place once Replace returns.
func TestReplace(t *testing.T) {
	d, path := open(t)
	outside := filepath.Join(t.TempDir(), "outside")
	os.WriteFile(outside, []byte("precious"), 0o600)
	os.Symlink(outside, filepath.Join(path, "f.tmp"))
	f, err := d.Replace("f", true, func(f *os.File) error { _, err := f.Write([]byte("new")); return err })
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if b, _ := os.ReadFile(outside); string(b) != "precious" {
		t.Errorf("the link's target now holds %q", b)
	}
	if b, _ := d.ReadFile("f"); string(b) != "new" {
		t.Errorf("f holds %q", b)
	}
	if _, err := os.Lstat(filepath.Join(path, "f.tmp")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the temporary file is left: %v", err)
	}
}

// TestTryLock: the lock conflicts with another open of the same file, as
// with another process's, and follows the name: a lock file replaced
// after it was opened is locked anew.
func TestTryLock(t *testing.T) {
	d, path := open(t)
	l1, err := d.TryLock("lock")
	if err != nil || l1 == nil {
		t.Fatalf("first TryLock = %v, %v", l1, err)
	}
	if l2, err := d.TryLock("lock"); err != nil || l2 != nil {
		t.Fatalf("second TryLock = %v, %v; want nil, nil", l2, err)
	}
	// The lock file deleted and made again, as a tmp cleaner and a new
	// worker would: a new file, which the old lock does not cover.
	os.Remove(filepath.Join(path, "lock"))
	l3, err := d.TryLock("lock")
	if err != nil || l3 == nil || l3.ID() == l1.ID() {
		t.Fatalf("TryLock of a new lock file = %v, %v", l3, err)
	}
	if id, _ := d.Stat("lock"); id != l3.ID() {
		t.Error("the lock taken is not on the file at the name")
	}
	l1.Release()
	l3.Release()
}
