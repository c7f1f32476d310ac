package mailbox

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// seals keep the file at its size for as long as it exists: neither side
// can shrink it under the other's mapping, nor lift the seals.
const seals = unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_SEAL

// Create makes a mailbox in a sealed memory file. The file is for handing
// to the client; closing it leaves the owner's mapping in place.
func Create() (*Box, *os.File, error) {
	fd, err := unix.MemfdCreate("sharedstate-mailbox", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, nil, fmt.Errorf("mailbox: %w", err)
	}
	f := os.NewFile(uintptr(fd), "sharedstate-mailbox")
	if err := unix.Ftruncate(fd, size); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("mailbox: %w", err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("mailbox: %w", err)
	}
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("mailbox: %w", err)
	}
	b := newBox(mem)
	b.init()
	return b, f, nil
}

// Attach maps the mailbox in f, which the owner sent, after checking that
// it is one: a sealed memory file of the right size and header. f may be
// closed afterwards.
func Attach(f *os.File) (*Box, error) {
	fd := int(f.Fd())
	got, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
	if err != nil || got&seals != seals {
		return nil, fmt.Errorf("%w: the file is not sealed", ErrInvalid)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	if st.Size != size {
		return nil, fmt.Errorf("%w: %d bytes, want %d", ErrInvalid, st.Size, size)
	}
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mailbox: %w", err)
	}
	b := newBox(mem)
	if !b.valid() {
		unix.Munmap(mem)
		return nil, fmt.Errorf("%w: unknown header", ErrInvalid)
	}
	return b, nil
}

// Close unmaps the box. Nothing of it may be used afterwards.
func (b *Box) Close() {
	unix.Munmap(b.mem)
	b.mem, b.hdr, b.reqs, b.ans = nil, nil, nil, nil
}
