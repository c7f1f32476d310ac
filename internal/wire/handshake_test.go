package wire

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/sharedstate/sharedstate/transport"
)

// testConfig returns a Config that accepts this process's own user.
func testConfig(secret string) Config {
	c := Config{
		UID:      os.Getuid(),
		PID:      os.Getpid(),
		ID:       1,
		MaxFrame: DefaultMaxFrame,
		Timeout:  time.Minute,
	}
	if secret != "" {
		c.Secret = []byte(secret)
	}
	return c
}

type acceptResult struct {
	conn *Conn
	join *Join
	err  error
}

// listen starts an owner that runs Accept with cfg on one connection, and
// returns the socket path and the channel the result arrives on.
func listen(t *testing.T, cfg Config) (string, <-chan acceptResult) {
	t.Helper()
	path := sockPath(t)
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan acceptResult, 1)
	go func() {
		nc, err := ln.AcceptUnix()
		if err != nil {
			ch <- acceptResult{err: err}
			return
		}
		conn, join, err := Accept(nc, cfg)
		if conn != nil {
			t.Cleanup(func() { conn.Close() })
		}
		ch <- acceptResult{conn, join, err}
	}()
	return path, ch
}

// handshake runs Accept with srv and Connect with cli over a real socket.
func handshake(t *testing.T, srv, cli Config, clientID uint64) (acceptResult, *Conn, *Hello, error) {
	t.Helper()
	path, ch := listen(t, srv)
	nc, err := Dial(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	cli.ID = clientID
	conn, hello, err := Connect(t.Context(), nc, cli)
	if conn != nil {
		t.Cleanup(func() { conn.Close() })
	}
	return <-ch, conn, hello, err
}

func TestHandshake(t *testing.T) {
	for _, secret := range []string{"", "s3cret"} {
		t.Run("secret="+secret, func(t *testing.T) {
			const id = 0x1234567890
			// Each side claims a pid that is not its own: the peer must
			// report the kernel's word instead.
			srvCfg, cliCfg := testConfig(secret), testConfig(secret)
			srvCfg.PID, cliCfg.PID = 1<<30+1, 1<<30+2
			srv, conn, hello, err := handshake(t, srvCfg, cliCfg, id)
			if err != nil {
				t.Fatalf("Connect: %v", err)
			}
			if srv.err != nil {
				t.Fatalf("Accept: %v", srv.err)
			}
			if hello.Version != Version || hello.PID != int64(os.Getpid()) {
				t.Errorf("Hello = %+v, want version %d, pid %d", hello, Version, os.Getpid())
			}
			if wantNonce := secret != ""; (len(hello.Nonce) > 0) != wantNonce {
				t.Errorf("Hello has a %d-byte nonce; secret %q", len(hello.Nonce), secret)
			}
			j := srv.join
			if j.Version != Version || j.ClientID != id || j.PID != int64(os.Getpid()) {
				t.Errorf("Join = %+v, want version %d, client %d, pid %d", j, Version, id, os.Getpid())
			}

			// The established connection carries frames far above the
			// handshake's cap, both ways.
			req := &Request{ID: 1, Op: transport.OpStore, Name: "m", Key: "k", Value: bytes.Repeat([]byte("v"), 100<<10)}
			if err := conn.Send(req); err != nil {
				t.Fatal(err)
			}
			body, err := srv.conn.Recv()
			if err != nil {
				t.Fatalf("owner Recv: %v", err)
			}
			var gotReq Request
			if err := gotReq.Decode(body); err != nil || !bytes.Equal(gotReq.Value, req.Value) {
				t.Fatalf("owner received %d-byte value, %v", len(gotReq.Value), err)
			}
			resp := &Response{ID: 1, Found: true, Value: req.Value}
			if err := srv.conn.Send(resp); err != nil {
				t.Fatal(err)
			}
			if body, err = conn.Recv(); err != nil {
				t.Fatalf("client Recv: %v", err)
			}
			var gotResp Response
			if err := gotResp.Decode(body); err != nil || !bytes.Equal(gotResp.Value, req.Value) {
				t.Fatalf("client received %d-byte value, %v", len(gotResp.Value), err)
			}
		})
	}
}

// TestHandshakeAgreesFrameCap: each side sends no frame larger than the
// other reads, so a side with a higher cap refuses such a frame itself
// instead of sending what the peer must drop the connection for.
func TestHandshakeAgreesFrameCap(t *testing.T) {
	srvCfg, cliCfg := testConfig(""), testConfig("")
	srvCfg.MaxFrame, cliCfg.MaxFrame = 64<<10, 1<<20
	srv, conn, hello, err := handshake(t, srvCfg, cliCfg, 1)
	if err != nil || srv.err != nil {
		t.Fatalf("Connect: %v; Accept: %v", err, srv.err)
	}
	if hello.MaxFrame != 64<<10 || srv.join.MaxFrame != 1<<20 {
		t.Errorf("caps told: owner %d, client %d", hello.MaxFrame, srv.join.MaxFrame)
	}
	big := &Request{ID: 1, Op: transport.OpStore, Name: "m", Key: "k", Value: make([]byte, 100<<10)}
	if err := conn.Send(big); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("client Send over the owner's cap: %v; want ErrFrameTooLarge", err)
	}
	if err := srv.conn.Send(&Response{ID: 1, Value: make([]byte, 100<<10)}); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("owner Send over its own cap: %v; want ErrFrameTooLarge", err)
	}
	// The connection still carries what fits.
	if err := conn.Send(&Request{ID: 2, Op: transport.OpGet, Name: "c"}); err != nil {
		t.Fatal(err)
	}
	if body, err := srv.conn.Recv(); err != nil || KindOf(body) != KindRequest {
		t.Fatalf("owner Recv after a refused Send: %v", err)
	}
}

// TestHandshakeNonce checks that each handshake challenges with a fresh
// nonce, so a recorded Join cannot be replayed.
func TestHandshakeNonce(t *testing.T) {
	var nonces [2][]byte
	for i := range nonces {
		srv, _, hello, err := handshake(t, testConfig("s3cret"), testConfig("s3cret"), 1)
		if err != nil || srv.err != nil {
			t.Fatalf("Connect: %v; Accept: %v", err, srv.err)
		}
		nonces[i] = hello.Nonce
	}
	if bytes.Equal(nonces[0], nonces[1]) {
		t.Errorf("two handshakes used the same nonce %x", nonces[0])
	}
}

// TestHandshakeClientSecretOnly checks that a client with a secret joins an
// owner without one: the owner asked for no proof.
func TestHandshakeClientSecretOnly(t *testing.T) {
	srv, _, _, err := handshake(t, testConfig(""), testConfig("s3cret"), 1)
	if err != nil || srv.err != nil {
		t.Fatalf("Connect: %v; Accept: %v", err, srv.err)
	}
}

// wantRefuse fails t unless err is a *Refuse with status want.
func wantRefuse(t *testing.T, side string, err error, want transport.Status) {
	t.Helper()
	var r *Refuse
	if !errors.As(err, &r) {
		t.Errorf("%s: %v, want a Refuse with %v", side, err, want)
	} else if r.Status != want {
		t.Errorf("%s: %v, want status %v", side, r, want)
	}
}

func TestHandshakeUnauthorized(t *testing.T) {
	tests := []struct {
		name     string
		srv, cli Config
	}{
		{"wrong secret", testConfig("right"), testConfig("wrong")},
		{"no secret", testConfig("right"), testConfig("")},
		{"owner refuses uid", func() Config { c := testConfig(""); c.UID++; return c }(), testConfig("")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, conn, _, err := handshake(t, tt.srv, tt.cli, 1)
			if conn != nil || srv.conn != nil {
				t.Error("a refused handshake returned a Conn")
			}
			wantRefuse(t, "Accept", srv.err, transport.StatusUnauthorized)
			wantRefuse(t, "Connect", err, transport.StatusUnauthorized)
		})
	}
}

// TestHandshakeClientRefusesUID checks that a client will not talk to a
// socket served by another user, so it never sends its secret's proof there.
func TestHandshakeClientRefusesUID(t *testing.T) {
	cli := testConfig("")
	cli.UID++
	srv, conn, _, err := handshake(t, testConfig(""), cli, 1)
	if conn != nil {
		t.Error("Connect returned a Conn")
	}
	wantRefuse(t, "Connect", err, transport.StatusUnauthorized)
	if srv.err == nil {
		t.Error("Accept succeeded with a client that left")
	}
}

// TestHandshakeClientVersion plays a client of protocol version 99 against
// Accept, by hand.
func TestHandshakeClientVersion(t *testing.T) {
	path, ch := listen(t, testConfig(""))
	nc, err := Dial(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	fr := NewFrameReader(nc, DefaultMaxFrame)
	body, err := fr.Next()
	if err != nil {
		t.Fatal(err)
	}
	var hello Hello
	if err := hello.Decode(body); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Write((&Join{Version: 99, ClientID: 1}).AppendFrame(nil)); err != nil {
		t.Fatal(err)
	}
	if body, err = fr.Next(); err != nil {
		t.Fatalf("reading the answer to Join: %v", err)
	}
	var r Refuse
	if err := r.Decode(body); err != nil {
		t.Fatalf("answer to a version 99 Join: %v", err)
	}
	if r.Status != transport.StatusVersionMismatch {
		t.Errorf("Refuse = %+v, want %v", r, transport.StatusVersionMismatch)
	}
	if _, err := fr.Next(); err != io.EOF {
		t.Errorf("after the Refuse: %v, want io.EOF", err)
	}
	wantRefuse(t, "Accept", (<-ch).err, transport.StatusVersionMismatch)
}

// TestHandshakeOwnerVersion plays owners of other versions against Connect,
// by hand: one whose Hello still decodes, and one whose Hello has a layout
// this version does not know but starts with its version as promised.
func TestHandshakeOwnerVersion(t *testing.T) {
	tests := []struct {
		name  string
		hello []byte
	}{
		{"same layout", (&Hello{Version: 99, PID: 1}).AppendFrame(nil)},
		{"new layout", []byte{0, 0, 0, 5, byte(KindHello), 99, 0xff, 0xff, 0xff}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := sockPath(t)
			ln, err := Listen(path)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			joined := make(chan error, 1)
			go func() {
				nc, err := ln.AcceptUnix()
				if err != nil {
					joined <- err
					return
				}
				defer nc.Close()
				nc.Write(tt.hello)
				// The client still sends its Join, so that the owner can
				// log who it refused.
				body, err := NewFrameReader(nc, DefaultMaxFrame).Next()
				if err == nil {
					var j Join
					err = j.Decode(body)
				}
				joined <- err
			}()
			nc, err := Dial(t.Context(), path)
			if err != nil {
				t.Fatal(err)
			}
			conn, _, err := Connect(t.Context(), nc, testConfig(""))
			if conn != nil {
				conn.Close()
				t.Error("Connect returned a Conn")
			}
			wantRefuse(t, "Connect", err, transport.StatusVersionMismatch)
			if err := <-joined; err != nil {
				t.Errorf("owner reading Join: %v", err)
			}
		})
	}
}

// TestHandshakeJoinTooLarge checks that the owner caps frames before it
// knows the peer.
func TestHandshakeJoinTooLarge(t *testing.T) {
	path, ch := listen(t, testConfig(""))
	nc, err := Dial(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	join := &Join{Version: Version, MAC: make([]byte, handshakeMaxFrame)}
	go nc.Write(join.AppendFrame(nil))
	if err := (<-ch).err; !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("Accept of an oversized Join: %v, want ErrFrameTooLarge", err)
	}
}

// TestHandshakeTimeout checks that Accept gives up on a client that never
// answers, after cfg.Timeout.
func TestHandshakeTimeout(t *testing.T) {
	cfg := testConfig("")
	cfg.Timeout = 10 * time.Millisecond
	path, ch := listen(t, cfg)
	nc, err := Dial(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := (<-ch).err; !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Accept of a silent client: %v, want os.ErrDeadlineExceeded", err)
	}
}

// TestConnectCanceled checks that canceling ctx ends a Connect waiting on an
// owner that never says Hello, however long cfg.Timeout is.
func TestConnectCanceled(t *testing.T) {
	path := sockPath(t)
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		nc, err := ln.Accept()
		if err == nil {
			accepted <- nc
		}
		close(accepted)
	}()
	nc, err := Dial(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	if srv := <-accepted; srv != nil {
		defer srv.Close()
	}
	ctx, cancel := context.WithCancel(t.Context())
	cfg := testConfig("")
	cfg.Timeout = time.Hour
	done := make(chan error, 1)
	go func() {
		_, _, err := Connect(ctx, nc, cfg)
		done <- err
	}()
	cancel()
	if err := <-done; err == nil {
		t.Error("Connect succeeded with no owner speaking")
	}
}

// An owner's Attach reaches the client with the Welcome, as a file of its
// own on the same contents; without one the client gets none.
func TestHandshakeAttachesAFile(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "attached")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.WriteString("the mailbox")
	srvCfg := testConfig("")
	srvCfg.Attach = f
	srv, conn, _, err := handshake(t, srvCfg, testConfig(""), 7)
	if err != nil || srv.err != nil {
		t.Fatalf("handshake: %v, %v", err, srv.err)
	}
	got := conn.Attached()
	if got == nil {
		t.Fatal("no file came with the Welcome")
	}
	defer got.Close()
	if got.Fd() == f.Fd() {
		t.Fatal("the received file is the sender's descriptor")
	}
	b := make([]byte, 32)
	n, _ := got.ReadAt(b, 0)
	if string(b[:n]) != "the mailbox" {
		t.Fatalf("the received file holds %q", b[:n])
	}
	if conn.Attached() != nil {
		t.Fatal("Attached gave the file twice")
	}
	// The connection still carries frames once the handshake is over.
	if err := srv.conn.Send(&Response{ID: 1, Int: 42}); err != nil {
		t.Fatal(err)
	}
	body, err := conn.Recv()
	var resp Response
	if err != nil || resp.Decode(body) != nil || resp.Int != 42 {
		t.Fatalf("after the handshake: %v, %+v", err, resp)
	}

	_, plain, _, err := handshake(t, testConfig(""), testConfig(""), 8)
	if err != nil {
		t.Fatal(err)
	}
	if plain.Attached() != nil {
		t.Fatal("a file came from an owner that attached none")
	}
}
