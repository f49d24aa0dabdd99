package plugins

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/partitioners"
)

// errorCodes maps each sentinel error of the contracts to the gRPC code it
// travels as. It is the one table both directions use; an error received with
// a code matches every sentinel of that code (engines.ErrInvalidArgument and
// partitioners.ErrInvalidArgument, say).
var errorCodes = []struct {
	err  error
	code codes.Code
}{
	{engines.ErrNotFound, codes.NotFound},
	{engines.ErrInvalidArgument, codes.InvalidArgument},
	{partitioners.ErrInvalidArgument, codes.InvalidArgument},
	{engines.ErrCorrupt, codes.DataLoss},
	{engines.ErrClosed, codes.FailedPrecondition},
	{context.Canceled, codes.Canceled},
	{context.DeadlineExceeded, codes.DeadlineExceeded},
}

// codeOf returns the gRPC code for err, by the table, or Unknown.
func codeOf(err error) codes.Code {
	for _, e := range errorCodes {
		if errors.Is(err, e.err) {
			return e.code
		}
	}
	return codes.Unknown
}

// toStatus turns an error from an implementation into a gRPC status error.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codeOf(err), err.Error())
}

// remoteError is an error that came back from a plugin: its text is the plugin's
// message, and it matches the sentinels of its code with errors.Is.
type remoteError struct {
	code      codes.Code
	msg       string
	sentinels []error
}

func (e *remoteError) Error() string   { return e.msg }
func (e *remoteError) Unwrap() []error { return e.sentinels }

// GRPCStatus lets the error travel on as the same gRPC status.
func (e *remoteError) GRPCStatus() *status.Status { return status.New(e.code, e.msg) }

// fromCode rebuilds an error from a code and message received from a plugin.
func fromCode(code codes.Code, msg string) error {
	if code == codes.OK {
		return nil
	}
	var sentinels []error
	for _, e := range errorCodes {
		if e.code == code {
			sentinels = append(sentinels, e.err)
		}
	}
	if sentinels == nil {
		sentinels = []error{fmt.Errorf("plugin error (%s)", strings.ToLower(code.String()))}
	}
	return &remoteError{code: code, msg: msg, sentinels: sentinels}
}

// fromStatus converts an error returned by a gRPC call made with ctx back into a
// contract error. Transport failures (the plugin process died, say) keep their
// gRPC status, so the host can tell them apart with IsTransport: Unavailable, and
// also Canceled or DeadlineExceeded while ctx is still live, which is gRPC
// closing the connection under the call rather than the caller giving up.
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
		return &TransportError{Err: err}
	case codes.Canceled, codes.DeadlineExceeded:
		if ctx.Err() == nil {
			return &TransportError{Err: err}
		}
	}
	return fromCode(st.Code(), st.Message())
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

// errClosedClient is returned by a plugin client used after Close.
var errClosedClient = fmt.Errorf("plugin client closed: %w", engines.ErrClosed)
