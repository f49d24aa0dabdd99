package node

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/plugdb/plugdb/core/partition"
	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/engines/enginetest"
	"github.com/plugdb/plugdb/engines/memory"
)

// TestRebuildNeedsSnapshotter: a follower whose engine is not an
// engines.Snapshotter cannot be rebuilt from a snapshot, and says so before
// it asks the leader for one.
func TestRebuildNeedsSnapshotter(t *testing.T) {
	ctx := context.Background()
	mem, err := memory.Open(ctx, engines.Options{Dir: t.TempDir(), Logger: hclog.NewNullLogger()})
	if err != nil {
		t.Fatal(err)
	}
	p, err := partition.Open(ctx, 0, enginetest.RequiredOnly(mem))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	n := &Node{part: p, logger: hclog.NewNullLogger()}
	err = n.rebuild(ctx)
	if !errors.Is(err, errors.ErrUnsupported) || !strings.Contains(err.Error(), "does not implement engines.Snapshotter") {
		t.Fatalf("rebuild: got %v, want an error wrapping errors.ErrUnsupported naming engines.Snapshotter", err)
	}
	t.Log(err)
}
