// Package router is the cluster's front door as an api.Backend: it places keys
// with the partitioner, finds each partition's leader (or a follower, for a
// stale read) in the topology it watches in ZooKeeper, forwards the request to
// that node over gRPC, and on "not leader" or an unreachable node refreshes the
// topology and retries within the request's deadline. A node refuses a key of
// another partition (api.WrongPartitionError); the router then refreshes and
// retries a bounded number of times before it surfaces the refusal.
//
// The router follows its keyspace's layout (partition count and
// partitioner) as reshards change it: it watches the keyspace's metadata in
// ZooKeeper and, at a flip, opens the new layout's partitioner and topology
// and swaps them in; a request placed under the old layout that a node
// refuses (the key moved: api.WrongPartition, or it is moving: api.Moving)
// is placed again under the new one and retried within its deadline.
package router

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"maps"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/plugdb/plugdb/core/api"
	"github.com/plugdb/plugdb/core/callstream"
	"github.com/plugdb/plugdb/core/coord"
	"github.com/plugdb/plugdb/core/partition"
	"github.com/plugdb/plugdb/engines"
	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
	"github.com/plugdb/plugdb/replicators"
	"github.com/plugdb/plugdb/tlsconfig"
)

// DefaultTimeout bounds a request that comes without a deadline.
const DefaultTimeout = 10 * time.Second

// Info describes the cluster for Status.
type Info struct {
	Cluster string
	// Keyspace is the keyspace the router serves ("" or api.DefaultKeyspace:
	// the default one): every request it forwards to a node names it, so a
	// node of another keyspace refuses it rather than serving it.
	Keyspace    string
	Engine      *plugdbv1.Plugin
	Partitioner *plugdbv1.Plugin
	Replicator  *plugdbv1.Plugin
	// Logger, if set, hears of the layouts the router moves to and of
	// failures to follow them.
	Logger hclog.Logger
	// TLS is how the router reaches the nodes: nil, plaintext.
	TLS *tlsconfig.Creds
}

// Router implements api.Backend over the cluster's nodes.
type Router struct {
	client *coord.Client
	open   OpenFunc
	info   Info
	next   atomic.Uint64 // spreads stale reads over followers
	sess   *sessions     // request ids of writes that come without one

	cur      atomic.Pointer[layout] // the keyspace's layout as last seen
	kick     chan struct{}          // asks follow to read the metadata now
	ctx      context.Context        // the layouts' lifetime: until Close
	stop     context.CancelFunc
	follower sync.WaitGroup
	closing  sync.Once

	mu      sync.Mutex
	conns   map[string]*grpc.ClientConn
	clients map[string]*callstream.Client // by node address, over conns
}

// New returns a router of the keyspace whose layout is meta (what
// coord.EnsureMeta or coord.ReadMeta returned: the recorded layout, not a
// config's), watching its topology through client until ctx ends or Close,
// placing keys with the partitioner open opens for it. It follows the
// keyspace's layout from then on, opening each new one's partitioner with
// open; it closes every partitioner it opened.
func New(ctx context.Context, client *coord.Client, meta coord.Meta, open OpenFunc, info Info) (*Router, error) {
	ctx, stop := context.WithCancel(ctx)
	l, err := openLayout(ctx, client, open, meta)
	if err != nil {
		stop()
		return nil, err
	}
	r := &Router{
		client: client, open: open, info: info, conns: map[string]*grpc.ClientConn{}, clients: map[string]*callstream.Client{},
		sess: newSessions(), kick: make(chan struct{}, 1), ctx: ctx, stop: stop,
	}
	r.cur.Store(l)
	r.follower.Go(func() { r.follow(ctx) })
	return r, nil
}

// Topology is the router's view of the cluster under its current layout
// (the one it replaces stops being updated at a flip).
func (r *Router) Topology() *coord.Topology { return r.cur.Load().top }

// Layout is the keyspace's layout the router currently places keys with.
func (r *Router) Layout() coord.Meta { return r.cur.Load().meta }

// Close stops following the layout and watching the topology, closes the
// partitioners it opened (a request still running closes its layout's when
// it ends) and the connections to the nodes.
func (r *Router) Close() error {
	r.closing.Do(func() {
		r.stop()
		r.follower.Wait()
		r.cur.Load().retire()
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for _, c := range r.clients {
		c.Close()
	}
	for _, c := range r.conns {
		errs = append(errs, c.Close())
	}
	r.conns = map[string]*grpc.ClientConn{}
	return errors.Join(errs...)
}

// Partitions is the number of partitions of the current layout.
func (r *Router) Partitions() int { return r.cur.Load().n }

// Locate asks the current layout's partitioner.
func (r *Router) Locate(ctx context.Context, keys [][]byte, out []int) error {
	l := r.acquire()
	defer l.release()
	if err := l.part.Locate(ctx, keys, out); err != nil {
		return fmt.Errorf("partitioner: %w", err)
	}
	return nil
}

// Range asks the partitioner which partitions a scan touches.
func (r *Router) Range(ctx context.Context, start, end []byte) ([]int, error) {
	l := r.acquire()
	defer l.release()
	ps, err := l.part.Range(ctx, start, end)
	if err != nil {
		return nil, fmt.Errorf("partitioner: %w", err)
	}
	return ps, nil
}

// kv returns the client of the node at addr: its reads and writes share one
// call stream (callstream), whatever the number of concurrent requests.
func (r *Router) kv(addr string) (plugdbv1.KVClient, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if kv, ok := r.clients[addr]; ok {
		return kv, nil
	}
	c, ok := r.conns[addr]
	if !ok {
		var err error
		// A node that restarts on its address must be reachable again
		// within a second, not after gRPC's default backoff (up to 2 min).
		c, err = grpc.NewClient(addr, r.info.TLS.DialOption(),
			grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
				MinConnectTimeout: time.Second}))
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", addr, err)
		}
		r.conns[addr] = c
	}
	kv := callstream.NewClient(c)
	r.clients[addr] = kv
	return kv, nil
}

func consistency(rd api.Read) plugdbv1.Consistency {
	if rd.Stale {
		return plugdbv1.Consistency_CONSISTENCY_STALE
	}
	return plugdbv1.Consistency_CONSISTENCY_STRONG
}

// Get reads from the leader, or a follower if rd allows.
func (r *Router) Get(ctx context.Context, p int, key []byte, rd api.Read) (engines.Row, error) {
	var row engines.Row
	err := r.call(ctx, p, [][]byte{key}, rd.Stale, func(ctx context.Context, kv plugdbv1.KVClient) error {
		resp, err := kv.Get(ctx, &plugdbv1.GetRequest{Key: key, Consistency: consistency(rd), Keyspace: r.info.Keyspace})
		if err != nil {
			return err
		}
		row = engines.Row{Key: resp.GetKey(), Value: resp.GetValue(), LSN: resp.GetLsn()}
		return nil
	})
	if status.Code(err) == codes.NotFound {
		return row, fmt.Errorf("%s: %w", status.Convert(err).Message(), engines.ErrNotFound)
	}
	return row, err
}

// Write sends writes to partition p's leader: one write as its own call (with
// its condition), several as a batch; either carries ack, which the leader
// serves, and a request id: id, or when it is zero one of the router's own
// (a client id of its own for the write's duration, with its next seq).
// Every attempt carries the same id, so the leader applies the write once
// however often it is sent, and a retried create or update answers what its
// first attempt did: any write is retried when its outcome is unknown.
func (r *Router) Write(ctx context.Context, p int, writes []partition.Write, ack replicators.Ack, id partition.RequestID) ([]uint64, error) {
	a := api.AckToProto(ack)
	if id.IsZero() {
		var s *session
		s, id = r.sess.take()
		defer r.sess.put(s)
	}
	rid := api.RequestIDToProto(id)
	var lsns []uint64
	keys := make([][]byte, len(writes))
	for i, w := range writes {
		keys[i] = w.Key
	}
	err := r.call(ctx, p, keys, false, func(ctx context.Context, kv plugdbv1.KVClient) error {
		if len(writes) == 1 {
			resp, err := writeOne(ctx, kv, writes[0], a, rid, r.info.Keyspace)
			if err != nil {
				return err
			}
			lsns = []uint64{resp.GetLsn()}
			return nil
		}
		req := &plugdbv1.BatchRequest{Ack: a, RequestId: rid, Keyspace: r.info.Keyspace}
		for _, w := range writes {
			if w.Cond != partition.Always {
				return fmt.Errorf("a batch of %d writes with conditions: %w", len(writes), engines.ErrInvalidArgument)
			}
			op := &plugdbv1.BatchOp{Op: plugdbv1.BatchOp_OP_PUT, Key: w.Key, Value: w.Value}
			if w.Op == engines.OpDelete {
				op = &plugdbv1.BatchOp{Op: plugdbv1.BatchOp_OP_DELETE, Key: w.Key}
			}
			req.Ops = append(req.Ops, op)
		}
		resp, err := kv.Batch(ctx, req)
		if err != nil {
			return err
		}
		lsns = resp.GetLsns()
		return nil
	})
	switch status.Code(err) {
	case codes.NotFound:
		return nil, fmt.Errorf("%s: %w", status.Convert(err).Message(), engines.ErrNotFound)
	case codes.AlreadyExists:
		return nil, fmt.Errorf("%s: %w", status.Convert(err).Message(), partition.ErrAlreadyExists)
	}
	return lsns, err
}

// writeOne sends one write to a node of keyspace ks.
func writeOne(ctx context.Context, kv plugdbv1.KVClient, w partition.Write, ack plugdbv1.Ack, id *plugdbv1.RequestId, ks string) (*plugdbv1.WriteResponse, error) {
	switch {
	case w.Op == engines.OpDelete && w.Cond == partition.MustExist:
		return kv.Delete(ctx, &plugdbv1.DeleteRequest{Key: w.Key, Ack: ack, RequestId: id, Keyspace: ks})
	case w.Op == engines.OpPut && w.Cond == partition.Always:
		return kv.Put(ctx, &plugdbv1.PutRequest{Key: w.Key, Value: w.Value, Ack: ack, RequestId: id, Keyspace: ks})
	case w.Op == engines.OpPut && w.Cond == partition.MustNotExist:
		return kv.Create(ctx, &plugdbv1.PutRequest{Key: w.Key, Value: w.Value, Ack: ack, RequestId: id, Keyspace: ks})
	case w.Op == engines.OpPut && w.Cond == partition.MustExist:
		return kv.Update(ctx, &plugdbv1.PutRequest{Key: w.Key, Value: w.Value, Ack: ack, RequestId: id, Keyspace: ks})
	case w.Op == engines.OpDelete && w.Cond == partition.Always:
		resp, err := kv.Batch(ctx, &plugdbv1.BatchRequest{Ops: []*plugdbv1.BatchOp{{Op: plugdbv1.BatchOp_OP_DELETE, Key: w.Key}}, Ack: ack, RequestId: id, Keyspace: ks})
		if err != nil {
			return nil, err
		}
		return &plugdbv1.WriteResponse{Lsn: resp.GetLsns()[0]}, nil
	}
	return nil, fmt.Errorf("write op %v with condition %v: %w", w.Op, w.Cond, engines.ErrInvalidArgument)
}

// Scan streams partition p's range from its leader (or a follower if rd
// allows). A scan is retried elsewhere only before its first row. A scan
// during which the keyspace's layout changes fails with a retryable
// Unavailable (errLayoutChangedScan): its partitions were those of the old
// layout, and the caller's merged scan must be placed again.
func (r *Router) Scan(ctx context.Context, p int, sr engines.ScanRange, rd api.Read) iter.Seq2[engines.Row, error] {
	return func(yield func(engines.Row, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		version := r.cur.Load().version
		var stream grpc.ServerStreamingClient[plugdbv1.KeyValue]
		var first *plugdbv1.KeyValue
		err := r.call(ctx, p, nil, rd.Stale, func(callCtx context.Context, kv plugdbv1.KVClient) error {
			if r.cur.Load().version != version {
				return errLayoutChangedScan
			}
			// The node refuses a scan placed under another layout than its
			// own (it would leave out the rows that moved): see core/node.
			ctx := metadata.AppendToOutgoingContext(ctx, api.LayoutHeader, strconv.FormatUint(version, 10))
			s, err := kv.Scan(ctx, &plugdbv1.ScanRequest{Start: sr.Start, End: sr.End, Limit: int64(sr.Limit), Consistency: consistency(rd), Keyspace: r.info.Keyspace})
			if err != nil {
				return err
			}
			kvRow, err := s.Recv()
			if err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			stream, first = s, kvRow
			return nil
		})
		if err != nil {
			yield(engines.Row{}, err)
			return
		}
		if first == nil && r.cur.Load().version != version {
			yield(engines.Row{}, errLayoutChangedScan)
			return
		}
		for kvRow := first; kvRow != nil; {
			if !yield(engines.Row{Key: kvRow.GetKey(), Value: kvRow.GetValue(), LSN: kvRow.GetLsn()}, nil) {
				return
			}
			next, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				if r.cur.Load().version != version {
					yield(engines.Row{}, errLayoutChangedScan)
				}
				return
			}
			if err != nil {
				yield(engines.Row{}, fmt.Errorf("partition %d: scan: %w", p, err))
				return
			}
			kvRow = next
		}
	}
}

// MaxWrongPartitionRetries bounds how many times a request refused by a node
// as belonging to another partition (api.WrongPartition) is sent again after
// the router refreshed its view, while no reshard is recorded (during one,
// the router waits for the new layout until the request's deadline); past it
// the node's FailedPrecondition reaches the client. Nothing was written by
// a refused request, so any request may be retried.
const MaxWrongPartitionRetries = 2

// The retryable errors of a request whose keys the layout's change scattered.
var (
	errLayoutChangedBatch = status.Error(codes.Unavailable, "the keyspace's layout changed during the batch; nothing was written: retry")
	errLayoutChangedScan  = status.Error(codes.Unavailable, "the keyspace's layout changed during the scan (a reshard flipped): retry the scan")
)

// call runs fn against partition p's leader (or a follower when stale), and
// on "not leader" or an unreachable node refreshes the view and tries again
// until the request's deadline (DefaultTimeout if it has none), stopping a
// little before it so the client hears why. On "moving" (a reshard fences
// the key) it backs off and tries again until the deadline. On "wrong
// partition" it places keys (the request's; nil for a scan) again under the
// current layout if p was computed under an older one, else refreshes the
// layout and tries again: until the deadline while a reshard is recorded,
// else at most MaxWrongPartitionRetries times. When the layout changes
// between attempts the keys are placed again (a scan fails with
// errLayoutChangedScan, a write whose keys now fall in several partitions
// with errLayoutChangedBatch: nothing was written).
func (r *Router) call(ctx context.Context, p int, keys [][]byte, stale bool, fn func(context.Context, plugdbv1.KVClient) error) error {
	l := r.acquire()
	defer func() { l.release() }()
	if p < 0 || p >= l.n {
		if keys == nil || p < 0 {
			return fmt.Errorf("partition %d: allowed partitions are 0..%d: %w", p, l.n-1, engines.ErrInvalidArgument)
		}
		// Placed under an older layout with more partitions.
		var err error
		if p, err = placeAll(ctx, l, keys); err != nil {
			return err
		}
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(DefaultTimeout)
	}
	budget := time.Until(deadline)
	giveUp := time.Now().Add(budget - min(budget/10, 500*time.Millisecond))
	backoff := 10 * time.Millisecond
	movingBackoff := 10 * time.Millisecond
	wrongPartition := 0 // refusals of the key by a node of another partition
	var lastErr error
	for attempt := 0; ; attempt++ {
		if r.cur.Load() != l {
			// The layout changed: place the keys again under the new one.
			next := r.acquire()
			l.release()
			l = next
			if keys == nil {
				return errLayoutChangedScan
			}
			var err error
			if p, err = placeAll(ctx, l, keys); err != nil {
				return err
			}
		}
		changed, replaced := l.top.Changed(), l.replaced
		wait, moving := backoff, false
		addr, err := r.target(l, p, stale, attempt)
		if err == nil {
			var kv plugdbv1.KVClient
			if kv, err = r.kv(addr); err == nil {
				callCtx, cancel := context.WithDeadline(ctx, giveUp)
				err = fn(callCtx, kv)
				cancel()
			}
			if err == nil {
				return nil
			}
			if ctx.Err() == nil && !time.Now().Before(giveUp) && status.Code(err) == codes.DeadlineExceeded {
				if lastErr == nil {
					lastErr = fmt.Errorf("node %s did not answer in time", addr)
				}
				return r.unavailable(p, budget, lastErr)
			}
			if _, wrong := api.WrongPartition(err); wrong {
				if ctx.Err() != nil {
					return err
				}
				if keys != nil && l.followed {
					// p may have been computed under a layout this one
					// replaced: place the keys under this one.
					q, perr := placeAll(ctx, l, keys)
					if perr != nil {
						return perr
					}
					if q != p {
						p, lastErr = q, retryReason(err, addr)
						continue
					}
				}
				// The node knows a newer layout than the router, or serves
				// another partition than the view says (an address reused,
				// say): refresh both and try again; while a reshard is
				// recorded until the new layout comes, else a bounded
				// number of times, then let the client hear why.
				r.refreshMeta()
				if !r.moveRecorded(ctx) {
					if wrongPartition++; wrongPartition > MaxWrongPartitionRetries {
						return err
					}
				}
			} else if api.Moving(err) {
				// A reshard fences the key for a moment: wait for the fence
				// to lift or the layout to flip.
				if ctx.Err() != nil {
					return err
				}
				wait, moving = movingBackoff, true
				movingBackoff = min(movingBackoff*2, 200*time.Millisecond)
			} else if !retryable(err) || ctx.Err() != nil {
				return err
			}
			err = retryReason(err, addr)
		}
		lastErr = err
		l.top.Refresh(p)
		wait = min(wait, time.Until(giveUp))
		if wait <= 0 {
			return r.unavailable(p, budget, lastErr)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return r.unavailable(p, budget, lastErr)
		case <-changed:
		case <-replaced:
		case <-t.C:
		}
		t.Stop()
		if !time.Now().Before(giveUp) {
			return r.unavailable(p, budget, lastErr)
		}
		if !moving {
			backoff = min(backoff*2, 500*time.Millisecond)
		}
	}
}

// moveRecorded reports whether a reshard of the keyspace is recorded, or
// one has flipped to a layout newer than the router's (which it is still
// opening: its partitioner plugin may take a moment to start): a node that
// refuses a key may know its new layout before the router.
func (r *Router) moveRecorded(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, ok, err := coord.ReadReshard(ctx, r.client); err == nil && ok {
		return true
	}
	m, err := coord.ReadMeta(ctx, r.client)
	return err == nil && m.LayoutVersion() > r.cur.Load().version
}

// retryReason is the text of a node's error that is retried, for the error
// of a request that runs out of time: a node's "not leader" or "wrong
// partition" names the node already.
func retryReason(err error, addr string) error {
	if _, wrong := api.WrongPartition(err); wrong || api.NotLeader(err) {
		return errors.New(status.Convert(err).Message())
	}
	return fmt.Errorf("node %s: %s", addr, status.Convert(err).Message())
}

// retryable says whether an error from a node may be retried: "not leader"
// (nothing was written) and any other Unavailable but too few in sync (a
// write's outcome may be unknown, but every attempt carries the write's
// request id, so the leader applies it once).
func retryable(err error) bool {
	if api.NotLeader(err) {
		return true
	}
	if api.TooFewInSync(err) {
		return false // sent again, it would only add to the leader's log
	}
	if status.Code(err) != codes.Unavailable {
		return false
	}
	return true
}

// target picks the node for an attempt: the leader, or for a stale read a
// follower (spread round-robin, the leader when none answers).
func (r *Router) target(l *layout, p int, stale bool, attempt int) (string, error) {
	v := l.top.Partition(p)
	if stale {
		fs := v.Followers()
		if len(fs) > 0 && attempt < 2*len(fs) {
			return fs[int(r.next.Add(1)%uint64(len(fs)))].Addr, nil
		}
		if v.Leader.Addr != "" {
			return v.Leader.Addr, nil
		}
		if len(v.Members) > 0 {
			return v.Members[attempt%len(v.Members)].Addr, nil
		}
	}
	if v.Leader.Addr != "" {
		return v.Leader.Addr, nil
	}
	return "", fmt.Errorf("partition %d has no leader (%d replicas registered)", p, len(v.Members))
}

// unavailable is the error of a request that found no node to serve it.
func (r *Router) unavailable(p int, budget time.Duration, last error) error {
	zkState, _, since := r.client.State()
	why := last.Error()
	if !r.client.Connected() {
		why = fmt.Sprintf("the router has no ZooKeeper session (%s, state %s for %v), so it cannot learn the leader; last error: %s",
			strings.Join(r.client.Config().Servers, ","), zkState, time.Since(since).Round(time.Millisecond), why)
	}
	return status.Errorf(codes.Unavailable, "partition %d: no replica could serve the request within %v: %s; retry later",
		p, budget.Round(time.Millisecond), why)
}

// Status asks every registered node for its status and reports each
// partition's replicas, leader first, each as its node describes itself (ISR,
// persisted LSN, lag and replication error included). A leader may also list,
// after itself, its followers as it sees them (by the address they registered):
// their ISR, persisted LSN, lag and replication error then come from the leader. The partition's ack mode
// and fallback are its leader's (else those of the first replica that reports
// one). A node that does not answer is listed with what it published in
// ZooKeeper and role "unreachable".
func (r *Router) Status(ctx context.Context) (*plugdbv1.StatusResponse, error) {
	if !r.client.Connected() {
		st, _, since := r.client.State()
		return nil, status.Errorf(codes.Unavailable, "the router has no ZooKeeper session (%s, state %s for %v): cluster status unknown; retry later",
			strings.Join(r.client.Config().Servers, ","), st, time.Since(since).Round(time.Millisecond))
	}
	l := r.acquire()
	defer l.release()
	resp := &plugdbv1.StatusResponse{Cluster: r.info.Cluster, Engine: r.info.Engine, Partitioner: r.info.Partitioner, Replicator: r.info.Replicator,
		LayoutVersion: l.version}
	if mv, ok, err := coord.ReadReshard(ctx, r.client); err == nil && ok {
		resp.Reshard = &plugdbv1.ReshardStatus{State: string(mv.State), FromPartitions: uint32(mv.From.Partitions), FromPartitioner: mv.From.Partitioner.Plugin,
			ToPartitions: uint32(mv.To.Partitions), ToPartitioner: mv.To.Partitioner.Plugin, Started: mv.Started.Format(time.RFC3339)}
	}
	if l.followed {
		// Moved by a reshard: the partitioner is the layout's, not the
		// config's.
		resp.Partitioner = &plugdbv1.Plugin{Plugin: l.meta.Partitioner.Plugin, Options: maps.Clone(l.meta.Partitioner.Options)}
		if old := r.info.Partitioner; old.GetPlugin() == l.meta.Partitioner.Plugin {
			resp.Partitioner.Mode = old.GetMode()
		}
	}
	parts := make([]*plugdbv1.PartitionStatus, l.n)
	nodeParts := make([][]*plugdbv1.PartitionStatus, l.n) // [p][i]: what the node of replica i said
	var wg sync.WaitGroup
	for p := range l.n {
		v := l.top.Partition(p)
		ps := &plugdbv1.PartitionStatus{Partition: uint32(p), Epoch: v.Leader.Epoch, Replicas: make([]*plugdbv1.Replica, len(v.Members))}
		parts[p] = ps
		nodeParts[p] = make([]*plugdbv1.PartitionStatus, len(v.Members))
		for i, m := range v.Members {
			wg.Go(func() { ps.Replicas[i], nodeParts[p][i] = r.replicaStatus(ctx, p, m) })
		}
	}
	wg.Wait()
	for p, ps := range parts {
		mergeReplication(ps, nodeParts[p])
		sort.SliceStable(ps.Replicas, func(i, j int) bool {
			return ps.Replicas[i].GetRole() == coord.RoleLeader && ps.Replicas[j].GetRole() != coord.RoleLeader
		})
	}
	resp.Partitions = parts
	return resp, nil
}

// mergeReplication completes ps from the partition status each replica's node
// reported (nodes[i] for ps.Replicas[i], nil if it did not answer): the ack
// mode and fallback of the leader (else of the first node that reports a
// mode), and the leader's view of its followers.
func mergeReplication(ps *plugdbv1.PartitionStatus, nodes []*plugdbv1.PartitionStatus) {
	var from, leader *plugdbv1.PartitionStatus
	for i, n := range nodes {
		if n == nil {
			continue
		}
		if ps.Replicas[i].GetRole() == coord.RoleLeader {
			from, leader = n, n
			break
		}
		if from == nil && n.GetAck() != "" {
			from = n
		}
	}
	if from != nil {
		ps.Ack, ps.AckFallback = from.GetAck(), from.GetAckFallback()
		ps.InSync, ps.AckNeeds, ps.ReplicaSet = from.GetInSync(), from.GetAckNeeds(), from.GetReplicaSet()
	}
	if leader == nil {
		return
	}
	for _, view := range leader.GetReplicas()[1:] {
		for _, rep := range ps.Replicas {
			if rep.GetAddr() != view.GetAddr() || rep.GetRole() == coord.RoleLeader {
				continue
			}
			rep.Isr, rep.PersistedLsn = view.GetIsr(), view.GetPersistedLsn()
			rep.LagStatements, rep.LagMs = view.GetLagStatements(), view.GetLagMs()
			if view.GetReplicationError() != "" {
				rep.ReplicationError = view.GetReplicationError()
			}
		}
	}
}

// replicaStatus asks m's node for its status: its replica (the first listed),
// and the partition status it reports (nil, with a replica built from what m
// published in ZooKeeper and role "unreachable", when it does not answer).
func (r *Router) replicaStatus(ctx context.Context, p int, m coord.Member) (*plugdbv1.Replica, *plugdbv1.PartitionStatus) {
	fallback := &plugdbv1.Replica{Partition: uint32(p), Addr: m.Addr, Role: "unreachable", Epoch: m.Epoch, AppliedLsn: m.AppliedLSN}
	kv, err := r.kv(m.Addr)
	if err != nil {
		return fallback, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := kv.Status(ctx, &plugdbv1.StatusRequest{Keyspace: r.info.Keyspace})
	if err != nil || len(st.GetPartitions()) != 1 || len(st.GetPartitions()[0].GetReplicas()) == 0 {
		return fallback, nil
	}
	return st.GetPartitions()[0].GetReplicas()[0], st.GetPartitions()[0]
}
