package main

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"
)

// echoServer answers each line with itself on a free 127.0.0.1 port.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// echoes reports whether a line sent on c comes back within wait.
func echoes(t *testing.T, c net.Conn, wait time.Duration) bool {
	t.Helper()
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return false
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && line == "ping\n"
}

func dialProxy(t *testing.T, p *faultProxy) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestNemesisProxy checks the fault proxy on its own: it forwards; cut, it
// accepts and drops; healed, the connections that lived through the cut are
// closed and new ones flow; CutFrom drops only the isolated client's.
func TestNemesisProxy(t *testing.T) {
	p := newFaultProxy(t, "echo", echoServer(t))
	before := dialProxy(t, p)
	if !echoes(t, before, 5*time.Second) {
		t.Fatal("no echo through the proxy")
	}
	p.Cut()
	if echoes(t, before, 300*time.Millisecond) {
		t.Fatal("an echo through a cut proxy")
	}
	during := dialProxy(t, p) // accepted, and held
	if echoes(t, during, 300*time.Millisecond) {
		t.Fatal("an echo on a connection made while cut")
	}
	p.Heal()
	for _, c := range []net.Conn{before, during} {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("a connection that lived through the cut still open after Heal")
		}
	}
	if !echoes(t, dialProxy(t, p), 5*time.Second) {
		t.Fatal("no echo after Heal")
	}

	isolated, other := dialProxy(t, p), dialProxy(t, p)
	for _, c := range []net.Conn{isolated, other} {
		if !echoes(t, c, 5*time.Second) {
			t.Fatal("no echo before CutFrom")
		}
	}
	port := isolated.LocalAddr().(*net.TCPAddr).Port
	from := func(p int) bool { return p == port }
	p.CutFrom(from, from)
	if echoes(t, isolated, 300*time.Millisecond) {
		t.Fatal("an echo to the isolated client")
	}
	if !echoes(t, other, 5*time.Second) {
		t.Fatal("no echo to another client during CutFrom")
	}
	if n := p.cutFromCount(); n != 1 {
		t.Fatalf("CutFrom cut %d connections, want 1", n)
	}
	p.HealFrom()
	if !echoes(t, other, 5*time.Second) {
		t.Fatal("no echo to the other client after HealFrom")
	}
	_ = isolated.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := isolated.Read(make([]byte, 1)); err == nil {
		t.Fatal("the isolated connection still open after HealFrom")
	}
}
