package cluster

// Nodes added to a running cluster, for `plugdb cluster reshard`: the nodes
// of the partitions a move adds.
//
// Ownership: the supervisor starts them, on request, as children of its own
// like the others. `plugdb cluster reshard` writes DIR/add-nodes.json (an
// AddNodesRequest) and sends the supervisor RequestSignal; the supervisor
// (ServeRequest) starts the nodes, records them in DIR/cluster.json, and
// answers in DIR/add-nodes.result.json. So every process of the cluster has
// one owner and one way to end: Ctrl-C of `plugdb cluster up`, `plugdb
// cluster down` (which signals the supervisor and needs no change) and the
// supervisor's death (Pdeathsig) stop the new nodes as they stop the others,
// in the same order (router, nodes, then ZooKeeper: a node leaves its
// election while ZooKeeper still runs), and the supervisor reports a new node
// that dies as it reports any child. The other way — the reshard command
// starting the nodes itself and `cluster down` also stopping recorded
// processes the supervisor did not start — would leave them running after a
// Ctrl-C of `cluster up`, stop them only after ZooKeeper, and have two
// writers of the record.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/plugdb/plugdb/core/config"
)

// RequestSignal is the signal that tells a supervisor a request waits in its
// cluster folder. Its default action ends a process: it is sent only to a
// supervisor whose record says it serves requests (Record.Requests).
const RequestSignal = syscall.SIGUSR1

const (
	requestFile = "add-nodes.json"
	resultFile  = "add-nodes.result.json"
)

// ErrNotRunning is wrapped by RequestNodes's error when no cluster runs from
// the folder.
var ErrNotRunning = errors.New("no cluster is running")

// AddNodesRequest asks a cluster's supervisor to start the nodes of more
// partitions of a keyspace.
type AddNodesRequest struct {
	// ID tells the answer to this request apart from an older one.
	ID string `json:"id"`
	// Keyspace is the keyspace ("": the default one).
	Keyspace string `json:"keyspace,omitempty"`
	// Partitions is the partition count to run nodes for: the supervisor starts
	// nodes.replicas nodes of each partition from the keyspace's configured
	// count up to Partitions-1 that has none running.
	Partitions int `json:"partitions"`
	// Retire asks instead to stop the nodes of the partitions from
	// Partitions on, which a move to fewer partitions retired (RetireNodes).
	Retire bool `json:"retire,omitempty"`
}

// addNodesResult is the supervisor's answer.
type addNodesResult struct {
	ID string `json:"id"`
	// Nodes are the nodes of the requested partitions, started now or running
	// already.
	Nodes []Process `json:"nodes"`
	Error string    `json:"error,omitempty"`
}

// ServeRequest serves the request waiting in the cluster folder, if any (the
// caller calls it when RequestSignal arrives, from the goroutine that calls
// Stop): it starts the nodes it asks for, records them, and answers. It
// returns an error only when it could not answer.
func (c *Cluster) ServeRequest() error {
	path := filepath.Join(c.dir, requestFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // a stray signal
	}
	if err != nil {
		return err
	}
	var req AddNodesRequest
	res := addNodesResult{}
	if err := json.Unmarshal(b, &req); err != nil {
		res.Error = fmt.Sprintf("%s: %v", path, err)
	} else {
		res.ID = req.ID
		add := c.AddNodes
		if req.Retire {
			add = c.RetireNodes
		}
		nodes, err := add(req.Keyspace, req.Partitions)
		res.Nodes = nodes
		if err != nil {
			res.Error = err.Error()
		}
	}
	out, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(c.dir, resultFile+".tmp")
	if err := os.WriteFile(tmp, append(out, '\n'), 0o644); err != nil {
		return fmt.Errorf("answer the request: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(c.dir, resultFile)); err != nil {
		return fmt.Errorf("answer the request: %w", err)
	}
	return os.Remove(path)
}

// AddNodes starts nodes.replicas nodes of each partition of keyspace from its
// configured count up to partitions-1 that has none running, as children of
// the cluster (stopped, monitored and recorded like the others), on free
// loopback ports after the highest port the record holds, and returns the
// nodes of those partitions. It does not wait for them: a node of a
// partition the keyspace's layout does not have yet joins empty (a reshard
// moves keys to it).
func (c *Cluster) AddNodes(keyspace string, partitions int) ([]Process, error) {
	k, err := c.requestKeyspace(keyspace)
	if err != nil {
		return nil, err
	}
	if partitions < k.Partitions || partitions > config.MaxPartitions {
		return nil, fmt.Errorf("%d partitions: allowed values are %d..%d", partitions, k.Partitions, config.MaxPartitions)
	}
	running := map[string]*child{}
	total := 0
	for _, n := range c.nodes {
		if !n.exited() {
			running[n.name] = n
			total++
		}
	}
	from := k.Partitions
	env := withNodeProcs(c.env, runtime.NumCPU(), total+(partitions-from)*k.Nodes.Replicas)
	var out []Process
	for p := from; p < partitions; p++ {
		for r := 0; r < k.Nodes.Replicas; r++ {
			if n, ok := running[nodeName(k.Keyspace, p, r)]; ok {
				out = append(out, n.process())
			}
		}
	}
	started, err := c.startNodes(k, from, partitions, env, func(name string) bool { return running[name] == nil })
	for _, n := range started {
		c.monitors.Add(1)
		go c.monitor(n)
		c.record(n)
		out = append(out, n.process())
	}
	if err != nil {
		return out, errors.Join(err, c.save())
	}
	if len(started) > 0 {
		names := make([]string, len(started))
		for i, n := range started {
			names[i] = fmt.Sprintf("%s %s (pid %d)", n.name, n.addr, n.id.PID)
		}
		c.printf("plugdb cluster: started for keyspace %s's partitions %d..%d: %s\n", keyspaceName(k.Keyspace), from, partitions-1, strings.Join(names, ", "))
	}
	return out, c.save()
}

// requestKeyspace returns the config of the keyspace a request names (""
// or "default": the default one), refusing while the cluster stops.
func (c *Cluster) requestKeyspace(keyspace string) (config.Config, error) {
	select {
	case <-c.stopped:
		return config.Config{}, errors.New("the cluster is stopping")
	default:
	}
	if keyspace == config.DefaultKeyspace {
		keyspace = ""
	}
	return c.opts.Config.ForKeyspace(keyspace)
}

// RetiredDir is where the supervisor moves the data folders of retired
// nodes, under the cluster folder.
const RetiredDir = "retired"

// RetireNodes stops the nodes of keyspace's partitions from partitions on
// (a move to fewer partitions retired them: they hold no key), removes them
// from the record, moves their data folders to DIR/retired/ (with the time
// in their names), and returns the nodes it stopped. Started again, the
// cluster does not start them: their data folders are gone from DIR/data
// (grownPartitions).
func (c *Cluster) RetireNodes(keyspace string, partitions int) ([]Process, error) {
	k, err := c.requestKeyspace(keyspace)
	if err != nil {
		return nil, err
	}
	if partitions < k.Partitions {
		// The config's partitions are the local cluster's floor: `cluster
		// up` starts their nodes at fixed ports whatever the layout.
		return nil, fmt.Errorf("retire nodes from partition %d: allowed values are %d..%d (keyspace %s's config has %d partitions, the fewest a local cluster runs)",
			partitions, k.Partitions, config.MaxPartitions-1, keyspaceName(k.Keyspace), k.Partitions)
	}
	// retired reports whether name is a node of a retired partition.
	retired := func(name string) bool {
		p, _, ok := nodeOf(k.Keyspace, name)
		return ok && p >= partitions
	}
	var stopped []*child
	c.mu.Lock()
	kept := c.nodes[:0]
	for _, n := range c.nodes {
		if retired(n.name) {
			stopped = append(stopped, n)
		} else {
			kept = append(kept, n)
		}
	}
	c.nodes = kept
	c.rec.Children = slices.DeleteFunc(c.rec.Children, func(p Process) bool { return retired(p.Name) })
	c.mu.Unlock()
	var out []Process
	var errs []error
	stamp := time.Now().UTC().Format("20060102T150405")
	// Together, as Stop stops nodes: a replica may wait on its peers.
	var wg sync.WaitGroup
	for _, n := range stopped {
		wg.Go(func() { n.stop(c.opts.StopGrace) })
	}
	wg.Wait()
	for _, n := range stopped {
		out = append(out, n.process())
		p, r, _ := nodeOf(k.Keyspace, n.name)
		from := dataDir(c.dir, k.Keyspace, p, r)
		rel, err := filepath.Rel(filepath.Join(c.dir, "data"), from)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		to := filepath.Join(c.dir, RetiredDir, rel+"-"+stamp)
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := os.Rename(from, to); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("move %s's data folder aside: %w", n.name, err))
		}
	}
	if len(stopped) > 0 {
		names := make([]string, len(stopped))
		for i, n := range stopped {
			names[i] = fmt.Sprintf("%s %s (pid %d)", n.name, n.addr, n.id.PID)
		}
		c.printf("plugdb cluster: stopped the nodes of keyspace %s's retired partitions %d and above: %s; their data is in %s\n",
			keyspaceName(k.Keyspace), partitions, strings.Join(names, ", "), filepath.Join(c.dir, RetiredDir))
	}
	return out, errors.Join(append(errs, c.save())...)
}

// nodeOf returns the partition and replica of keyspace ks's node named
// name (nodeName's inverse); ok is false for a name that is not one.
func nodeOf(ks, name string) (p, r int, ok bool) {
	prefix := "node-"
	if ks != "" {
		prefix += ks + "-"
	}
	rest, found := strings.CutPrefix(name, prefix)
	if !found {
		return 0, 0, false
	}
	if _, err := fmt.Sscanf(rest, "p%d-r%d", &p, &r); err != nil || nodeName(ks, p, r) != name {
		return 0, 0, false
	}
	return p, r, true
}

// dataDir is the data folder of replica r of keyspace ks's partition p.
func dataDir(dir, ks string, p, r int) string {
	if ks != "" {
		return filepath.Join(dir, "data", "keyspaces", ks, fmt.Sprintf("p%d-r%d", p, r))
	}
	return filepath.Join(dir, "data", fmt.Sprintf("p%d-r%d", p, r))
}

// startNodes starts the nodes of partitions from..to-1 of keyspace k whose
// name start accepts, on free loopback ports after the highest port the
// record holds, and appends them to c.nodes; the caller records and monitors
// them. It returns those it started, also when it fails on one.
func (c *Cluster) startNodes(k config.Config, from, to int, env []string, start func(name string) bool) ([]*child, error) {
	used := map[int]bool{}
	highest := 0
	c.mu.Lock()
	for _, a := range append([]string{c.rec.GRPC, c.rec.HTTP}, c.rec.ZooKeeper...) {
		used[port(a)] = true
	}
	for _, p := range c.rec.Children {
		used[port(p.Addr)] = true
		if strings.HasPrefix(p.Name, "node-") {
			highest = max(highest, port(p.Addr))
		}
	}
	metrics := newMetricsPorts(k, c.rec.Children, used)
	cfgFile := c.rec.Config
	c.mu.Unlock()
	if highest == 0 {
		highest = k.Nodes.BasePort - 1
	}
	var base []string
	if cfgFile != "" {
		base = []string{"--config", cfgFile}
	}
	var started []*child
	next := highest + 1
	for p := from; p < to; p++ {
		for r := 0; r < k.Nodes.Replicas; r++ {
			name := nodeName(k.Keyspace, p, r)
			if !start(name) {
				continue
			}
			var err error
			if next, err = freePort(next, used); err != nil {
				return started, err
			}
			addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(next))
			used[next] = true
			data := dataDir(c.dir, k.Keyspace, p, r)
			// A partition the layout may not have yet (the move is about to
			// add it, or an aborted one did not).
			args := append(append([]string{"node"}, base...), "--partition", strconv.Itoa(p), "--addr", addr, "--new-partition")
			if k.Keyspace != "" {
				args = append(args, "--keyspace", k.Keyspace)
			}
			margs, err := metrics.next()
			if err != nil {
				return started, err
			}
			args = append(append(args, "--data", data), margs...)
			n, err := c.spawn(name, addr, filepath.Join(c.dir, "logs", name+".log"), args, env)
			if err != nil {
				return started, err
			}
			n.id = settledID(n)
			c.nodes = append(c.nodes, n)
			started = append(started, n)
		}
	}
	return started, nil
}

// settledID identifies a child just started once /proc shows its own
// command line — while exec runs it is empty or the supervisor's, and Alive
// would never match it — waiting at most 2s; failing that, the recorded
// command line is the one it was given, as exec gives it.
func settledID(ch *child) procID {
	for range 200 {
		id, _, err := identify(ch.id.PID)
		if err != nil {
			break
		}
		if slices.Equal(id.Cmdline, ch.cmd.Args) {
			return id
		}
		time.Sleep(10 * time.Millisecond) // exec is under way
	}
	id := ch.id
	id.Cmdline = slices.Clone(ch.cmd.Args)
	return id
}

// grownPartitions returns the partition count of keyspace k that its data
// folders in dir show: one more than the highest partition with a replica's
// folder (DIR/data/p<p>-r<r>, DIR/data/keyspaces/K/… for keyspace K) when a
// move added partitions (plugdb cluster reshard), else k.Partitions.
func grownPartitions(dir string, k config.Config) int {
	data := filepath.Join(dir, "data")
	if k.Keyspace != "" {
		data = filepath.Join(data, "keyspaces", k.Keyspace)
	}
	n := k.Partitions
	ents, _ := os.ReadDir(data)
	for _, e := range ents {
		var p, r int
		if _, err := fmt.Sscanf(e.Name(), "p%d-r%d", &p, &r); err == nil && e.IsDir() && e.Name() == fmt.Sprintf("p%d-r%d", p, r) && p < config.MaxPartitions {
			n = max(n, p+1)
		}
	}
	return n
}

// keyspaceName is ks, or the default keyspace's name for "".
func keyspaceName(ks string) string {
	if ks == "" {
		return config.DefaultKeyspace
	}
	return ks
}

// port is addr's port, 0 if it has none.
func port(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

// freePort returns the first port from p on that used does not hold and
// that 127.0.0.1 can listen on now, trying at most 1000.
func freePort(p int, used map[int]bool) (int, error) {
	for end := p + 1000; p < end && p <= 65535; p++ {
		if used[p] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		l.Close()
		return p, nil
	}
	return 0, fmt.Errorf("no free port on 127.0.0.1 from %d on", p)
}

// RequestNodes asks the supervisor of the cluster running from dir to start
// the nodes req names (AddNodes) and returns the nodes of those partitions.
// It fails with an error wrapping ErrNotRunning when no cluster runs from
// dir.
func RequestNodes(ctx context.Context, dir string, req AddNodesRequest) ([]Process, error) {
	rec, err := ReadRunning(dir)
	if err != nil {
		return nil, err
	}
	abs, sup := rec.Dir, rec.Supervisor
	if !rec.Requests {
		return nil, fmt.Errorf("the supervisor of the cluster in %s (pid %d) does not start nodes on request (an older plugdb started it): restart it with `plugdb cluster down --dir %s` and `plugdb cluster up --dir %s`",
			dir, sup.PID, dir, dir)
	}
	if req.ID == "" {
		req.ID = fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano())
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	path, answer := filepath.Join(abs, requestFile), filepath.Join(abs, resultFile)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("another request to start nodes waits in %s (another `plugdb cluster reshard`?): remove it if none runs", path)
	}
	if err != nil {
		return nil, fmt.Errorf("request nodes: %w", err)
	}
	defer os.Remove(path) // the supervisor removes it once it answered
	_, werr := f.Write(b)
	if err := errors.Join(werr, f.Close()); err != nil {
		return nil, fmt.Errorf("request nodes: %w", err)
	}
	if err := syscall.Kill(sup.PID, RequestSignal); err != nil {
		return nil, fmt.Errorf("signal the supervisor %s: %w", sup, err)
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if b, err := os.ReadFile(answer); err == nil {
			var res addNodesResult
			if err := json.Unmarshal(b, &res); err == nil && res.ID == req.ID {
				os.Remove(answer)
				if res.Error != "" {
					return res.Nodes, fmt.Errorf("the supervisor could not start the nodes: %s", res.Error)
				}
				return res.Nodes, nil
			}
		}
		if !sup.Alive() {
			return nil, fmt.Errorf("%w from %s: its supervisor (pid %d) ended before it answered", ErrNotRunning, dir, sup.PID)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("the supervisor %s did not answer the request in %s: %w", sup, path, ctx.Err())
		case <-tick.C:
		}
	}
}

// ReadRunning returns the record of the cluster running from dir, once it is
// ready; its error wraps ErrNotRunning when no cluster runs from dir.
func ReadRunning(dir string) (Record, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Record{}, fmt.Errorf("cluster folder %s: %w", dir, err)
	}
	rec, err := ReadRecord(abs)
	if errors.Is(err, fs.ErrNotExist) {
		return Record{}, fmt.Errorf("%w from %s (no %s): start one with `plugdb cluster up --dir %s`", ErrNotRunning, dir, RecordFile, dir)
	}
	if err != nil {
		return Record{}, err
	}
	rec.Dir = abs
	if sup := rec.Supervisor; !sup.Alive() {
		return Record{}, fmt.Errorf("%w from %s: its supervisor (pid %d) is gone; `plugdb cluster down --dir %s` stops what is left, `plugdb cluster up --dir %s` starts it again",
			ErrNotRunning, dir, sup.PID, dir, dir)
	}
	if !rec.Ready {
		return Record{}, fmt.Errorf("the cluster in %s is still starting: try again once `plugdb cluster up` printed \"ready\"", dir)
	}
	return rec, nil
}
