package main

// The ping-pong through the owner's mailbox (internal/mailbox): the frames
// go through shared memory, each side spinning for a while and then sleeping
// on a futex, with the socket only to hand over the mailbox's file.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sharedstate/sharedstate/internal/mailbox"
)

type mailboxServer struct{ ln *net.UnixListener }

func listenMailboxEcho(j job, resp []byte) (*mailboxServer, error) {
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: j.Socket, Net: "unix"})
	if err != nil {
		return nil, err
	}
	go func() {
		for {
			c, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			go mailboxEcho(c, resp, j.Spin)
		}
	}()
	return &mailboxServer{ln: ln}, nil
}

// mailboxEcho hands c's peer a mailbox and answers each request in it,
// until c closes.
func mailboxEcho(c *net.UnixConn, resp []byte, spin time.Duration) {
	defer c.Close()
	box, f, err := mailbox.Create()
	if err != nil {
		return
	}
	defer box.Close()
	_, _, err = c.WriteMsgUnix([]byte{1}, syscall.UnixRights(int(f.Fd())), nil)
	f.Close()
	if err != nil {
		return
	}
	box.Spin = spin
	var closed atomic.Bool
	go func() {
		c.Read(make([]byte, 1))
		closed.Store(true)
		box.Wake()
	}()
	for {
		if _, ok := box.Next(closed.Load); !ok {
			return
		}
		box.Answer(append(box.AnswerSlot(), resp...))
	}
}

func (s *mailboxServer) owner() bool { return false }
func (s *mailboxServer) close()      { s.ln.Close() }
func (s *mailboxServer) op(int) func(context.Context) error {
	return func(context.Context) error { return errors.New("the echo server runs no ops") }
}

type mailboxClient struct {
	j   job
	nc  *net.UnixConn
	box *mailbox.Box
}

func dialMailboxEcho(j job) (*mailboxClient, error) {
	nc, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: j.Socket, Net: "unix"})
	if err != nil {
		return nil, err
	}
	box, err := receiveMailbox(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	box.Spin = j.Spin
	return &mailboxClient{j: j, nc: nc, box: box}, nil
}

func receiveMailbox(nc *net.UnixConn) (*mailbox.Box, error) {
	oob := make([]byte, syscall.CmsgSpace(4))
	_, oobn, _, _, err := nc.ReadMsgUnix(make([]byte, 1), oob)
	if err != nil {
		return nil, err
	}
	msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("echo: no mailbox received (%v)", err)
	}
	fds, err := syscall.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, fmt.Errorf("echo: no mailbox received (%v)", err)
	}
	f := os.NewFile(uintptr(fds[0]), "mailbox")
	defer f.Close()
	return mailbox.Attach(f)
}

func (c *mailboxClient) owner() bool { return false }
func (c *mailboxClient) close()      { c.nc.Close() }

func (c *mailboxClient) op(int) func(context.Context) error {
	req := make([]byte, c.j.ReqSize)
	never := func() bool { return false }
	return func(context.Context) error {
		seq := c.box.Post(append(c.box.RequestSlot(), req...))
		answer, _ := c.box.Await(seq, time.Time{}, never)
		if len(answer) != c.j.RespSize {
			return fmt.Errorf("echo: answer of %d bytes, want %d", len(answer), c.j.RespSize)
		}
		return nil
	}
}
