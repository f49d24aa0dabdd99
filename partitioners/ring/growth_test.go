package ring_test

import (
	"context"
	"fmt"
	"math"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/plugdb/plugdb/partitioners"
	"github.com/plugdb/plugdb/partitioners/hash"
	"github.com/plugdb/plugdb/partitioners/ring"
)

const growthKeys = 100_000

func growthKeySet() [][]byte {
	keys := make([][]byte, growthKeys)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "user:%d", i)
	}
	return keys
}

func configured(t *testing.T, open partitioners.OpenFunc, n int) partitioners.Partitioner {
	t.Helper()
	p, err := open(t.Context(), hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Configure(t.Context(), n, nil); err != nil {
		t.Fatalf("configure %d partitions: %v", n, err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// Adding partition N to N partitions moves about 1/(N+1) of the keys under the
// ring, and most of them under hash mod N.
//
// Bounds: the keys that move are those of partition N's arcs, whose share of
// the ring is a sum of vnodes arcs: its relative standard deviation is about
// sqrt(N/(N+1))/sqrt(vnodes) ≤ 3.1% at the default 1024 vnodes, and sampling
// 100,000 keys adds at most 1% (binomial, at 1/9 for N = 8). ±15% of
// 1/(N+1) is thus about 4.5 standard deviations: a ring that moved keys other
// than partition N's, or gave N a share far from 1/(N+1), fails it, a correct
// one does not. Hash mod N moves a key unless h mod N = h mod (N+1), which
// leaves N/(N+1) of the keys moving (half at N = 1, most above); the bound
// 0.95·N/(N+1) is over 30 standard deviations of the binomial below that.
func TestGrowthMovesFewKeys(t *testing.T) {
	ctx := context.Background()
	keys := growthKeySet()
	for n := 1; n <= 8; n++ {
		ringMoved, err := partitioners.Moved(ctx, configured(t, ring.Open, n), configured(t, ring.Open, n+1), keys)
		if err != nil {
			t.Fatal(err)
		}
		hashMoved, err := partitioners.Moved(ctx, configured(t, hash.Open, n), configured(t, hash.Open, n+1), keys)
		if err != nil {
			t.Fatal(err)
		}
		ideal := float64(len(keys)) / float64(n+1)
		t.Logf("%d → %d partitions: ring moved %d keys (%.3f × 1/(N+1)), hash moved %d (%.1f%%)",
			n, n+1, ringMoved, float64(ringMoved)/ideal, hashMoved, 100*float64(hashMoved)/float64(len(keys)))
		if lo, hi := int(math.Floor(0.85*ideal)), int(math.Ceil(1.15*ideal)); ringMoved < lo || ringMoved > hi {
			t.Errorf("%d → %d partitions: ring moved %d of %d keys, want %d..%d (1/(N+1) ± 15%%)", n, n+1, ringMoved, len(keys), lo, hi)
		}
		if want := 0.95 * float64(n) / float64(n+1) * float64(len(keys)); float64(hashMoved) < want {
			t.Errorf("%d → %d partitions: hash moved %d of %d keys, want at least %.0f (N/(N+1) of them, less 5%%)", n, n+1, hashMoved, len(keys), want)
		}
	}
}

// The keys that move when partition N is added all move to partition N: the
// other partitions keep their points, so no key moves between old partitions.
func TestGrowthMovesKeysOnlyToTheNewPartition(t *testing.T) {
	keys := growthKeySet()
	before, after := make([]int, len(keys)), make([]int, len(keys))
	for n := 1; n <= 8; n++ {
		if err := configured(t, ring.Open, n).Locate(t.Context(), keys, before); err != nil {
			t.Fatal(err)
		}
		if err := configured(t, ring.Open, n+1).Locate(t.Context(), keys, after); err != nil {
			t.Fatal(err)
		}
		moved, wrong := 0, 0
		for i := range keys {
			if before[i] == after[i] {
				continue
			}
			moved++
			if after[i] != n {
				if wrong < 5 {
					t.Errorf("%d → %d partitions: key %q moved from %d to %d, want to the new partition %d", n, n+1, keys[i], before[i], after[i], n)
				}
				wrong++
			}
		}
		if moved == 0 {
			t.Errorf("%d → %d partitions: no key moved to the new partition", n, n+1)
		}
		if wrong > 0 {
			t.Errorf("%d → %d partitions: %d of %d moved keys went elsewhere than the new partition", n, n+1, wrong, moved)
		}
	}
}
