//go:build unix

package wire

import (
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// writeWithFile writes b with f's descriptor attached (SCM_RIGHTS).
func writeWithFile(nc *net.UnixConn, b []byte, f *os.File) error {
	_, _, err := nc.WriteMsgUnix(b, unix.UnixRights(int(f.Fd())), nil)
	return err
}

// oobSize is room for the one descriptor a handshake may carry; more are
// truncated, and the kernel closes them.
var oobSize = unix.CmsgSpace(4)

// filesIn returns the descriptors passed in a read's control messages.
func filesIn(oob []byte) []*os.File {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var files []*os.File
	for i := range msgs {
		fds, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			continue
		}
		for _, fd := range fds {
			files = append(files, os.NewFile(uintptr(fd), "sharedstate-attached"))
		}
	}
	return files
}
