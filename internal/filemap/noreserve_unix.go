//go:build unix && !freebsd

package filemap

import "golang.org/x/sys/unix"

// mapNoReserve keeps a large anonymous reservation from being refused as
// an overcommit: its pages are counted when written.
const mapNoReserve = unix.MAP_NORESERVE
