//go:build !linux

package mailbox

import "os"

// Create reports ErrUnsupported: only Linux has the sealed memory files a
// mailbox is made of.
func Create() (*Box, *os.File, error) { return nil, nil, ErrUnsupported }

// Attach reports ErrUnsupported.
func Attach(*os.File) (*Box, error) { return nil, ErrUnsupported }

// Close does nothing: there is never a Box to close.
func (b *Box) Close() {}
