package coord

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"
)

// Credentials are a ZooKeeper digest identity, user:password. The zero value
// is no credentials: plugdb's znodes are then open to every client (world
// ACL), as before ACLs existed.
type Credentials struct {
	User     string
	Password string
}

// Set reports whether there are credentials.
func (c Credentials) Set() bool { return c.User != "" }

// String hides the password.
func (c Credentials) String() string {
	if !c.Set() {
		return "none"
	}
	return c.User + ":***"
}

// ErrNoAuth wraps ZooKeeper's refusal of a client without the credentials
// that protect the cluster's znodes.
var ErrNoAuth = errors.New("ZooKeeper refuses access")

// aclOf is the ACL of every znode a client with creds creates: with
// credentials, all permissions for their digest identity and none for anyone
// else, so a client without them can neither read nor change plugdb's znodes
// (nothing in them is a password, but the topology and the leaders' addresses
// are no one else's business, and one rule for every znode leaves nothing to
// get wrong); without, ZooKeeper's open world ACL.
func aclOf(creds Credentials) []zk.ACL {
	if !creds.Set() {
		return zk.WorldACL(zk.PermAll)
	}
	return zk.DigestACL(zk.PermAll, creds.User, creds.Password)
}

// ACL returns the ACL the client gives the znodes it creates.
func (c *Client) ACL() []zk.ACL { return append([]zk.ACL(nil), c.acl...) }

// addAuth presents the client's credentials, if any, within ctx, once the
// client has a session. go-zookeeper remembers them and sends them again
// first thing on every later connection (resendZkAuth, before any queued
// request), a new session after expiry included. It retries after a lost
// connection: the credentials are remembered only once the server answered.
func (c *Client) addAuth(ctx context.Context) error {
	creds := c.cfg.Auth
	if !creds.Set() {
		return nil
	}
	err := c.retry(ctx, func() error {
		return c.Do(ctx, func(conn *zk.Conn) error {
			return conn.AddAuth("digest", []byte(creds.User+":"+creds.Password))
		})
	})
	if err != nil {
		return fmt.Errorf("authenticate to ZooKeeper %s as %s: %w", strings.Join(c.cfg.Servers, ","), creds, err)
	}
	return nil
}

// retry runs fn until it succeeds, fails otherwise than by a lost
// connection, or ctx ends, waiting for a session before each new try; fn
// must be idempotent.
func (c *Client) retry(ctx context.Context, fn func() error) error {
	for {
		err := fn()
		if err == nil || !lostConnection(err) || ctx.Err() != nil {
			return err
		}
		select { // the state change may not have arrived yet
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return err
		}
		if _, err := c.WaitSession(ctx); err != nil {
			return err
		}
	}
}

// lostConnection reports whether err is go-zookeeper's for a request the
// connection or session ended under.
func lostConnection(err error) bool {
	return errors.Is(err, zk.ErrConnectionClosed) || errors.Is(err, zk.ErrNoServer) || errors.Is(err, zk.ErrSessionExpired) || errors.Is(err, zk.ErrSessionMoved)
}

// clusterBase is the cluster's znode: every keyspace's lives under it.
func (c *Client) clusterBase() string { return path.Join(c.cfg.Root, c.cfg.Cluster) }

// secure runs when the client connects. With credentials, it gives every
// znode of the cluster that is open to the world (a cluster created before
// credentials were set), and plugdb's root above it, the client's ACL; it
// fails, naming the znode, when one is protected by other credentials.
// Without credentials, it fails when the cluster's znodes are protected, and
// says how to pass the credentials.
func (c *Client) secure(ctx context.Context) error {
	if c.cfg.Root == "" || c.cfg.Cluster == "" {
		return nil
	}
	base := c.clusterBase()
	if !c.cfg.Auth.Set() {
		err := c.retry(ctx, func() error {
			return c.Do(ctx, func(conn *zk.Conn) error {
				_, _, err := conn.Get(base)
				return err
			})
		})
		switch {
		case err == nil, errors.Is(err, zk.ErrNoNode):
			return nil
		case errors.Is(err, zk.ErrNoAuth):
			return fmt.Errorf("cluster %q's znodes carry digest ACLs and this process has no credentials: %w", c.cfg.Cluster, refused(base, nil, err))
		default:
			return fmt.Errorf("check access to %s: %w", base, err)
		}
	}
	var secured []string
	err := c.retry(ctx, func() error {
		var err error
		secured, err = call(ctx, c, func(conn *zk.Conn) ([]string, error) {
			return secureTree(conn, c.cfg.Root, base, c.acl)
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("cluster %q's znodes with the credentials of %s: %w", c.cfg.Cluster, c.cfg.Auth, err)
	}
	if len(secured) > 0 {
		c.log.Info("gave the znodes open to the world the credentials' ACL", "znodes", len(secured), "first", secured[0])
	}
	return nil
}

// secureTree sets acl on root (unless it is "/") and on base's whole subtree
// (base is a child of root) wherever their ACL lets anyone in (scheme world),
// and returns the znodes it set. A znode this session may not administer or
// list is an error wrapping ErrNoAuth.
func secureTree(conn *zk.Conn, root, base string, acl []zk.ACL) ([]string, error) {
	var secured []string
	// fix secures p if it is open; false when p does not exist.
	fix := func(p string) (bool, error) {
		got, _, err := conn.GetACL(p)
		if errors.Is(err, zk.ErrNoNode) {
			return false, nil
		}
		if err != nil { // ZooKeeper shows an ACL only to whom it allows READ or ADMIN
			return false, fmt.Errorf("read the ACL of %w", refused(p, nil, err))
		}
		if !worldOpen(got) {
			return true, nil
		}
		if _, err := conn.SetACL(p, acl, -1); errors.Is(err, zk.ErrNoNode) {
			return false, nil
		} else if err != nil {
			return false, refused(p, got, err)
		}
		secured = append(secured, p)
		return true, nil
	}
	if root != "/" {
		if ok, err := fix(root); err != nil || !ok {
			return secured, err
		}
	}
	var walk func(p string) error
	walk = func(p string) error {
		ok, err := fix(p)
		if err != nil || !ok {
			return err
		}
		children, _, err := conn.Children(p)
		if errors.Is(err, zk.ErrNoNode) {
			return nil
		}
		if err != nil {
			got, _, _ := conn.GetACL(p)
			return refused(p, got, err)
		}
		for _, ch := range children {
			if err := walk(p + "/" + ch); err != nil {
				return err
			}
		}
		return nil
	}
	err := walk(base)
	return secured, err
}

// worldOpen reports whether acl lets every client in.
func worldOpen(acl []zk.ACL) bool {
	for _, a := range acl {
		if a.Scheme == "world" && a.Perms != 0 {
			return true
		}
	}
	return false
}

// refused explains err, ZooKeeper's answer for znode p whose ACL is acl (nil:
// not known); an err other than zk.ErrNoAuth is only wrapped.
func refused(p string, acl []zk.ACL, err error) error {
	if !errors.Is(err, zk.ErrNoAuth) {
		return fmt.Errorf("%s: %w", p, err)
	}
	whose := ""
	if len(acl) > 0 {
		ids := make([]string, len(acl))
		for i, a := range acl {
			ids[i] = a.Scheme + ":" + a.ID
		}
		whose = " (ACL " + strings.Join(ids, ", ") + ")"
	}
	return fmt.Errorf("%s%s: %w: zookeeper.auth_file must name a file holding the credentials (user:password) plugdb's znodes were created with: %w",
		p, whose, ErrNoAuth, err)
}
