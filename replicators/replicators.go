// Package replicators is the replicator contract of plugdb: a replicator copies
// the writes of a partition's leader to its followers and decides when a write
// is acknowledged.
//
// Like database/sql/driver, this package imports neither gRPC nor the plugdb
// core: a third party implements Replicator and serves it as a plugin with
// plugins.Serve (ServeConfig.Replicator), or links it in process. The bundled
// replicators are replicators/statement (the default) and replicators/none.
//
// The host owns the engine: the replicator never applies anything. On the
// leader the host assigns LSNs, hands each group of writes to Replicate and
// applies it to its engine only once Replicate returns nil (so no reader sees a
// write a failover could lose); on a follower the host applies what Deliveries
// yields, in LSN order, and reports with Applied what its engine holds
// durably.
//
// All methods must be safe for concurrent use.
package replicators

import (
	"context"
	"fmt"
	"iter"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/plugdb/plugdb/errdefs"

	"github.com/plugdb/plugdb/engines"
)

// Sentinel errors, plugdb's own (package errdefs) re-exported: they are the same
// values as engines' and partitioners'. Replicators wrap them with context;
// callers test them with errors.Is, which keeps working across the plugin
// boundary.
var (
	// ErrInvalidArgument: a bad option (the wrapping message names it and its
	// allowed values) or a malformed call, such as a statement whose LSNs do
	// not follow the last one.
	ErrInvalidArgument = errdefs.ErrInvalidArgument
	// ErrUnavailable: the ack mode could not be met in time (no in-sync
	// follower persisted the statement). The statement stays in the log and
	// may still commit: the write's outcome is unknown to the client.
	ErrUnavailable = errdefs.ErrUnavailable
	// ErrTooFewInSync: fewer replicas are in sync than the ack mode needs,
	// so the write failed at once rather than wait for acks that cannot
	// come. It is an ErrUnavailable too: the statement may be in the log.
	ErrTooFewInSync = errdefs.ErrTooFewInSync
	// ErrFenced: a follower has seen a newer epoch, so this replica no longer
	// leads; the host must step down and stop acknowledging writes.
	ErrFenced = errdefs.ErrFenced
	// ErrNotLeader: a leader-side call on a replica that does not lead.
	ErrNotLeader = errdefs.ErrNotLeader
	// ErrClosed: the replicator is closed; the wrapping message names it.
	ErrClosed = errdefs.ErrClosed
)

// Ack is when a leader acknowledges a write.
type Ack uint8

const (
	// AckDefault is the replicator's configured mode.
	AckDefault Ack = iota
	// AckAsync acknowledges after the leader's own durable commit.
	AckAsync
	// AckSemiSync acknowledges after at least one in-sync follower persisted the write.
	AckSemiSync
	// AckSync acknowledges after every in-sync follower persisted the write.
	AckSync
)

// AckNames returns the accepted spellings of the ack modes, weakest first, in
// a fresh slice.
func AckNames() []string {
	return []string{AckAsync.String(), AckSemiSync.String(), AckSync.String()}
}

// String returns "default", "async", "semi-sync" or "sync".
func (a Ack) String() string {
	switch a {
	case AckDefault:
		return "default"
	case AckAsync:
		return "async"
	case AckSemiSync:
		return "semi-sync"
	case AckSync:
		return "sync"
	}
	return fmt.Sprintf("ack(%d)", uint8(a))
}

// ParseAck parses an ack mode name; "" is AckDefault.
func ParseAck(s string) (Ack, error) {
	if s == "" || s == "default" {
		return AckDefault, nil
	}
	for i, n := range AckNames() {
		if strings.EqualFold(s, n) {
			return Ack(i + 1), nil
		}
	}
	return 0, fmt.Errorf("ack %q: allowed values are %s: %w", s, strings.Join(AckNames(), ", "), ErrInvalidArgument)
}

// Stronger returns the stronger of a and b (AckDefault is weakest).
func Stronger(a, b Ack) Ack { return max(a, b) }

// Statement is one group of writes of a leader's epoch, with their final
// values (the leader has resolved every condition): a follower applying it
// to the same engine reaches the same state. Mutation LSNs are consecutive.
type Statement struct {
	Epoch     uint64
	Mutations []engines.Mutation
}

// First is the LSN of the statement's first mutation (0 if empty).
func (s Statement) First() uint64 {
	if len(s.Mutations) == 0 {
		return 0
	}
	return s.Mutations[0].LSN
}

// Last is the LSN of the statement's last mutation (0 if empty).
func (s Statement) Last() uint64 {
	if len(s.Mutations) == 0 {
		return 0
	}
	return s.Mutations[len(s.Mutations)-1].LSN
}

// Check verifies that a statement is non-empty, has an epoch and consecutive
// non-zero LSNs; the error wraps ErrInvalidArgument.
func (s Statement) Check() error {
	if s.Epoch == 0 {
		return fmt.Errorf("statement without an epoch: %w", ErrInvalidArgument)
	}
	if len(s.Mutations) == 0 {
		return fmt.Errorf("empty statement: %w", ErrInvalidArgument)
	}
	for i, m := range s.Mutations {
		if m.LSN == 0 || (i > 0 && m.LSN != s.Mutations[i-1].LSN+1) {
			return fmt.Errorf("statement lsns must be consecutive and non-zero, mutation %d has %d: %w", i, m.LSN, ErrInvalidArgument)
		}
	}
	return nil
}

// Options are what a replicator is opened with.
type Options struct {
	// Dir is the folder the replicator owns (its statement log); it exists.
	Dir string
	// Partition is the partition this replica belongs to.
	Partition int
	// Replicas is the size of the partition's replica set (leader and
	// followers, live or not), from which a majority is counted; 0 when
	// unknown, when the replicator counts the replicas it has been told of.
	Replicas int
	// Listen is the host:port where the replicator listens for its peers, such
	// as "127.0.0.1:0"; Addr reports the address it got.
	Listen string
	// TLS names the PEM files of the replica's TLS (the config's tls block):
	// a replicator that talks to its peers serves and dials them with it,
	// mutual TLS when CA is set. Zero: plaintext.
	TLS TLSFiles
	// Params are the replicator's own options from the config's `options:`
	// block; unknown names fail with ErrInvalidArgument naming the allowed ones.
	Params map[string]string
	// Logger is where the replicator logs. Never nil when the host or
	// plugins.Serve opens a replicator.
	Logger hclog.Logger
}

// TLSFiles are paths of PEM files on the host's machine; the zero value is
// plaintext. github.com/plugdb/plugdb/tlsconfig turns them into credentials.
type TLSFiles struct {
	// CA is the certificate authority peers' certificates must chain to.
	CA string
	// Cert is this replica's certificate, for its server and its dials.
	Cert string
	// Key is Cert's private key.
	Key string
}

// OpenFunc opens a replicator. It is what a plugin's main hands to plugins.Serve.
type OpenFunc func(ctx context.Context, opts Options) (Replicator, error)

// Peer is another replica of the partition, as the leader sees it.
type Peer struct {
	// Addr is the peer replicator's address (its Replicator.Addr). It is
	// empty for an in-sync replica that is not running: it cannot be reached,
	// but it counts toward the in-sync set's size (a new leader must hear
	// from enough of that set before it serves).
	Addr string
	// ISR says the peer is in the in-sync replica set recorded in ZooKeeper:
	// ack modes count only such peers.
	ISR bool
}

// Delivery is what a follower's host must do next.
type Delivery struct {
	// Statement is the next committed statement to apply, in LSN order (when
	// Rebuild is false). LSNs at or below the engine's applied LSN are skipped
	// by the host.
	Statement Statement
	// Rebuild says the follower cannot continue from its log (it is behind the
	// leader's retained log, or it applied writes the leader does not have):
	// the host restores its engine from a snapshot of the leader and calls
	// Restored.
	Rebuild bool
}

// FollowerStatus is the leader's view of one follower.
type FollowerStatus struct {
	Addr string
	// ISR: the follower is in the in-sync set the host last passed to SetPeers.
	ISR bool
	// InSync: the replicator judges the follower caught up (within its lag
	// bound); the host records the set of such followers in ZooKeeper.
	InSync bool
	// Connected: a replication stream to the follower is open.
	Connected bool
	// PersistedLSN is the highest LSN the follower persisted; AppliedLSN the
	// highest it applied to its engine.
	PersistedLSN, AppliedLSN uint64
	// LagStatements is how many LSNs the follower has yet to persist; LagTime
	// how long the oldest of them has waited.
	LagStatements uint64
	LagTime       time.Duration
	// Error is the last replication error, if any.
	Error string
}

// Status is a replicator's state.
type Status struct {
	// Role is "leader", "follower" or "" (neither yet).
	Role  string
	Epoch uint64
	// LogStart..LogEnd are the LSNs the retained log holds (LogStart > LogEnd
	// when it is empty); Commit the highest LSN known committed.
	LogStart, LogEnd, Commit uint64
	// Ack is the configured ack mode.
	Ack Ack
	// Fallback says acks fell back to async (only where the config allows it).
	Fallback bool
	// InSync is, on a leader, the number of in-sync replicas (itself
	// included), and AckNeeds how many its ack mode needs in sync (0 when
	// the replicator does not count them); with fewer, writes fail at once.
	InSync, AckNeeds int
	// ReplicaSet is, on a leader, the replica set size it counts a majority
	// of (0 when the replicator does not count one).
	ReplicaSet int
	Followers  []FollowerStatus
	// LogSync are the latencies of the log's fsyncs so far (zero when the
	// replicator keeps no log).
	LogSync Latency
}

// Replicator copies one partition's statements between its replicas.
type Replicator interface {
	// Addr is where peers reach this replicator ("" if it needs no peers). A
	// replicator with an address keeps a durable log the host relies on: it
	// opens its engine LogBacked (engines.Options) and counts on Lead and
	// Deliveries to replay what the engine lost.
	Addr() string

	// Lead makes this replica the leader of epoch. applied is the host
	// engine's applied LSN. The replicator delivers, through Deliveries, every
	// statement of its log above applied, and returns the LSN of the last one
	// (or applied): the host applies up to it before taking writes and
	// numbers new writes from the LSN after it. A replicator that keeps
	// copies first makes sure its log holds every statement acknowledged
	// before epoch: it may copy what it lacks from the in-sync peers the last
	// SetPeers named, and fails with ErrUnavailable while too few of them
	// answer; the host then calls Lead again.
	Lead(ctx context.Context, epoch, applied uint64) (end uint64, err error)

	// SetPeers sets the partition's other replicas (from ZooKeeper) and which
	// of them are in sync. It is called after Lead and whenever they change.
	SetPeers(ctx context.Context, peers []Peer) error

	// Replicate appends st durably to the log, ships it and returns once ack
	// (AckDefault: the configured mode; never weaker) is met. Calls may be
	// concurrent and overlap; statements are ordered by LSN, and a nil return
	// for one means every earlier one is committed too. It fails with
	// ErrUnavailable when the acks do not come before ctx ends or the
	// replicator's ack timeout, with ErrFenced when a newer epoch exists.
	Replicate(ctx context.Context, st Statement, ack Ack) error

	// Follow makes this replica a follower of the leader of epoch, whose
	// replicator is at leader. The leader's replicator connects to it.
	Follow(ctx context.Context, epoch uint64, leader string) error

	// Deliveries yields what the host must apply or do, until ctx ends or the
	// replicator closes. The host calls it once and ranges over it.
	Deliveries(ctx context.Context) iter.Seq2[Delivery, error]

	// Applied reports an LSN through which the host engine holds every
	// statement durably: the replicator may trim its log up to it, never
	// further. The host reports it from periodic checkpoints, so it lags the
	// engine's applied LSN (on a replica the log is the commit point and the
	// engine need not fsync each write).
	Applied(ctx context.Context, lsn uint64) error

	// EpochAt returns the epoch of the statement at lsn (the leader sends it
	// with a snapshot taken at lsn); 0 for lsn 0.
	EpochAt(ctx context.Context, lsn uint64) (uint64, error)

	// Restored tells a follower that its engine now holds a snapshot taken at
	// lsn, whose statement had epoch epoch: its log restarts after it.
	Restored(ctx context.Context, lsn, epoch uint64) error

	// Status reports the replicator's state.
	Status(ctx context.Context) (Status, error)

	// Close stops replication and releases everything.
	Close() error
}
