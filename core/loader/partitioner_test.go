package loader

import (
	"context"
	"errors"
	"maps"
	"strings"
	"syscall"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/plugdb/plugdb/partitioners"
	"github.com/plugdb/plugdb/partitioners/hash"
	"github.com/plugdb/plugdb/partitioners/partitionertest"
)

// bundledPartitioners are the partitioners the test binary serves as plugins.
var bundledPartitioners = map[string]partitioners.OpenFunc{"hash": hash.Open}

// TestPartitionerKit runs the conformance kit against the hash partitioner
// through the loader, in a real plugin process and linked in, each compared
// with hash linked in directly.
func TestPartitionerKit(t *testing.T) {
	l := testLoader(nil)
	for _, mode := range []string{ModeProcess, ModeInProcess} {
		t.Run(mode, func(t *testing.T) {
			partitionertest.Run(t, func(*testing.T) partitionertest.Harness {
				return partitionertest.Harness{
					Open: partitionertest.OpenConfigured(func(ctx context.Context, n int, opts map[string]string) (partitioners.Partitioner, error) {
						return l.OpenPartitioner(ctx, Block{Plugin: "hash", Mode: mode, Options: maps.Clone(opts)}, n)
					}),
					Reference: partitionertest.FromOpenFunc(hash.Open),
				}
			})
		})
	}
}

func TestRefusesBadPartitioners(t *testing.T) {
	l := testLoader(nil)
	ctx := context.Background()
	for _, tc := range []struct {
		name       string
		block      Block
		partitions int
		want       string
		wrongKind  bool
	}{
		{"unknown bundled", Block{Plugin: "range"}, 4, `partitioner.plugin "range": no such bundled partitioner (bundled: hash)`, false},
		{"engine name", Block{Plugin: "memory"}, 4, `partitioner.plugin "memory": no such bundled partitioner (bundled: hash)`, false},
		{"bad mode", Block{Plugin: "hash", Mode: "thread"}, 4, `partitioner.mode "thread": allowed values are process, inprocess`, false},
		{"missing binary", Block{Plugin: "/no/such/partitioner"}, 4, `partitioner.plugin "/no/such/partitioner": plugin binary not found`, false},
		{"zero partitions", Block{Plugin: "hash"}, 0, "partition count 0: allowed values are 1..1024", false},
		{"too many partitions", Block{Plugin: "hash", Mode: ModeInProcess}, 1025, "partition count 1025: allowed values are 1..1024", false},
		{"unknown option", Block{Plugin: "hash", Options: map[string]string{"seed": "7"}}, 4, `partitioner plugin hash: configure 4 partitions: hash partitioner: option "seed": this partitioner takes no options`, false},
		{"unknown option inprocess", Block{Plugin: "hash", Mode: ModeInProcess, Options: map[string]string{"seed": "7"}}, 4, `option "seed": this partitioner takes no options`, false},
		{"other version", Block{Plugin: script(t, "PLUGDB_TEST_ROLE=partitioner-v2")}, 4, "speaks another partitioner protocol version than this plugdb (1)", false},
		{"an engine", Block{Plugin: script(t, "PLUGDB_TEST_ROLE=engine")}, 4, "is not a partitioner plugin (it does not serve the partitioner service)", true},
		{"sha256 mismatch", Block{Plugin: "hash", SHA256: strings.Repeat("ab", 32)}, 4, "binary does not match the pinned sha256", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := l.OpenPartitioner(ctx, tc.block, tc.partitions)
			if err == nil {
				p.Close()
				t.Fatalf("opened; want error %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q\nwant it to contain %q", err, tc.want)
			}
			if errors.Is(err, ErrWrongKind) != tc.wrongKind {
				t.Fatalf("errors.Is(%q, ErrWrongKind) = %v", err, !tc.wrongKind)
			}
		})
	}
}

func TestRestartsCrashedPartitioner(t *testing.T) {
	logs := &syncBuffer{}
	l := testLoader(hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Info}))
	ctx := context.Background()
	p, err := l.OpenPartitioner(ctx, Block{Plugin: "hash"}, 7)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	keys := [][]byte{[]byte("user:2"), []byte("a")}
	out := make([]int, 2)
	if err := p.Locate(ctx, keys, out); err != nil || out[0] != 3 || out[1] != 6 {
		t.Fatalf("locate: %v, %v", out, err)
	}
	pid := p.(*processPartitioner).PID()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The call that meets the dead process is retried on a restarted one.
	clear(out)
	if err := p.Locate(ctx, keys, out); err != nil || out[0] != 3 || out[1] != 6 {
		t.Fatalf("locate after kill: %v, %v", out, err)
	}
	if newPID := p.(*processPartitioner).PID(); newPID == pid || newPID == 0 {
		t.Fatalf("pid %d after restart, was %d", newPID, pid)
	}
	if parts, err := p.Range(ctx, nil, nil); err != nil || len(parts) != 7 {
		t.Fatalf("range after restart: %v, %v", parts, err)
	}
	if !strings.Contains(logs.String(), "partitioner plugin died; restarting") || !strings.Contains(logs.String(), "partitioner plugin restarted") {
		t.Fatalf("restart not logged:\n%s", logs)
	}
	// A plugin that cannot be restarted: calls fail naming it.
	p.(*processPartitioner).l = &Loader{Logger: l.Logger, Self: "/no/such/plugdb", Partitioners: bundledPartitioners, MaxRestarts: 1}
	if err := syscall.Kill(p.(*processPartitioner).PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err = p.Locate(ctx, keys, out)
	if err == nil || !strings.Contains(err.Error(), "partitioner plugin hash") {
		t.Fatalf("locate with the plugin gone for good: %v, want an error naming it", err)
	}
	t.Logf("gone for good: %v", err)
}
