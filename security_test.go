//go:build unix

package sharedstate_test

// Bad input and access control, over real sockets and real processes: what
// a hostile or broken peer can send the owner, and who may connect at all.
// Every bad connection must cost only itself: the owner logs why it dropped
// it and goes on serving its healthy clients.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sharedstate/sharedstate"
	"github.com/sharedstate/sharedstate/internal/statedir"
	"github.com/sharedstate/sharedstate/internal/wire"
	"github.com/sharedstate/sharedstate/transport"
)

func init() {
	// probe: say which user this process runs as.
	workerRoles["probe"] = func() int {
		fmt.Println("uid", os.Getuid())
		return 0
	}
	// other-user: run as another user than the owner, and try to get in.
	workerRoles["other-user"] = func() int {
		otherUser()
		return 0
	}
}

// hangGuard bounds every raw read and write, so that a broken owner fails a
// test instead of hanging it. It is never the thing under test.
const hangGuard = time.Minute

// syncBuffer collects a logger's output; slog handlers may write to it from
// several goroutines while a test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// count returns the number of log lines containing every one of subs.
func (s *syncBuffer) count(subs ...string) int {
	n := 0
lines:
	for line := range strings.Lines(s.String()) {
		for _, sub := range subs {
			if !strings.Contains(line, sub) {
				continue lines
			}
		}
		n++
	}
	return n
}

// waitLog waits until at least n log lines contain every one of subs. The
// owner logs a dropped connection just after closing it, so the line may
// come a moment after the peer saw the close.
func waitLog(t *testing.T, log *syncBuffer, n int, subs ...string) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for log.count(subs...) < n {
		if time.Now().After(deadline) {
			t.Fatalf("the owner logged %d of %d lines containing %q; log:\n%s", log.count(subs...), n, subs, log.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// rawConn is a connection to the owner's socket that speaks the protocol by
// hand, or not at all.
type rawConn struct {
	nc *net.UnixConn
	fr *wire.FrameReader
}

func dialRaw(sock string) (*rawConn, error) {
	nc, err := net.Dial("unix", sock)
	if err != nil {
		return nil, err
	}
	nc.SetDeadline(time.Now().Add(hangGuard))
	return &rawConn{nc: nc.(*net.UnixConn), fr: wire.NewFrameReader(nc, 16<<20)}, nil
}

// hello reads the owner's Hello.
func (c *rawConn) hello() (*wire.Hello, error) {
	body, err := c.fr.Next()
	if err != nil {
		return nil, fmt.Errorf("reading hello: %w", err)
	}
	var h wire.Hello
	if err := h.Decode(body); err != nil {
		return nil, err
	}
	return &h, nil
}

// join sends a Join with version and returns the owner's answer: nil for a
// Welcome, else the Refuse.
func (c *rawConn) join(version uint64) (*wire.Refuse, error) {
	return c.joinAs(version, rand.Uint64()|1)
}

// joinAs is join as the given client.
func (c *rawConn) joinAs(version, client uint64) (*wire.Refuse, error) {
	j := wire.Join{Version: version, ClientID: client, PID: int64(os.Getpid()), MaxFrame: wire.DefaultMaxFrame}
	if _, err := c.nc.Write(j.AppendFrame(nil)); err != nil {
		return nil, err
	}
	body, err := c.fr.Next()
	if err != nil {
		return nil, fmt.Errorf("reading welcome: %w", err)
	}
	if wire.KindOf(body) == wire.KindRefuse {
		var r wire.Refuse
		if err := r.Decode(body); err != nil {
			return nil, err
		}
		return &r, nil
	}
	return nil, (&wire.Welcome{}).Decode(body)
}

// dialJoined connects and completes a valid handshake.
func dialJoined(sock string) (*rawConn, error) { return dialJoinedAs(sock, rand.Uint64()|1) }

// dialJoinedAs is dialJoined as the given client.
func dialJoinedAs(sock string, client uint64) (*rawConn, error) {
	c, err := dialRaw(sock)
	if err != nil {
		return nil, err
	}
	if _, err := c.hello(); err != nil {
		c.nc.Close()
		return nil, err
	}
	refused, err := c.joinAs(wire.Version, client)
	if err == nil && refused != nil {
		err = refused
	}
	if err != nil {
		c.nc.Close()
		return nil, err
	}
	return c, nil
}

// do sends req and reads the owner's answer.
func (c *rawConn) do(req *wire.Request) (wire.Response, error) {
	var resp wire.Response
	if _, err := c.nc.Write(req.AppendFrame(nil)); err != nil {
		return resp, err
	}
	body, err := c.fr.Next()
	if err != nil {
		return resp, err
	}
	if err := resp.Decode(body); err != nil {
		return resp, err
	}
	if resp.ID != req.ID {
		return resp, fmt.Errorf("answer to request %d, want %d", resp.ID, req.ID)
	}
	return resp, nil
}

// sendAndDrain writes data, half-closes, and reads until the owner closes
// the connection: the owner must drop a connection that sent it garbage.
func (c *rawConn) sendAndDrain(data []byte) error {
	defer c.nc.Close()
	c.nc.Write(data) // may fail once the owner has dropped the connection
	c.nc.CloseWrite()
	_, err := io.Copy(io.Discard, c.nc)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("the owner did not close the connection: %w", err)
	}
	// io.EOF (nil here) or ECONNRESET: the owner closed with our bytes unread.
	return nil
}

// frame returns body as a complete frame.
func frame(body ...byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

func randomBytes(seed uint64, n int) []byte {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	b := make([]byte, n)
	rand.NewChaCha8(s).Read(b)
	return b
}

// health checks that the healthy client and the owner still serve, each
// time a bad peer has had its go.
type health struct {
	owner, proxy *sharedstate.State
	adds         int64
}

func (h *health) check(t *testing.T, ctx context.Context, after string) {
	t.Helper()
	if !h.owner.IsOwner() || h.proxy.IsOwner() {
		t.Fatalf("after %s: owner.IsOwner() = %v, proxy.IsOwner() = %v", after, h.owner.IsOwner(), h.proxy.IsOwner())
	}
	n, err := h.proxy.Counter("healthy").Add(ctx, 1)
	if err != nil {
		t.Fatalf("after %s: proxy Counter.Add: %v", after, err)
	}
	if h.adds++; n != h.adds {
		t.Fatalf("after %s: proxy Counter.Add = %d, want %d", after, n, h.adds)
	}
	m := sharedstate.NewMap[string](h.proxy, "healthy")
	if err := m.Store(ctx, after, "ok "+after); err != nil {
		t.Fatalf("after %s: proxy Map.Store: %v", after, err)
	}
	if v, ok, err := m.Load(ctx, after); err != nil || !ok || v != "ok "+after {
		t.Fatalf("after %s: proxy Map.Load = %q, %v, %v", after, v, ok, err)
	}
	if n, err := h.owner.Counter("healthy").Load(ctx); err != nil || n != h.adds {
		t.Fatalf("after %s: owner Counter.Load = %d, %v; want %d", after, n, err, h.adds)
	}
}

// underAttack opens an owner and a healthy proxy of a fresh state, each
// logging to its own buffer, for a test that lets bad peers at the owner's
// socket (sock).
func underAttack(t *testing.T) (h *health, ownerLog, proxyLog *syncBuffer, sock string) {
	dir := t.TempDir()
	ownerLog, proxyLog = new(syncBuffer), new(syncBuffer)
	h = &health{owner: open(t, dir, "app", quietLogger(ownerLog)), proxy: open(t, dir, "app", quietLogger(proxyLog))}
	h.check(t, testContext(t), "start")
	return h, ownerLog, proxyLog, filepath.Join(dir, "app.sock")
}

func TestBadInput(t *testing.T) {
	ctx := testContext(t)
	h, ownerLog, proxyLog, sock := underAttack(t)
	owner, proxy := h.owner, h.proxy
	pid := strconv.Itoa(os.Getpid())

	// Slow peers, kept open for the whole test. One stalls in the handshake,
	// which the owner's handshake timeout ends. The others stall inside a
	// frame after joining, which is allowed to last; each declares the
	// largest frame the cap allows, and must cost the owner only the bytes
	// it actually sent (checked by the memory bound at the end).
	slowHandshake, err := dialRaw(sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { slowHandshake.nc.Close() })
	slowHandshake.nc.SetDeadline(time.Time{})
	if _, err := slowHandshake.nc.Write([]byte{0, 0}); err != nil {
		t.Fatal(err)
	}
	const slowFrames = 100
	for i := range slowFrames {
		c, err := dialJoined(sock)
		if err != nil {
			t.Fatalf("slow client %d: %v", i, err)
		}
		t.Cleanup(func() { c.nc.Close() })
		c.nc.SetDeadline(time.Time{})
		partial := binary.BigEndian.AppendUint32(nil, wire.DefaultMaxFrame)
		partial = append(partial, byte(wire.KindRequest))
		partial = append(partial, make([]byte, 1000)...)
		if _, err := c.nc.Write(partial); err != nil {
			t.Fatal(err)
		}
	}
	h.check(t, ctx, "slow clients")

	okRequest := (&wire.Request{ID: 1, Op: transport.OpAdd, Name: "c", Int: 1}).AppendFrame(nil)
	okJoin := (&wire.Join{Version: wire.Version, ClientID: 7, PID: 1}).AppendFrame(nil)
	withTrailer := append(bytes.Clone(okRequest), 0)
	binary.BigEndian.PutUint32(withTrailer, uint32(len(withTrailer)-4))
	// A bound (trailer 1, 5 entries, no bytes) and one byte more.
	pastBound := append(bytes.Clone(okRequest), 1, 5, 0, 0)
	binary.BigEndian.PutUint32(pastBound, uint32(len(pastBound)-4))
	// A Store whose value field declares 1000 bytes and the frame ends 10 in.
	overrun := (&wire.Request{ID: 1, Op: transport.OpStore, Name: "m", Key: "k", Value: make([]byte, 1000)}).AppendFrame(nil)
	overrun = overrun[:len(overrun)-990]
	binary.BigEndian.PutUint32(overrun, uint32(len(overrun)-4))

	refused := []string{"refused a connection", "from pid " + pid}
	closed := []string{"closed a connection", "pid=" + pid}
	cases := []struct {
		name   string
		joined bool // send data after a valid handshake
		data   []byte
		logged []string
	}{
		{"random bytes", false, append([]byte{0xa7}, randomBytes(1, 4095)...), append(refused, "frame too large")},
		{"random bytes after handshake", true, append([]byte{0xa7}, randomBytes(2, 4095)...), append(closed, "frame too large")},
		{"4 GiB frame", false, append([]byte{0xff, 0xff, 0xff, 0xff}, bytes.Repeat([]byte("x"), 64<<10)...),
			append(refused, "4294967295 bytes declared")},
		{"4 GiB frame after handshake", true, append([]byte{0xff, 0xff, 0xff, 0xff}, bytes.Repeat([]byte("x"), 64<<10)...),
			append(closed, "4294967295 bytes declared")},
		{"garbage join", false, frame(bytes.Repeat([]byte{0xff}, 16)...), append(refused, "malformed message")},
		{"truncated join", false, okJoin[:len(okJoin)/2], append(refused, "unexpected EOF")},
		{"join too old to parse", false, frame(byte(wire.KindJoin)), append(refused, "malformed message: bad uvarint")},
		{"truncated frame", true, okRequest[:len(okRequest)/2], append(closed, "unexpected EOF")},
		{"truncated header", true, okRequest[:2], append(closed, "unexpected EOF")},
		{"empty frame", true, frame(), append(closed, "empty frame")},
		{"unknown kind", true, frame(0x42), append(closed, "unexpected message kind 66")},
		{"hello from a client", true, (&wire.Hello{Version: wire.Version}).AppendFrame(nil), append(closed, "unexpected message kind 1")},
		{"field overruns frame", true, overrun, append(closed, "field of 1000 bytes")},
		{"unknown trailer", true, withTrailer, append(closed, "unknown trailer of a request")},
		{"trailing bytes", true, pastBound, append(closed, "1 trailing bytes")},
		{"cancel of version 1", true, frame(7, 1), append(closed, "unexpected message kind 7")},
		{"empty request", true, frame(byte(wire.KindRequest)), append(closed, "malformed message")},
	}
	for _, tc := range cases {
		before := ownerLog.count(tc.logged...)
		var c *rawConn
		if tc.joined {
			c, err = dialJoined(sock)
		} else {
			c, err = dialRaw(sock)
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if err := c.sendAndDrain(tc.data); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		waitLog(t, ownerLog, before+1, tc.logged...)
		h.check(t, ctx, tc.name)
	}

	// Sound frames with requests the owner cannot carry out are answered
	// with an error, on a connection that goes on serving.
	joined, err := dialJoined(sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { joined.nc.Close() })
	for i, req := range []*wire.Request{
		{Op: 200, Name: "c"},
		{Op: 0, Name: "c"},
		{Op: transport.OpStore, Name: "m", Key: "k", TTL: -1},
		{Op: transport.OpStore, Name: "m", Key: "k", TTL: math.MinInt64},
		{Op: transport.OpAdd, Name: ""},
		{Op: transport.OpAdd, Name: strings.Repeat("n", 2000)},
		{Op: transport.OpStore, Name: "m", Key: strings.Repeat("k", 70000)},
	} {
		req.ID = uint64(i + 1)
		resp, err := joined.do(req)
		if err != nil || resp.Status == transport.StatusOK {
			t.Errorf("%v request %+v: answer %+v, %v; want an error status", req.Op, req, resp, err)
		}
	}
	h.check(t, ctx, "refused requests")

	// Values are opaque to the owner: it stores and returns nesting no
	// decoder could survive, and lengths no allocator could honour, byte for
	// byte. Decoding them is the reader's business, and must fail cleanly.
	bombs := map[string][]byte{
		"deep":  append(bytes.Repeat([]byte{0x91}, 100000), 0xc0), // [[[...nil...]]], 100000 deep
		"array": {0xdd, 0x7f, 0xff, 0xff, 0xff},                   // array of 2^31-1 elements, none present
		"map":   {0xdf, 0xff, 0xff, 0xff, 0xff},                   // map of 2^32-1 entries
		"str":   {0xdb, 0xff, 0xff, 0xff, 0xff, 'x'},              // 4 GiB string
		"ext":   {0xc9, 0xff, 0xff, 0xff, 0xff, 1},                // 4 GiB extension
	}
	id := uint64(100)
	for key, value := range bombs {
		id++
		resp, err := joined.do(&wire.Request{ID: id, Op: transport.OpStore, Name: "bombs", Key: key, Value: value})
		if err != nil || resp.Status != transport.StatusOK {
			t.Fatalf("raw Store of %s: %+v, %v", key, resp, err)
		}
		id++
		resp, err = joined.do(&wire.Request{ID: id, Op: transport.OpLoad, Name: "bombs", Key: key})
		if err != nil || !resp.Found || !bytes.Equal(resp.Value, value) {
			t.Fatalf("raw Load of %s: found %v, %d bytes, %v; want the %d bytes stored", key, resp.Found, len(resp.Value), err, len(value))
		}
		for side, st := range map[string]*sharedstate.State{"proxy": proxy, "owner": owner} {
			_, ok, err := sharedstate.NewMap[any](st, "bombs").Load(ctx, key)
			t.Logf("%s Map[any].Load(%s): ok=%v err=%v", side, key, ok, err)
			if err == nil && !ok {
				t.Errorf("%s Map[any].Load(%s) found nothing", side, key)
			}
			if _, _, err := sharedstate.NewMap[[]int](st, "bombs").Load(ctx, key); err == nil {
				t.Errorf("%s Map[[]int].Load(%s) decoded a bomb", side, key)
			}
		}
		h.check(t, ctx, "value bomb "+key)
	}
	err = sharedstate.NewMap[any](proxy, "bombs").Range(ctx, func(string, any) bool { return true })
	t.Logf("proxy Map[any].Range over the bombs: %v", err)
	h.check(t, ctx, "range over the bombs")

	// Many bad peers at once, each doing one of the above.
	const flood = 200
	beforeRefused := ownerLog.count("refused a connection")
	beforeClosed := ownerLog.count("closed a connection")
	var wg sync.WaitGroup
	errs := make(chan error, flood)
	for i := range flood {
		wg.Add(1)
		go func() {
			defer wg.Done()
			garbage := randomBytes(uint64(1000+i), 1+i*37%2000)
			garbage[0] |= 0x80 // declares a frame over any cap
			var c *rawConn
			var err error
			if i%2 == 0 {
				c, err = dialRaw(sock)
			} else {
				c, err = dialJoined(sock)
			}
			if err != nil {
				errs <- fmt.Errorf("flood %d: %w", i, err)
				return
			}
			var data []byte
			switch i % 6 {
			case 0, 1:
				data = garbage
			case 2, 3:
				data = okRequest[:i%(len(okRequest)-1)+1] // never all of it
			case 4, 5:
				data = append([]byte{0xff, 0xff, 0xff, 0xff}, garbage...)
			}
			if err := c.sendAndDrain(data); err != nil {
				errs <- fmt.Errorf("flood %d: %w", i, err)
			}
		}()
	}
	// The healthy client goes on meanwhile.
	h.check(t, ctx, "flood starting")
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	waitLog(t, ownerLog, beforeRefused+flood/2, "refused a connection")
	waitLog(t, ownerLog, beforeClosed+flood/2, "closed a connection")
	h.check(t, ctx, "flood")

	// The peer stalled in its handshake is dropped when the handshake times out.
	waitLog(t, ownerLog, 1, "refused a connection", "reading join from pid "+pid, "i/o timeout")
	slowHandshake.nc.SetDeadline(time.Now().Add(hangGuard))
	if _, err := io.Copy(io.Discard, slowHandshake.nc); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("the peer stalled in its handshake was not dropped: %v", err)
	}
	h.check(t, ctx, "slow handshake")

	// Nothing above may cost the owner more than the bytes it received. The
	// slow clients are still connected, each inside a 4 MiB frame.
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("heap in use: %d MiB", ms.HeapInuse>>20)
	if ms.HeapInuse > 256<<20 {
		t.Errorf("heap in use %d MiB after the bad input; want under 256 MiB", ms.HeapInuse>>20)
	}

	// The healthy client never lost its connection.
	if strings.Contains(proxyLog.String(), "owner lost") {
		t.Errorf("the healthy client lost the owner:\n%s", proxyLog.String())
	}
	if t.Failed() {
		t.Logf("owner log:\n%s", ownerLog.String())
	}
}

func TestVersionMismatch(t *testing.T) {
	t.Run("client", func(t *testing.T) {
		dir := t.TempDir()
		ctx := testContext(t)
		var ownerLog syncBuffer
		owner := open(t, dir, "app", quietLogger(&ownerLog))
		proxy := open(t, dir, "app")
		h := &health{owner: owner, proxy: proxy}

		c, err := dialRaw(filepath.Join(dir, "app.sock"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.nc.Close()
		hello, err := c.hello()
		if err != nil {
			t.Fatal(err)
		}
		if hello.Version != wire.Version || hello.PID != int64(os.Getpid()) {
			t.Errorf("hello = %+v, want version %d from pid %d", hello, wire.Version, os.Getpid())
		}
		refused, err := c.join(99)
		if err != nil {
			t.Fatal(err)
		}
		if refused == nil {
			t.Fatal("the owner welcomed a client speaking version 99")
		}
		if refused.Status != transport.StatusVersionMismatch || !strings.Contains(refused.Msg, "99") {
			t.Errorf("refusal = %v; want %v naming version 99", refused, transport.StatusVersionMismatch)
		}
		waitLog(t, &ownerLog, 1, "refused a connection", "protocol version 99")
		h.check(t, ctx, "version 99")
	})

	// A fake owner holds the lock and the socket and speaks another
	// version: Open must say so at once, not retry until its context ends.
	fakes := []struct {
		name  string
		serve func(nc net.Conn)
	}{
		{"hello", func(nc net.Conn) {
			nc.Write((&wire.Hello{Version: 99, PID: 1}).AppendFrame(nil))
			io.Copy(io.Discard, nc) // the client's Join, then its close
		}},
		{"hello in a new layout", func(nc net.Conn) {
			f := (&wire.Hello{Version: 99, PID: 1}).AppendFrame(nil)
			f = append(f, "fields of version 99"...)
			binary.BigEndian.PutUint32(f, uint32(len(f)-4))
			nc.Write(f)
			io.Copy(io.Discard, nc)
		}},
		{"hello then close", func(nc net.Conn) {
			nc.Write((&wire.Hello{Version: 99, PID: 1}).AppendFrame(nil))
		}},
		// The same, made deterministic: an owner that will not read the
		// Join, so that the client's write of it fails (EPIPE).
		{"hello, not reading", func(nc net.Conn) {
			nc.(*net.UnixConn).CloseRead()
			nc.Write((&wire.Hello{Version: 99, PID: 1}).AppendFrame(nil))
			io.Copy(io.Discard, nc)
		}},
		{"refuse", func(nc net.Conn) {
			nc.Write((&wire.Hello{Version: wire.Version, PID: 1}).AppendFrame(nil))
			fr := wire.NewFrameReader(nc, 1<<10)
			fr.Next()
			nc.Write((&wire.Refuse{Status: transport.StatusVersionMismatch, Msg: "the owner needs version 99"}).AppendFrame(nil))
		}},
	}
	for _, fake := range fakes {
		t.Run("owner "+fake.name, func(t *testing.T) {
			dir := t.TempDir()
			defer holdLock(t, dir)()
			ln, err := wire.Listen(filepath.Join(dir, "app.sock"))
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			defer wg.Wait()
			defer ln.Close()
			var conns sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conns.Wait()
				for {
					nc, err := ln.Accept()
					if err != nil {
						return
					}
					conns.Add(1)
					go func() {
						defer conns.Done()
						defer nc.Close()
						nc.SetDeadline(time.Now().Add(hangGuard))
						fake.serve(nc)
					}()
				}
			}()

			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			st, err := sharedstate.Open(ctx, "app", sharedstate.WithDir(dir), quietLogger(io.Discard))
			if st != nil {
				st.Close()
			}
			if !errors.Is(err, sharedstate.ErrVersionMismatch) || ctx.Err() != nil {
				t.Errorf("Open against an owner speaking version 99: err = %v (ctx: %v); want ErrVersionMismatch at once", err, ctx.Err())
			}
		})
	}
}

func TestOtherUserRefused(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run a process as another user")
	}
	const nobody = 65534
	// A tree that user nobody may traverse: the state directory (0711) lets
	// it reach the socket, made 0666, so that only the owner's SO_PEERCRED
	// check stands between nobody and the state.
	base, err := os.MkdirTemp("/tmp", "sharedstate-sec-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	dir := filepath.Join(base, "state")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for path, mode := range map[string]os.FileMode{base: 0o755, dir: 0o711} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(base, "sharedstate.test")
	if err := copyExecutable(bin); err != nil {
		t.Fatal(err)
	}
	asNobody := func(cmd *exec.Cmd) *exec.Cmd {
		cmd.Dir = base
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		return cmd
	}
	probe := asNobody(exec.Command(bin))
	probe.Env = append(os.Environ(), "SHAREDSTATE_WORKER=probe")
	if out, err := probe.Output(); errors.Is(err, syscall.EPERM) {
		t.Skipf("cannot run a process as uid %d: %v", nobody, err)
	} else if err != nil || strings.TrimSpace(string(out)) != "uid "+strconv.Itoa(nobody) {
		t.Fatalf("probe as uid %d: %q, %v", nobody, out, err)
	}

	ctx := testContext(t)
	var ownerLog syncBuffer
	owner := open(t, dir, "app", quietLogger(&ownerLog))
	proxy := open(t, dir, "app")
	h := &health{owner: owner, proxy: proxy}
	sock := filepath.Join(dir, "app.sock")
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}

	w := startWorkerCmd(t, asNobody(exec.Command(bin)), "other-user", "SS_DIR="+dir)
	want := fmt.Sprintf("status=%d ", transport.StatusUnauthorized)
	if got := w.expectLine(t, "raw"); !strings.HasPrefix(got, want) || !strings.Contains(got, "uid 65534") {
		t.Errorf("raw connection as uid %d got %q; want a refusal %q naming its uid", nobody, got, want)
	}
	if got := w.expectLine(t, "open"); !strings.HasPrefix(got, "unauthorized=true") {
		t.Errorf("Open as uid %d in root's directory: %s; want ErrUnauthorized", nobody, got)
	}
	if got := w.expectLine(t, "linked"); !strings.HasPrefix(got, "unauthorized=true") || !strings.Contains(got, "uid 0") {
		t.Errorf("Open as uid %d through a link to root's socket: %s; want ErrUnauthorized naming the owner's uid", nobody, got)
	}
	w.wait(t)

	// The raw connection and the linked Open were both refused by the owner.
	waitLog(t, &ownerLog, 2, "refused a connection", "runs as uid 65534")
	h.check(t, ctx, "another user")
}

// copyExecutable copies the running test binary to path, mode 0755.
func copyExecutable(path string) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	src, err := os.Open(exe)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	if err := dst.Close(); err != nil {
		return err
	}
	return os.Chmod(path, 0o755)
}

func TestNameEscapes(t *testing.T) {
	// TestInvalidNames checks that these are refused; this checks that
	// nothing lands outside the directory, for refused and valid names.
	parent := t.TempDir()
	dir := filepath.Join(parent, "state")
	ctx := testContext(t)
	for _, name := range []string{
		"../escape", "../../etc", "a/b", "/tmp/escape", "..", "sub/../../escape", "escape/..",
		`..\escape`, "escape\x00", "\u2215escape", "escape\n", "./escape", "~escape",
	} {
		st, err := sharedstate.Open(ctx, name, sharedstate.WithDir(dir), quietLogger(io.Discard))
		if !errors.Is(err, sharedstate.ErrInvalidName) {
			t.Errorf("Open(%q): err = %v, want ErrInvalidName", name, err)
		}
		if st != nil {
			st.Close()
		}
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused names created the state directory: %v", err)
	}
	// Valid names with dots and dashes stay inside the directory.
	for _, name := range []string{"a..b", "-rf", "x.sock", "_", "z.."} {
		st, err := sharedstate.Open(ctx, name, sharedstate.WithDir(dir), quietLogger(io.Discard))
		if err != nil {
			t.Fatalf("Open(%q): %v", name, err)
		}
		st.Close()
	}
	filepath.WalkDir(parent, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			t.Error(err)
			return nil
		}
		if path != parent && path != dir && filepath.Dir(path) != dir {
			t.Errorf("%s was created outside %s", path, dir)
		}
		return nil
	})
	if _, err := os.Stat("/tmp/escape.lock"); err == nil {
		t.Error("/tmp/escape.lock exists")
	}
}

// otherUser runs as another user than the owner, and tries to get in; it
// prints its findings for the parent to check.
func otherUser() {
	dir := os.Getenv("SS_DIR")
	sock := filepath.Join(dir, "app.sock")

	// By hand: the owner must refuse before its Hello.
	if c, err := dialRaw(sock); err != nil {
		fmt.Println("raw dial:", err)
	} else {
		body, err := c.fr.Next()
		var r wire.Refuse
		if err == nil {
			err = r.Decode(body)
		}
		if err != nil {
			fmt.Println("raw error:", err)
		} else {
			fmt.Printf("raw status=%d msg=%s\n", r.Status, r.Msg)
		}
		c.nc.Close()
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	report := func(what string, st *sharedstate.State, err error) {
		if st != nil {
			st.Close()
		}
		fmt.Printf("%s unauthorized=%v err=%v\n", what, errors.Is(err, sharedstate.ErrUnauthorized), err)
	}

	// Through Open in the owner's directory, which is not ours.
	st, err := sharedstate.Open(ctx, "app", sharedstate.WithDir(dir), quietLogger(os.Stderr))
	report("open", st, err)

	// Through Open in a directory of our own whose socket links to the
	// owner's, with our own lock file held, so that Open connects: each side
	// must refuse the other's uid.
	own, err := os.MkdirTemp("", "sharedstate-nobody-")
	if err != nil {
		report("linked", nil, err)
		return
	}
	defer os.RemoveAll(own)
	release, err := lockFile(own)
	if err != nil {
		report("linked", nil, err)
		return
	}
	defer release()
	if err := os.Symlink(sock, filepath.Join(own, "app.sock")); err != nil {
		report("linked", nil, err)
		return
	}
	st, err = sharedstate.Open(ctx, "app", sharedstate.WithDir(own), quietLogger(os.Stderr))
	report("linked", st, err)
}

// lockFile takes the lock file of state "app" in dir, as an owner does.
func lockFile(dir string) (release func(), err error) {
	d, err := statedir.Open(dir)
	if err != nil {
		return nil, err
	}
	lf, err := d.TryLock("app.lock")
	if err == nil && lf == nil {
		err = errors.New("the lock file is held")
	}
	if err != nil {
		d.Close()
		return nil, err
	}
	return func() { lf.Release(); d.Close() }, nil
}

// holdLock takes the lock file of state "app" in dir, and returns what
// releases it.
func holdLock(t *testing.T, dir string) func() {
	t.Helper()
	release, err := lockFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	return release
}
