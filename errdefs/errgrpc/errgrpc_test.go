package errgrpc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/plugdb/plugdb/errdefs"
)

// Every sentinel of errdefs has an entry, and each round-trips: its code
// gives it back, and so does a wrapped error.
func TestEverySentinelRoundTrips(t *testing.T) {
	want := append(errdefs.Sentinels(), errors.ErrUnsupported, context.Canceled, context.DeadlineExceeded)
	for _, s := range want {
		code := Code(s)
		if code == codes.Unknown || code == codes.OK {
			t.Errorf("Code(%q) = %v, want a code of its own", s, code)
			continue
		}
		if got := Sentinel(code); got != s {
			t.Errorf("Sentinel(Code(%q) = %v) = %v, want the same sentinel", s, code, got)
		}
		if got := Code(fmt.Errorf("engine x: %w", s)); got != code {
			t.Errorf("Code(wrapped %q) = %v, want %v", s, got, code)
		}
	}
	if len(table) != len(want) {
		t.Errorf("table has %d entries, want %d (errdefs.Sentinels and the standard errors)", len(table), len(want))
	}
}

// No two entries share a code or an error: an error received with a code
// matches exactly one sentinel.
func TestCodesUnique(t *testing.T) {
	var seenCodes []codes.Code
	var seenErrs []error
	for _, e := range table {
		if slices.Contains(seenCodes, e.code) {
			t.Errorf("code %v appears twice", e.code)
		}
		if slices.Contains(seenErrs, e.err) {
			t.Errorf("error %q appears twice", e.err)
		}
		seenCodes = append(seenCodes, e.code)
		seenErrs = append(seenErrs, e.err)
	}
}

// The most specific sentinel wins: ErrTooFewInSync wraps ErrUnavailable, and
// a sentinel comes before a context error it is joined with.
func TestCodeOrder(t *testing.T) {
	for _, c := range []struct {
		err  error
		want codes.Code
	}{
		{nil, codes.OK},
		{errors.New("other"), codes.Unknown},
		{fmt.Errorf("partition 0: %w", errdefs.ErrTooFewInSync), codes.OutOfRange},
		{fmt.Errorf("acks not met: %w: %w", context.DeadlineExceeded, errdefs.ErrUnavailable), codes.Unavailable},
	} {
		if got := Code(c.err); got != c.want {
			t.Errorf("Code(%v) = %v, want %v", c.err, got, c.want)
		}
	}
	for _, code := range []codes.Code{codes.OK, codes.Unknown, codes.Internal} {
		if s := Sentinel(code); s != nil {
			t.Errorf("Sentinel(%v) = %v, want nil", code, s)
		}
	}
}
