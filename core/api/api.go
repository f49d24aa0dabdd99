// Package api serves plugdb's public gRPC API (plugdb.v1.KV) from a Backend:
// the local partitions of `plugdb dev` now, the cluster's nodes later.
package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/plugdb/plugdb/core/partition"
	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/plugins"
	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
	"github.com/plugdb/plugdb/replicators"
)

// Backend is what the API serves from: the local partitions of `plugdb dev`,
// one node's partition, or the router's view of the cluster.
type Backend interface {
	// Partitions is the number of partitions.
	Partitions() int
	// Locate sets out[i] to the partition of keys[i].
	Locate(ctx context.Context, keys [][]byte, out []int) error
	// Range returns, ascending, the partitions a scan of [start, end) touches.
	Range(ctx context.Context, start, end []byte) ([]int, error)
	// Get reads key from partition p.
	Get(ctx context.Context, p int, key []byte, rd Read) (engines.Row, error)
	// Write applies writes to partition p atomically and returns their LSNs,
	// acknowledging them once ack is met (replicators.AckDefault: the
	// partition's configured mode; a weaker mode than the configured one is
	// served at the configured one). A non-zero id makes the write
	// exactly-once across retries (partition.RequestID); the router assigns
	// one to a write that has none.
	Write(ctx context.Context, p int, writes []partition.Write, ack replicators.Ack, id partition.RequestID) ([]uint64, error)
	// Scan reads partition p's rows in r, in key order.
	Scan(ctx context.Context, p int, r engines.ScanRange, rd Read) iter.Seq2[engines.Row, error]
	// Status describes the cluster.
	Status(ctx context.Context) (*plugdbv1.StatusResponse, error)
}

// Read says which replica may serve a read.
type Read struct {
	// Stale allows a follower to answer (it may miss recent writes).
	Stale bool
}

// readOf returns the Read a request asks for.
func readOf(c plugdbv1.Consistency) (Read, error) {
	switch c {
	case plugdbv1.Consistency_CONSISTENCY_UNSPECIFIED, plugdbv1.Consistency_CONSISTENCY_STRONG:
		return Read{}, nil
	case plugdbv1.Consistency_CONSISTENCY_STALE:
		return Read{Stale: true}, nil
	}
	return Read{}, status.Errorf(codes.InvalidArgument, "consistency %v: allowed values are strong, stale", c)
}

// ackHelp names the accepted ack modes, for error messages.
var ackHelp = "allowed values are " + strings.Join(replicators.AckNames(), ", ") + " (or unset: the partition's configured mode)"

// AckFromProto returns the replicators.Ack of a request's ack field; an
// unknown value is InvalidArgument naming the allowed ones.
func AckFromProto(a plugdbv1.Ack) (replicators.Ack, error) {
	switch a {
	case plugdbv1.Ack_ACK_DEFAULT:
		return replicators.AckDefault, nil
	case plugdbv1.Ack_ACK_ASYNC:
		return replicators.AckAsync, nil
	case plugdbv1.Ack_ACK_SEMI_SYNC:
		return replicators.AckSemiSync, nil
	case plugdbv1.Ack_ACK_SYNC:
		return replicators.AckSync, nil
	}
	return 0, status.Errorf(codes.InvalidArgument, "ack %d: %s", int32(a), ackHelp)
}

// AckToProto returns the request field for a (ACK_DEFAULT for an unknown value).
func AckToProto(a replicators.Ack) plugdbv1.Ack {
	switch a {
	case replicators.AckAsync:
		return plugdbv1.Ack_ACK_ASYNC
	case replicators.AckSemiSync:
		return plugdbv1.Ack_ACK_SEMI_SYNC
	case replicators.AckSync:
		return plugdbv1.Ack_ACK_SYNC
	}
	return plugdbv1.Ack_ACK_DEFAULT
}

// DefaultKeyspace names the keyspace of requests that name none.
const DefaultKeyspace = "default"

// Server implements plugdbv1.KVServer over one Backend per keyspace.
type Server struct {
	plugdbv1.UnimplementedKVServer
	backends map[string]Backend // by keyspace name
	names    []string           // DefaultKeyspace first (if served), then by name
}

// NewServer returns a server of one keyspace, the default one, served by b.
func NewServer(b Backend) *Server { return NewKeyspaceServer(map[string]Backend{DefaultKeyspace: b}) }

// NewKeyspaceServer returns a server of several keyspaces: a request's
// keyspace field chooses its backend ("" is DefaultKeyspace), and a keyspace
// not in backends is refused (InvalidArgument, naming the served ones).
func NewKeyspaceServer(backends map[string]Backend) *Server {
	names := slices.Sorted(maps.Keys(backends))
	if i := slices.Index(names, DefaultKeyspace); i > 0 {
		names = append([]string{DefaultKeyspace}, slices.Delete(names, i, i+1)...)
	}
	return &Server{backends: maps.Clone(backends), names: names}
}

// Keyspaces returns the served keyspaces' names, DefaultKeyspace first.
func (s *Server) Keyspaces() []string { return slices.Clone(s.names) }

// backend returns the backend of keyspace name ("": DefaultKeyspace).
func (s *Server) backend(name string) (Backend, error) {
	if name == "" {
		name = DefaultKeyspace
	}
	if b, ok := s.backends[name]; ok {
		return b, nil
	}
	return nil, status.Errorf(codes.InvalidArgument, "keyspace %q: allowed values are %s (empty: %s)", name, strings.Join(s.names, ", "), DefaultKeyspace)
}

// Get returns a key's value.
func (s *Server) Get(ctx context.Context, req *plugdbv1.GetRequest) (*plugdbv1.GetResponse, error) {
	if err := checkKey(req.GetKey()); err != nil {
		return nil, err
	}
	rd, err := readOf(req.GetConsistency())
	if err != nil {
		return nil, err
	}
	b, err := s.backend(req.GetKeyspace())
	if err != nil {
		return nil, err
	}
	p, err := locate(ctx, b, req.GetKey())
	if err != nil {
		return nil, toStatus(err, nil)
	}
	row, err := b.Get(ctx, p, req.GetKey(), rd)
	if err != nil {
		return nil, toStatus(err, req.GetKey())
	}
	return &plugdbv1.GetResponse{Key: row.Key, Value: row.Value, Lsn: row.LSN}, nil
}

// Put stores a value.
func (s *Server) Put(ctx context.Context, req *plugdbv1.PutRequest) (*plugdbv1.WriteResponse, error) {
	return s.write(ctx, partition.Write{Op: engines.OpPut, Key: req.GetKey(), Value: req.GetValue(), Cond: partition.Always}, req.GetAck(), req.GetRequestId(), req.GetKeyspace())
}

// Create stores a value only if the key does not exist.
func (s *Server) Create(ctx context.Context, req *plugdbv1.PutRequest) (*plugdbv1.WriteResponse, error) {
	return s.write(ctx, partition.Write{Op: engines.OpPut, Key: req.GetKey(), Value: req.GetValue(), Cond: partition.MustNotExist}, req.GetAck(), req.GetRequestId(), req.GetKeyspace())
}

// Update replaces a value only if the key exists.
func (s *Server) Update(ctx context.Context, req *plugdbv1.PutRequest) (*plugdbv1.WriteResponse, error) {
	return s.write(ctx, partition.Write{Op: engines.OpPut, Key: req.GetKey(), Value: req.GetValue(), Cond: partition.MustExist}, req.GetAck(), req.GetRequestId(), req.GetKeyspace())
}

// Delete removes an existing key.
func (s *Server) Delete(ctx context.Context, req *plugdbv1.DeleteRequest) (*plugdbv1.WriteResponse, error) {
	return s.write(ctx, partition.Write{Op: engines.OpDelete, Key: req.GetKey(), Cond: partition.MustExist}, req.GetAck(), req.GetRequestId(), req.GetKeyspace())
}

// RequestIDFromProto returns the partition.RequestID of a request's
// request_id (the zero id when it has none); a bad one is InvalidArgument.
func RequestIDFromProto(id *plugdbv1.RequestId) (partition.RequestID, error) {
	rid := partition.RequestID{Client: id.GetClientId(), Seq: id.GetSeq()}
	if id != nil && rid.IsZero() {
		return rid, status.Error(codes.InvalidArgument, "request_id: client_id and seq are empty: give both, or no request_id")
	}
	if err := rid.Check(); err != nil {
		return rid, status.Error(codes.InvalidArgument, err.Error())
	}
	return rid, nil
}

// RequestIDToProto returns the request field for id (nil for the zero id).
func RequestIDToProto(id partition.RequestID) *plugdbv1.RequestId {
	if id.IsZero() {
		return nil
	}
	return &plugdbv1.RequestId{ClientId: id.Client, Seq: id.Seq}
}

func (s *Server) write(ctx context.Context, w partition.Write, a plugdbv1.Ack, rid *plugdbv1.RequestId, keyspace string) (*plugdbv1.WriteResponse, error) {
	if err := checkKey(w.Key); err != nil {
		return nil, err
	}
	b, err := s.backend(keyspace)
	if err != nil {
		return nil, err
	}
	ack, err := AckFromProto(a)
	if err != nil {
		return nil, err
	}
	id, err := RequestIDFromProto(rid)
	if err != nil {
		return nil, err
	}
	p, err := locate(ctx, b, w.Key)
	if err != nil {
		return nil, toStatus(err, nil)
	}
	lsns, err := b.Write(ctx, p, []partition.Write{w}, ack, id)
	if err != nil {
		return nil, toStatus(err, w.Key)
	}
	return &plugdbv1.WriteResponse{Lsn: lsns[0], Partition: uint32(p)}, nil
}

// Batch applies ops, each partition's share atomically and the shares in parallel.
func (s *Server) Batch(ctx context.Context, req *plugdbv1.BatchRequest) (*plugdbv1.BatchResponse, error) {
	b, err := s.backend(req.GetKeyspace())
	if err != nil {
		return nil, err
	}
	ack, err := AckFromProto(req.GetAck())
	if err != nil {
		return nil, err
	}
	id, err := RequestIDFromProto(req.GetRequestId())
	if err != nil {
		return nil, err
	}
	keys := make([][]byte, len(req.GetOps()))
	for i, op := range req.GetOps() {
		if err := checkKey(op.GetKey()); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "ops[%d]: %s", i, status.Convert(err).Message())
		}
		if op.GetOp() != plugdbv1.BatchOp_OP_PUT && op.GetOp() != plugdbv1.BatchOp_OP_DELETE {
			return nil, status.Errorf(codes.InvalidArgument, "ops[%d]: op %v: allowed ops are put, delete", i, op.GetOp())
		}
		keys[i] = op.GetKey()
	}
	located := make([]int, len(keys))
	if err := b.Locate(ctx, keys, located); err != nil {
		return nil, toStatus(err, nil)
	}
	byPart := map[int][]int{} // partition -> op indexes
	for i, p := range located {
		byPart[p] = append(byPart[p], i)
	}
	lsns := make([]uint64, len(req.GetOps()))
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for p, idx := range byPart {
		writes := make([]partition.Write, len(idx))
		for j, i := range idx {
			op := req.GetOps()[i]
			writes[j] = partition.Write{Op: engines.OpPut, Key: op.GetKey(), Value: op.GetValue()}
			if op.GetOp() == plugdbv1.BatchOp_OP_DELETE {
				writes[j] = partition.Write{Op: engines.OpDelete, Key: op.GetKey()}
			}
		}
		wg.Go(func() {
			got, err := b.Write(ctx, p, writes, ack, id)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("partition %d: %w", p, err)
				}
				return
			}
			for j, i := range idx {
				lsns[i] = got[j]
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return nil, toStatus(firstErr, nil)
	}
	return &plugdbv1.BatchResponse{Lsns: lsns}, nil
}

// Scan streams the rows of the range from every partition, merged in key order.
func (s *Server) Scan(req *plugdbv1.ScanRequest, stream plugdbv1.KV_ScanServer) error {
	r := engines.ScanRange{Start: req.GetStart(), End: req.GetEnd(), Limit: int(req.GetLimit())}
	if len(req.GetPrefix()) > 0 {
		if len(r.Start) > 0 || len(r.End) > 0 {
			return status.Error(codes.InvalidArgument, "scan: give either prefix or start/end, not both")
		}
		r.Start, r.End = req.GetPrefix(), prefixEnd(req.GetPrefix())
	}
	if len(r.End) > 0 && bytes.Compare(r.Start, r.End) >= 0 {
		return status.Errorf(codes.InvalidArgument, "scan: start %q must be below end %q", r.Start, r.End)
	}
	if r.Limit < 0 {
		return status.Errorf(codes.InvalidArgument, "scan: limit %d: allowed values are 0 (no limit) or more", r.Limit)
	}
	rd, err := readOf(req.GetConsistency())
	if err != nil {
		return err
	}
	b, err := s.backend(req.GetKeyspace())
	if err != nil {
		return err
	}
	ctx := stream.Context()
	touched, err := b.Range(ctx, r.Start, r.End)
	if err != nil {
		return toStatus(err, nil)
	}
	parts := make([]iter.Seq2[engines.Row, error], len(touched))
	for i, p := range touched {
		parts[i] = b.Scan(ctx, p, r, rd)
	}
	n := 0
	for row, err := range Merge(parts) {
		if err != nil {
			return toStatus(err, nil)
		}
		if err := stream.Send(&plugdbv1.KeyValue{Key: row.Key, Value: row.Value, Lsn: row.LSN}); err != nil {
			return err
		}
		if n++; r.Limit > 0 && n >= r.Limit {
			return nil
		}
	}
	return nil
}

// locate returns key's partition in b.
func locate(ctx context.Context, b Backend, key []byte) (int, error) {
	var out [1]int
	if err := b.Locate(ctx, [][]byte{key}, out[:]); err != nil {
		return 0, fmt.Errorf("locate key: %w", err)
	}
	return out[0], nil
}

// Status describes the requested keyspace in its top-level fields and every
// served keyspace in Keyspaces.
func (s *Server) Status(ctx context.Context, req *plugdbv1.StatusRequest) (*plugdbv1.StatusResponse, error) {
	b, err := s.backend(req.GetKeyspace())
	if err != nil {
		return nil, err
	}
	st, err := b.Status(ctx)
	if err != nil {
		return nil, toStatus(err, nil)
	}
	for _, name := range s.names {
		ks := st
		if s.backends[name] != b {
			if ks, err = s.backends[name].Status(ctx); err != nil {
				return nil, toStatus(fmt.Errorf("keyspace %s: %w", name, err), nil)
			}
		}
		st.Keyspaces = append(st.Keyspaces, &plugdbv1.KeyspaceStatus{
			Name: name, Engine: ks.GetEngine(), Partitioner: ks.GetPartitioner(), Replicator: ks.GetReplicator(), Partitions: ks.GetPartitions(),
			LayoutVersion: ks.GetLayoutVersion(), Reshard: ks.GetReshard(),
		})
	}
	return st, nil
}

// Merge merges sequences that are each in key order into one in key order.
func Merge(seqs []iter.Seq2[engines.Row, error]) iter.Seq2[engines.Row, error] {
	return func(yield func(engines.Row, error) bool) {
		type head struct {
			next func() (engines.Row, error, bool)
			row  engines.Row
			ok   bool
		}
		heads := make([]*head, len(seqs))
		for i, s := range seqs {
			next, stop := iter.Pull2(s)
			defer stop()
			h := &head{next: next}
			var err error
			h.row, err, h.ok = next()
			if err != nil {
				yield(engines.Row{}, err)
				return
			}
			heads[i] = h
		}
		for {
			var min *head
			for _, h := range heads {
				if h.ok && (min == nil || bytes.Compare(h.row.Key, min.row.Key) < 0) {
					min = h
				}
			}
			if min == nil {
				return
			}
			if !yield(min.row, nil) {
				return
			}
			var err error
			min.row, err, min.ok = min.next()
			if err != nil {
				yield(engines.Row{}, err)
				return
			}
		}
	}
}

// prefixEnd returns the smallest key above every key with prefix p, or nil.
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

func checkKey(key []byte) error {
	if len(key) == 0 {
		return status.Error(codes.InvalidArgument, "key is empty: keys are 1 or more bytes")
	}
	if partition.Reserved(key) {
		return status.Errorf(codes.InvalidArgument, "key %q: keys starting with %q are reserved for plugdb's internal rows", key, partition.ReservedPrefix)
	}
	return nil
}

// RetryAfter is the retry hint sent with Unavailable.
const RetryAfter = time.Second

// toStatus maps a backend error to the gRPC status a client sees. A user's
// mistake is never Unknown or Internal. These are the public API's codes, not
// the plugin boundary's (errdefs/errgrpc): a closed engine or a write short of
// in-sync replicas is Unavailable here, with a retry hint or the reason.
func toStatus(err error, key []byte) error {
	msg := err.Error()
	var nl *NotLeaderError
	var wp *WrongPartitionError
	var mv *MovingError
	switch {
	case errors.As(err, &nl):
		return notLeaderStatus(nl)
	case errors.As(err, &mv):
		return movingStatus(mv, msg)
	case errors.As(err, &wp):
		return wrongPartitionStatus(wp, msg)
	case errors.Is(err, engines.ErrNotFound):
		if key != nil {
			return status.Errorf(codes.NotFound, "not found: %s", key)
		}
		return status.Error(codes.NotFound, msg)
	case errors.Is(err, partition.ErrAlreadyExists):
		return status.Errorf(codes.AlreadyExists, "already exists: %s", key)
	case errors.Is(err, partition.ErrStaleRequest):
		return status.Error(codes.FailedPrecondition, msg)
	case errors.Is(err, engines.ErrInvalidArgument): // replicators' and partitioners' too (errdefs)
		return status.Error(codes.InvalidArgument, msg)
	case errors.Is(err, replicators.ErrTooFewInSync):
		return tooFewInSyncStatus(msg)
	case errors.Is(err, replicators.ErrUnavailable):
		// The acks did not come: the write's outcome is unknown, so no
		// "not ready, retry" wording; the client decides whether to retry.
		return status.Error(codes.Unavailable, msg)
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, msg)
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, msg)
	case errors.Is(err, engines.ErrCorrupt):
		return status.Error(codes.DataLoss, msg)
	case errors.Is(err, engines.ErrClosed), plugins.IsTransport(err):
		return unavailable(msg)
	}
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
		// From a remote node: keep its code and details, with our context.
		p := st.Proto()
		p.Message = strings.Replace(msg, st.Err().Error(), st.Message(), 1) // no "rpc error: …" in the text
		return status.FromProto(p).Err()
	}
	return status.Error(codes.Internal, msg)
}

// unavailable is Unavailable with a RetryInfo detail.
func unavailable(msg string) error {
	st := status.New(codes.Unavailable, fmt.Sprintf("partition not ready: %s; retry in %v", msg, RetryAfter))
	if d, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(RetryAfter)}); err == nil {
		st = d
	}
	return st.Err()
}

// ReasonTooFewInSync is the ErrorInfo reason of a write that failed at once
// because fewer replicas are in sync than its ack mode needs: retrying it
// elsewhere cannot help until a replica catches up.
const ReasonTooFewInSync = "TOO_FEW_IN_SYNC"

// tooFewInSyncStatus is Unavailable with ErrorInfo TOO_FEW_IN_SYNC.
func tooFewInSyncStatus(msg string) error {
	st := status.New(codes.Unavailable, msg)
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: ReasonTooFewInSync, Domain: "plugdb"}); err == nil {
		st = d
	}
	return st.Err()
}

// TooFewInSync reports whether err (from a node, over gRPC) says the write
// failed because too few replicas are in sync.
func TooFewInSync(err error) bool {
	return hasReason(err, ReasonTooFewInSync)
}

// hasReason reports whether err is an Unavailable status with an ErrorInfo
// of reason.
func hasReason(err error, reason string) bool {
	return errorInfo(err, codes.Unavailable, reason) != nil
}

// errorInfo returns the ErrorInfo of reason that err carries as a status of
// code, or nil.
func errorInfo(err error, code codes.Code, reason string) *errdetails.ErrorInfo {
	st, ok := status.FromError(err)
	if !ok || st.Code() != code {
		return nil
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == reason {
			return info
		}
	}
	return nil
}

// ReasonNotLeader is the ErrorInfo reason of a NotLeaderError on the wire.
const ReasonNotLeader = "NOT_LEADER"

// NotLeaderError says a replica cannot serve a write or a strong read because
// it is not its partition's leader now (a follower, a leader that lost its
// ZooKeeper session, or one between terms).
type NotLeaderError struct {
	// Partition and Addr name the replica.
	Partition int
	Addr      string
	// Leader is the leader's address as the replica knows it; empty if none.
	Leader string
	// Why says what the replica is, e.g. "a follower" or "without a ZooKeeper session".
	Why string
}

func (e *NotLeaderError) Error() string {
	msg := fmt.Sprintf("node %s is not the leader of partition %d (%s)", e.Addr, e.Partition, e.Why)
	if e.Leader != "" {
		msg += "; the leader is " + e.Leader
	}
	return msg + ": send writes and strong reads through the router, or read with consistency stale"
}

// NotLeader reports whether err (from a node, over gRPC) says the node is not
// its partition's leader.
func NotLeader(err error) bool {
	return hasReason(err, ReasonNotLeader)
}

// notLeaderStatus is Unavailable with ErrorInfo NOT_LEADER and a RetryInfo.
func notLeaderStatus(e *NotLeaderError) error {
	st := status.New(codes.Unavailable, e.Error())
	info := &errdetails.ErrorInfo{Reason: ReasonNotLeader, Domain: "plugdb", Metadata: map[string]string{
		"partition": fmt.Sprint(e.Partition), "addr": e.Addr, "leader": e.Leader}}
	if d, err := st.WithDetails(info, &errdetails.RetryInfo{RetryDelay: durationpb.New(100 * time.Millisecond)}); err == nil {
		st = d
	}
	return st.Err()
}

// ReasonWrongPartition is the ErrorInfo reason of a WrongPartitionError on the
// wire; its metadata holds "owner" (the key's partition), "partition" and
// "addr" (the node's).
const ReasonWrongPartition = "WRONG_PARTITION"

// WrongPartitionError says a node was sent a key that another partition owns:
// a client that addressed the wrong node, or a router whose view of the
// cluster is out of date. Nothing was read or written.
type WrongPartitionError struct {
	// Key is the first refused key.
	Key []byte
	// Owner is the partition Key belongs to.
	Owner int
	// Partition and Addr name the node that refused it.
	Partition int
	Addr      string
}

func (e *WrongPartitionError) Error() string {
	return fmt.Sprintf("key %q belongs to partition %d, this node (%s) serves partition %d: send requests through the router, or to partition %d's leader",
		e.Key, e.Owner, e.Addr, e.Partition, e.Owner)
}

// WrongPartition reports whether err (from a node, over gRPC) says the node
// refused a key that another partition owns, and that partition.
func WrongPartition(err error) (owner int, ok bool) {
	info := errorInfo(err, codes.FailedPrecondition, ReasonWrongPartition)
	if info == nil {
		return 0, false
	}
	p, aerr := strconv.Atoi(info.GetMetadata()["owner"])
	return p, aerr == nil
}

// wrongPartitionStatus is FailedPrecondition with msg (the error's text,
// with any context it was wrapped in) and ErrorInfo WRONG_PARTITION.
func wrongPartitionStatus(e *WrongPartitionError, msg string) error {
	st := status.New(codes.FailedPrecondition, msg)
	info := &errdetails.ErrorInfo{Reason: ReasonWrongPartition, Domain: "plugdb", Metadata: map[string]string{
		"owner": strconv.Itoa(e.Owner), "partition": strconv.Itoa(e.Partition), "addr": e.Addr}}
	if d, err := st.WithDetails(info); err == nil {
		st = d
	}
	return st.Err()
}
