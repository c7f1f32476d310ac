//go:build !unix

package statedir

// Other systems (Windows) have neither flock nor the *at system calls a
// state directory is kept safe with: every operation fails, the first of
// them being Open.

import (
	"errors"
	"fmt"
	"os"
)

var errUnsupported = fmt.Errorf("a state directory needs a Unix system (flock, openat, O_NOFOLLOW, peer credentials): %w", errors.ErrUnsupported)

// Unsupported says why state directories do not work here.
var Unsupported = errUnsupported

func sysOpenDir(string) (*os.File, error) { return nil, errUnsupported }

func sysOpenAt(*os.File, string, int, uint32, string) (*os.File, error) { return nil, errUnsupported }

func sysRemoveAt(*os.File, string) error { return errUnsupported }

func sysRenameAt(*os.File, string, string) error { return errUnsupported }

func sysStatAt(*os.File, string) (fileStat, error) { return fileStat{}, errUnsupported }

func sysListAt(*os.File) ([]string, error) { return nil, errUnsupported }

func sysTouchAt(*os.File, string) error { return errUnsupported }

func sysFileID(*os.File) (FileID, error) { return FileID{}, errUnsupported }

var errLocked = errUnsupported

func sysFlock(*os.File, bool) error { return errUnsupported }

func sysOwner(os.FileInfo) (int, bool) { return 0, false }
