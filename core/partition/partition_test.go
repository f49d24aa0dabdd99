package partition

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/engines/memory"
)

func openPartition(t *testing.T) *Partition {
	t.Helper()
	eng, err := memory.Open(context.Background(), engines.Options{Dir: t.TempDir(), Logger: hclog.NewNullLogger()})
	if err != nil {
		t.Fatal(err)
	}
	p, err := Open(context.Background(), 0, eng)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func put(k, v string, c Cond) Write {
	return Write{Op: engines.OpPut, Key: []byte(k), Value: []byte(v), Cond: c}
}

func TestConcurrentWritesGetGapFreeLSNs(t *testing.T) {
	p := openPartition(t)
	ctx := context.Background()
	const writers, each = 16, 50
	var mu sync.Mutex
	seen := map[uint64]bool{}
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Go(func() {
			for i := 0; i < each; i++ {
				lsns, err := p.Write(ctx, []Write{put(fmt.Sprintf("w%d-%d", w, i), "v", Always)})
				if err != nil || len(lsns) != 1 {
					t.Errorf("write: %v %v", lsns, err)
					return
				}
				mu.Lock()
				if seen[lsns[0]] {
					t.Errorf("lsn %d handed out twice", lsns[0])
				}
				seen[lsns[0]] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for l := uint64(1); l <= writers*each; l++ {
		if !seen[l] {
			t.Fatalf("lsn %d missing: lsns are not gap-free", l)
		}
	}
	if got, _ := p.AppliedLSN(ctx); got != writers*each {
		t.Fatalf("applied lsn %d, want %d", got, writers*each)
	}
}

func TestConditions(t *testing.T) {
	p := openPartition(t)
	ctx := context.Background()
	if _, err := p.Write(ctx, []Write{put("a", "1", MustNotExist)}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Write(ctx, []Write{put("a", "2", MustNotExist)}); !errors.Is(err, ErrAlreadyExists) {
		t.Fatalf("create of existing key: %v", err)
	}
	if _, err := p.Write(ctx, []Write{put("b", "2", MustExist)}); !errors.Is(err, engines.ErrNotFound) {
		t.Fatalf("update of missing key: %v", err)
	}
	if _, err := p.Write(ctx, []Write{{Op: engines.OpDelete, Key: []byte("b"), Cond: MustExist}}); !errors.Is(err, engines.ErrNotFound) {
		t.Fatalf("delete of missing key: %v", err)
	}
	// A failed condition writes nothing of its call.
	if _, err := p.Write(ctx, []Write{put("c", "3", Always), put("a", "x", MustNotExist)}); !errors.Is(err, ErrAlreadyExists) {
		t.Fatalf("batch with failing create: %v", err)
	}
	if _, err := p.Get(ctx, []byte("c")); !errors.Is(err, engines.ErrNotFound) {
		t.Fatalf("c written by a failed call: %v", err)
	}
	// Conditions see earlier writes of the same call.
	if _, err := p.Write(ctx, []Write{put("d", "1", Always), put("d", "2", MustExist)}); err != nil {
		t.Fatal(err)
	}
	row, err := p.Get(ctx, []byte("d"))
	if err != nil || string(row.Value) != "2" {
		t.Fatalf("d = %q, %v", row.Value, err)
	}
	// Oversized and empty keys are refused before queueing.
	if _, err := p.Write(ctx, []Write{put("", "1", Always)}); !errors.Is(err, engines.ErrInvalidArgument) {
		t.Fatalf("empty key: %v", err)
	}
}

func TestConcurrentCreatesOneWins(t *testing.T) {
	p := openPartition(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := 0; i < 32; i++ {
		wg.Go(func() {
			_, err := p.Write(ctx, []Write{put("race", fmt.Sprint(i), MustNotExist)})
			if err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			} else if !errors.Is(err, ErrAlreadyExists) {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d creates of one key succeeded, want 1", wins)
	}
}

func TestClosedRefusesWrites(t *testing.T) {
	p := openPartition(t)
	p.Close()
	if _, err := p.Write(context.Background(), []Write{put("a", "1", Always)}); !errors.Is(err, engines.ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
}

func TestScansServedCountsScans(t *testing.T) {
	p := openPartition(t)
	ctx := context.Background()
	if _, err := p.Write(ctx, []Write{put("a", "1", 0), put("b", "2", 0)}); err != nil {
		t.Fatal(err)
	}
	if n := p.ScansServed(); n != 0 {
		t.Fatalf("after writes only: %d scans served, want 0", n)
	}
	for i := range 3 {
		rows := 0
		for _, err := range p.Scan(ctx, engines.ScanRange{}) {
			if err != nil {
				t.Fatal(err)
			}
			rows++
		}
		if rows != 2 || p.ScansServed() != uint64(i+1) {
			t.Fatalf("scan %d: %d rows, %d scans served", i+1, rows, p.ScansServed())
		}
	}
	if _, err := p.Get(ctx, []byte("a")); err != nil || p.ScansServed() != 3 {
		t.Fatalf("a get counted as a scan: %v, %d", err, p.ScansServed())
	}
}
