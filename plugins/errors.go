package plugins

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/errdefs/errgrpc"
)

// Errors travel as gRPC codes by the one table of errdefs/errgrpc: each of
// plugdb's sentinels (errdefs, re-exported by the contract packages) has a code
// of its own, so an error received from a plugin matches, with errors.Is, the
// same sentinel as in process, and no other. Unavailable is also what gRPC
// answers when the transport failed (the plugin died), so a plugin's own
// Unavailable answer (a replicator's ErrUnavailable) carries a marker
// (answerStatus), and only an unmarked Unavailable is a TransportError.

// The marker of an Unavailable status that is a plugin's answer (a
// replicator's ErrUnavailable) rather than the transport failing.
const (
	answerReason = "PLUGDB_PLUGIN_ANSWER"
	answerDomain = "plugdb"
)

// answerStatus returns the status a plugin answers with: code and msg, and for
// Unavailable the marker that tells it from a transport failure.
func answerStatus(code codes.Code, msg string) *status.Status {
	st := status.New(code, msg)
	if code != codes.Unavailable {
		return st
	}
	if marked, err := st.WithDetails(&errdetails.ErrorInfo{Reason: answerReason, Domain: answerDomain}); err == nil {
		return marked
	}
	return st
}

// isAnswer reports whether st carries the marker of answerStatus.
func isAnswer(st *status.Status) bool {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == answerReason && info.GetDomain() == answerDomain {
			return true
		}
	}
	return false
}

// codeOf returns the gRPC code for err, by the table, or Unknown.
func codeOf(err error) codes.Code { return errgrpc.Code(err) }

// toStatus turns an error from an implementation into a gRPC status error.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return answerStatus(codeOf(err), err.Error()).Err()
}

// toStatusByTable is toStatus for the replicator shims: the code always comes
// from the sentinel table, never from a gRPC status err may wrap. A replicator
// talks gRPC to its peers, and a peer's Unavailable passed through as is
// would read, on the host, as the plugin itself being unreachable.
func toStatusByTable(err error) error {
	if err == nil {
		return nil
	}
	return answerStatus(codeOf(err), err.Error()).Err()
}

// remoteError is an error that came back from a plugin: its text is the plugin's
// message, and it matches the one sentinel of its code with errors.Is.
type remoteError struct {
	code     codes.Code
	msg      string
	sentinel error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.sentinel }

// GRPCStatus lets the error travel on as the same gRPC status.
func (e *remoteError) GRPCStatus() *status.Status { return answerStatus(e.code, e.msg) }

// fromCode rebuilds an error from a code and message received from a plugin.
func fromCode(code codes.Code, msg string) error {
	if code == codes.OK {
		return nil
	}
	sentinel := errgrpc.Sentinel(code)
	if sentinel == nil {
		sentinel = fmt.Errorf("plugin error (%s)", strings.ToLower(code.String()))
	}
	return &remoteError{code: code, msg: msg, sentinel: sentinel}
}

// fromStatus converts an error returned by a gRPC call made with ctx back into a
// contract error. Transport failures (the plugin process died, say) keep their
// gRPC status, so the host can tell them apart with IsTransport: Unavailable
// without the answer marker, and also Canceled or DeadlineExceeded while ctx is
// still live, which is gRPC closing the connection under the call rather than
// the caller giving up.
func fromStatus(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch st.Code() {
	case codes.Unavailable:
		if !isAnswer(st) {
			return &TransportError{Err: err}
		}
	case codes.Canceled, codes.DeadlineExceeded:
		if !ctxEnded(ctx) {
			return &TransportError{Err: err}
		}
	}
	return fromCode(st.Code(), st.Message())
}

// ctxEnded reports whether ctx ended: it is done, or its deadline passed (gRPC
// may report a call past its deadline a moment before ctx's timer fires).
func ctxEnded(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	deadline, ok := ctx.Deadline()
	return ok && !time.Now().Before(deadline)
}

// TransportError is a failure of the connection to a plugin rather than an answer
// from it: typically the plugin process died. The host restarts the plugin.
type TransportError struct{ Err error }

func (e *TransportError) Error() string { return "plugin connection: " + e.Err.Error() }
func (e *TransportError) Unwrap() error { return e.Err }

// IsTransport reports whether err is a failure to reach the plugin.
func IsTransport(err error) bool {
	var t *TransportError
	return errors.As(err, &t)
}

// errClosedClient is returned by an engine plugin client used after Close.
var errClosedClient = fmt.Errorf("engine plugin client: %w", engines.ErrClosed)

// closeError is the error of a client's Close call to the plugin: nil, or
// what the plugin answered, as "close <what>: ...".
func closeError(ctx context.Context, what string, err error) error {
	if err != nil {
		return fmt.Errorf("close %s: %w", what, fromStatus(ctx, err))
	}
	return nil
}
