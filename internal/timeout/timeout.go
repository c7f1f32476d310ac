// Package timeout bounds the calls of the adapters' methods that take no
// context, as the libraries they plug into define them.
package timeout

import (
	"context"
	"time"
)

// Context returns a context that ends after d, or only when canceled if d
// is 0 or less: an adapter's Timeout of 0 means no bound.
func Context(d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(context.Background())
	}
	return context.WithTimeout(context.Background(), d)
}
