package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/plugdb/plugdb/core/cluster"
	"github.com/plugdb/plugdb/internal/testutil"
)

// zkConn is a raw ZooKeeper connection to servers, authenticated with auth
// (user:password) unless empty.
func zkConn(t *testing.T, servers []string, auth string) *zk.Conn {
	t.Helper()
	conn, events, err := zk.Connect(servers, 2*time.Second, zk.WithLogInfo(false), zk.WithLogger(zkQuiet{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	testutil.WaitFor(t, 20*time.Second, func() bool {
		for {
			select {
			case ev := <-events:
				if ev.State == zk.StateHasSession {
					return true
				}
			default:
				return false
			}
		}
	}, "a ZooKeeper session")
	if auth != "" {
		if err := conn.AddAuth("digest", []byte(auth)); err != nil {
			t.Fatal(err)
		}
	}
	return conn
}

type zkQuiet struct{}

func (zkQuiet) Printf(string, ...any) {}

// TestClusterZooKeeperACLs: a cluster whose config names a credentials
// file (zookeeper.auth_file) runs — its router and nodes authenticate and
// create their znodes with a digest ACL — while ZooKeeper refuses a client
// without the credentials, and a node started without them stops with an
// error naming the key.
func TestClusterZooKeeperACLs(t *testing.T) {
	t.Parallel()
	open, grpcAddr := clusterConfig(t, 1)
	text, err := os.ReadFile(open)
	if err != nil {
		t.Fatal(err)
	}
	creds := filepath.Join(t.TempDir(), "zk.auth")
	if err := os.WriteFile(creds, []byte("plugdb:e2e-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	secured := strings.Replace(string(text), "session_timeout: 2s}", `session_timeout: 2s, auth_file: "`+creds+`"}`, 1)
	if secured == string(text) {
		t.Fatal("clusterConfig's zookeeper line changed: update this test")
	}
	cfg := filepath.Join(t.TempDir(), "secured.yaml")
	if err := os.WriteFile(cfg, []byte(secured), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "cluster")
	up := startClusterUp(t, dir, cfg, 1)
	defer func() {
		if down := runPlugdb(t, 2*time.Minute, "cluster", "down", "--dir", dir); down.code != 0 {
			t.Errorf("cluster down\n%s", down)
		}
		up.waitExit(t, time.Minute)
	}()
	rec, err := cluster.ReadRecord(dir)
	if err != nil {
		t.Fatal(err)
	}
	if rec.ZooKeeperAuth != creds || !strings.Contains(up.stdout.String(), "(credentials: "+creds+")") {
		t.Fatalf("cluster up uses credentials %q, want the config's %s\n%s", rec.ZooKeeperAuth, creds, up.output())
	}

	// The router and the nodes work with the credentials.
	if res := runPlugdb(t, 30*time.Second, "put", "user:1", "ada", "--addr", grpcAddr); res.code != 0 {
		t.Fatalf("put\n%s\n%s", res, up.output())
	}
	if res := runPlugdb(t, 30*time.Second, "get", "user:1", "--addr", grpcAddr); res.code != 0 || res.stdout != "ada\n" {
		t.Fatalf("get\n%s", res)
	}

	// ZooKeeper refuses an unauthenticated writer, and reader.
	base := "/plugdb/e2e"
	assertZooKeeperRefuses(t, rec.ZooKeeper, base)
	if data, _, err := zkConn(t, rec.ZooKeeper, "plugdb:e2e-secret").Get(base + "/meta"); err != nil || !strings.Contains(string(data), `"partitions":2`) {
		t.Errorf("read of %s/meta with the credentials: %q, %v", base, data, err)
	}

	// A node without the credentials is refused, saying what to set.
	node := runPlugdbEnv(t, time.Minute, []string{"PLUGDB_ZOOKEEPER_SERVERS=" + strings.Join(rec.ZooKeeper, ",")},
		"node", "--config", open, "--partition", "0", "--addr", testutil.FreeAddr(t), "--data", t.TempDir())
	if node.code == 0 || !strings.Contains(node.stderr, "no credentials") || !strings.Contains(node.stderr, "zookeeper.auth_file") {
		t.Errorf("a node without the credentials: want a refusal naming zookeeper.auth_file\n%s", node)
	}
	t.Logf("a node without the credentials: %s", strings.TrimSpace(node.stderr))
}

// assertZooKeeperRefuses checks that ZooKeeper refuses a client without
// credentials to write or read the znodes of the cluster at base (with a
// partition 0 that has a leader).
func assertZooKeeperRefuses(t *testing.T, servers []string, base string) {
	t.Helper()
	anon := zkConn(t, servers, "")
	if _, err := anon.Create(base+"/intruder", nil, 0, zk.WorldACL(zk.PermAll)); !errors.Is(err, zk.ErrNoAuth) {
		t.Errorf("unauthenticated create under %s: %v, want %v", base, err, zk.ErrNoAuth)
	}
	if _, err := anon.Set(base+"/meta", []byte(`{"partitions":1}`), -1); !errors.Is(err, zk.ErrNoAuth) {
		t.Errorf("unauthenticated set of %s/meta: %v, want %v", base, err, zk.ErrNoAuth)
	}
	if err := anon.Delete(base+"/partitions/0/leader", -1); !errors.Is(err, zk.ErrNoAuth) {
		t.Errorf("unauthenticated delete of %s/partitions/0/leader: %v, want %v", base, err, zk.ErrNoAuth)
	}
	if _, _, err := anon.Get(base + "/partitions/0/leader"); !errors.Is(err, zk.ErrNoAuth) {
		t.Errorf("unauthenticated read of %s/partitions/0/leader: %v, want %v", base, err, zk.ErrNoAuth)
	}
}
