package main

import (
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
)

// faultProxy forwards TCP connections from its own 127.0.0.1 port to a
// target. Cut makes it a black hole, as when the network drops a host's
// packets: connections are still accepted, but no byte is forwarded either
// way (what arrives is read and dropped, so the senders' writes succeed and
// nothing answers). Heal closes every connection that lived through the cut,
// so the clients notice and reconnect, and forwards again.
type faultProxy struct {
	name   string
	ln     net.Listener
	target string

	mu     sync.Mutex
	cut    bool
	closed bool
	conns  map[net.Conn]struct{} // both ends of every live connection
}

// newFaultProxy listens on a free 127.0.0.1 port and forwards to target;
// t's cleanup closes it and its connections.
func newFaultProxy(t testing.TB, name, target string) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", freeAddr(t))
	if err != nil {
		t.Fatalf("proxy %s: listen: %v", name, err)
	}
	p := &faultProxy{name: name, ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	go p.serve()
	t.Cleanup(p.close)
	return p
}

// Addr is where clients connect.
func (p *faultProxy) Addr() string { return p.ln.Addr().String() }

func (p *faultProxy) String() string {
	return fmt.Sprintf("proxy %s %s->%s", p.name, p.Addr(), p.target)
}

// track records c as live; false once the proxy is closed.
func (p *faultProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *faultProxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

func (p *faultProxy) isCut() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cut
}

func (p *faultProxy) serve() {
	for {
		down, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		if !p.track(down) {
			down.Close()
			return
		}
		go p.forward(down)
	}
}

// forward connects down to the target and copies both ways; while cut, it
// holds down without connecting, dropping what it sends.
func (p *faultProxy) forward(down net.Conn) {
	if p.isCut() {
		p.drain(down)
		return
	}
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		p.untrack(down) // the target is down: refused, as without the proxy
		return
	}
	if !p.track(up) {
		up.Close()
		p.untrack(down)
		return
	}
	var wg sync.WaitGroup
	wg.Go(func() { p.pipe(up, down) })
	wg.Go(func() { p.pipe(down, up) })
	wg.Wait()
}

// drain reads and drops what c sends until it is closed (by Heal or its
// peer).
func (p *faultProxy) drain(c net.Conn) {
	_, _ = io.Copy(io.Discard, c)
	p.untrack(c)
}

// pipe copies src to dst until either ends; from the moment the proxy is
// cut it drops what src sends instead.
func (p *faultProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.isCut() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				err = werr
			}
		}
		if err != nil {
			// One side ended: end both (a half-close is not worth
			// modelling), except that the end does not cross a black hole.
			if !p.isCut() {
				p.untrack(dst)
			}
			p.untrack(src)
			return
		}
	}
}

// Cut black-holes the proxy until Heal.
func (p *faultProxy) Cut() {
	p.mu.Lock()
	p.cut = true
	p.mu.Unlock()
}

// Heal closes the connections that lived through the cut and forwards again.
func (p *faultProxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.cut {
		return
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
	p.cut = false
}

// close stops accepting and closes every connection.
func (p *faultProxy) close() {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
	p.mu.Unlock()
	p.ln.Close()
}
