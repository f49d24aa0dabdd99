package enginetest_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/engines/enginetest"
	"github.com/plugdb/plugdb/errdefs"
)

// WantError passes an error that means its sentinel and nothing else, and
// fails one that is missing, of another sentinel, or of two at once.
func TestWantError(t *testing.T) {
	for _, c := range []struct {
		err  error
		want []error
		pass bool
	}{
		{fmt.Errorf("memory engine: get: %w", engines.ErrClosed), []error{engines.ErrClosed}, true},
		{fmt.Errorf("partition 1: %w", errdefs.ErrTooFewInSync), []error{errdefs.ErrTooFewInSync, errdefs.ErrUnavailable}, true},
		{fmt.Errorf("partition 1: %w", errdefs.ErrUnavailable), []error{errdefs.ErrTooFewInSync, errdefs.ErrUnavailable}, true},
		{fmt.Errorf("x: %w", errdefs.ErrFenced), []error{errdefs.ErrFenced, errdefs.ErrNotLeader}, true},
		{nil, []error{engines.ErrNotFound}, false},
		{errors.New("not found"), []error{engines.ErrNotFound}, false},
		{fmt.Errorf("x: %w", engines.ErrInvalidArgument), []error{engines.ErrNotFound}, false},
		{fmt.Errorf("x: %w: %w", engines.ErrNotFound, engines.ErrClosed), []error{engines.ErrNotFound}, false},
		{fmt.Errorf("partition 1: %w", errdefs.ErrTooFewInSync), []error{errdefs.ErrUnavailable}, false},
	} {
		r := enginetest.RunCase(t.Context(), enginetest.Case{Name: "X", Test: func(t enginetest.T, _ enginetest.Harness) {
			enginetest.WantError(t, "call", c.err, c.want...)
		}}, nil)
		if got := r.Status == enginetest.Pass; got != c.pass {
			t.Errorf("WantError(%v, %v): pass %v, want %v; log %q", c.err, c.want, got, c.pass, r.Log)
		}
	}
}
