// Package cluster runs plugdb's default cluster on one machine, as `plugdb
// cluster up` does: a supervisor that starts ZooKeeper (through core/zkserver),
// a router and partitions × nodes.replicas nodes of every keyspace as its
// child processes (a keyspace's nodes get --keyspace and the ports
// config.ForKeyspace gives them), waits until every partition of every
// keyspace has a leader, and stops them all in order. The
// cluster folder holds everything:
//
//	DIR/zookeeper/          ZooKeeper's data (and logs)
//	DIR/zookeeper.auth      the ZooKeeper credentials the children get, unless the
//	                        config names a file (AuthFile)
//	DIR/data/p<p>-r<r>/     the data folder of replica r of partition p
//	DIR/data/keyspaces/K/p<p>-r<r>/  the same in keyspace K (not the default one)
//	DIR/logs/<name>.log     each child's stdout and stderr (router.log, node-p0-r1.log,
//	                        node-K-p0-r1.log in keyspace K)
//	DIR/cluster.json        the record of the running cluster (Record)
//	DIR/cluster.lock        held by the running supervisor
//	DIR/tls/                with Options.TLS: the CA, each child's certificate and
//	                        the clients' (tls.go)
//
// A child that dies while the cluster runs is reported (name, exit status,
// last log lines) and left down: the supervisor is no process manager, and a
// test that kills a leader expects it to stay down until it restarts it.
//
// Every child runs in its own process group (a Ctrl-C in the terminal reaches
// the supervisor alone, which stops the children in order: router, nodes,
// ZooKeeper). If the supervisor itself is killed with SIGKILL, the kernel
// sends SIGTERM to the router and the nodes (Pdeathsig, Linux) and
// core/zkserver's servers get SIGKILL; Down then stops whatever is left.
//
// Down stops a cluster from another process, by the PIDs in the record, after
// checking that each PID is still the recorded process.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/plugdb/plugdb/core/config"
	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
)

// Ensemble is a running ZooKeeper ensemble, as core/zkserver starts it.
type Ensemble interface {
	// Servers are the client addresses, host:port.
	Servers() []string
	// PIDs are the server processes.
	PIDs() []int
	// LogFile is server i's log file (0-based).
	LogFile(i int) string
	// Stop stops every server and waits for them.
	Stop() error
}

// StartZooKeeperFunc starts a ZooKeeper ensemble with one server per client
// address, its data (and logs) under dir.
type StartZooKeeperFunc func(ctx context.Context, dir string, clients []string) (Ensemble, error)

// Options are what Start needs.
type Options struct {
	// Config is the cluster's configuration, validated.
	Config config.Config
	// ConfigFile is the file the router and the nodes get with --config
	// (made absolute); empty: none, they use the built-in defaults and Env.
	ConfigFile string
	// Dir is the cluster folder.
	Dir string
	// Binary is the plugdb executable the router and the nodes run.
	Binary string
	// ZooKeepers is 1 or 3. With 1, the server listens on the first of
	// zookeeper.servers; with 3, the ensemble listens on that server's port
	// and the two ports after it (2181, 2182, 2183).
	ZooKeepers int
	// Env is the children's environment (os.Environ()); PLUGDB_ZOOKEEPER_SERVERS
	// is set in it to the ensemble's addresses.
	Env []string
	// Out receives progress, the endpoints, and reports of children that die.
	Out io.Writer
	// StartZooKeeper starts ZooKeeper; nil: core/zkserver.
	StartZooKeeper StartZooKeeperFunc
	// ReadyTimeout bounds the wait for a leader in every partition; 0: 2 minutes.
	ReadyTimeout time.Duration
	// ServeRequests says the caller serves requests to start nodes (a
	// RequestSignal handler calls ServeRequest): the record says so, and
	// `plugdb cluster reshard` may ask. The caller installs the handler
	// before Start.
	ServeRequests bool
	// StopGrace is how long a child gets to stop after SIGTERM before it is
	// killed; 0: 10s.
	StopGrace time.Duration
	// TLS makes the cluster serve mutual TLS with a throwaway CA in
	// DIR/tls and a certificate for each child and for clients (tls.go);
	// the config's tls block is then not used.
	TLS bool
}

// Cluster is a running cluster.
type Cluster struct {
	opts   Options
	dir    string
	lock   io.Closer
	zk     Ensemble
	router *child
	nodes  []*child
	env    []string    // the children's environment (childEnv), for AddNodes
	tls    *clusterTLS // nil: no certificates made (Options.TLS)
	mu     sync.Mutex  // guards rec and Out
	rec    Record
	// stopped is closed when Stop began: the monitors no longer report exits.
	stopped  chan struct{}
	stopOnce sync.Once
	stopErr  error
	monitors sync.WaitGroup
}

// ZooKeeperAddrs returns the client addresses of n (1 or 3) servers from
// the configured ones: the first server's, and for 3 the two ports after it.
func ZooKeeperAddrs(servers []string, n int) ([]string, error) {
	if n != 1 && n != 3 {
		return nil, fmt.Errorf("%d ZooKeeper servers: allowed are 1 or 3", n)
	}
	if len(servers) == 0 {
		return nil, errors.New("zookeeper.servers is empty: name the address ZooKeeper listens on, e.g. 127.0.0.1:2181")
	}
	host, port, err := net.SplitHostPort(servers[0])
	if err != nil {
		return nil, fmt.Errorf("zookeeper.servers %q: %v", servers[0], err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("zookeeper.servers %q: plugdb cluster up starts ZooKeeper on this machine, on loopback: use 127.0.0.1:PORT", servers[0])
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p+n-1 > 65535 {
		return nil, fmt.Errorf("zookeeper.servers %q: bad port for %d servers", servers[0], n)
	}
	out := make([]string, n)
	for i := range out {
		out[i] = net.JoinHostPort(host, strconv.Itoa(p+i))
	}
	return out, nil
}

// nodeName names replica r of partition p of keyspace ks: node-p<p>-r<r>
// in the default keyspace (ks ""), node-<ks>-p<p>-r<r> in another.
func nodeName(ks string, p, r int) string {
	if ks != "" {
		return fmt.Sprintf("node-%s-p%d-r%d", ks, p, r)
	}
	return fmt.Sprintf("node-p%d-r%d", p, r)
}

// keyspaceConfigs returns the config of each of cfg's keyspaces, the
// default one first (config.ForKeyspace: each has its own partitions and
// node ports).
func keyspaceConfigs(cfg config.Config) ([]config.Config, error) {
	var out []config.Config
	for _, name := range cfg.KeyspaceNames() {
		k, err := cfg.ForKeyspace(name)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

// Start prepares dir, starts ZooKeeper, the router and the nodes, and waits
// until every partition has a leader. On any failure it stops what it
// started and returns an error that quotes the failing child's last log lines.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 2 * time.Minute
	}
	if opts.StopGrace == 0 {
		opts.StopGrace = 10 * time.Second
	}
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	if opts.StartZooKeeper == nil {
		opts.StartZooKeeper = startZkserver
	}
	cfg := opts.Config
	clients, err := ZooKeeperAddrs(cfg.ZooKeeper.Servers, opts.ZooKeepers)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("cluster folder %s: %w", opts.Dir, err)
	}
	cfgFile := opts.ConfigFile
	if cfgFile != "" {
		if cfgFile, err = filepath.Abs(cfgFile); err != nil {
			return nil, fmt.Errorf("config file %s: %w", opts.ConfigFile, err)
		}
	}
	for _, d := range []string{dir, filepath.Join(dir, "zookeeper"), filepath.Join(dir, "logs"), filepath.Join(dir, "data")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("prepare cluster folder: %w", err)
		}
	}
	lock, err := lockFile(filepath.Join(dir, "cluster.lock"))
	if err != nil {
		return nil, err
	}
	if err := checkLeftovers(dir); err != nil {
		lock.Close()
		return nil, err
	}
	auth, err := clusterAuth(cfg, dir)
	if err != nil {
		lock.Close()
		return nil, err
	}
	self, _, err := identify(os.Getpid())
	if err != nil {
		self = procID{PID: os.Getpid()}
	}
	c := &Cluster{
		opts: opts, dir: dir, lock: lock, stopped: make(chan struct{}),
		rec: Record{Dir: dir, Config: cfgFile, GRPC: cfg.Router.GRPC, HTTP: cfg.Router.HTTP, ZooKeeper: clients, ZooKeeperAuth: auth,
			Supervisor: Process{Name: "supervisor", procID: self}, Requests: opts.ServeRequests},
	}
	if opts.TLS {
		if c.tls, err = prepareTLS(dir, cfg.Cluster); err != nil {
			return nil, errors.Join(err, c.Stop())
		}
		c.rec.TLS = &RecordTLS{CA: c.tls.client.CA, Cert: c.tls.client.Cert, Key: c.tls.client.Key}
	}
	if err := c.save(); err != nil {
		return nil, errors.Join(err, c.Stop())
	}
	if err := c.start(ctx, cfgFile, clients); err != nil {
		return nil, errors.Join(err, c.Stop())
	}
	return c, nil
}

func (c *Cluster) start(ctx context.Context, cfgFile string, clients []string) error {
	cfg, o := c.opts.Config, c.opts
	began := time.Now()
	c.printf("plugdb cluster: cluster %q in %s: ZooKeeper ×%d, router, %d partitions × %d replicas\n",
		cfg.Cluster, c.dir, len(clients), cfg.Partitions, cfg.Nodes.Replicas)
	if c.tls != nil {
		c.printf("  mutual TLS: CA and certificates in %s\n", c.tls.dir)
	}
	if len(cfg.Keyspaces) > 0 {
		ks, err := keyspaceConfigs(cfg)
		if err != nil {
			return err
		}
		parts := make([]string, len(ks))
		for i, k := range ks {
			name := k.Keyspace
			if name == "" {
				name = config.DefaultKeyspace
			}
			parts[i] = fmt.Sprintf("%s (%d partitions, %s, %s)", name, k.Partitions, k.Partitioner.Plugin, k.Replicator.Plugin)
		}
		c.printf("  keyspaces: %s\n", strings.Join(parts, ", "))
	}

	zkCtx, cancel := context.WithTimeout(ctx, o.ReadyTimeout)
	zk, err := o.StartZooKeeper(zkCtx, filepath.Join(c.dir, "zookeeper"), clients)
	cancel()
	if err != nil {
		return fmt.Errorf("start ZooKeeper on %s: %w", strings.Join(clients, ","), err)
	}
	c.zk = zk
	c.mu.Lock()
	c.rec.ZooKeeper = zk.Servers()
	for i, pid := range zk.PIDs() {
		id, _, err := identify(pid)
		if err != nil {
			id = procID{PID: pid}
		}
		addr := ""
		if i < len(c.rec.ZooKeeper) {
			addr = c.rec.ZooKeeper[i]
		}
		name := fmt.Sprintf("zookeeper-%d", i+1)
		// The server's log stays where zkserver writes it; DIR/logs links to it.
		link := filepath.Join(c.dir, "logs", name+".log")
		os.Remove(link)
		_ = os.Symlink(zk.LogFile(i), link)
		c.rec.Children = append(c.rec.Children, Process{Name: name, procID: id, Addr: addr, Log: zk.LogFile(i)})
	}
	c.mu.Unlock()
	if err := c.save(); err != nil {
		return err
	}
	c.printf("  zookeeper %s up after %v\n", strings.Join(zk.Servers(), ","), time.Since(began).Round(100*time.Millisecond))

	env := withAuthFile(childEnv(o.Env, zk.Servers()), c.rec.ZooKeeperAuth)
	c.env = env
	var base []string
	if cfgFile != "" {
		base = []string{"--config", cfgFile}
	}
	logDir := filepath.Join(c.dir, "logs")
	keyspaces, err := keyspaceConfigs(cfg)
	if err != nil {
		return err
	}
	nodes := 0
	for _, k := range keyspaces {
		nodes += k.Partitions * k.Nodes.Replicas
	}
	nodeEnv := withNodeProcs(env, runtime.NumCPU(), nodes)
	c.router, err = c.spawn("router", cfg.Router.GRPC, filepath.Join(logDir, "router.log"),
		append([]string{"router"}, base...), env)
	if err != nil {
		return err
	}
	c.record(c.router)
	for _, k := range keyspaces {
		for p := 0; p < k.Partitions; p++ {
			for r := 0; r < k.Nodes.Replicas; r++ {
				name, addr := nodeName(k.Keyspace, p, r), k.NodeAddr(p, r)
				data := filepath.Join(c.dir, "data", fmt.Sprintf("p%d-r%d", p, r))
				args := append(append([]string{"node"}, base...), "--partition", strconv.Itoa(p), "--addr", addr)
				if k.Keyspace != "" {
					data = filepath.Join(c.dir, "data", "keyspaces", k.Keyspace, fmt.Sprintf("p%d-r%d", p, r))
					args = append(args, "--keyspace", k.Keyspace)
				}
				args = append(append(args, "--data", data), metricsArgs(k.MetricsAddr(p, r))...)
				n, err := c.spawn(name, addr, filepath.Join(logDir, name+".log"), args, nodeEnv)
				if err != nil {
					return err
				}
				c.nodes = append(c.nodes, n)
				c.record(n)
			}
		}
	}
	// The partitions a move added (plugdb cluster reshard) are not in the
	// config: their data folders say which they are, and their nodes start
	// on the ports after the others, as they did when they were added.
	for _, k := range keyspaces {
		grown := grownPartitions(c.dir, k)
		if grown == k.Partitions {
			continue
		}
		started, err := c.startNodes(k, k.Partitions, grown, nodeEnv, func(string) bool { return true })
		for _, n := range started {
			c.record(n)
		}
		if err != nil {
			return err
		}
		c.printf("  keyspace %s: partitions %d..%d, which a move added, have data in %s: their nodes start too\n",
			keyspaceName(k.Keyspace), k.Partitions, grown-1, filepath.Join(c.dir, "data"))
	}
	if err := c.save(); err != nil {
		return err
	}

	st, err := c.waitReady(ctx, began)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.rec.Ready = true
	// Command lines are read again now that every process runs its own.
	for i, p := range c.rec.Children {
		if id, _, err := identify(p.PID); err == nil && id.Start == p.Start {
			c.rec.Children[i].Cmdline = id.Cmdline
		}
	}
	c.mu.Unlock()
	if err := c.save(); err != nil {
		return err
	}
	c.printEndpoints(st, time.Since(began))
	for _, ch := range c.children() {
		c.monitors.Add(1)
		go c.monitor(ch)
	}
	return nil
}

// childEnv is env with PLUGDB_ZOOKEEPER_SERVERS set to servers.
func childEnv(env, servers []string) []string {
	name := config.EnvName("zookeeper.servers")
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return append(out, name+"="+strings.Join(servers, ","))
}

// withNodeProcs is env with GOMAXPROCS set for a node (and, through its
// environment, its plugin processes) when env does not set it: the nodes
// share the machine's cpus, cpus/nodes each (at least 1). Every node runs
// three processes (itself, its engine, its replicator) of mostly short
// calls; with a P per cpu in each, the processes' schedulers wake one
// another's idle threads on every message (futex wake-ups, context
// switches), which on a 2-cpu machine with 6 nodes cost more than the work:
// puts went from about 1,100/s to 1,600/s and gets from 4,800/s to 6,500/s
// with one P per node (kvload, 64 clients). The router keeps every cpu.
func withNodeProcs(env []string, cpus, nodes int) []string {
	for _, kv := range env {
		if strings.HasPrefix(kv, "GOMAXPROCS=") {
			return env
		}
	}
	procs := max(1, cpus/max(1, nodes))
	return append(slices.Clip(env), "GOMAXPROCS="+strconv.Itoa(procs))
}

// children are the router and the nodes, in stop order.
func (c *Cluster) children() []*child {
	var out []*child
	if c.router != nil {
		out = append(out, c.router)
	}
	return append(out, c.nodes...)
}

func (c *Cluster) record(ch *child) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rec.Children = append(c.rec.Children, ch.process())
}

func (c *Cluster) save() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return writeRecord(c.dir, c.rec)
}

func (c *Cluster) printf(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fmt.Fprintf(c.opts.Out, format, args...)
}

// Record returns the cluster's record, as in its RecordFile.
func (c *Cluster) Record() Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.rec
	r.Children = append([]Process(nil), r.Children...)
	return r
}

// waitReady polls the router's Status until every partition of every
// keyspace has a leader; it returns each keyspace's status, the default
// keyspace's first.
func (c *Cluster) waitReady(ctx context.Context, began time.Time) ([]*plugdbv1.StatusResponse, error) {
	cfg := c.opts.Config
	keyspaces, err := keyspaceConfigs(cfg)
	if err != nil {
		return nil, err
	}
	creds, err := c.clientCreds()
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(cfg.Router.GRPC, creds.DialOption())
	if err != nil {
		return nil, fmt.Errorf("router %s: %w", cfg.Router.GRPC, err)
	}
	defer conn.Close()
	kv := plugdbv1.NewKVClient(conn)
	deadline := time.Now().Add(c.opts.ReadyTimeout)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	lastPrint := time.Now()
	progress := "waiting for the router on " + cfg.Router.GRPC
	// The first wait for leaders is printed at once (then once a second): a
	// cluster that has them a moment later still shows which it waited for.
	shownLeaders := false
	for {
		for _, ch := range c.children() {
			if ch.exited() {
				return nil, fmt.Errorf("%s exited while the cluster was starting (%s); its log %s ends with:\n%s",
					ch.name, ch.exitStatus(), ch.log, ch.tail(15))
			}
		}
		var sts []*plugdbv1.StatusResponse
		var waiting []string
		for _, k := range keyspaces {
			callCtx, cancel := context.WithTimeout(ctx, time.Second)
			st, err := kv.Status(callCtx, &plugdbv1.StatusRequest{Keyspace: k.Keyspace})
			cancel()
			if err != nil {
				waiting = nil
				break
			}
			sts = append(sts, st)
			// The router lists the partitions of the keyspace's layout,
			// which a move may have made other than the config's.
			n := len(st.GetPartitions())
			if n == 0 {
				n = k.Partitions
			}
			if missing := leaderless(st, n); len(missing) > 0 {
				text := partitionProgress(n, missing)
				if k.Keyspace != "" {
					text = "keyspace " + k.Keyspace + ": " + text
				}
				waiting = append(waiting, text)
			}
		}
		if len(sts) == len(keyspaces) {
			if len(waiting) == 0 {
				return sts, nil
			}
			progress = "waiting for leaders: " + strings.Join(waiting, "; ")
			if !shownLeaders {
				shownLeaders = true
				lastPrint = time.Time{}
			}
		}
		if time.Since(lastPrint) >= time.Second {
			c.printf("  [%ds] %s\n", int(time.Since(began).Seconds()), progress)
			lastPrint = time.Now()
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("not ready after %v: %s; see the logs in %s (router.log ends with:\n%s)",
				c.opts.ReadyTimeout, progress, filepath.Join(c.dir, "logs"), c.router.tail(10))
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("stopped while waiting for the cluster: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// leaderless returns the partitions 0..n-1 that have no leader in st.
func leaderless(st *plugdbv1.StatusResponse, n int) map[int]bool {
	led := map[int]bool{}
	for _, p := range st.GetPartitions() {
		for _, r := range p.GetReplicas() {
			if r.GetRole() == "leader" {
				led[int(p.GetPartition())] = true
			}
		}
	}
	missing := map[int]bool{}
	for p := 0; p < n; p++ {
		if !led[p] {
			missing[p] = true
		}
	}
	return missing
}

// partitionProgress is "partition 0 ok, partition 1 no leader yet".
func partitionProgress(n int, missing map[int]bool) string {
	parts := make([]string, n)
	for p := range parts {
		if missing[p] {
			parts[p] = fmt.Sprintf("partition %d no leader yet", p)
		} else {
			parts[p] = fmt.Sprintf("partition %d ok", p)
		}
	}
	return strings.Join(parts, ", ")
}

// StatusLine is one line describing st: each partition's leader and how many
// followers it has.
func StatusLine(st *plugdbv1.StatusResponse) string {
	parts := []string{fmt.Sprintf("cluster %s", st.GetCluster())}
	for _, p := range st.GetPartitions() {
		leader, followers := "no leader", 0
		for _, r := range p.GetReplicas() {
			if r.GetRole() == "leader" {
				leader = "leader " + r.GetAddr()
			} else {
				followers++
			}
		}
		parts = append(parts, fmt.Sprintf("partition %d %s + %d follower(s), epoch %d", p.GetPartition(), leader, followers, p.GetEpoch()))
	}
	return strings.Join(parts, "; ")
}

func (c *Cluster) printEndpoints(sts []*plugdbv1.StatusResponse, took time.Duration) {
	cfg := c.opts.Config
	var b strings.Builder
	scheme, flags, curl := c.endpointTLS()
	fmt.Fprintf(&b, "  router gRPC  %s   (plugdb status --addr %s%s)\n", cfg.Router.GRPC, cfg.Router.GRPC, flags)
	fmt.Fprintf(&b, "  router REST  %s%s/v1/kv/KEY%s\n", scheme, cfg.Router.HTTP, curl)
	if len(sts) > 1 {
		fmt.Fprintf(&b, "               %s%s/v1/keyspaces/NAME/kv/KEY\n", scheme, cfg.Router.HTTP)
	}
	fmt.Fprintf(&b, "  zookeeper    %s   (credentials: %s)\n", strings.Join(c.zk.Servers(), ","), c.rec.ZooKeeperAuth)
	fmt.Fprintf(&b, "  metrics      http://%s/metrics (router; nodes: below)\n", cfg.Router.HTTP)
	fmt.Fprintf(&b, "  status page  http://%s/ui/\n", cfg.Router.HTTP)
	width := 12
	for _, n := range c.nodes {
		width = max(width, len(n.name))
	}
	for _, n := range c.nodes {
		metrics := ""
		if m := n.metricsAddr(); m != "" {
			metrics = "metrics http://" + m + "/metrics, "
		}
		fmt.Fprintf(&b, "  %-*s %s   (%spid %d, log %s)\n", width, n.name, n.addr, metrics, n.cmd.Process.Pid, n.log)
	}
	for i, st := range sts {
		if i == 0 {
			fmt.Fprintf(&b, "status: %s\n", StatusLine(st))
			continue
		}
		fmt.Fprintf(&b, "status of keyspace %s: %s\n", c.opts.Config.KeyspaceNames()[i], StatusLine(st))
	}
	fmt.Fprintf(&b, "ready in %v; Ctrl-C or `plugdb cluster down --dir %s` stops it\n", took.Round(100*time.Millisecond), c.dir)
	c.printf("%s", b.String())
}

// monitor reports ch's exit unless the cluster is stopping. The child is left
// down.
func (c *Cluster) monitor(ch *child) {
	defer c.monitors.Done()
	select {
	case <-c.stopped:
		return
	case <-ch.done:
	}
	if ch.stopping.Load() {
		return
	}
	select {
	case <-c.stopped:
		return
	default:
	}
	c.printf("plugdb cluster: %s (%s, pid %d) exited: %s; it stays down (plugdb cluster up is no process manager). Its log %s ends with:\n%s\n",
		ch.name, ch.addr, ch.cmd.Process.Pid, ch.exitStatus(), ch.log, ch.tail(10))
}

// Stop stops the router, then the nodes, then ZooKeeper: SIGTERM, then
// SIGKILL after the grace period; it waits for all of them and removes the
// record. It may be called more than once.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		close(c.stopped)
		grace := c.opts.StopGrace
		if c.router != nil {
			c.router.stop(grace)
		}
		var wg sync.WaitGroup
		for _, n := range c.nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n.stop(grace)
			}()
		}
		wg.Wait()
		var errs []error
		if c.zk != nil {
			if err := c.zk.Stop(); err != nil {
				errs = append(errs, fmt.Errorf("stop ZooKeeper: %w", err))
			}
		}
		c.monitors.Wait()
		if err := removeRecord(c.dir); err != nil {
			errs = append(errs, err)
		}
		if c.lock != nil {
			c.lock.Close()
		}
		c.stopErr = errors.Join(errs...)
	})
	return c.stopErr
}

// checkLeftovers refuses a folder whose record names processes still running
// (a supervisor killed with SIGKILL leaves its children), and removes a stale
// record.
func checkLeftovers(dir string) error {
	rec, err := ReadRecord(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%v: remove it if no cluster runs from %s", err, dir)
	}
	var alive []string
	for _, p := range append([]Process{rec.Supervisor}, rec.Children...) {
		if p.Alive() {
			alive = append(alive, p.String())
		}
	}
	if len(alive) > 0 {
		return fmt.Errorf("a cluster started from %s is still running (%s): stop it with `plugdb cluster down --dir %s`",
			dir, strings.Join(alive, ", "), dir)
	}
	return removeRecord(dir)
}
