//go:build !linux

package statedir

import "errors"

// Beacon is an owner's mark that no file operation can take away, where the
// system offers one; this one does not (it has no abstract Unix sockets),
// and the lock file alone decides who owns a state.
type Beacon struct{}

// ErrOwned reports a beacon held by another process of this user.
var ErrOwned = errors.New("another process owns the state")

// ErrBeaconTaken reports a beacon's name bound by another user.
var ErrBeaconTaken = errors.New("the state's beacon is held by another user")

// ClaimBeacon returns no beacon and no error: there is none to claim here.
func ClaimBeacon(path, name string) (*Beacon, error) { return nil, nil }

// Release gives the beacon up.
func (b *Beacon) Release() {}
