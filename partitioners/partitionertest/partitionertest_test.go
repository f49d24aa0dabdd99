package partitionertest_test

import (
	"context"

	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/plugdb/plugdb/partitioners"
	"github.com/plugdb/plugdb/partitioners/hash"
	"github.com/plugdb/plugdb/partitioners/partitionertest"
)

// lopsided is a hash partitioner that sends half of partition 1's keys to 0.
type lopsided struct{ partitioners.Partitioner }

func (l lopsided) Locate(ctx context.Context, keys [][]byte, out []int) error {
	if err := l.Partitioner.Locate(ctx, keys, out); err != nil {
		return err
	}
	for i, k := range keys {
		if out[i] == 1 && len(k) > 0 && k[0]&1 == 0 {
			out[i] = 0
		}
	}
	return nil
}

// The kit fails what breaks the contract and only that.
func TestKitCatchesImbalance(t *testing.T) {
	h := partitionertest.Harness{Open: func(ctx context.Context) (partitioners.Partitioner, error) {
		p, err := hash.Open(ctx, hclog.NewNullLogger())
		return lopsided{p}, err
	}}
	for _, c := range partitionertest.Cases() {
		res := partitionertest.RunCase(context.Background(), c, h)
		want := partitionertest.Pass
		switch c.Name {
		case "Balance":
			want = partitionertest.Fail
		case "MatchesReference":
			want = partitionertest.Skip
		}
		if res.Status != want {
			t.Errorf("%s: %s, want %s: %v", c.Name, res.Status, want, res.Log)
		}
	}
}
