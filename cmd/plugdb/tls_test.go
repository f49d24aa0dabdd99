package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/plugdb/plugdb/core/cluster"
	"github.com/plugdb/plugdb/internal/testutil"
	statementv1 "github.com/plugdb/plugdb/proto/plugdb/statement/v1"
	"github.com/plugdb/plugdb/tlsconfig"
)

// TestClusterTLS runs `plugdb cluster up --tls` (a real ZooKeeper, a
// router, 1 partition × 2 replicas with the statement replicator, every
// engine in its plugin process) and checks that it serves a client with a
// certificate of its CA, over gRPC and REST, that a write reaches the
// follower (node → node replication under mutual TLS: semi-sync with two
// replicas waits for the follower), that the router, a node and a
// replicator refuse a plaintext client and a client whose certificate
// another CA signed, and that `plugdb cluster reshard` moves the keyspace
// to 2 partitions over TLS (new nodes with certificates of their own).
func TestClusterTLS(t *testing.T) {
	t.Parallel()
	// Four node ports: the two of cluster up and the two after them, where
	// cluster reshard starts the second partition's nodes.
	zk, nodes := testutil.FreePortRun(t, 1), testutil.FreePortRun(t, 4)
	grpcAddr, httpAddr := testutil.FreeAddr(t), testutil.FreeAddr(t)
	cfg := filepath.Join(t.TempDir(), "cluster.yaml")
	text := fmt.Sprintf(`cluster: tls
partitions: 1
zookeeper: {servers: ["127.0.0.1:%d"], session_timeout: 2s}
engine: {plugin: rowfile, options: {sync: batch}}
replicator: {plugin: statement, options: {ack: semi-sync}}
router: {grpc: "%s", http: "%s"}
nodes: {replicas: 2, base_port: %d}
`, zk, grpcAddr, httpAddr, nodes)
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "cluster")
	up := startClusterUp(t, dir, cfg, 1, "--tls")

	rec, err := cluster.ReadRecord(dir)
	if err != nil || rec.TLS == nil {
		t.Fatalf("record: %+v, %v; want the clients' TLS files", rec.TLS, err)
	}
	flags := strings.Fields(rec.TLS.Flags())
	if want := "router gRPC  " + grpcAddr + "   (plugdb status --addr " + grpcAddr + " " + rec.TLS.Flags() + ")"; !strings.Contains(up.stdout.String(), want) {
		t.Errorf("cluster up does not print %q\n%s", want, up.output())
	}
	if !strings.Contains(up.stdout.String(), "router REST  https://"+httpAddr) {
		t.Errorf("cluster up does not print the REST endpoint as https\n%s", up.output())
	}

	// A client of another CA: its certificate is foreign, and it trusts the
	// cluster's CA, so only its own certificate is wrong.
	otherCA, err := tlsconfig.WriteCA(t.TempDir(), "other")
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := otherCA.IssueFiles(t.TempDir(), "foreign", tlsconfig.LocalHosts())
	if err != nil {
		t.Fatal(err)
	}
	foreign.CA = rec.TLS.CA
	foreignFlags := []string{"--cacert", foreign.CA, "--cert", foreign.Cert, "--key", foreign.Key}

	// The right certificates: a write, and a read from the router.
	cli := func(args ...string) cliResult { return runCLI(t, append(args, flags...)...) }
	expectCLI(t, cli("put", "user:1", "ada", "--addr", grpcAddr, "--timeout", "20s"), 0, "", "")
	expectCLI(t, cli("get", "user:1", "--addr", grpcAddr), 0, "ada\n", "")

	// The write reached the follower: read it there, stale.
	follower := ""
	st := cli("status", "--addr", grpcAddr, "-o", "json")
	if st.code != 0 {
		t.Fatalf("status: %v", st)
	}
	for _, m := range regexp.MustCompile(`"addr":\s*"([^"]+)",\s*"role":\s*"follower"`).FindAllStringSubmatch(st.stdout, -1) {
		follower = m[1]
	}
	if follower == "" {
		for _, m := range regexp.MustCompile(`"role":\s*"follower",\s*"addr":\s*"([^"]+)"`).FindAllStringSubmatch(st.stdout, -1) {
			follower = m[1]
		}
	}
	if follower == "" {
		t.Fatalf("no follower in status:\n%s", st.stdout)
	}
	var got cliResult
	if !testutil.Eventually(t.Context(), 20*time.Second, func() bool {
		got = cli("get", "user:1", "--node", follower, "--consistency", "stale")
		return got.code == 0 && got.stdout == "ada\n"
	}) {
		t.Fatalf("follower %s does not serve the write: %v", follower, got)
	}

	// Plaintext and foreign clients of the router and of a node are refused.
	for _, target := range [][]string{{"--addr", grpcAddr}, {"--node", follower, "--consistency", "stale"}} {
		r := runCLI(t, append([]string{"get", "user:1"}, target...)...)
		if r.code != 2 || !strings.Contains(r.stderr, "does it serve TLS?") {
			t.Errorf("plaintext get %v: %v; want exit 2, refused", target, r)
		}
		r = runCLI(t, append(append([]string{"get", "user:1"}, target...), foreignFlags...)...)
		if r.code != 2 || !strings.Contains(r.stderr, "TLS handshake") {
			t.Errorf("foreign-CA get %v: %v; want exit 2, refused", target, r)
		}
	}

	// REST: https with the client's certificate; plaintext and foreign refused.
	client, err := tlsconfig.Load(tlsconfig.Files{CA: rec.TLS.CA, Cert: rec.TLS.Cert, Key: rec.TLS.Key})
	if err != nil {
		t.Fatal(err)
	}
	foreignCreds, err := tlsconfig.Load(foreign)
	if err != nil {
		t.Fatal(err)
	}
	if body, err := httpsGet("https://"+httpAddr+"/v1/kv/user:1", client.ClientConfig()); err != nil || !strings.Contains(body, `"value":"ada"`) {
		t.Errorf("REST with the client's certificate: %q, %v", body, err)
	}
	if body, err := httpsGet("http://"+httpAddr+"/v1/kv/user:1", nil); err == nil && !strings.HasPrefix(body, "400 ") {
		t.Errorf("REST plaintext served: %q", body)
	}
	if body, err := httpsGet("https://"+httpAddr+"/v1/kv/user:1", foreignCreds.ClientConfig()); err == nil {
		t.Errorf("REST with a foreign certificate served: %q", body)
	}

	// The replicators' peer port (node → node) refuses strangers too: its
	// address is in the node's log.
	log, err := os.ReadFile(filepath.Join(dir, "logs", "node-p0-r0.log"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`replicator statement at (\S+),`).FindSubmatch(log)
	if m == nil {
		t.Fatalf("no replicator address in the node's log:\n%s", log)
	}
	repl := string(m[1])
	var plaintext *tlsconfig.Creds
	for name, opt := range map[string]grpc.DialOption{"plaintext": plaintext.DialOption(), "foreign": foreignCreds.DialOption()} {
		if err := fetchPeer(repl, opt); status.Code(err) != codes.Unavailable {
			t.Errorf("replicator %s, %s client: %v; want refused (Unavailable)", repl, name, err)
		}
	}
	if err := fetchPeer(repl, client.DialOption()); status.Code(err) != codes.InvalidArgument {
		t.Errorf("replicator %s, the cluster's certificate: %v; want its answer (InvalidArgument: no such partition)", repl, err)
	}

	// A move to 2 partitions: the supervisor starts the new nodes with
	// certificates of their own, the move reaches the nodes with the
	// clients' certificate, and the router then serves from both.
	for i := range 20 {
		expectCLI(t, cli("put", fmt.Sprintf("k%02d", i), "v", "--addr", grpcAddr, "--timeout", "20s"), 0, "", "")
	}
	if res := runPlugdb(t, 2*time.Minute, "cluster", "reshard", "--dir", dir, "--partitions", "2"); res.code != 0 {
		t.Fatalf("cluster reshard over TLS: %v\n%s", res, up.output())
	}
	for i := range 20 {
		expectCLI(t, cli("get", fmt.Sprintf("k%02d", i), "--addr", grpcAddr, "--timeout", "20s"), 0, "v\n", "")
	}
	if _, err := os.Stat(filepath.Join(dir, cluster.TLSDir, "node-p1-r0.crt")); err != nil {
		t.Errorf("no certificate of a node the move added: %v", err)
	}
}

// fetchPeer makes one Fetch call to a statement replicator's peer service,
// for a partition it does not serve: the replicator answers InvalidArgument
// and changes nothing.
func fetchPeer(addr string, opt grpc.DialOption) error {
	conn, err := grpc.NewClient(addr, opt)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = statementv1.NewPeerClient(conn).Fetch(ctx, &statementv1.FetchRequest{Partition: 1 << 20})
	return err
}

// httpsGet GETs url with cfg (nil: plaintext or default TLS) and returns
// "STATUS BODY".
func httpsGet(url string, cfg *tls.Config) (string, error) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.Status + " " + string(b), err
}
