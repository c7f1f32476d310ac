package wire

import "golang.org/x/sys/unix"

// Unsupported is nil: peer credentials work here (see PeerCred).
var Unsupported error

func peerCred(fd int) (Cred, error) {
	uc, err := unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil {
		return Cred{}, err
	}
	return Cred{PID: int(uc.Pid), UID: int(uc.Uid)}, nil
}
