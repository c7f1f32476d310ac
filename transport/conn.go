package transport

import (
	"errors"
	"fmt"
	"net"
	"sync"
)

// ErrConnClosed is returned by Send on a connection that is closed or whose
// writes failed.
var ErrConnClosed = errors.New("connection closed")

// Conn carries frames both ways over one stream. Send may be called from any
// number of goroutines; Recv from one at a time.
//
// Send only appends the frame to an output buffer; a writer goroutine hands
// everything buffered to the kernel in one write. Under load many frames
// share a system call, without any caller waiting for a batch to fill.
type Conn struct {
	nc       net.Conn
	fr       *FrameReader
	maxFrame int

	mu      sync.Mutex
	drained sync.Cond // signaled after each write and on close
	out     []byte    // frames not yet handed to the writer
	spare   []byte    // the writer's previous buffer, reused
	err     error     // set once: why the connection stopped

	wake       chan struct{} // capacity 1: frames are waiting
	writerDone chan struct{}
}

// NewConn wraps nc, whose handshake is complete, and starts its writer.
func NewConn(nc net.Conn, maxFrame int) *Conn {
	return newConn(nc, NewFrameReader(nc, maxFrame), maxFrame)
}

func newConn(nc net.Conn, fr *FrameReader, maxFrame int) *Conn {
	c := &Conn{
		nc:         nc,
		fr:         fr,
		maxFrame:   maxFrame,
		wake:       make(chan struct{}, 1),
		writerDone: make(chan struct{}),
	}
	c.drained.L = &c.mu
	go c.writeLoop()
	return c
}

// Send queues m for writing. It fails with ErrFrameTooLarge, leaving the
// connection usable, if m does not fit in a frame, and with ErrConnClosed once
// the connection has stopped.
func (c *Conn) Send(m Message) error {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return ErrConnClosed
	}
	start := len(c.out)
	c.out = m.AppendFrame(c.out)
	if size := len(c.out) - start - headerSize; size > c.maxFrame {
		c.out = c.out[:start]
		c.mu.Unlock()
		return fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, size, c.maxFrame)
	}
	first := start == 0
	c.mu.Unlock()
	if first {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

// Recv returns the body of the next frame, valid until the next Recv.
func (c *Conn) Recv() ([]byte, error) {
	return c.fr.Next()
}

// WaitDrained blocks while more than limit bytes are queued for writing, so a
// peer that sends requests but does not read the answers stops being read.
func (c *Conn) WaitDrained(limit int) {
	c.mu.Lock()
	for len(c.out) > limit && c.err == nil {
		c.drained.Wait()
	}
	c.mu.Unlock()
}

// Buffered returns the number of bytes queued for writing.
func (c *Conn) Buffered() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.out)
}

// Close stops the connection. Frames still queued are dropped.
func (c *Conn) Close() error {
	c.stop(ErrConnClosed)
	err := c.nc.Close()
	<-c.writerDone
	return err
}

func (c *Conn) stop(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
		c.drained.Broadcast()
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
	c.mu.Unlock()
}

func (c *Conn) writeLoop() {
	defer close(c.writerDone)
	for range c.wake {
		c.mu.Lock()
		if c.err != nil {
			c.mu.Unlock()
			return
		}
		buf := c.out
		c.out, c.spare = c.spare[:0], nil
		c.mu.Unlock()

		_, err := c.nc.Write(buf)

		c.mu.Lock()
		if cap(buf) <= keepBuffer {
			c.spare = buf[:0]
		}
		c.drained.Broadcast()
		pending := len(c.out) > 0
		c.mu.Unlock()
		if err != nil {
			c.stop(err)
			c.nc.Close() // unblocks the reader, which reports the failure
			return
		}
		if pending {
			select {
			case c.wake <- struct{}{}:
			default:
			}
		}
	}
}
