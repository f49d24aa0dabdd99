// Package engines is the storage engine contract of plugdb.
//
// An engine stores the rows of one partition on one node. Like database/sql/driver,
// this package imports neither gRPC nor the plugdb core: a third party implements
// Engine, and serves it as a plugin with plugins.ServeEngine, or links it in process.
//
// All methods must be safe for concurrent use. Byte slices passed to an engine belong
// to the caller until the call returns; byte slices returned by an engine belong to
// the caller.
package engines

import (
	"bytes"
	"context"
	"fmt"
	"iter"

	"github.com/hashicorp/go-hclog"

	"github.com/plugdb/plugdb/errdefs"
)

// Sentinel errors, plugdb's own (package errdefs) re-exported: they are the same
// values as partitioners' and replicators'. Engines wrap them with context
// (fmt.Errorf("...: %w", ErrNotFound)); callers test them with errors.Is, which
// keeps working across the plugin boundary.
var (
	// ErrNotFound: the key has no live row.
	ErrNotFound = errdefs.ErrNotFound
	// ErrInvalidArgument: a malformed request, such as an empty or oversized key or
	// value; the wrapping message names the limit.
	ErrInvalidArgument = errdefs.ErrInvalidArgument
	// ErrCorrupt: stored data failed verification (a CRC mismatch in the middle of a
	// file, say). Never returned as a value.
	ErrCorrupt = errdefs.ErrCorrupt
	// ErrClosed: the engine is closed, or stopped itself after an unrecoverable I/O
	// error (a failed fsync). Its text is "closed": the wrapping message names the
	// engine ("memory engine: get: closed").
	ErrClosed = errdefs.ErrClosed
)

// Op is the kind of a mutation.
type Op uint8

const (
	// OpPut stores Value under Key.
	OpPut Op = iota + 1
	// OpDelete removes Key; deleting a missing key is not an error.
	OpDelete
)

// String returns "put" or "delete".
func (o Op) String() string {
	switch o {
	case OpPut:
		return "put"
	case OpDelete:
		return "delete"
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Mutation is one put or delete, carrying the log sequence number the host assigned.
type Mutation struct {
	Op    Op
	Key   []byte
	Value []byte // nil for OpDelete
	LSN   uint64
}

// Row is one live key with its value and the LSN of the write that stored it.
type Row struct {
	Key   []byte
	Value []byte
	LSN   uint64
}

// Clone returns a copy of r that shares no buffer with it: what an engine
// stores of a Mutation, and returns of what it stores, so that caller and
// engine never share buffers.
func (r Row) Clone() Row {
	return Row{Key: bytes.Clone(r.Key), Value: bytes.Clone(r.Value), LSN: r.LSN}
}

// ScanRange selects the keys in [Start, End) in ascending order. A nil or empty End
// means no upper bound. Limit <= 0 means no limit.
type ScanRange struct {
	Start []byte
	End   []byte
	Limit int
}

// Stats describes an engine's contents.
type Stats struct {
	Keys         int64   // live keys
	BytesOnDisk  int64   // bytes in files the engine owns (0 for a memory engine)
	GarbageRatio float64 // share of stored bytes that are dead rows, 0..1
}

// Capabilities declares what an engine guarantees (CapabilitiesReporter);
// conformance kits skip the cases a capability excludes.
type Capabilities struct {
	// Durable engines keep applied batches across Close and re-Open of the same Dir.
	Durable bool
	// MaxKeySize and MaxValueSize are the largest key and value in bytes the engine
	// accepts (0: no limit). Larger ones fail with ErrInvalidArgument.
	MaxKeySize   int
	MaxValueSize int
}

// Options are what an engine is opened with.
type Options struct {
	// Dir is the folder the engine owns; it exists when Open is called.
	Dir string
	// Params are the engine's own options from the config's `options:` block, as
	// strings (e.g. "sync": "batch"). Engines reject unknown names with
	// ErrInvalidArgument naming the allowed ones.
	Params map[string]string
	// Logger is where the engine logs; a plugin's logs reach the host's log under
	// the plugin's name. Never nil when the host or plugins.Serve opens an engine.
	Logger hclog.Logger
	// LogBacked says a durable log backs the engine (the statement replicator's,
	// on a replica): that log is the commit point, and after a crash the host
	// replays it from the engine's AppliedLSN. Apply then need not fsync,
	// whatever the engine's sync mode: it still makes the batch visible and
	// hands it to the operating system before it returns (no write left in a
	// user-space buffer), so the batch survives a kill -9 of the engine's
	// process, though not a power loss. Durability comes from Flush (Flusher)
	// and Close.
	LogBacked bool
}

// OpenFunc opens an engine. It is what a plugin's main hands to plugins.ServeEngine.
type OpenFunc func(ctx context.Context, opts Options) (Engine, error)

// Engine stores one partition's rows. It is the required part of the contract,
// what every engine does; what not every engine can do is an optional
// interface the host finds by type assertion, with a documented fallback or a
// named error when it is absent:
//
//	Scanner               ordered range scans   absent: a scan fails with an error wrapping
//	                                            errors.ErrUnsupported ("engine X cannot
//	                                            serve scans (it does not implement
//	                                            engines.Scanner)"); the host reads its
//	                                            request table key by key with Get
//	Snapshotter           snapshot and restore  absent: a follower rebuild from the
//	                                            leader's snapshot fails with such an error
//	                                            (a follower that is not too far behind
//	                                            catches up from the log as always)
//	StatsReporter         key and byte counts   absent: status shows zeros
//	CapabilitiesReporter  durability, limits    absent: DefaultCapabilities
//	Flusher               flush a log-backed    absent: the host takes AppliedLSN as
//	                      engine                the durable point
//
// Use AsScanner, AsSnapshotter, AsStatsReporter and AsFlusher (not a bare type
// assertion), CapabilitiesOf, and Scan, Snapshot, Restore and StatsOf, which
// apply the fallbacks: an engine that stands for another (a Proxy, such as the
// host's client of an engine plugin) has every optional method, and says which
// of them the engine behind it has.
//
// Opening is the OpenFunc's job: an engine is open once it is returned.
type Engine interface {
	// Get returns the live row for key, or an error wrapping ErrNotFound. An
	// empty key, or one over the key limit, fails with ErrInvalidArgument
	// (CheckKey).
	Get(ctx context.Context, key []byte) (Row, error)

	// Apply applies a batch of mutations atomically (all or none survive a crash)
	// and, per the engine's sync mode, durably before it returns (not so when
	// opened with Options.LogBacked), recording the batch's highest LSN as the
	// applied LSN with the data. LSNs must be
	// non-zero and strictly increasing within a batch (CheckBatch); otherwise
	// Apply fails with ErrInvalidArgument and applies nothing.
	//
	// Concurrent Apply calls are allowed (that is what lets an engine share one
	// fsync among them) and reach the engine in some order; the caller, which
	// assigns LSNs, never runs two batches that touch the same key at once, and
	// the engine does not reject a batch whose LSNs are below AppliedLSN. Where
	// an engine resolves a key's versions by LSN (on recovery, say), the highest
	// LSN wins. Skipping statements already applied is the host's job.
	Apply(ctx context.Context, batch []Mutation) error

	// AppliedLSN returns the highest LSN applied (0 for a new engine). It never
	// decreases, except through Restore. The host needs it to recover: it
	// resumes numbering after it, and replays its log from it.
	AppliedLSN(ctx context.Context) (uint64, error)

	// Close flushes and releases everything; later calls fail with ErrClosed.
	Close() error
}

// Scanner is an optional interface of an Engine: ordered range scans. The
// host's Scan (a client's scan, the status's count of internal rows) needs
// it; without it a scan fails with an error wrapping errors.ErrUnsupported.
type Scanner interface {
	// Scan yields the live rows in r in ascending key order. The caller may stop
	// early by breaking out of the loop. An error ends the sequence.
	Scan(ctx context.Context, r ScanRange) iter.Seq2[Row, error]
}

// Snapshotter is an optional interface of an Engine: a consistent copy of its
// contents, and its replacement by one. A follower too far behind the log is
// rebuilt from its leader's Snapshot with its own Restore; without them that
// rebuild fails with an error wrapping errors.ErrUnsupported.
type Snapshotter interface {
	// Snapshot returns a consistent point-in-time view: the applied LSN at that
	// point and all live rows in key order. The caller must range over rows to the
	// end or cancel ctx, so the engine can release the snapshot.
	Snapshot(ctx context.Context) (lsn uint64, rows iter.Seq2[Row, error], err error)

	// Restore replaces the engine's whole contents with rows and sets its applied
	// LSN to lsn, atomically: a crash midway leaves the old contents.
	Restore(ctx context.Context, lsn uint64, rows iter.Seq2[Row, error]) error
}

// StatsReporter is an optional interface of an Engine: counts and sizes for
// the status. Without it the status shows zeros.
type StatsReporter interface {
	// Stats returns counts and sizes.
	Stats(ctx context.Context) (Stats, error)
}

// CapabilitiesReporter is an optional interface of an Engine: its
// guarantees. Without it the host assumes DefaultCapabilities.
type CapabilitiesReporter interface {
	// Capabilities declares the engine's guarantees; it does not change
	// while the engine is open.
	Capabilities() Capabilities
}

// Flusher is an optional interface of an Engine, for one a durable log backs
// (Options.LogBacked): the host calls Flush periodically and reports the LSN it
// returns as the point up to which the log may be trimmed. Without it the host
// takes AppliedLSN as that point: an engine without Flush must make Apply
// durable per its sync mode even when opened LogBacked (an engine that is not
// durable anyway, such as a memory one, loses nothing more).
type Flusher interface {
	// Flush makes every batch applied before the call durable and returns the
	// applied LSN through which the engine is durable (at least the AppliedLSN
	// of any moment before the call).
	Flush(ctx context.Context) (uint64, error)
}

// CheckBatch verifies a batch against the rules of Apply (known ops; non-empty keys
// within caps' key limit; values, which may be empty, within its value limit;
// non-zero LSNs strictly increasing within the batch) and returns an error wrapping ErrInvalidArgument that names the broken rule.
func CheckBatch(caps Capabilities, batch []Mutation) error {
	var last uint64
	for i, m := range batch {
		if m.Op != OpPut && m.Op != OpDelete {
			return fmt.Errorf("mutation %d: op %d is not put (1) or delete (2): %w", i, m.Op, ErrInvalidArgument)
		}
		if len(m.Key) == 0 {
			return fmt.Errorf("mutation %d: empty key: %w", i, ErrInvalidArgument)
		}
		if caps.MaxKeySize > 0 && len(m.Key) > caps.MaxKeySize {
			return fmt.Errorf("mutation %d: key of %d bytes exceeds max_key_size %d: %w", i, len(m.Key), caps.MaxKeySize, ErrInvalidArgument)
		}
		if m.Op == OpPut && caps.MaxValueSize > 0 && len(m.Value) > caps.MaxValueSize {
			return fmt.Errorf("mutation %d: value of %d bytes exceeds max_value_size %d: %w", i, len(m.Value), caps.MaxValueSize, ErrInvalidArgument)
		}
		if m.LSN <= last {
			return fmt.Errorf("mutation %d: lsn %d must be above %d (lsns are non-zero and increase within a batch): %w", i, m.LSN, last, ErrInvalidArgument)
		}
		last = m.LSN
	}
	return nil
}

// CheckKey verifies a key for Get: non-empty and within caps.MaxKeySize.
func CheckKey(caps Capabilities, key []byte) error {
	if len(key) == 0 {
		return fmt.Errorf("empty key: %w", ErrInvalidArgument)
	}
	if caps.MaxKeySize > 0 && len(key) > caps.MaxKeySize {
		return fmt.Errorf("key of %d bytes exceeds max_key_size %d: %w", len(key), caps.MaxKeySize, ErrInvalidArgument)
	}
	return nil
}
