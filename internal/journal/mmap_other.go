//go:build !unix

package journal

// Other systems (Windows) have no Unix state directory to keep a journal in
// (see package statedir), and so no journal.

import (
	"errors"
	"os"
)

func sysMap(*os.File, int) ([]byte, error) { return nil, errors.ErrUnsupported }

func sysUnmap([]byte) {}

func sysAllocate(*os.File, int) error { return errors.ErrUnsupported }

func sysDataSync(*os.File) error { return errors.ErrUnsupported }
