package node_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/plugdb/plugdb/core/api"
	"github.com/plugdb/plugdb/core/node"
	"github.com/plugdb/plugdb/core/partition"
	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/partitioners/keyrange"
)

// fakePartitioner places keys that end with "-x" in partition 1, the others
// in partition 0, and counts its Locate calls; with err set, Locate fails.
type fakePartitioner struct {
	locates atomic.Int64
	err     error
}

func (*fakePartitioner) Configure(context.Context, int, map[string]string) error { return nil }
func (*fakePartitioner) Close() error                                            { return nil }
func (*fakePartitioner) Range(context.Context, []byte, []byte) ([]int, error) {
	return []int{0, 1}, nil
}

func (p *fakePartitioner) Locate(_ context.Context, keys [][]byte, out []int) error {
	p.locates.Add(1)
	if p.err != nil {
		return p.err
	}
	for i, k := range keys {
		out[i] = 0
		if bytes.HasSuffix(k, []byte("-x")) {
			out[i] = 1
		}
	}
	return nil
}

func TestOwnerCheckRefusesAnotherPartitionsKey(t *testing.T) {
	ctx := context.Background()
	p, err := keyrange.Open(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Configure(ctx, 2, map[string]string{"splits": "m"}); err != nil {
		t.Fatal(err)
	}
	o := node.NewOwner(p, 0, "127.0.0.1:7101")
	if err := o.Check(ctx, []byte("a"), []byte("lzz")); err != nil {
		t.Fatalf("owned keys: %v", err)
	}
	err = o.Check(ctx, []byte("a"), []byte("k1"), []byte("q"), []byte("z"))
	var wp *api.WrongPartitionError
	if !errors.As(err, &wp) || string(wp.Key) != "q" || wp.Owner != 1 || wp.Partition != 0 || wp.Addr != "127.0.0.1:7101" {
		t.Fatalf("Check: %#v, want the first foreign key, q, of partition 1", err)
	}
	want := `key "q" belongs to partition 1, this node (127.0.0.1:7101) serves partition 0`
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("message %q, want it to contain %q", err, want)
	}
	if err := node.NewOwner(p, 1, "n1").Check(ctx, []byte("z")); err != nil {
		t.Fatalf("partition 1 owns z: %v", err)
	}
}

func TestOwnerCheckReportsPartitionerFailure(t *testing.T) {
	broken := errors.New("plugin died")
	o := node.NewOwner(&fakePartitioner{err: broken}, 0, "n0")
	if err := o.Check(context.Background(), []byte("a")); !errors.Is(err, broken) || !strings.Contains(err.Error(), "partitioner") {
		t.Fatalf("Check: %v, want the partitioner's error with context", err)
	}
}

// rowsScan serves a scan over rows (sorted) as an engine does, honouring
// start, end and limit, and counts its calls.
func rowsScan(rows []engines.Row, calls *int) node.ScanFunc {
	return func(_ context.Context, r engines.ScanRange) iter.Seq2[engines.Row, error] {
		*calls++
		return func(yield func(engines.Row, error) bool) {
			n := 0
			for _, row := range rows {
				if bytes.Compare(row.Key, r.Start) < 0 || (len(r.End) > 0 && bytes.Compare(row.Key, r.End) >= 0) {
					continue
				}
				if r.Limit > 0 && n == r.Limit {
					return
				}
				n++
				if !yield(row, nil) {
					return
				}
			}
		}
	}
}

// mixedRows returns n rows in key order, every other one of partition 1
// (suffix "-x"), and the keys of the others.
func mixedRows(n int) (all []engines.Row, owned []string) {
	for i := range n {
		k := fmt.Sprintf("k%05d", i)
		if i%2 == 1 {
			k += "-x"
		} else {
			owned = append(owned, k)
		}
		all = append(all, engines.Row{Key: []byte(k), Value: []byte("v")})
	}
	return all, owned
}

func keysOf(t *testing.T, seq iter.Seq2[engines.Row, error]) []string {
	t.Helper()
	var keys []string
	for row, err := range seq {
		if err != nil {
			t.Fatalf("scan: %v", err)
		}
		keys = append(keys, string(row.Key))
	}
	return keys
}

func TestOwnerScanYieldsOnlyOwnedRows(t *testing.T) {
	ctx := context.Background()
	rows, owned := mixedRows(1000)
	p := &fakePartitioner{}
	o := node.NewOwner(p, 0, "n0")
	calls := 0
	got := keysOf(t, o.Scan(ctx, engines.ScanRange{}, rowsScan(rows, &calls)))
	if !slices.Equal(got, owned) {
		t.Fatalf("scan: %d rows (first %v), want the %d owned ones", len(got), got[:min(3, len(got))], len(owned))
	}
	if want := int64((len(rows) + 255) / 256); p.locates.Load() != want || calls != 1 {
		t.Fatalf("%d Locate calls and %d scans for %d rows, want %d and 1 (rows placed a chunk at a time)", p.locates.Load(), calls, len(rows), want)
	}
}

func TestOwnerScanLimitCountsOwnedRows(t *testing.T) {
	ctx := context.Background()
	rows, owned := mixedRows(40)
	o := node.NewOwner(&fakePartitioner{}, 0, "n0")
	for _, limit := range []int{1, 3, 10, 20, 25} {
		calls := 0
		got := keysOf(t, o.Scan(ctx, engines.ScanRange{Limit: limit}, rowsScan(rows, &calls)))
		want := owned[:min(limit, len(owned))]
		if !slices.Equal(got, want) {
			t.Fatalf("limit %d: %v, want %v", limit, got, want)
		}
		if calls > 1+limit {
			t.Fatalf("limit %d: %d scans", limit, calls)
		}
	}
	// A range with an end: the resumed scans stay below it.
	calls := 0
	got := keysOf(t, o.Scan(ctx, engines.ScanRange{Start: []byte("k00004"), End: []byte("k00010"), Limit: 2}, rowsScan(rows, &calls)))
	if !slices.Equal(got, []string{"k00004", "k00006"}) {
		t.Fatalf("range with limit: %v", got)
	}
	// A resumed scan that would start at the range's end is not run.
	calls = 0
	got = keysOf(t, o.Scan(ctx, engines.ScanRange{Start: []byte("k00005-x"), End: []byte("k00005-x\x00"), Limit: 1}, rowsScan(rows, &calls)))
	if len(got) != 0 || calls != 1 {
		t.Fatalf("range of one foreign row: %v in %d scans, want none in 1", got, calls)
	}
	// Early stop by the consumer.
	n := 0
	for _, err := range o.Scan(ctx, engines.ScanRange{}, rowsScan(rows, &calls)) {
		if err != nil {
			t.Fatal(err)
		}
		if n++; n == 2 {
			break
		}
	}
}

func TestOwnerScanPassesErrorsOn(t *testing.T) {
	ctx := context.Background()
	broken := errors.New("disk gone")
	scan := func(context.Context, engines.ScanRange) iter.Seq2[engines.Row, error] {
		return func(yield func(engines.Row, error) bool) {
			if yield(engines.Row{Key: []byte("a")}, nil) {
				yield(engines.Row{}, broken)
			}
		}
	}
	var keys []string
	var gotErr error
	for row, err := range node.NewOwner(&fakePartitioner{}, 0, "n0").Scan(ctx, engines.ScanRange{}, scan) {
		if err != nil {
			gotErr = err
			break
		}
		keys = append(keys, string(row.Key))
	}
	if !slices.Equal(keys, []string{"a"}) || !errors.Is(gotErr, broken) {
		t.Fatalf("rows %v, error %v: want the row read before the error, then the error", keys, gotErr)
	}
	// The partitioner failing ends the scan with its error.
	failing := &fakePartitioner{err: errors.New("plugin died")}
	for _, err := range node.NewOwner(failing, 0, "n0").Scan(ctx, engines.ScanRange{}, scan) {
		if err == nil || !strings.Contains(err.Error(), "plugin died") {
			t.Fatalf("scan with a failing partitioner: %v", err)
		}
	}
}

// The request table's rows are no partition's: a scan leaves them out
// without placing them, and Check lets their keys through to the partition,
// which refuses them as a user's keys.
func TestOwnerExemptsInternalRows(t *testing.T) {
	ctx := context.Background()
	fp := &fakePartitioner{}
	o := node.NewOwner(fp, 0, "127.0.0.1:7101")
	internal := []byte(partition.ReservedPrefix + "client")
	rows := []engines.Row{{Key: internal}, {Key: []byte("a")}, {Key: []byte("b-x")}}
	var calls int
	if got := keysOf(t, o.Scan(ctx, engines.ScanRange{}, rowsScan(rows, &calls))); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("scan: %q, want [a]", got)
	}
	if err := o.Check(ctx, internal); err != nil || fp.locates.Load() != 1 {
		t.Fatalf("check of an internal key: %v after %d locates, want nil and no new locate", err, fp.locates.Load())
	}
	if err := o.Check(ctx, internal, []byte("b-x")); err == nil {
		t.Fatal("check of an internal key and another partition's: nil")
	}
}
