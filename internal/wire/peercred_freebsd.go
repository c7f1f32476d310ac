package wire

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Unsupported is nil: peer credentials work here (see PeerCred).
var Unsupported error

func peerCred(fd int) (Cred, error) {
	xu, err := unix.GetsockoptXucred(fd, 0, unix.LOCAL_PEERCRED) // level 0: SOL_LOCAL
	if err != nil {
		return Cred{}, err
	}
	// Since FreeBSD 13, struct xucred ends in a union holding the peer's
	// pid (cr_pid), which x/sys leaves unnamed; it reads 0 before.
	pid := *(*int32)(unsafe.Add(unsafe.Pointer(xu), unsafe.Sizeof(*xu)-unsafe.Sizeof(uintptr(0))))
	return Cred{PID: int(pid), UID: int(xu.Uid)}, nil
}
