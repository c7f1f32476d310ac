//go:build !linux && !darwin && !freebsd

package wire

import (
	"errors"
	"fmt"
)

// Unsupported says that x/sys offers no peer credentials of a Unix socket
// on this system, and the owner admits no process it cannot check.
var Unsupported = fmt.Errorf("peer credentials of a Unix socket: %w", errors.ErrUnsupported)

func peerCred(int) (Cred, error) { return Cred{}, Unsupported }
