package main

import (
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
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
	// from, when set, cuts only the connections whose client it reports
	// isolated (by the client's port), the others flowing (CutFrom).
	from     func(port int) bool
	cutLinks map[*link]struct{} // the links cut by from
	links    map[*link]struct{}
}

// link is one forwarded connection.
type link struct {
	down, up net.Conn
	cut      atomic.Bool // dropped by CutFrom
}

// newFaultProxy listens on a free 127.0.0.1 port and forwards to target;
// t's cleanup closes it and its connections.
func newFaultProxy(t testing.TB, name, target string) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy %s: listen: %v", name, err)
	}
	p := &faultProxy{name: name, ln: ln, target: target, conns: map[net.Conn]struct{}{},
		links: map[*link]struct{}{}, cutLinks: map[*link]struct{}{}}
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

// isolated reports whether down comes from a client CutFrom isolates.
func (p *faultProxy) isolated(down net.Conn) bool {
	p.mu.Lock()
	from := p.from
	p.mu.Unlock()
	a, ok := down.RemoteAddr().(*net.TCPAddr)
	return from != nil && ok && from(a.Port)
}

// forward connects down to the target and copies both ways; while cut, it
// holds down without connecting, dropping what it sends.
func (p *faultProxy) forward(down net.Conn) {
	if p.isolated(down) {
		p.mu.Lock()
		p.cutLinks[&link{down: down}] = struct{}{} // closed by HealFrom
		p.mu.Unlock()
		p.drain(down)
		return
	}
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
	l := &link{down: down, up: up}
	p.mu.Lock()
	p.links[l] = struct{}{}
	p.mu.Unlock()
	var wg sync.WaitGroup
	wg.Go(func() { p.pipe(l, up, down) })
	wg.Go(func() { p.pipe(l, down, up) })
	wg.Wait()
	p.mu.Lock()
	delete(p.links, l)
	p.mu.Unlock()
}

// drain reads and drops what c sends until it is closed (by Heal or its
// peer).
func (p *faultProxy) drain(c net.Conn) {
	_, _ = io.Copy(io.Discard, c)
	p.untrack(c)
}

// pipe copies src to dst until either ends; from the moment the proxy is
// cut it drops what src sends instead.
func (p *faultProxy) pipe(l *link, dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		cut := p.isCut() || l.cut.Load()
		if n > 0 && !cut {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				err = werr
			}
		}
		if err != nil {
			// One side ended: end both (a half-close is not worth
			// modelling), except that the end does not cross a black hole.
			if !cut {
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

// CutFrom black-holes the connections whose client is isolated, by its
// port: those open now that open reports, and those made until HealFrom
// that later reports; the others flow.
func (p *faultProxy) CutFrom(open, later func(port int) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.from = later
	for l := range p.links {
		if a, ok := l.down.RemoteAddr().(*net.TCPAddr); ok && open(a.Port) {
			l.cut.Store(true)
			p.cutLinks[l] = struct{}{}
		}
	}
}

// HealFrom closes the connections CutFrom black-holed or held and forwards
// all again.
func (p *faultProxy) HealFrom() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for l := range p.cutLinks {
		l.down.Close()
		if l.up != nil {
			l.up.Close()
		}
	}
	clear(p.cutLinks)
	p.from = nil
}

// cutFromCount is how many connections CutFrom black-holed or held.
func (p *faultProxy) cutFromCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.cutLinks)
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
