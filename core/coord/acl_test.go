package coord_test

import (
	"context"
	"errors"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/plugdb/plugdb/core/coord"
	"github.com/plugdb/plugdb/core/zkserver/zktest"
	"github.com/plugdb/plugdb/internal/testutil"
)

// securedCluster returns a config for a cluster of its own under a root of
// its own (a secured root refuses the other tests' clusters), with
// credentials.
func securedCluster(t *testing.T, servers []string) coord.Config {
	cfg := newCluster(t, servers)
	cfg.Root = "/plugdb-acl-" + strconv.FormatInt(clusters.Add(1), 10)
	cfg.Auth = coord.Credentials{User: "plugdb", Password: "pw-" + cfg.Cluster}
	return cfg
}

// rawConn is a plain go-zookeeper connection, authenticated with auth
// (user:password) unless empty.
func rawConn(t *testing.T, servers []string, auth string) *zk.Conn {
	t.Helper()
	conn, events, err := zk.Connect(servers, session, zk.WithLogInfo(false), zk.WithLogger(discardLogger{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	deadline := time.After(20 * time.Second)
	for connected := false; !connected; {
		select {
		case ev := <-events:
			connected = ev.State == zk.StateHasSession
		case <-deadline:
			t.Fatal("no ZooKeeper session in 20s")
		}
	}
	if auth != "" {
		if err := conn.AddAuth("digest", []byte(auth)); err != nil {
			t.Fatal(err)
		}
	}
	return conn
}

type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}

// tree lists root and every znode under it, as conn sees them.
func tree(t *testing.T, conn *zk.Conn, root string) []string {
	t.Helper()
	out := []string{root}
	children, _, err := conn.Children(root)
	if err != nil {
		t.Fatalf("list %s: %v", root, err)
	}
	for _, ch := range children {
		out = append(out, tree(t, conn, path.Join(root, ch))...)
	}
	return out
}

// startLeader starts a replica of partition 0 and waits until it leads, so
// that every kind of znode exists: meta, epoch, isr, leader, members,
// election.
func startLeader(t *testing.T, cfg coord.Config) *replica {
	t.Helper()
	r := startReplica(t, cfg, "127.0.0.1:1")
	testutil.WaitFor(t, 20*time.Second, func() bool { _, ok := r.k.Leader(); return ok }, "a leader")
	return r
}

// checkRefused checks that conn can neither read nor change any of znodes.
func checkRefused(t *testing.T, conn *zk.Conn, who string, znodes []string) {
	t.Helper()
	for _, p := range znodes {
		if _, _, err := conn.Get(p); !errors.Is(err, zk.ErrNoAuth) {
			t.Errorf("%s: get %s: %v, want %v", who, p, err, zk.ErrNoAuth)
		}
		if _, _, err := conn.Children(p); !errors.Is(err, zk.ErrNoAuth) {
			t.Errorf("%s: list %s: %v, want %v", who, p, err, zk.ErrNoAuth)
		}
		if _, err := conn.Set(p, []byte("x"), -1); !errors.Is(err, zk.ErrNoAuth) {
			t.Errorf("%s: set %s: %v, want %v", who, p, err, zk.ErrNoAuth)
		}
		if _, err := conn.Create(p+"/intruder", nil, 0, zk.WorldACL(zk.PermAll)); !errors.Is(err, zk.ErrNoAuth) {
			t.Errorf("%s: create under %s: %v, want %v", who, p, err, zk.ErrNoAuth)
		}
		if _, err := conn.SetACL(p, zk.WorldACL(zk.PermAll), -1); !errors.Is(err, zk.ErrNoAuth) {
			t.Errorf("%s: set the ACL of %s: %v, want %v", who, p, err, zk.ErrNoAuth)
		}
	}
	// Deleting needs the parent's permission: try the leaves.
	for _, p := range znodes {
		if err := conn.Delete(p, -1); !errors.Is(err, zk.ErrNoAuth) && !errors.Is(err, zk.ErrNotEmpty) {
			t.Errorf("%s: delete %s: %v, want %v", who, p, err, zk.ErrNoAuth)
		}
	}
}

// checkACLs checks that every one of znodes carries exactly want.
func checkACLs(t *testing.T, conn *zk.Conn, znodes []string, want []zk.ACL) {
	t.Helper()
	for _, p := range znodes {
		got, _, err := conn.GetACL(p)
		if err != nil {
			t.Fatalf("ACL of %s: %v", p, err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("ACL of %s = %v, want %v", p, got, want)
		}
	}
}

func TestACLsRefuseClientsWithoutTheCredentials(t *testing.T) {
	zkSrv := zktest.Shared(t)
	cfg := securedCluster(t, zkSrv.Servers())
	leader := startLeader(t, cfg)
	if err := leader.k.SetISR(t.Context(), []string{"127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	if err := coord.EnsurePartition(t.Context(), leader.c, 2); err != nil {
		t.Fatal(err)
	}

	owner := rawConn(t, zkSrv.Servers(), "plugdb:"+cfg.Auth.Password)
	znodes := tree(t, owner, cfg.Root)
	kinds := strings.Join(znodes, " ")
	for _, want := range []string{"/meta", "/partitions/0/epoch", "/partitions/0/isr", "/partitions/0/leader", "/partitions/0/members/127.0.0.1:1", "/partitions/0/election/", "/partitions/2/epoch"} {
		if !strings.Contains(kinds, want) {
			t.Fatalf("no znode %s among %v", want, znodes)
		}
	}
	want := zk.DigestACL(zk.PermAll, "plugdb", cfg.Auth.Password)
	checkACLs(t, owner, znodes, want)
	if got := leader.c.ACL(); !slices.Equal(got, want) {
		t.Fatalf("client's ACL %v, want %v", got, want)
	}

	checkRefused(t, rawConn(t, zkSrv.Servers(), ""), "no credentials", znodes)
	checkRefused(t, rawConn(t, zkSrv.Servers(), "plugdb:wrong"), "wrong password", znodes)
	checkRefused(t, rawConn(t, zkSrv.Servers(), "other:"+cfg.Auth.Password), "other user", znodes)

	// plugdb's own client says what is missing.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	none := cfg
	none.Auth = coord.Credentials{}
	if c, err := coord.Connect(ctx, none); err == nil {
		c.Close()
		t.Fatal("a client without credentials connected to a secured cluster")
	} else if !errors.Is(err, coord.ErrNoAuth) || !strings.Contains(err.Error(), "zookeeper.auth_file") || !strings.Contains(err.Error(), "no credentials") {
		t.Fatalf("connect without credentials: %v; want ErrNoAuth naming zookeeper.auth_file", err)
	}
	wrong := cfg
	wrong.Auth.Password = "wrong"
	if c, err := coord.Connect(ctx, wrong); err == nil {
		c.Close()
		t.Fatal("a client with the wrong password connected to a secured cluster")
	} else if !errors.Is(err, coord.ErrNoAuth) || !strings.Contains(err.Error(), "zookeeper.auth_file") || !strings.Contains(err.Error(), cfg.Root) {
		t.Fatalf("connect with the wrong password: %v; want ErrNoAuth naming zookeeper.auth_file and the znode", err)
	}
	if msg := errString(coord.Connect(ctx, wrong)); strings.Contains(msg, "wrong") {
		t.Fatalf("the error shows the password: %s", msg)
	}

	// Another cluster under the same root with other credentials: the
	// secured root refuses it.
	other := securedCluster(t, zkSrv.Servers())
	other.Root = cfg.Root
	other.Auth = coord.Credentials{User: "other", Password: "pw"}
	if c, err := coord.Connect(ctx, other); err == nil {
		_, err = coord.EnsureMeta(ctx, c, meta)
		c.Close()
		if !errors.Is(err, coord.ErrNoAuth) {
			t.Fatalf("a cluster with other credentials under a secured root: %v, want ErrNoAuth", err)
		}
	} else if !errors.Is(err, coord.ErrNoAuth) || !strings.Contains(err.Error(), cfg.Root) {
		t.Fatalf("connect with other credentials under a secured root: %v, want ErrNoAuth naming %s", err, cfg.Root)
	}

	// The owner still reads and writes.
	if _, err := coord.EnsureMeta(ctx, connect(t, cfg), meta); err != nil {
		t.Fatal(err)
	}
}

func errString(c *coord.Client, err error) string {
	if c != nil {
		c.Close()
	}
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestCredentialsSecureAnOpenCluster(t *testing.T) {
	zkSrv := zktest.Shared(t)
	cfg := securedCluster(t, zkSrv.Servers())
	open := cfg
	open.Auth = coord.Credentials{}
	// A cluster made without credentials: every znode is open.
	r := startLeader(t, open)
	raw := rawConn(t, zkSrv.Servers(), "")
	znodes := tree(t, raw, cfg.Root)
	checkACLs(t, raw, znodes, zk.WorldACL(zk.PermAll))

	// The first process with credentials secures them all, the running
	// replica's ephemeral ones included.
	c := connect(t, cfg)
	owner := rawConn(t, zkSrv.Servers(), "plugdb:"+cfg.Auth.Password)
	if got := tree(t, owner, cfg.Root); !slices.Equal(got, znodes) {
		t.Fatalf("znodes %v, were %v", got, znodes)
	}
	checkACLs(t, owner, znodes, c.ACL())
	checkRefused(t, raw, "no credentials", znodes)
	// The cluster goes on with the credentials.
	r.stop()
	<-r.done
	r.c.Close()
	r = startLeader(t, cfg)
	if _, err := coord.EnsureMeta(t.Context(), r.c, meta); err != nil {
		t.Fatal(err)
	}
}

func TestCredentialsSurviveZooKeeperRestart(t *testing.T) {
	zkSrv := zktest.Start(t, 1)
	cfg := securedCluster(t, zkSrv.Servers())
	a := startLeader(t, cfg)
	e1, _ := a.k.Leader()
	if err := zkSrv.StopServer(0); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, func() bool { _, ok := a.k.Leader(); return !ok }, "a stops leading")
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	if err := zkSrv.StartServer(ctx, 0); err != nil {
		t.Fatal(err)
	}
	// Leading again writes the epoch and creates the leader znode: the
	// reconnected client presents its credentials again.
	testutil.WaitFor(t, 30*time.Second, func() bool { e, ok := a.k.Leader(); return ok && e > e1 }, "a leads again")
	if err := coord.EnsurePartition(ctx, a.c, 1); err != nil {
		t.Fatalf("create znodes after the restart: %v", err)
	}
	if err := a.k.SetISR(ctx, []string{"127.0.0.1:1"}); err != nil {
		t.Fatalf("write after the restart: %v", err)
	}
	raw := rawConn(t, zkSrv.Servers(), "")
	if _, err := raw.Create(coord.PathsOf(cfg).Partition(3), nil, 0, zk.WorldACL(zk.PermAll)); !errors.Is(err, zk.ErrNoAuth) {
		t.Fatalf("unauthenticated create after the restart: %v, want %v", err, zk.ErrNoAuth)
	}
}

// TestCredentialsSurviveSessionExpiry: a client cut off from ZooKeeper past
// its session timeout gets a new session, in which go-zookeeper presents the
// credentials again: the replica registers and leads again, which writes.
func TestCredentialsSurviveSessionExpiry(t *testing.T) {
	zkSrv := zktest.Shared(t)
	px := newProxy(t, zkSrv.Servers()[0])
	cfg := securedCluster(t, []string{px.Addr()})
	a := startLeader(t, cfg)
	e1, _ := a.k.Leader()
	_, s1, _ := a.c.State()
	px.Cut()
	testutil.WaitFor(t, 20*time.Second, func() bool { _, ok := a.k.Leader(); return !ok }, "a stops leading")
	// Past the session timeout: the server expires the session.
	owner := rawConn(t, zkSrv.Servers(), "plugdb:"+cfg.Auth.Password)
	testutil.WaitFor(t, 20*time.Second, func() bool {
		children, _, err := owner.Children(coord.PathsOf(cfg).Members(0))
		return err == nil && len(children) == 0
	}, "the cut-off session to expire")
	px.Heal()
	testutil.WaitFor(t, 30*time.Second, func() bool { e, ok := a.k.Leader(); return ok && e > e1 }, "a leads again")
	if _, s2, _ := a.c.State(); s2 == s1 {
		t.Fatalf("session %#x after the expiry, want a new one", s2)
	}
	if err := a.k.SetISR(t.Context(), []string{"127.0.0.1:1"}); err != nil {
		t.Fatalf("write in the new session: %v", err)
	}
}
