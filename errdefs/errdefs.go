// Package errdefs defines plugdb's sentinel errors, once: the contract
// packages (engines, partitioners, replicators) re-export them, and the host,
// the plugin shims and the bundled plugins test them with errors.Is. An error
// matches the same sentinels in process and through a plugin, because
// errdefs/errgrpc maps each sentinel to one gRPC code and back.
//
// The sentinels' own texts are generic ("closed", "not found"): an error that
// wraps one says what it is about (fmt.Errorf("engine %s: %w", dir, ErrClosed)).
//
// Like the contract packages, errdefs imports neither gRPC nor any other plugdb
// package (errdefs/errgrpc holds the gRPC table), so any package may import it.
package errdefs

import (
	"errors"
	"fmt"
)

// The sentinel errors. Wrap them with context (fmt.Errorf("...: %w", ErrNotFound));
// test them with errors.Is.
var (
	// ErrNotFound: the key has no live row, or the thing asked for does not
	// exist.
	ErrNotFound = errors.New("not found")
	// ErrInvalidArgument: a malformed request or a bad option, such as an
	// empty key, an unknown option or a statement whose LSNs do not follow
	// the last one; the wrapping message names the argument and what is
	// allowed.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrCorrupt: stored data failed verification (a CRC mismatch in the
	// middle of a file, say).
	ErrCorrupt = errors.New("data corrupt")
	// ErrClosed: the callee is closed (Close was called), or stopped itself
	// after an unrecoverable error (an engine after a failed fsync); the
	// wrapping message says what is closed.
	ErrClosed = errors.New("closed")
	// ErrUnavailable: the call could not be served now, and its outcome may
	// be unknown: a replicator's ack mode was not met in time, so the
	// statement stays in the log and may still commit.
	ErrUnavailable = errors.New("unavailable")
	// ErrTooFewInSync: fewer replicas are in sync than the ack mode needs, so
	// the write failed at once rather than wait for acks that cannot come. It
	// wraps ErrUnavailable: the statement may be in the log.
	ErrTooFewInSync = fmt.Errorf("too few replicas in sync: %w", ErrUnavailable)
	// ErrFenced: a newer epoch has been seen, so this replica no longer
	// leads; the host must step down and stop acknowledging writes.
	ErrFenced = errors.New("fenced by a newer epoch")
	// ErrNotLeader: a leader-only call on a replica (or a candidate of the
	// leader election) that does not lead, or whose epoch is over.
	ErrNotLeader = errors.New("not leader")
)

// Sentinels returns plugdb's sentinel errors (a new slice each call), most
// specific first: ErrTooFewInSync comes before ErrUnavailable, which it wraps.
func Sentinels() []error {
	return []error{
		ErrNotFound, ErrInvalidArgument, ErrCorrupt, ErrClosed,
		ErrTooFewInSync, ErrUnavailable, ErrFenced, ErrNotLeader,
	}
}

// Matching returns the sentinels of Sentinels that err matches with
// errors.Is, in that order; nil if none. A conformance kit compares it with
// Matching(want) to check that an error means what it should and nothing
// else: Matching(ErrTooFewInSync) is [ErrTooFewInSync ErrUnavailable].
func Matching(err error) []error {
	var m []error
	for _, s := range Sentinels() {
		if errors.Is(err, s) {
			m = append(m, s)
		}
	}
	return m
}
