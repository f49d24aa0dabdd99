package hash

import (
	"fmt"
	"testing"
)

func TestLocateIsStableAndBalanced(t *testing.T) {
	const n, keys = 4, 100000
	counts := make([]int, n)
	for i := 0; i < keys; i++ {
		k := []byte(fmt.Sprintf("user:%d", i))
		p := Locate(k, n)
		if p < 0 || p >= n {
			t.Fatalf("partition %d out of range", p)
		}
		if Locate(k, n) != p {
			t.Fatal("not deterministic")
		}
		counts[p]++
	}
	for p, c := range counts {
		if c < keys/n*9/10 || c > keys/n*11/10 {
			t.Errorf("partition %d has %d keys, want within 10%% of %d", p, c, keys/n)
		}
	}
	// Pinned values: a partition map must not change between releases.
	for _, tc := range []struct {
		key     string
		n, want int
	}{{"user:1", 2, 1}, {"user:2", 2, 0}, {"user:2", 7, 3}, {"a", 7, 6}} {
		if got := Locate([]byte(tc.key), tc.n); got != tc.want {
			t.Errorf("Locate(%q, %d) = %d, want %d", tc.key, tc.n, got, tc.want)
		}
	}
}
