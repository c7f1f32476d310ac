package wire

import "golang.org/x/sys/unix"

// Unsupported is nil: peer credentials work here (see PeerCred).
var Unsupported error

func peerCred(fd int) (Cred, error) {
	xu, err := unix.GetsockoptXucred(fd, unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
	if err != nil {
		return Cred{}, err
	}
	pid, err := unix.GetsockoptInt(fd, unix.SOL_LOCAL, unix.LOCAL_PEERPID)
	if err != nil {
		return Cred{}, err
	}
	return Cred{PID: pid, UID: int(xu.Uid)}, nil
}
