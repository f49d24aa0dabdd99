package partitioners_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/plugdb/plugdb/partitioners"
	"github.com/plugdb/plugdb/partitioners/hash"
)

func TestMovedCountsKeysThatChangePartition(t *testing.T) {
	ctx := context.Background()
	open := func(n int) partitioners.Partitioner {
		p, err := hash.Open(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Configure(ctx, n, nil); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keys := make([][]byte, 10000)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "key-%d", i)
	}
	if got, err := partitioners.Moved(ctx, open(3), open(3), keys); err != nil || got != 0 {
		t.Fatalf("same partitioner: moved %d, %v; want 0", got, err)
	}
	want := 0
	for _, k := range keys {
		if hash.Locate(k, 3) != hash.Locate(k, 4) {
			want++
		}
	}
	if got, err := partitioners.Moved(ctx, open(3), open(4), keys); err != nil || got != want {
		t.Fatalf("3 → 4: moved %d, %v; want %d", got, err, want)
	}
}
