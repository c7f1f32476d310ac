package statedir

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// Beacon is an owner's mark that no file operation can take away: a name
// in Linux's abstract Unix socket namespace, derived from the state's
// directory and name. Only one socket can be bound to a name, and the
// kernel frees it when its holder exits, however it exits. So a process
// that takes the lock file of a state whose files were deleted under a
// running owner still finds the owner's beacon, and does not become a
// second owner.
//
// The namespace belongs to the network namespace: processes sharing a
// directory across network namespaces (containers) see each other's lock
// file but not each other's beacons. And any user may bind any name: a
// name taken by another user is reported (ErrBeaconTaken), and the lock
// file alone decides then.
type Beacon struct {
	ln   *net.UnixListener
	done chan struct{}
}

// ErrOwned reports a beacon held by another process of this user: it owns
// the state, whatever has become of the state's files.
var ErrOwned = errors.New("another process owns the state")

// ErrBeaconTaken reports a beacon's name bound by a process of another
// user.
var ErrBeaconTaken = errors.New("the state's beacon is held by another user")

// ClaimBeacon takes the beacon of the state called name in the directory
// at path.
func ClaimBeacon(path, name string) (*Beacon, error) {
	addr := beaconAddr(path, name)
	ln, err := net.ListenUnix("unix", addr)
	if err == nil {
		b := &Beacon{ln: ln, done: make(chan struct{})}
		go b.serve()
		return b, nil
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("beacon: %w", err)
	}
	// Bound already: by this user's owner, or by someone else.
	c, err := net.DialUnix("unix", nil, addr)
	if err != nil {
		return nil, ErrOwned // an owner binding, or just exiting: retry
	}
	defer c.Close()
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var credErr error
	raw.Control(func(fd uintptr) { cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) })
	switch {
	case credErr != nil:
		return nil, credErr
	case int(cred.Uid) != os.Getuid():
		return nil, fmt.Errorf("%w: %s is bound by pid %d, uid %d", ErrBeaconTaken, addr.Name[1:], cred.Pid, cred.Uid)
	}
	return nil, ErrOwned
}

// beaconAddr is the beacon's name: the user and a digest of the state's
// directory and name, so that no two states share one.
func beaconAddr(path, name string) *net.UnixAddr {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	sum := sha256.Sum256([]byte(path + "\x00" + name))
	return &net.UnixAddr{Name: "@sharedstate/" + strconv.Itoa(os.Getuid()) + "/" + hex.EncodeToString(sum[:16]), Net: "unix"}
}

// serve accepts and closes the connections of processes checking who
// holds the beacon (they read the peer credentials of the connection).
func (b *Beacon) serve() {
	defer close(b.done)
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

// Release gives the beacon up.
func (b *Beacon) Release() {
	b.ln.Close()
	<-b.done
}
