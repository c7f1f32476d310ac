//go:build !unix

package prefork

import "errors"

func reusePort(uintptr) error { return errors.ErrUnsupported }
