package table

import (
	"encoding/hex"
	"fmt"
	"os"
	"strings"
)

// bootID identifies the host's current boot: Linux's random boot id.
func bootID() ([16]byte, error) {
	var id [16]byte
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return id, err
	}
	s := strings.ReplaceAll(strings.TrimSpace(string(b)), "-", "")
	if n, err := hex.Decode(id[:], []byte(s)); err != nil || n != 16 {
		return id, fmt.Errorf("table: a boot id of %q", b)
	}
	return id, nil
}
