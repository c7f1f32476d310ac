package main

// The floor for a proxy's round trip: two processes exchanging
// length-prefixed frames of a proxy op's sizes over a Unix socket, with
// nothing else in the way (no multiplexing, no writer goroutine, no
// decoding). One synchronous client goroutine, one echoing server, in two
// flavours: through Go's net package, whose poller the library also uses,
// and with blocking read(2) and write(2) on raw descriptors, the kernel's
// floor; and through Go's net package with a reader goroutine handing each
// response to the caller, the shape of a proxy.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"syscall"

	"github.com/sharedstate/sharedstate/internal/wire"
	"github.com/sharedstate/sharedstate/transport"
)

// opFrameSizes returns the sizes on the wire, 4-byte header included, of a
// proxy's Counter.Add request and its response, with ids of a busy client.
func opFrameSizes() (req, resp int) {
	const id = 1 << 20
	r := wire.Request{ID: id, Ack: id - 1, Op: transport.OpAdd, Name: counterName, Int: 1}
	a := wire.Response{ID: id, Int: 1 << 20}
	return len(r.AppendFrame(nil)), len(a.AppendFrame(nil))
}

// echoServer answers each request frame with a response frame of the
// job's response size.
type echoServer struct {
	ln *net.UnixListener
}

func listenEcho(j job) (target, error) {
	resp := make([]byte, j.RespSize)
	binary.BigEndian.PutUint32(resp, uint32(j.RespSize-4))
	if j.Raw {
		return listenRawEcho(j.Socket, resp)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: j.Socket, Net: "unix"})
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go echo(c, resp)
		}
	}()
	return &echoServer{ln: ln}, nil
}

// echo serves one connection: c is a net.Conn or a rawConn.
func echo(c io.ReadWriteCloser, resp []byte) {
	defer c.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := io.ReadFull(c, buf[:4]); err != nil {
			return
		}
		n := binary.BigEndian.Uint32(buf[:4])
		if int(n) > len(buf) {
			return
		}
		if _, err := io.ReadFull(c, buf[:n]); err != nil {
			return
		}
		if _, err := c.Write(resp); err != nil {
			return
		}
	}
}

func (s *echoServer) owner() bool { return false }
func (s *echoServer) close()      { s.ln.Close() }
func (s *echoServer) op(int) func(context.Context) error {
	return func(context.Context) error { return errors.New("the echo server runs no ops") }
}

// echoClient sends one request frame and reads the response, per op;
// with j.Handoff, a reader goroutine reads the responses and hands each to
// the caller on a channel, as a proxy's does.
type echoClient struct {
	j     job
	nc    io.ReadWriteCloser
	resps chan error // with j.Handoff: each response read, or why not
}

func dialEcho(j job) (*echoClient, error) {
	if j.Raw {
		fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		if err := syscall.Connect(fd, &syscall.SockaddrUnix{Name: j.Socket}); err != nil {
			syscall.Close(fd)
			return nil, err
		}
		return &echoClient{j: j, nc: rawConn(fd)}, nil
	}
	nc, err := net.Dial("unix", j.Socket)
	if err != nil {
		return nil, err
	}
	c := &echoClient{j: j, nc: nc}
	if j.Handoff {
		c.resps = make(chan error, 1)
		go c.readLoop()
	}
	return c, nil
}

// readLoop reads response frames and hands each to the caller.
func (c *echoClient) readLoop() {
	resp := make([]byte, c.j.RespSize)
	for {
		err := c.readResponse(resp)
		c.resps <- err
		if err != nil {
			return
		}
	}
}

// readResponse reads one response frame into resp and checks its size.
func (c *echoClient) readResponse(resp []byte) error {
	if _, err := io.ReadFull(c.nc, resp); err != nil {
		return err
	}
	if got := int(binary.BigEndian.Uint32(resp)) + 4; got != len(resp) {
		return fmt.Errorf("echo: frame of %d bytes, want %d", got, len(resp))
	}
	return nil
}

func (c *echoClient) owner() bool { return false }
func (c *echoClient) close()      { c.nc.Close() }

// op may be called from one goroutine only: the exchange is not multiplexed.
func (c *echoClient) op(int) func(context.Context) error {
	req := make([]byte, c.j.ReqSize)
	binary.BigEndian.PutUint32(req, uint32(c.j.ReqSize-4))
	resp := make([]byte, c.j.RespSize)
	return func(context.Context) error {
		if _, err := c.nc.Write(req); err != nil {
			return err
		}
		if c.resps != nil {
			return <-c.resps
		}
		return c.readResponse(resp)
	}
}

// rawConn is a blocking socket descriptor: its reads and writes are plain
// system calls that block the thread, with no poller in between.
type rawConn int

func (c rawConn) Read(b []byte) (int, error) {
	for {
		n, err := syscall.Read(int(c), b)
		switch {
		case err == syscall.EINTR:
			continue
		case err != nil:
			return 0, err
		case n == 0 && len(b) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

func (c rawConn) Write(b []byte) (int, error) {
	done := 0
	for done < len(b) {
		n, err := syscall.Write(int(c), b[done:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return done, err
		}
		done += n
	}
	return done, nil
}

func (c rawConn) Close() error { return syscall.Close(int(c)) }

// rawEchoServer accepts and echoes with blocking system calls.
type rawEchoServer struct{ fd int }

func listenRawEcho(path string, resp []byte) (*rawEchoServer, error) {
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	if err := syscall.Listen(fd, 8); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	go func() {
		for {
			c, _, err := syscall.Accept4(fd, syscall.SOCK_CLOEXEC)
			if err == syscall.EINTR {
				continue
			}
			if err != nil {
				return
			}
			go echo(rawConn(c), resp)
		}
	}()
	return &rawEchoServer{fd: fd}, nil
}

func (s *rawEchoServer) owner() bool { return false }
func (s *rawEchoServer) close()      { syscall.Close(s.fd) }
func (s *rawEchoServer) op(int) func(context.Context) error {
	return func(context.Context) error { return errors.New("the echo server runs no ops") }
}

// echoSocket is where the echo server listens, in the run's directory.
func echoSocket(dir string, raw bool) string {
	if raw {
		return filepath.Join(dir, "echo-raw.sock")
	}
	return filepath.Join(dir, "echo.sock")
}
