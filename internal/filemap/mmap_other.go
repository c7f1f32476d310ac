//go:build !unix

package filemap

// Other systems (Windows) have no Unix state directory to keep files in
// (see package statedir), and so nothing to map.

import (
	"errors"
	"os"
)

func Map(*os.File, int, bool) ([]byte, error) { return nil, errors.ErrUnsupported }

func MapAnonymous(int) ([]byte, error) { return nil, errors.ErrUnsupported }

func Unmap([]byte) {}

func Allocate(*os.File, int) error { return errors.ErrUnsupported }

func DataSync(*os.File) error { return errors.ErrUnsupported }
