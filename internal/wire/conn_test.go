package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/sharedstate/sharedstate/transport"
)

// sockPath returns a path for a Unix socket in a fresh temporary directory.
// A socket path is limited to about 108 bytes, which t.TempDir may exceed
// for long test names; then a shorter directory is used.
func sockPath(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "s")
	if len(p) < 100 {
		return p
	}
	dir, err := os.MkdirTemp("", "tr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "s")
}

// unixPair returns both ends of a connected Unix socket, made with Listen
// and Dial.
func unixPair(t testing.TB) (client, server *net.UnixConn) {
	t.Helper()
	ln, err := Listen(sockPath(t))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		c   *net.UnixConn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := ln.AcceptUnix()
		ch <- result{c, err}
	}()
	client, err = Dial(t.Context(), ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		client.Close()
		t.Fatal(r.err)
	}
	t.Cleanup(func() { client.Close(); r.c.Close() })
	return client, r.c
}

// pairs are the kinds of stream a Conn is tested over.
var pairs = []struct {
	name string
	make func(testing.TB) (net.Conn, net.Conn)
}{
	{"pipe", func(testing.TB) (net.Conn, net.Conn) { return net.Pipe() }},
	{"unix", func(t testing.TB) (net.Conn, net.Conn) { c, s := unixPair(t); return c, s }},
}

// checkGoroutines fails t if the number of goroutines does not come back
// down to before. Exiting goroutines take a moment to be counted out, so
// it polls, with a deadline far beyond any reasonable delay.
func checkGoroutines(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= before {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines running, %d before:\n%s", n, before, buf)
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}

// payload returns the value sent with request id: its length and contents
// vary with id, so a frame that is cut, merged or mixed with another fails
// to decode or to match.
func payload(id uint64) []byte {
	b := make([]byte, int(id*7919%3001))
	for i := range b {
		b[i] = byte(id) ^ byte(i)
	}
	return b
}

func TestConnConcurrentSend(t *testing.T) {
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			a, b := p.make(t)
			sender, receiver := NewConn(a, DefaultMaxFrame), NewConn(b, DefaultMaxFrame)
			defer receiver.Close()
			defer sender.Close()

			const goroutines, perGoroutine = 16, 200
			errc := make(chan error, goroutines)
			for g := range uint64(goroutines) {
				go func() {
					for i := range uint64(perGoroutine) {
						id := g<<32 | i
						err := sender.Send(&Request{ID: id, Op: transport.OpStore, Name: "m", Key: fmt.Sprint(id), Value: payload(id)})
						if err != nil {
							errc <- fmt.Errorf("Send %d: %w", id, err)
							return
						}
					}
					errc <- nil
				}()
			}

			// Frames from one goroutine must arrive in the order it sent
			// them; frames from different goroutines may interleave.
			var next [goroutines]uint64
			for range goroutines * perGoroutine {
				body, err := receiver.Recv()
				if err != nil {
					t.Fatalf("Recv: %v", err)
				}
				var req Request
				if err := req.Decode(body); err != nil {
					t.Fatalf("Decode: %v", err)
				}
				g, i := req.ID>>32, req.ID&(1<<32-1)
				if g >= goroutines || i != next[g] {
					t.Fatalf("received request %d/%d, want %d/%d", g, i, g, next[g])
				}
				next[g]++
				if req.Key != fmt.Sprint(req.ID) || !bytes.Equal(req.Value, payload(req.ID)) {
					t.Fatalf("request %d arrived corrupted", req.ID)
				}
			}
			for range goroutines {
				if err := <-errc; err != nil {
					t.Error(err)
				}
			}
		})
	}
}

func TestConnTooLarge(t *testing.T) {
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			const max = 1000
			a, b := p.make(t)
			c := NewConn(a, max)
			defer c.Close()
			fr := NewFrameReader(b, max)

			// Find the Hello whose body is exactly max bytes.
			var atMax *Hello
			for n := range max {
				h := &Hello{Version: Version, Nonce: make([]byte, n)}
				if len(h.AppendFrame(nil)) == headerSize+max {
					atMax = h
					break
				}
			}
			if atMax == nil {
				t.Fatal("no Hello fits the cap exactly")
			}
			over := &Hello{Version: Version, Nonce: make([]byte, len(atMax.Nonce)+1)}
			err := c.Send(over)
			if !errors.Is(err, ErrFrameTooLarge) {
				t.Fatalf("Send of a %d-byte body with cap %d: %v, want ErrFrameTooLarge",
					len(over.AppendFrame(nil))-headerSize, max, err)
			}

			// The refused frame must leave nothing behind, and the
			// connection must carry on. Send may write at once, and a pipe
			// has no buffer: send while reading.
			sent := make(chan error, 1)
			go func() {
				for _, m := range []Message{&Request{ID: 1, Op: transport.OpGet, Name: "c"}, atMax, &Request{ID: 2, Op: transport.OpGet, Name: "c"}} {
					if err := c.Send(m); err != nil {
						sent <- fmt.Errorf("Send %T after a refused one: %w", m, err)
						return
					}
				}
				sent <- nil
			}()
			defer func() {
				if err := <-sent; err != nil {
					t.Error(err)
				}
			}()
			for _, want := range []Message{&Request{ID: 1, Op: transport.OpGet, Name: "c"}, atMax, &Request{ID: 2, Op: transport.OpGet, Name: "c"}} {
				body, err := fr.Next()
				if err != nil {
					t.Fatalf("Next: %v", err)
				}
				if !bytes.Equal(body, want.AppendFrame(nil)[headerSize:]) {
					t.Fatalf("received %q, want %+v", body, want)
				}
			}
		})
	}
}

func TestConnSendAfterClose(t *testing.T) {
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			a, _ := p.make(t)
			c := NewConn(a, DefaultMaxFrame)
			if err := c.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if err := c.Send(&Request{ID: 1, Op: transport.OpGet, Name: "c"}); !errors.Is(err, ErrConnClosed) {
				t.Errorf("Send after Close: %v, want ErrConnClosed", err)
			}
			if _, err := c.Recv(); err == nil {
				t.Error("Recv after Close succeeded")
			}
			c.WaitDrained(0) // must not block on a closed Conn
			c.Close()        // a second Close must not hang or panic
		})
	}
}

// TestConnPeerGone checks that a Conn whose writes fail stops: Send reports
// ErrConnClosed and a blocked Recv returns.
func TestConnPeerGone(t *testing.T) {
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			a, b := p.make(t)
			c := NewConn(a, DefaultMaxFrame)
			defer c.Close()
			recvErr := make(chan error, 1)
			go func() {
				_, err := c.Recv()
				recvErr <- err
			}()
			b.Close()
			// The write error surfaces once the writer hands a frame to
			// the kernel; WaitDrained waits for the writer to take it.
			for i := 0; ; i++ {
				err := c.Send(&Request{ID: uint64(i), Op: transport.OpGet, Name: "c"})
				if errors.Is(err, ErrConnClosed) {
					break
				}
				if err != nil {
					t.Fatalf("Send: %v, want nil or ErrConnClosed", err)
				}
				c.WaitDrained(0)
			}
			if err := <-recvErr; err == nil {
				t.Error("Recv succeeded after the peer closed")
			}
		})
	}
}

// TestConnCloseWhileSending closes a Conn under concurrent Sends and a
// blocked writer: every Send returns nil or ErrConnClosed and nothing
// hangs, panics or races.
func TestConnCloseWhileSending(t *testing.T) {
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			a, b := p.make(t)
			c := NewConn(a, DefaultMaxFrame)
			// Read a little, then stop, so the writer blocks in Write.
			go NewFrameReader(b, DefaultMaxFrame).Next()

			var wg sync.WaitGroup
			started := make(chan struct{}, 8)
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					started <- struct{}{}
					for i := 0; ; i++ {
						err := c.Send(&Request{ID: uint64(i), Op: transport.OpSet, Name: "n", Value: make([]byte, 4096)})
						if errors.Is(err, ErrConnClosed) {
							return
						}
						if err != nil {
							t.Errorf("Send: %v", err)
							return
						}
					}
				}()
			}
			for range 8 {
				<-started
			}
			waited := make(chan struct{})
			go func() {
				c.WaitDrained(0)
				close(waited)
			}()
			c.Close()
			wg.Wait()
			<-waited
		})
	}
}

func TestConnNoLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	for _, p := range pairs {
		a, b := p.make(t)
		c1, c2 := NewConn(a, DefaultMaxFrame), NewConn(b, DefaultMaxFrame)
		if err := c1.Queue(&Request{ID: 1, Op: transport.OpGet, Name: "c"}); err != nil {
			t.Fatal(err)
		}
		if _, err := c2.Recv(); err != nil {
			t.Fatal(err)
		}
		c1.Close()
		c2.Close()
	}
	checkGoroutines(t, before)
}

// TestConnWaitDrained checks that WaitDrained returns once the peer has read
// what was queued.
func TestConnWaitDrained(t *testing.T) {
	a, b := net.Pipe()
	c := NewConn(a, DefaultMaxFrame)
	defer c.Close()
	defer b.Close()
	const n = 100
	for i := range n {
		if err := c.Queue(&Request{ID: uint64(i), Op: transport.OpGet, Name: "c"}); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan []uint64)
	go func() {
		var ids []uint64
		fr := NewFrameReader(b, DefaultMaxFrame)
		for range n {
			body, err := fr.Next()
			if err != nil {
				break
			}
			var m Request
			if m.Decode(body) == nil {
				ids = append(ids, m.ID)
			}
		}
		done <- ids
	}()
	c.WaitDrained(0)
	ids := <-done
	if len(ids) != n {
		t.Fatalf("received %d frames, want %d", len(ids), n)
	}
	for i, id := range ids {
		if id != uint64(i) {
			t.Fatalf("frame %d has id %d", i, id)
		}
	}
}

// TestConnWaitDrainedWrites checks that WaitDrained writes frames that
// Append left for a Flush: a server that holds its answers back while
// requests keep coming must not wait for a write that nobody starts.
func TestConnWaitDrainedWrites(t *testing.T) {
	a, b := net.Pipe()
	c := NewConn(a, DefaultMaxFrame)
	defer c.Close()
	defer b.Close()
	const n = 10
	for i := range n {
		if err := c.Append(&Response{ID: uint64(i), Value: make([]byte, 100<<10)}); err != nil {
			t.Fatal(err)
		}
	}
	read := make(chan int)
	go func() {
		fr := NewFrameReader(b, DefaultMaxFrame)
		got := 0
		for ; got < n; got++ {
			if _, err := fr.Next(); err != nil {
				break
			}
		}
		read <- got
	}()
	c.WaitDrained(0)
	if got := <-read; got != n {
		t.Fatalf("received %d frames, want %d", got, n)
	}
}

// TestConnBatches checks that frames queued while the writer is busy reach
// the peer as one write: the point of the output buffer.
func TestConnBatches(t *testing.T) {
	a, b := net.Pipe()
	w := &recordingConn{Conn: a}
	c := NewConn(w, DefaultMaxFrame)
	defer c.Close()
	defer b.Close()

	// net.Pipe's Write blocks until the peer reads, so the first frame
	// holds the writer while the rest are queued behind it.
	const n = 50
	for i := range n {
		if err := c.Queue(&Request{ID: uint64(i), Op: transport.OpGet, Name: "c"}); err != nil {
			t.Fatal(err)
		}
	}
	fr := NewFrameReader(b, DefaultMaxFrame)
	for i := range n {
		body, err := fr.Next()
		if err != nil {
			t.Fatal(err)
		}
		var m Request
		if err := m.Decode(body); err != nil || m.ID != uint64(i) {
			t.Fatalf("frame %d: %+v, %v", i, m, err)
		}
	}
	// No Write can complete before the reader starts, so the writer took
	// at most the first frame alone and the rest together.
	if writes := w.writes(); writes > 2 {
		t.Errorf("%d frames took %d writes, want at most 2", n, writes)
	}
}

type recordingConn struct {
	net.Conn
	mu sync.Mutex
	n  int
}

func (c *recordingConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	return c.Conn.Write(b)
}

func (c *recordingConn) writes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// TestConnRecvFrameCap checks that Recv enforces the Conn's cap on incoming
// frames as well.
func TestConnRecvFrameCap(t *testing.T) {
	a, b := net.Pipe()
	c := NewConn(a, 16)
	defer c.Close()
	defer b.Close()
	go b.Write(binary.BigEndian.AppendUint32(nil, 17))
	if _, err := c.Recv(); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("Recv of a 17-byte frame with cap 16: %v, want ErrFrameTooLarge", err)
	}
}

// TestConnSendWritesInline checks that Send on an idle connection writes
// from the calling goroutine: no hand-off to the writer, the point of Send.
func TestConnSendWritesInline(t *testing.T) {
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			a, b := p.make(t)
			w := &recordingConn{Conn: a}
			c := NewConn(w, DefaultMaxFrame)
			defer c.Close()
			received := make(chan error, 1)
			go func() {
				_, err := NewFrameReader(b, DefaultMaxFrame).Next()
				received <- err
			}()
			if err := c.Send(&Request{ID: 1, Op: transport.OpGet, Name: "c"}); err != nil {
				t.Fatal(err)
			}
			if writes := w.writes(); writes != 1 {
				t.Errorf("%d writes done when Send returned, want 1", writes)
			}
			if err := <-received; err != nil {
				t.Fatal(err)
			}
		})
	}
}
