package main

// The floor for an exchange through shared memory: two processes that map
// one file and spin on a word each, with no system call, no yield and no
// timeout. Nothing can answer sooner on this machine; what its p99 shows
// beyond its p50 is the processors being taken away (by the scheduler, or
// by the hypervisor), which no protocol avoids.

import (
	"context"
	"errors"
	"os"
	"runtime"
	"sync/atomic"
	"unsafe"

	"github.com/sharedstate/sharedstate/internal/filemap"
)

const spinFileSize = 4096

// spinWords are the two words in the file, a cache line apart: the
// client's request number and the server's answer to it.
type spinWords struct {
	req  atomic.Uint64
	_    [56]byte
	resp atomic.Uint64
}

func mapSpinFile(path string, create bool) (*spinWords, []byte, error) {
	flags := os.O_RDWR
	if create {
		flags |= os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	if create {
		if err := f.Truncate(spinFileSize); err != nil {
			return nil, nil, err
		}
	}
	mem, err := filemap.Map(f, spinFileSize, true)
	if err != nil {
		return nil, nil, err
	}
	return (*spinWords)(unsafe.Pointer(&mem[0])), mem, nil
}

// spinServer answers each request number with itself, on a thread of its
// own, until closed.
type spinServer struct {
	mem  []byte
	stop atomic.Bool
	done chan struct{}
}

func listenSpin(j job) (target, error) {
	w, mem, err := mapSpinFile(j.Socket, true)
	if err != nil {
		return nil, err
	}
	s := &spinServer{mem: mem, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		runtime.LockOSThread()
		for seen := uint64(0); !s.stop.Load(); {
			if n := w.req.Load(); n != seen {
				seen = n
				w.resp.Store(n)
			}
		}
	}()
	return s, nil
}

func (s *spinServer) owner() bool { return false }
func (s *spinServer) close() {
	s.stop.Store(true)
	<-s.done
	filemap.Unmap(s.mem)
}
func (s *spinServer) op(int) func(context.Context) error {
	return func(context.Context) error { return errors.New("the spin server runs no ops") }
}

// spinClient posts a request number and spins until it is answered.
type spinClient struct {
	w   *spinWords
	mem []byte
	n   uint64
}

func dialSpin(j job) (*spinClient, error) {
	w, mem, err := mapSpinFile(j.Socket, false)
	if err != nil {
		return nil, err
	}
	return &spinClient{w: w, mem: mem}, nil
}

func (c *spinClient) owner() bool { return false }
func (c *spinClient) close()      { filemap.Unmap(c.mem) }

// op may be called from one goroutine only.
func (c *spinClient) op(int) func(context.Context) error {
	return func(context.Context) error {
		c.n++
		c.w.req.Store(c.n)
		for c.w.resp.Load() != c.n {
		}
		return nil
	}
}
