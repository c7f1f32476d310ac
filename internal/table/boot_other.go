//go:build !linux && !darwin && !freebsd

package table

import "errors"

// bootID: elsewhere there is no telling a table from an earlier boot, so
// there are no tables.
func bootID() ([16]byte, error) { return [16]byte{}, errors.ErrUnsupported }
