package partition

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/engines/enginetest"
	"github.com/plugdb/plugdb/engines/memory"
)

// TestRequiredOnlyEngine: a partition over an engine with only the required
// interface takes writes, answers a retry from its request table (read with
// Get), reopens with that table, fails a scan with an error naming
// engines.Scanner, and reports zero stats.
func TestRequiredOnlyEngine(t *testing.T) {
	ctx := context.Background()
	mem, err := memory.Open(ctx, engines.Options{Dir: t.TempDir(), Logger: hclog.NewNullLogger()})
	if err != nil {
		t.Fatal(err)
	}
	eng := enginetest.RequiredOnly(mem)
	p, err := Open(ctx, 0, eng)
	if err != nil {
		t.Fatal(err)
	}
	id := RequestID{Client: "c", Seq: 1}
	first := once(t, p, id, put("k", "v1", Always))
	if again := once(t, p, id, put("k", "v2", Always)); !slices.Equal(again, first) {
		t.Errorf("retry: lsns %v, want the first attempt's %v", again, first)
	}
	if row, err := p.Get(ctx, []byte("k")); err != nil || string(row.Value) != "v1" {
		t.Errorf("get k: %q, %v; want v1 (the retry is not applied again)", row.Value, err)
	}

	var scanErr error
	for _, err := range p.Scan(ctx, engines.ScanRange{}) {
		scanErr = err
		break
	}
	if !errors.Is(scanErr, errors.ErrUnsupported) || !strings.Contains(scanErr.Error(), "does not implement engines.Scanner") {
		t.Errorf("scan: got %v, want an error wrapping errors.ErrUnsupported naming engines.Scanner", scanErr)
	}
	if st, err := p.Stats(ctx); err != nil || st != (engines.Stats{}) {
		t.Errorf("stats: %+v, %v; want zeros", st, err)
	}

	// A second partition over the same engine reads the table anew, with Get.
	p2, err := Open(ctx, 0, eng)
	if err != nil {
		t.Fatal(err)
	}
	if again := once(t, p2, id, put("k", "v3", Always)); !slices.Equal(again, first) {
		t.Errorf("retry on a new partition: lsns %v, want %v", again, first)
	}
	next := once(t, p2, RequestID{Client: "c", Seq: 2}, put("k", "v4", Always))
	if next[0] <= first[0] {
		t.Errorf("next seq: lsns %v, want above %v", next, first)
	}
	if _, err := p2.WriteOnce(ctx, []Write{put("k", "v0", Always)}, 0, id); !errors.Is(err, ErrStaleRequest) {
		t.Errorf("older seq: %v, want ErrStaleRequest", err)
	}
	p2.Close()
	p.Close()
}
