package prefork

import "golang.org/x/sys/unix"

// soReusePort is the option of ReusePort: FreeBSD's that balances.
const soReusePort = unix.SO_REUSEPORT_LB
