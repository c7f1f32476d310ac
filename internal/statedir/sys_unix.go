//go:build unix

package statedir

// The system calls of a state directory on Unix systems: openat and the
// other *at calls relative to the directory's descriptor, O_NOFOLLOW, and
// flock.

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Unsupported, if not nil, says why state directories do not work on this
// system; they do on Unix systems.
var Unsupported error

func sysOpenDir(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), path), nil
}

// sysOpenAt opens name in dir, refusing a symbolic link and anything but a
// regular file, and names the file path.
func sysOpenAt(dir *os.File, name string, flag int, perm uint32, path string) (*os.File, error) {
	// O_NONBLOCK keeps the open from blocking on a FIFO.
	fd, err := unix.Openat(int(dir.Fd()), name, flag|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, perm)
	if errors.Is(err, unix.ELOOP) {
		err = fmt.Errorf("a symbolic link: %w", err)
	}
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err = unix.Fstat(fd, &st); err == nil && st.Mode&unix.S_IFMT != unix.S_IFREG {
		err = ErrNotRegular
	}
	if err == nil {
		// A regular file ignores O_NONBLOCK, but os.NewFile would try the
		// poller.
		err = unix.SetNonblock(fd, false)
	}
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), path), nil
}

func sysRemoveAt(dir *os.File, name string) error { return unix.Unlinkat(int(dir.Fd()), name, 0) }

func sysRenameAt(dir *os.File, old, new string) error {
	return unix.Renameat(int(dir.Fd()), old, int(dir.Fd()), new)
}

// sysStatAt describes name in dir, not following a link.
func sysStatAt(dir *os.File, name string) (fileStat, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(int(dir.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fileStat{}, err
	}
	touched := time.Unix(st.Mtim.Unix())
	if a := time.Unix(st.Atim.Unix()); a.After(touched) {
		touched = a
	}
	return fileStat{id: FileID{Dev: uint64(st.Dev), Ino: uint64(st.Ino)}, size: st.Size, touched: touched}, nil
}

// sysListAt returns the names in dir. It reads through a descriptor of
// its own, so that listings do not share a read offset.
func sysListAt(dir *os.File) ([]string, error) {
	fd, err := unix.Openat(int(dir.Fd()), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), dir.Name())
	defer f.Close()
	return f.Readdirnames(-1)
}

// sysTouchAt sets the times of name in dir to now.
func sysTouchAt(dir *os.File, name string) error {
	return unix.UtimesNanoAt(int(dir.Fd()), name, nil, unix.AT_SYMLINK_NOFOLLOW)
}

func sysFileID(f *os.File) (FileID, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return FileID{}, err
	}
	return FileID{Dev: uint64(st.Dev), Ino: uint64(st.Ino)}, nil
}

// errLocked reports an flock held by another open file description.
var errLocked = unix.EWOULDBLOCK

// sysFlock takes an flock on f without waiting: exclusive, or shared.
func sysFlock(f *os.File, exclusive bool) error {
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	return unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
}

func sysOwner(fi os.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}
