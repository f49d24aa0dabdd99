// Package statement is plugdb's default replicator: the leader of a partition
// logs each statement (a group of writes with their final values) durably in
// a retained, segmented log and ships it to every follower over one pipelined
// gRPC stream per follower; a write is acknowledged once its ack mode is met.
//
// A follower persists statements in its own log, acknowledges them, and hands
// those the leader reports committed to its host in LSN order. Every entry
// carries its leader's epoch: a follower refuses a leader of an older epoch
// (fencing), and when a leader connects the two compare epoch histories and
// the follower drops the suffix the leader does not have (it was never
// acknowledged under a later epoch). A follower behind the leader's retained
// log, or one that applied writes the leader does not have, is rebuilt from a
// snapshot of the leader's engine.
package statement

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"

	statementv1 "github.com/plugdb/plugdb/proto/plugdb/statement/v1"
	"github.com/plugdb/plugdb/replicators"
	"github.com/plugdb/plugdb/replicators/statement/wal"
	"github.com/plugdb/plugdb/tlsconfig"
)

const (
	roleLeader   = "leader"
	roleFollower = "follower"
)

// Replicator is the statement replicator of one replica.
type Replicator struct {
	cfg      config
	part     int
	replicas int // the replica set size the host configured; 0: unknown
	logger   hclog.Logger
	log      *wal.Log
	lis      net.Listener
	srv      *grpc.Server
	creds    *tlsconfig.Creds          // the peer connections' TLS; nil: plaintext
	out      chan replicators.Delivery // to the host, in LSN order
	bg       context.Context           // ends at Close
	stop     context.CancelFunc        // ends the background loops
	loops    sync.WaitGroup
	// shippers tracks every shipper goroutine (see startShipperLocked),
	// stopped or not, so Close can wait for them before closing the log.
	shippers sync.WaitGroup
	// receivers tracks the goroutines that read follower streams ahead
	// (see peerServer.Ship); Close waits for them once the server stopped.
	receivers sync.WaitGroup
	// writeMu serialises changes to the log (the leader's appends, a
	// follower's appends, truncation, reset); never held under mu's waiters.
	writeMu sync.Mutex

	mu        sync.Mutex
	changed   chan struct{} // closed and replaced on every state change
	appendReq chan struct{} // wakes the appender
	closed    bool
	role      string
	epoch     uint64 // leader: the epoch it leads; follower: the newest epoch it knows
	fencedBy  string // leader: why it may no longer acknowledge
	persisted uint64 // the local log is durable through this LSN
	commit    uint64 // highest LSN known committed
	applied   uint64 // highest LSN the host reported applied
	delivered uint64 // highest LSN handed to the host
	deliverTo uint64 // deliver up to here
	applyMax  uint64 // highest LSN the host may have applied (for the divergence check)
	pending   map[uint64]wal.Record
	peers     map[string]*follower // leader: its followers by replicator address
	fallback  bool
	rebuild   bool   // follower: a rebuild is asked for and not yet done
	inbound   uint64 // follower: id of the current leader stream
	isrAbsent int    // in-sync replicas that are not running (SetPeers)
	leadCtx   context.Context
	leadStop  context.CancelFunc

	// syncs counts the log's fsync latencies (Status.LogSync).
	syncs *replicators.LatencyRecorder

	test testHooks // set by tests only
}

// testHooks let tests stall or observe the replicator; nil fields do
// nothing. Tests set them under r.mu before the paths that use them start.
type testHooks struct {
	// sync, if set, runs each fsync of the appender and of follower streams;
	// it must call (or stand in for) sync.
	sync func(sync func() error) error
	// queued, if set, is called each time a follower stream's receiver
	// queued a message.
	queued func()
}

// syncLog fsyncs the log (through the test hook, if set) and counts its
// latency in r.syncs, which Status reports.
func (r *Replicator) syncLog() error {
	began := time.Now()
	defer func() { r.syncs.Observe(time.Since(began)) }()
	if r.test.sync != nil {
		return r.test.sync(r.log.Sync)
	}
	return r.log.Sync()
}

// Open opens the statement replicator: its log in opts.Dir, its listener on
// opts.Listen.
func Open(ctx context.Context, opts replicators.Options) (replicators.Replicator, error) {
	return open(ctx, opts)
}

func open(_ context.Context, opts replicators.Options) (*Replicator, error) {
	cfg, err := parseConfig(opts.Params)
	if err != nil {
		return nil, err
	}
	logger := opts.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	if opts.Listen == "" {
		return nil, fmt.Errorf("statement replicator: no listen address: %w", replicators.ErrInvalidArgument)
	}
	creds, err := tlsconfig.Load(tlsconfig.Files(opts.TLS))
	if err != nil {
		return nil, fmt.Errorf("statement replicator: TLS: %w", err)
	}
	srvOpt, err := creds.ServerOption()
	if err != nil {
		return nil, fmt.Errorf("statement replicator: TLS: %w", err)
	}
	lg, err := wal.Open(opts.Dir, wal.Options{SegmentBytes: cfg.segmentBytes, Logger: logger.Named("log")})
	if err != nil {
		return nil, fmt.Errorf("statement replicator: open log in %s: %w", opts.Dir, err)
	}
	lis, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		lg.Close()
		return nil, fmt.Errorf("statement replicator: listen on %s: %w", opts.Listen, err)
	}
	r := &Replicator{
		cfg: cfg, part: opts.Partition, replicas: opts.Replicas, logger: logger, log: lg, lis: lis,
		srv: grpc.NewServer(srvOpt), creds: creds, out: make(chan replicators.Delivery, 64),
		changed: make(chan struct{}), appendReq: make(chan struct{}, 1),
		pending: map[uint64]wal.Record{}, peers: map[string]*follower{},
		syncs: replicators.NewLatencyRecorder(replicators.SyncBounds),
	}
	r.persisted = lg.Last()
	r.delivered = lg.First() - 1 // raised by what the host says it applied (Applied, Lead)
	statementv1.RegisterPeerServer(r.srv, &peerServer{r: r})
	bg, stop := context.WithCancel(context.Background())
	r.bg, r.stop = bg, stop
	r.loops.Add(4)
	go func() { defer r.loops.Done(); _ = r.srv.Serve(lis) }()
	go func() { defer r.loops.Done(); r.appendLoop(bg) }()
	go func() { defer r.loops.Done(); r.deliverLoop(bg) }()
	go func() { defer r.loops.Done(); r.retainLoop(bg) }()
	return r, nil
}

// Addr is where the replicator listens for its peers.
func (r *Replicator) Addr() string { return r.lis.Addr().String() }

// notifyLocked wakes everything waiting for a state change; r.mu is held.
func (r *Replicator) notifyLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *Replicator) errClosedLocked() error {
	if r.closed {
		return fmt.Errorf("statement replicator of partition %d: %w", r.part, replicators.ErrClosed)
	}
	return nil
}

// Lead makes this replica the leader of epoch.
func (r *Replicator) Lead(ctx context.Context, epoch, applied uint64) (uint64, error) {
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.errClosedLocked(); err != nil {
		return 0, err
	}
	if epoch < r.epoch {
		return 0, fmt.Errorf("lead epoch %d: epoch %d is known: %w", epoch, r.epoch, replicators.ErrFenced)
	}
	// Take the epoch before catching up: the deposed leader's stream into
	// this replica ends, and nothing more arrives from it.
	if r.role == roleLeader && r.epoch != epoch {
		r.stopLeadingLocked("")
		r.role = roleFollower
	}
	if r.role != roleLeader && epoch > r.epoch {
		r.epoch = epoch
		r.inbound++
		r.notifyLocked()
	}
	r.mu.Unlock()
	err := r.catchUp(ctx, epoch)
	r.mu.Lock()
	if err != nil {
		return 0, err
	}
	if err := r.errClosedLocked(); err != nil {
		return 0, err
	}
	if epoch < r.epoch {
		return 0, fmt.Errorf("lead epoch %d: epoch %d is known: %w", epoch, r.epoch, replicators.ErrFenced)
	}
	if r.log.Last() < applied {
		// The engine holds writes the log never had (replication was off, or
		// the log was removed): the log restarts after them. A follower that
		// cannot prove it has the same rows is rebuilt from a snapshot.
		r.logger.Warn("log ends before the engine's applied lsn; restarting the log there", "log_last", r.log.Last(), "applied", applied)
		if err := r.log.Reset(applied, epoch); err != nil {
			return 0, fmt.Errorf("lead epoch %d: %w", epoch, err)
		}
	}
	r.stopLeadingLocked("")
	r.role, r.epoch, r.fencedBy = roleLeader, epoch, ""
	r.inbound++ // ends any leader stream we followed
	end := r.log.Last()
	r.persisted = end
	r.applied = applied
	r.delivered = applied
	r.deliverTo = end
	r.commit = max(r.commit, end)
	r.applyMax = max(r.applyMax, end)
	r.fallback = false
	r.rebuild = false
	r.leadCtx, r.leadStop = context.WithCancel(context.Background())
	for _, f := range r.peers {
		r.startShipperLocked(f)
	}
	r.notifyLocked()
	r.logger.Info("leading", "epoch", epoch, "log_end", end, "applied", applied)
	return end, nil
}

// stopLeadingLocked stops the leader's shippers and fails its waiting
// writes. The shippers' goroutines may still be returning: they take r.mu,
// so they are not waited for here (Close waits for them), but from now on
// nothing they learn changes the replicator's state.
func (r *Replicator) stopLeadingLocked(why string) {
	if r.leadStop != nil {
		r.leadStop()
		r.leadStop = nil
	}
	for _, f := range r.peers {
		f.stopShipperLocked()
		f.connected = false
	}
	if why != "" && r.role == roleLeader {
		r.fencedBy = why
	}
	r.pending = map[uint64]wal.Record{}
	r.notifyLocked()
}

// SetPeers sets the followers and which are in sync. It returns once the
// shippers of removed followers have ended (or ctx has).
func (r *Replicator) SetPeers(ctx context.Context, peers []replicators.Peer) error {
	stopped, err := r.setPeers(peers)
	if err != nil {
		return err
	}
	for _, done := range stopped {
		select {
		case <-done:
		case <-ctx.Done():
			return fmt.Errorf("set peers: the peers are set, but a removed follower's shipper is still ending: %w", ctx.Err())
		}
	}
	return nil
}

// setPeers is SetPeers under r.mu; it returns the done channels of the
// shippers it stopped, for the caller to wait on without r.mu.
func (r *Replicator) setPeers(peers []replicators.Peer) ([]<-chan struct{}, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.errClosedLocked(); err != nil {
		return nil, err
	}
	want := map[string]bool{}
	r.isrAbsent = 0
	for _, p := range peers {
		if p.Addr == "" && p.ISR {
			r.isrAbsent++
		}
		if p.Addr == "" || p.Addr == r.Addr() {
			continue
		}
		want[p.Addr] = true
		f := r.peers[p.Addr]
		if f == nil {
			f = &follower{addr: p.Addr, since: time.Now()}
			r.peers[p.Addr] = f
			if r.role == roleLeader && r.fencedBy == "" {
				r.startShipperLocked(f)
			}
		}
		f.isr = p.ISR
	}
	var stopped []<-chan struct{}
	for addr, f := range r.peers {
		if !want[addr] {
			if done := f.stopShipperLocked(); done != nil {
				stopped = append(stopped, done)
			}
			delete(r.peers, addr)
		}
	}
	r.advanceCommitLocked()
	r.notifyLocked()
	return stopped, nil
}

// Replicate logs st, ships it and waits for ack.
func (r *Replicator) Replicate(ctx context.Context, st replicators.Statement, ack replicators.Ack) error {
	if err := st.Check(); err != nil {
		return err
	}
	if ack != replicators.AckDefault && (ack < replicators.AckAsync || ack > replicators.AckSync) {
		return fmt.Errorf("ack %d: allowed values are default, async, semi-sync, sync: %w", ack, replicators.ErrInvalidArgument)
	}
	mode := replicators.Stronger(ack, r.cfg.ack)
	rec, err := encode(st, time.Now().UnixNano())
	if err != nil {
		return err
	}
	r.mu.Lock()
	if err := r.leaderErrLocked(st.Epoch); err != nil {
		r.mu.Unlock()
		return err
	}
	if st.First() <= r.log.Last() || r.pending[st.First()].Last != 0 {
		r.mu.Unlock()
		return fmt.Errorf("statement %d..%d: the log already holds lsn %d: %w", st.First(), st.Last(), r.log.Last(), replicators.ErrInvalidArgument)
	}
	r.pending[st.First()] = rec
	r.mu.Unlock()
	select {
	case r.appendReq <- struct{}{}:
	default:
	}
	return r.await(ctx, st.Epoch, st.Last(), mode)
}

// leaderErrLocked says why this replica may not acknowledge a write of epoch.
func (r *Replicator) leaderErrLocked(epoch uint64) error {
	if err := r.errClosedLocked(); err != nil {
		return err
	}
	if r.fencedBy != "" {
		return fmt.Errorf("partition %d: %s: %w", r.part, r.fencedBy, replicators.ErrFenced)
	}
	if r.role != roleLeader {
		return fmt.Errorf("partition %d: this replica does not lead: %w", r.part, replicators.ErrNotLeader)
	}
	if epoch != r.epoch {
		return fmt.Errorf("statement of epoch %d, but this replica leads epoch %d: %w", epoch, r.epoch, replicators.ErrInvalidArgument)
	}
	return nil
}

// await waits until lsn meets mode. It fails at once when too few replicas
// are in sync for mode, and a little before ctx's deadline, so that the
// caller hears why rather than a deadline error.
func (r *Replicator) await(ctx context.Context, epoch, lsn uint64, mode replicators.Ack) error {
	wait := r.cfg.ackTimeout
	cause := fmt.Errorf("ack_timeout %s passed", r.cfg.ackTimeout)
	if d, ok := ctx.Deadline(); ok {
		left := time.Until(d)
		if left -= min(left/10, 200*time.Millisecond); left < wait {
			wait, cause = max(left, 0), errors.New("the request's deadline is near")
		}
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		r.mu.Lock()
		if err := r.leaderErrLocked(epoch); err != nil {
			r.mu.Unlock()
			return err
		}
		if r.metLocked(lsn, mode) || (r.fallback && r.persisted >= lsn) {
			r.mu.Unlock()
			return nil
		}
		if !r.cfg.fallback && r.persisted >= lsn && r.hopelessLocked(mode) {
			err := r.shortErrLocked(lsn, mode)
			r.mu.Unlock()
			return err
		}
		ch := r.changed
		r.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return r.unavailable(lsn, mode, ctx.Err())
		case <-timer.C:
			if r.cfg.fallback && wait == r.cfg.ackTimeout {
				r.mu.Lock()
				if !r.fallback {
					r.fallback = true
					r.logger.Warn("acks not met in time; acknowledging as async, as fallback: async allows", "ack", mode, "lsn", lsn, "ack_timeout", r.cfg.ackTimeout, "followers", r.followerSummaryLocked())
					r.advanceCommitLocked()
					r.notifyLocked()
				}
				r.mu.Unlock()
				continue
			}
			return r.unavailable(lsn, mode, cause)
		}
	}
}

func (r *Replicator) unavailable(lsn uint64, mode replicators.Ack, cause error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Errorf("partition %d: ack %s not met for lsn %d (%v); followers: %s; the write may still commit: %w",
		r.part, mode, lsn, cause, r.followerSummaryLocked(), replicators.ErrUnavailable)
}

// followerSummaryLocked describes the followers for an error or log line.
func (r *Replicator) followerSummaryLocked() string {
	if len(r.peers) == 0 {
		return "none"
	}
	addrs := make([]string, 0, len(r.peers))
	for a := range r.peers {
		addrs = append(addrs, a)
	}
	sort.Strings(addrs)
	s := ""
	for i, a := range addrs {
		f := r.peers[a]
		if i > 0 {
			s += ", "
		}
		state := "not in sync"
		if f.isr {
			state = "in sync"
		}
		if !f.connected {
			state += ", not connected"
		}
		if f.err != "" {
			state += ", last error: " + f.err
		}
		s += fmt.Sprintf("%s (%s, persisted %d)", a, state, f.persisted)
	}
	return s
}

// advanceCommitLocked moves the commit point to the highest LSN that meets
// the configured mode (or the local log, during a fallback).
func (r *Replicator) advanceCommitLocked() {
	if r.role != roleLeader {
		return
	}
	c := r.persisted
	if !r.fallback {
		c = r.commitPointLocked(r.cfg.ack)
	}
	if r.fallback && r.metLocked(r.persisted, r.cfg.ack) {
		r.fallback = false
		r.logger.Info("acks are met again; fallback to async is over", "ack", r.cfg.ack)
	}
	if c > r.commit {
		r.commit = c
		r.applyMax = max(r.applyMax, c)
	}
}

// appendLoop writes the leader's pending statements to the log in LSN order,
// one fsync per group. The shippers are woken as soon as a group is
// appended, so they send it while it is fsynced here; it counts for acks
// only once r.persisted covers it, after the fsync.
func (r *Replicator) appendLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.appendReq:
		}
		for {
			r.mu.Lock()
			var recs []wal.Record
			next := r.log.Last() + 1
			for {
				rec, ok := r.pending[next]
				if !ok {
					break
				}
				delete(r.pending, next)
				recs = append(recs, rec)
				next = rec.Last + 1
			}
			epoch := r.epoch
			r.mu.Unlock()
			if len(recs) == 0 {
				break
			}
			r.appendGroup(epoch, recs)
		}
	}
}

// appendGroup appends and fsyncs one group of the leader of epoch, waking
// the shippers between the two. If the log fails, the leader steps down:
// what followers already persisted of the group was never acknowledged.
func (r *Replicator) appendGroup(epoch uint64, recs []wal.Record) {
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	r.mu.Lock()
	still := r.role == roleLeader && r.epoch == epoch && r.fencedBy == "" && r.log.Last()+1 == recs[0].First
	r.mu.Unlock()
	if !still {
		return // no longer leading this term: the waiters fail
	}
	err := r.log.Append(recs...)
	if err == nil {
		r.mu.Lock()
		r.notifyLocked() // the shippers send the group during the fsync
		r.mu.Unlock()
		err = r.syncLog()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		// The log cannot take writes: stop acknowledging them.
		r.logger.Error("append to the statement log failed; stepping down", "error", err)
		if r.role == roleLeader && r.epoch == epoch {
			r.stopLeadingLocked(fmt.Sprintf("the statement log failed: %v", err))
		}
		return
	}
	r.persisted = r.log.Last() // writeMu is held: nothing changed the log since the fsync
	r.advanceCommitLocked()
	r.notifyLocked()
}

// Follow makes this replica a follower in epoch.
func (r *Replicator) Follow(_ context.Context, epoch uint64, leader string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.errClosedLocked(); err != nil {
		return err
	}
	if r.role == roleLeader {
		r.stopLeadingLocked("")
		r.logger.Info("following", "epoch", epoch, "leader", leader)
	}
	r.role = roleFollower
	r.epoch = max(r.epoch, epoch)
	r.fencedBy = ""
	r.delivered = max(r.delivered, r.applied)
	r.deliverTo = max(r.delivered, min(r.commit, r.persisted))
	r.notifyLocked()
	return nil
}

// Deliveries yields what the host must apply, in LSN order.
func (r *Replicator) Deliveries(ctx context.Context) iter.Seq2[replicators.Delivery, error] {
	return func(yield func(replicators.Delivery, error) bool) {
		for {
			select {
			case d := <-r.out:
				if !yield(d, nil) {
					return
				}
			case <-ctx.Done():
				return
			case <-r.bg.Done():
				return
			}
		}
	}
}

// deliverLoop hands committed statements from the log to the host.
func (r *Replicator) deliverLoop(ctx context.Context) {
	for ctx.Err() == nil {
		r.mu.Lock()
		from, to := r.delivered+1, r.deliverTo
		ch := r.changed
		r.mu.Unlock()
		if from > to {
			select {
			case <-ch:
			case <-ctx.Done():
				return
			}
			continue
		}
		recs, err := r.log.Read(from, r.cfg.batchBytes)
		if err != nil {
			r.logger.Error("read the statement log for delivery", "from", from, "error", err)
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
			}
			continue
		}
		// Consecutive statements of one epoch travel as one delivery: the
		// host applies them as one engine batch either way, and one message
		// to it costs less than one each.
		for len(recs) > 0 && recs[0].First <= to {
			st, n, err := mergeDelivery(recs, to)
			if err != nil {
				r.logger.Error("decode a logged statement", "error", err)
				return
			}
			recs = recs[n:]
			select {
			case r.out <- replicators.Delivery{Statement: st}:
			case <-ctx.Done():
				return
			}
			r.mu.Lock()
			// A rebuild or a new lead may have moved delivery meanwhile.
			if r.delivered == st.First()-1 || r.delivered < st.Last() {
				r.delivered = max(r.delivered, st.Last())
			}
			r.applyMax = max(r.applyMax, r.delivered)
			r.mu.Unlock()
		}
	}
}

// mergeDelivery decodes the leading records of recs that end at or before
// to and share the first one's epoch into one statement; it returns the
// statement and how many records it took (at least one).
func mergeDelivery(recs []wal.Record, to uint64) (replicators.Statement, int, error) {
	st, err := decode(recs[0])
	if err != nil {
		return st, 0, err
	}
	n := 1
	for ; n < len(recs) && recs[n].Epoch == st.Epoch && recs[n].Last <= to && recs[n].First == st.Last()+1; n++ {
		next, err := decode(recs[n])
		if err != nil {
			return st, 0, err
		}
		st.Mutations = append(st.Mutations, next.Mutations...)
	}
	return st, n, nil
}

// Applied records the host's applied LSN.
func (r *Replicator) Applied(_ context.Context, lsn uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.errClosedLocked(); err != nil {
		return err
	}
	if lsn > r.applied {
		r.applied = lsn
		r.applyMax = max(r.applyMax, lsn)
		r.delivered = max(r.delivered, lsn) // the host has it: never deliver it again
		r.notifyLocked()
	}
	return nil
}

// EpochAt returns the epoch of the statement at lsn.
func (r *Replicator) EpochAt(_ context.Context, lsn uint64) (uint64, error) {
	r.mu.Lock()
	err := r.errClosedLocked()
	r.mu.Unlock()
	if err != nil {
		return 0, err
	}
	if lsn == 0 {
		return 0, nil
	}
	e, err := r.log.EpochAt(lsn)
	if err != nil {
		return 0, fmt.Errorf("epoch at lsn %d: %w", lsn, err)
	}
	return e, nil
}

// Restored restarts a follower's log after a snapshot at lsn.
func (r *Replicator) Restored(_ context.Context, lsn, epoch uint64) error {
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.errClosedLocked(); err != nil {
		return err
	}
	if err := r.log.Reset(lsn, epoch); err != nil {
		return fmt.Errorf("restart the log after the snapshot at lsn %d: %w", lsn, err)
	}
	r.persisted, r.delivered, r.applied, r.deliverTo = lsn, lsn, lsn, lsn
	r.commit = max(r.commit, lsn)
	r.applyMax = lsn
	r.rebuild = false
	r.inbound++ // the leader reconnects and resumes after lsn
	r.notifyLocked()
	r.logger.Info("rebuilt from a snapshot", "lsn", lsn, "epoch", epoch)
	return nil
}

// Status reports the replicator's state.
func (r *Replicator) Status(context.Context) (replicators.Status, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.errClosedLocked(); err != nil {
		return replicators.Status{}, err
	}
	st := replicators.Status{Role: r.role, Epoch: r.epoch, LogStart: r.log.First(), LogEnd: r.log.Last(),
		Commit: r.commit, Ack: r.cfg.ack, Fallback: r.fallback, LogSync: r.syncs.Latency()}
	if r.role != roleLeader {
		return st, nil
	}
	st.InSync, st.ReplicaSet = r.inSyncLocked(), r.setSizeLocked()
	if r.cfg.ack != replicators.AckAsync {
		st.AckNeeds = r.quorumLocked()
	}
	now := time.Now()
	for _, f := range r.peers {
		r.judgeLocked(f, now)
		fs := replicators.FollowerStatus{Addr: f.addr, ISR: f.isr, InSync: f.inSync, Connected: f.connected,
			PersistedLSN: f.persisted, AppliedLSN: f.applied, Error: f.err}
		if f.persisted < r.persisted {
			fs.LagStatements = r.persisted - f.persisted
			ref := f.caughtUp
			if ref.IsZero() {
				ref = f.since // never caught up: lagging since it was added
			}
			fs.LagTime = now.Sub(ref)
		}
		st.Followers = append(st.Followers, fs)
	}
	sort.Slice(st.Followers, func(i, j int) bool { return st.Followers[i].Addr < st.Followers[j].Addr })
	return st, nil
}

// Close stops replication and closes the log once every goroutine that
// reads it (the shippers among them) has returned.
func (r *Replicator) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.stopLeadingLocked("")
	r.inbound++
	r.notifyLocked()
	r.mu.Unlock()
	r.stop()
	r.srv.Stop()
	r.loops.Wait()
	r.shippers.Wait() // stopped above; they take r.mu, so not waited for under it
	r.receivers.Wait()
	return r.log.Close()
}

// retainLoop trims the log to its size and age bounds, never past what the
// host applied.
func (r *Replicator) retainLoop(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if err := r.trim(); err != nil && !errors.Is(err, context.Canceled) {
			r.logger.Warn("trim the statement log", "error", err)
		}
	}
}

func (r *Replicator) trim() error {
	r.mu.Lock()
	applied := min(r.applied, r.delivered)
	r.mu.Unlock()
	upTo := wal.TrimPoint(r.log.Segments(), r.cfg.retainBytes, time.Now().Add(-r.cfg.retainAge).UnixNano(), applied)
	if upTo <= r.log.First() {
		return nil
	}
	return r.log.TrimBefore(upTo)
}
