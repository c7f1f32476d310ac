package store

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// ProcessOf returns the Process with id pid as it is now. Its start time
// is 0 if it cannot be read (out of descriptors, say).
func ProcessOf(pid int) Process {
	start, _, _ := procStat(pid)
	return Process{pid: pid, start: start}
}

// exited reports whether p has exited: its id is free, taken by another
// Process, or a zombie's. When /proc cannot tell, only a free id counts.
func (p Process) Exited() bool {
	if p.pid <= 0 {
		return false // unknown
	}
	start, state, err := procStat(p.pid)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return true
	case err != nil || p.start == 0:
		return errors.Is(unix.Kill(p.pid, 0), unix.ESRCH) || err == nil && (state == 'Z' || state == 'X')
	}
	return start != p.start || state == 'Z' || state == 'X'
}

// procStat reads a process's start time and state from /proc/PID/stat.
func procStat(pid int) (start uint64, state byte, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// The command name, in parentheses, may hold anything: the fields
	// follow its last parenthesis. State is field 3, start time field 22.
	i := bytes.LastIndexByte(b, ')')
	fields := bytes.Fields(b[i+1:])
	if i < 0 || len(fields) < 20 {
		return 0, 0, os.ErrInvalid
	}
	start, err = strconv.ParseUint(string(fields[19]), 10, 64)
	return start, fields[0][0], err
}
