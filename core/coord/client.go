// Package coord is plugdb's coordination through ZooKeeper: a client that
// survives session expiry and knows how long it may trust its session (the
// leader's lease), cluster metadata, per-partition membership and leader
// election with epochs, and the router's watched view of the topology.
//
// Layout under Config.Root (default /plugdb), for cluster C:
//
//	/plugdb/C/meta                       cluster metadata (JSON), written once
//	/plugdb/C/partitions/P/epoch         the current epoch, a decimal, bumped by each new leader
//	/plugdb/C/partitions/P/leader        ephemeral: the leader's address, replicator address and epoch (JSON)
//	/plugdb/C/partitions/P/isr           the in-sync replica set and the epoch that wrote it (JSON), written by leaders
//	/plugdb/C/partitions/P/members/ADDR  ephemeral: a replica's address, replicator address, role and applied LSN (JSON)
//	/plugdb/C/partitions/P/election/…    ephemeral sequential candidates (protected names)
//	/plugdb/C/keyspaces/K/…              keyspace K's meta and partitions, laid out as above
package coord

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/hashicorp/go-hclog"
)

// Config says how to reach ZooKeeper and where the cluster lives in it.
type Config struct {
	// Servers are the ensemble's host:port addresses.
	Servers []string
	// SessionTimeout is the ZooKeeper session timeout.
	SessionTimeout time.Duration
	// Root is plugdb's root znode, e.g. "/plugdb".
	Root string
	// Cluster is the cluster's name.
	Cluster string
	// Keyspace is the cluster's keyspace this client coordinates ("" or
	// "default": the default one): it chooses the znodes (PathsOf).
	Keyspace string
	// Auth are the digest credentials the client authenticates with and
	// protects the znodes it creates with (see ACL); zero: none, the znodes
	// are open to every ZooKeeper client.
	Auth Credentials
	// Logger receives state changes; nil discards them.
	Logger hclog.Logger
}

// Client is a ZooKeeper connection for one process. After its session expires
// it gets a new one (go-zookeeper reconnects); users watch Changed and
// re-create their ephemeral nodes.
type Client struct {
	conn    *zk.Conn
	cfg     Config
	acl     []zk.ACL // of the znodes the client creates (aclOf)
	log     hclog.Logger
	done    chan struct{}
	stopped sync.WaitGroup

	mu         sync.Mutex
	state      zk.State
	session    int64
	since      time.Time     // when state last changed
	changed    chan struct{} // closed on the next state change
	leaseUntil time.Time     // writes may be acknowledged until then (monotonic)
}

// ErrNoSession is returned when the client has no ZooKeeper session.
var ErrNoSession = errors.New("no ZooKeeper session")

// Connect connects to ZooKeeper and waits, within ctx, for a session. With
// credentials (Config.Auth) it authenticates, on this connection and every
// later one, and gives the cluster's znodes that are open to the world its
// ACL; without, it fails if they are protected (see secure).
func Connect(ctx context.Context, cfg Config) (*Client, error) {
	if len(cfg.Servers) == 0 {
		return nil, errors.New("connect to ZooKeeper: no servers configured (zookeeper.servers)")
	}
	if cfg.SessionTimeout <= 0 {
		cfg.SessionTimeout = 2 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	c := &Client{cfg: cfg, acl: aclOf(cfg.Auth), log: log, done: make(chan struct{}), changed: make(chan struct{}), state: zk.StateDisconnected, since: time.Now()}
	conn, _, err := zk.Connect(cfg.Servers, cfg.SessionTimeout,
		zk.WithEventCallback(c.event), zk.WithLogger(zkLogger{log}), zk.WithLogInfo(false))
	if err != nil {
		return nil, fmt.Errorf("connect to ZooKeeper %s: %w", strings.Join(cfg.Servers, ","), err)
	}
	c.mu.Lock()
	c.conn = conn
	c.mu.Unlock()
	c.stopped.Add(1)
	go c.renewLease()
	if _, err := c.WaitSession(ctx); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.addAuth(ctx); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.secure(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Config returns the client's configuration.
func (c *Client) Config() Config { return c.cfg }

// Conn is the underlying connection. Its calls block while ZooKeeper is
// unreachable; use Do to bound them.
func (c *Client) Conn() *zk.Conn { return c.conn }

// Close ends the session (its ephemeral nodes go at once) and the connection.
func (c *Client) Close() {
	select {
	case <-c.done:
		return
	default:
	}
	close(c.done)
	// go-zookeeper's Close bounds itself: it waits at most a second to send
	// its close request when the server is gone; the session then simply
	// expires.
	start := time.Now()
	c.conn.Close()
	if time.Since(start) >= time.Second {
		c.log.Warn("ZooKeeper unreachable while closing; the session will expire on its own")
	}
	c.stopped.Wait()
}

// event is go-zookeeper's event callback: it sees every session event (its
// event channel drops events when full).
func (c *Client) event(ev zk.Event) {
	if ev.Type != zk.EventSession {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if ev.State == c.state {
		return
	}
	prev := c.state
	c.state = ev.State
	c.since = time.Now()
	if ev.State == zk.StateHasSession {
		c.session = 0 // read by sessionLocked: c.conn may not be set yet
		// The session is as fresh as this event: trust it for a third of its
		// timeout, then the renewal loop extends it.
		c.leaseUntil = time.Now().Add(c.cfg.SessionTimeout / 3)
	} else {
		c.leaseUntil = time.Time{} // stop acknowledging at once
	}
	close(c.changed)
	c.changed = make(chan struct{})
	select {
	case <-c.done:
		return // closing: the connection ends on purpose (and may outlive Close)
	default:
	}
	switch ev.State {
	case zk.StateHasSession:
		c.log.Info("ZooKeeper session established", "server", ev.Server)
	case zk.StateExpired:
		c.log.Warn("ZooKeeper session expired; ephemeral nodes are gone and will be re-created", "session", fmt.Sprintf("%#x", c.session))
	case zk.StateDisconnected:
		if prev == zk.StateHasSession {
			c.log.Warn("ZooKeeper connection lost; not acknowledging writes until it returns", "servers", strings.Join(c.cfg.Servers, ","))
		}
	}
}

// renewLease keeps the lease: every sixth of the session timeout it makes a
// round trip to ZooKeeper; a reply to a request sent at t proves the server
// heard from this session at or after t, so the session cannot expire before
// t + SessionTimeout. The lease ends at t + SessionTimeout/2, leaving half
// the timeout for clock-rate differences and for the new leader's election.
func (c *Client) renewLease() {
	defer c.stopped.Done()
	tick := time.NewTicker(c.cfg.SessionTimeout / 6)
	defer tick.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-tick.C:
		}
		c.mu.Lock()
		ok, session := c.state == zk.StateHasSession, c.sessionLocked()
		c.mu.Unlock()
		if !ok {
			continue
		}
		sent := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.SessionTimeout/3)
		err := c.Do(ctx, func(conn *zk.Conn) error {
			_, _, err := conn.Exists("/")
			return err
		})
		cancel()
		if err != nil {
			continue
		}
		c.mu.Lock()
		if c.state == zk.StateHasSession && c.sessionLocked() == session {
			if until := sent.Add(c.cfg.SessionTimeout / 2); until.After(c.leaseUntil) {
				c.leaseUntil = until
			}
		}
		c.mu.Unlock()
	}
}

// Lease reports whether the client holds its session now, sure that the
// server has not expired it, and which session that is.
func (c *Client) Lease() (session int64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != zk.StateHasSession || !time.Now().Before(c.leaseUntil) {
		return 0, false
	}
	return c.sessionLocked(), true
}

// sessionLocked returns the current session's ID; c.mu is held.
func (c *Client) sessionLocked() int64 {
	if c.session == 0 && c.state == zk.StateHasSession && c.conn != nil {
		c.session = c.conn.SessionID()
	}
	return c.session
}

// State returns the connection state, the session and when the state began.
func (c *Client) State() (zk.State, int64, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state, c.sessionLocked(), c.since
}

// Connected reports whether the client has a session now.
func (c *Client) Connected() bool {
	st, _, _ := c.State()
	return st == zk.StateHasSession
}

// Changed returns a channel closed at the next state change.
func (c *Client) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// SessionContext returns a context that ends with ctx or at the client's next
// state change (a lost connection or session), so that calls made for one
// session do not outlive it.
func (c *Client) SessionContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	changed := c.Changed()
	go func() {
		select {
		case <-changed:
			cancel()
		case <-c.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// WaitSession waits, within ctx, until the client has a session and returns it.
func (c *Client) WaitSession(ctx context.Context) (int64, error) {
	for {
		c.mu.Lock()
		st, session, since, ch := c.state, c.sessionLocked(), c.since, c.changed
		c.mu.Unlock()
		if st == zk.StateHasSession {
			return session, nil
		}
		select {
		case <-ch:
		case <-c.done:
			return 0, fmt.Errorf("ZooKeeper client closed: %w", ErrNoSession)
		case <-ctx.Done():
			return 0, fmt.Errorf("%w: ZooKeeper %s unreachable (state %s for %v): %w",
				ErrNoSession, strings.Join(c.cfg.Servers, ","), st, time.Since(since).Round(time.Millisecond), ctx.Err())
		}
	}
}

// Do runs fn, bounded by ctx: go-zookeeper's calls wait while the connection
// is down. fn keeps running in the background after ctx ends; its result is
// then dropped. fn must not write to variables the caller reads: return
// results through call instead.
func (c *Client) Do(ctx context.Context, fn func(conn *zk.Conn) error) error {
	_, err := call(ctx, c, func(conn *zk.Conn) (struct{}, error) { return struct{}{}, fn(conn) })
	return err
}

// call is Do returning fn's result.
func call[T any](ctx context.Context, c *Client, fn func(conn *zk.Conn) (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	res := make(chan result, 1)
	go func() {
		v, err := fn(c.conn)
		res <- result{v, err}
	}()
	var zero T
	select {
	case r := <-res:
		return r.v, r.err
	case <-ctx.Done():
		return zero, fmt.Errorf("ZooKeeper %s: %w", strings.Join(c.cfg.Servers, ","), ctx.Err())
	case <-c.done:
		return zero, fmt.Errorf("ZooKeeper client closed: %w", ErrNoSession)
	}
}

// zkLogger sends go-zookeeper's log lines to hclog at debug level; the client
// logs what matters (state changes) itself.
type zkLogger struct{ l hclog.Logger }

func (z zkLogger) Printf(format string, args ...any) { z.l.Debug(fmt.Sprintf(format, args...)) }
