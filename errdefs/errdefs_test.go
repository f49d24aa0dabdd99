package errdefs

import (
	"errors"
	"fmt"
	"go/build"
	"slices"
	"strings"
	"testing"
)

func TestSentinelsDistinct(t *testing.T) {
	all := Sentinels()
	for i, a := range all {
		if a == nil || a.Error() == "" {
			t.Errorf("sentinel %d is nil or has no text", i)
		}
		for _, b := range all[i+1:] {
			if a == b || a.Error() == b.Error() {
				t.Errorf("sentinels %q and %q are not distinct", a, b)
			}
		}
	}
}

func TestMatching(t *testing.T) {
	for _, c := range []struct {
		err  error
		want []error
	}{
		{nil, nil},
		{errors.New("other"), nil},
		{fmt.Errorf("engine x: %w", ErrClosed), []error{ErrClosed}},
		{fmt.Errorf("partition 1: %w", ErrTooFewInSync), []error{ErrTooFewInSync, ErrUnavailable}},
		{fmt.Errorf("lost: %w: %w", ErrFenced, ErrUnavailable), []error{ErrUnavailable, ErrFenced}},
	} {
		if got := Matching(c.err); !slices.Equal(got, c.want) {
			t.Errorf("Matching(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// errdefs is a leaf: it imports only the standard library (no other plugdb
// package, no gRPC), so the contract packages can re-export its sentinels.
func TestLeaf(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range pkg.Imports {
		if strings.Contains(strings.SplitN(imp, "/", 2)[0], ".") {
			t.Errorf("errdefs imports %s: it must import only the standard library", imp)
		}
	}
}
