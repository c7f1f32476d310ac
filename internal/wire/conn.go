package wire

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
)

// ErrConnClosed is returned by Send on a connection that is closed or whose
// writes failed.
var ErrConnClosed = errors.New("connection closed")

// Conn carries frames both ways over one stream. Send and Queue may be
// called from any number of goroutines; Recv from one at a time.
//
// Frames are appended to an output buffer, and whoever writes hands
// everything buffered to the kernel in one write: under load many frames
// share a system call, without any caller waiting for a batch to fill. When
// no write is in progress, Send writes at once from the calling goroutine,
// sparing the hand-off to the writer goroutine that a lone request would
// otherwise wait for; Queue never writes itself, and so never blocks.
type Conn struct {
	nc       net.Conn
	fr       *FrameReader
	maxFrame int // the largest frame sent

	mu      sync.Mutex
	drained sync.Cond // signaled after each write and on close
	out     []byte    // frames not yet handed to the kernel
	spare   []byte    // a previous write's buffer, reused
	writing bool      // a write is in progress: it or the writer takes out
	err     error     // set once: why the connection stopped

	wake       chan struct{} // capacity 1: frames are waiting
	writerDone chan struct{}

	attached *os.File // Config.Attach, received in the handshake
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

// Send writes m, or queues it if a write is in progress. It fails with
// ErrFrameTooLarge, leaving the connection usable, if m does not fit in a
// frame, and with ErrConnClosed once the connection has stopped. Send may
// block while the peer is not reading; use Queue where that must not happen.
func (c *Conn) Send(m Message) error {
	c.mu.Lock()
	if err := c.appendLocked(m); err != nil {
		c.mu.Unlock()
		return err
	}
	if c.writing {
		c.mu.Unlock()
		return nil
	}
	// Let the goroutines that are ready to run append their frames first:
	// when many calls are in flight they go out in one write; when one is,
	// this costs a yield with nothing to yield to.
	c.mu.Unlock()
	runtime.Gosched()
	c.mu.Lock()
	if !c.writing && len(c.out) > 0 && c.err == nil {
		c.writeLocked()
	}
	c.mu.Unlock()
	return nil
}

// Append adds m to the output without writing it: a server answering
// requests it has already read appends the answers, and sends them in one
// write with Flush once it has no more requests at hand.
func (c *Conn) Append(m Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.appendLocked(m)
}

// AppendFrames adds frames to the output without writing it, as Append
// does for one message: whole frames, each of which Fits, as a mailbox's
// slot holds them.
func (c *Conn) AppendFrames(frames []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return ErrConnClosed
	}
	c.out = append(c.out, frames...)
	return nil
}

// Flush writes what Append added, unless a write in progress will.
func (c *Conn) Flush() {
	c.mu.Lock()
	if !c.writing && len(c.out) > 0 && c.err == nil {
		c.writeLocked()
	}
	c.mu.Unlock()
}

// Fits reports whether frame, a whole frame, is one Send would accept:
// its body no larger than the peer reads.
func (c *Conn) Fits(frame []byte) bool { return len(frame)-headerSize <= c.maxFrame }

// Attached returns the file the owner attached to the handshake
// (Config.Attach), or nil; the caller owns it from then on.
func (c *Conn) Attached() *os.File {
	f := c.attached
	c.attached = nil
	return f
}

// RecvBuffered reports whether Recv has a frame's bytes at hand already.
func (c *Conn) RecvBuffered() bool { return c.fr.Buffered() > 0 }

// Queue appends m for the writer goroutine to write. It never blocks.
func (c *Conn) Queue(m Message) error {
	c.mu.Lock()
	err := c.appendLocked(m)
	idle := err == nil && !c.writing
	c.mu.Unlock()
	if idle {
		c.wakeWriter()
	}
	return err
}

func (c *Conn) appendLocked(m Message) error {
	if c.err != nil {
		return ErrConnClosed
	}
	start := len(c.out)
	c.out = m.AppendFrame(c.out)
	if frame := c.out[start:]; !c.Fits(frame) {
		c.out = c.out[:start]
		return fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, len(frame)-headerSize, c.maxFrame)
	}
	return nil
}

// writeLocked hands the buffered frames to the kernel in one write, with
// c.mu held on entry and exit but not during the write. Frames appended
// meanwhile are left to the writer goroutine.
func (c *Conn) writeLocked() {
	c.writing = true
	buf := c.out
	c.out, c.spare = c.spare[:0], nil
	c.mu.Unlock()

	_, err := c.nc.Write(buf)

	c.mu.Lock()
	c.writing = false
	if cap(buf) <= keepBuffer {
		c.spare = buf[:0]
	}
	c.drained.Broadcast()
	if err != nil {
		c.failLocked(err)
		return
	}
	if len(c.out) > 0 {
		c.wakeWriter()
	}
}

func (c *Conn) wakeWriter() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Recv returns the body of the next frame, valid until the next Recv.
func (c *Conn) Recv() ([]byte, error) {
	return c.fr.Next()
}

// WaitDrained blocks while more than limit bytes are queued for writing, so a
// peer that sends requests but does not read the answers stops being read.
// If no write is in progress it writes itself: frames added with Append
// wait for nobody else.
func (c *Conn) WaitDrained(limit int) {
	c.mu.Lock()
	for len(c.out) > limit && c.err == nil {
		if !c.writing {
			c.writeLocked()
			continue
		}
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
	if c.attached != nil {
		c.attached.Close()
	}
	c.stop(ErrConnClosed)
	err := c.nc.Close()
	<-c.writerDone
	return err
}

func (c *Conn) stop(err error) {
	c.mu.Lock()
	c.failLocked(err)
	c.mu.Unlock()
}

// failLocked records why the connection stopped, and wakes whoever waits.
// Closing nc unblocks the reader, which reports the failure.
func (c *Conn) failLocked(err error) {
	if c.err != nil {
		return
	}
	c.err = err
	c.drained.Broadcast()
	c.wakeWriter()
	if err != ErrConnClosed {
		c.nc.Close()
	}
}

func (c *Conn) writeLoop() {
	defer close(c.writerDone)
	for range c.wake {
		c.mu.Lock()
		if c.err != nil {
			c.mu.Unlock()
			return
		}
		if !c.writing && len(c.out) > 0 {
			c.writeLocked()
		}
		c.mu.Unlock()
	}
}
