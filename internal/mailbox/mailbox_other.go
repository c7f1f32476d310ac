//go:build !linux

package mailbox

import (
	"os"
	"time"
)

// Create reports ErrUnsupported: only Linux has the futexes and sealed
// memory files a mailbox is made of.
func Create() (*Box, *os.File, error) { return nil, nil, ErrUnsupported }

// Attach reports ErrUnsupported.
func Attach(*os.File) (*Box, error) { return nil, ErrUnsupported }

// Close does nothing: there is never a Box to close.
func (b *Box) Close() {}

func futexWait(*uint32, uint32, time.Duration) {}
func futexWake(*uint32)                        {}
