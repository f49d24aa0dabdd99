// Package errgrpc is the one table between plugdb's sentinel errors (package
// errdefs) and gRPC codes: each sentinel travels as a code of its own, so an
// error received with a code matches, with errors.Is, exactly the sentinel it
// was sent with, the same as in process. The plugin shims use it both ways.
//
// It is a package of its own so that errdefs, and the contract packages that
// re-export its sentinels, import no gRPC.
package errgrpc

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"

	"github.com/plugdb/plugdb/errdefs"
)

// table maps each sentinel to its code; no two entries share an error or a
// code. An error is sent with the code of the first entry it matches, so the
// most specific sentinel comes first (ErrTooFewInSync before ErrUnavailable,
// which it wraps), and plugdb's sentinels before the context errors: a
// replicator's "acks not met before ctx ended" that wraps both ErrUnavailable
// and context.DeadlineExceeded stays ErrUnavailable.
//
// ErrFenced is Aborted (gRPC's code for a lost sequencer check), ErrNotLeader
// PermissionDenied (this replica may not take writes), ErrClosed
// FailedPrecondition, ErrTooFewInSync OutOfRange (the in-sync count is below
// the range the ack mode needs), ErrCorrupt DataLoss. ErrUnavailable is
// Unavailable, which gRPC also uses when the transport fails: the plugin shims
// mark their own Unavailable answers to tell the two apart. Every code here
// but Unavailable, Unimplemented, Canceled and DeadlineExceeded is one gRPC
// itself never produces.
var table = []struct {
	err  error
	code codes.Code
}{
	{errdefs.ErrNotFound, codes.NotFound},
	{errdefs.ErrInvalidArgument, codes.InvalidArgument},
	{errdefs.ErrCorrupt, codes.DataLoss},
	{errdefs.ErrClosed, codes.FailedPrecondition},
	{errdefs.ErrTooFewInSync, codes.OutOfRange}, // before ErrUnavailable, which it wraps
	{errdefs.ErrUnavailable, codes.Unavailable},
	{errdefs.ErrFenced, codes.Aborted},
	{errdefs.ErrNotLeader, codes.PermissionDenied},
	// An optional capability the callee lacks (engines.Flusher, say), or an
	// RPC an older plugin does not know: gRPC answers those Unimplemented too.
	{errors.ErrUnsupported, codes.Unimplemented},
	{context.Canceled, codes.Canceled},
	{context.DeadlineExceeded, codes.DeadlineExceeded},
}

// Code returns the code err travels as: that of the first sentinel of the
// table err matches with errors.Is; OK for nil, Unknown for an error that
// matches none.
func Code(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	for _, e := range table {
		if errors.Is(err, e.err) {
			return e.code
		}
	}
	return codes.Unknown
}

// Sentinel returns the one sentinel error of code (errdefs.ErrNotFound for
// NotFound, context.Canceled for Canceled, …), or nil if the table has none
// for it (OK, Unknown, Internal, …).
func Sentinel(code codes.Code) error {
	for _, e := range table {
		if e.code == code {
			return e.err
		}
	}
	return nil
}
