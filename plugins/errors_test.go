package plugins

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/plugdb/plugdb/errdefs"
)

// Every sentinel of errdefs crosses the plugin boundary as itself: the error
// rebuilt from its status matches, with errors.Is, exactly the sentinels the
// sent error matched (errdefs.Matching), keeps its message, and is not a
// transport failure. A plain error matches none.
func TestSentinelsCrossTheBoundary(t *testing.T) {
	ctx := context.Background()
	for _, s := range append(errdefs.Sentinels(), errors.New("plain")) {
		sent := fmt.Errorf("partition 3: trouble: %w", s)
		got := fromStatus(ctx, toStatus(sent))
		if got == nil || got.Error() != sent.Error() || IsTransport(got) {
			t.Errorf("%q: got %v (transport %v), want %q", s, got, IsTransport(got), sent)
			continue
		}
		if m, want := errdefs.Matching(got), errdefs.Matching(sent); !slices.Equal(m, want) {
			t.Errorf("%q: the received error matches %v, want %v", s, m, want)
		}
	}
}
