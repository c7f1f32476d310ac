package wire

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
)

// Listen binds a Unix socket at path, mode 0600, removing a stale socket
// left there by a dead owner. Only the holder of the election lock may call
// it: bind alone cannot tell a stale socket from a live owner's.
//
// The listener does not unlink path when closed, so a closing owner never
// removes the socket of the successor that already replaced it.
func Listen(path string) (*net.UnixListener, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(false)
	// The directory is private, so the moment before chmod exposes nothing.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// Dial connects to the owner's socket at path.
func Dial(ctx context.Context, path string) (*net.UnixConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	return c.(*net.UnixConn), nil
}

// Cred identifies the process at the other end of a Unix socket, as the
// kernel recorded it when the connection was made.
type Cred struct {
	PID int // 0 where the system does not tell
	UID int
}

// PeerCred returns the credentials of c's peer: SO_PEERCRED on Linux,
// LOCAL_PEERCRED (and LOCAL_PEERPID) on macOS and FreeBSD, one file per
// system; elsewhere an error matching errors.ErrUnsupported.
func PeerCred(c *net.UnixConn) (Cred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return Cred{}, err
	}
	var cred Cred
	var credErr error
	if err := raw.Control(func(fd uintptr) { cred, credErr = peerCred(int(fd)) }); err != nil {
		return Cred{}, err
	}
	return cred, credErr
}
