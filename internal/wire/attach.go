package wire

import (
	"net"
	"os"
)

// handshakeReader reads a client's handshake, keeping the file the owner
// may attach to its Welcome (Config.Attach); once the handshake is over it
// reads plain bytes, and the kernel drops any file sent later.
type handshakeReader struct {
	nc       *net.UnixConn
	oob      []byte // nil once the handshake is over
	attached *os.File
}

func newHandshakeReader(nc *net.UnixConn) *handshakeReader {
	return &handshakeReader{nc: nc, oob: make([]byte, oobSize)}
}

func (r *handshakeReader) Read(p []byte) (int, error) {
	if r.oob == nil {
		return r.nc.Read(p)
	}
	n, oobn, _, _, err := r.nc.ReadMsgUnix(p, r.oob)
	if err != nil { // then n and oobn may be -1
		return 0, err
	}
	for _, f := range filesIn(r.oob[:oobn]) {
		if r.attached == nil {
			r.attached = f
		} else {
			f.Close()
		}
	}
	return n, err
}

// done ends the handshake and returns the file received, if any.
func (r *handshakeReader) done() *os.File {
	r.oob = nil
	f := r.attached
	r.attached = nil
	return f
}
