//go:build !unix

package wire

import (
	"errors"
	"net"
	"os"
)

func writeWithFile(*net.UnixConn, []byte, *os.File) error { return errors.ErrUnsupported }

const oobSize = 0

func filesIn([]byte) []*os.File { return nil }
