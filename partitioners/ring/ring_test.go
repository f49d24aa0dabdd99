package ring

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"

	"github.com/plugdb/plugdb/partitioners"
)

// The points are the documented scheme: xxHash64 of "p/v" in decimal.
func TestPointScheme(t *testing.T) {
	for _, pv := range [][2]int{{0, 0}, {3, 17}, {1023, 4095}} {
		want := xxhash.Sum64String(fmt.Sprintf("%d/%d", pv[0], pv[1]))
		if got := Point(pv[0], pv[1]); got != want {
			t.Errorf("Point(%d, %d) = %#x, want xxhash64(%q) = %#x", pv[0], pv[1], got, fmt.Sprintf("%d/%d", pv[0], pv[1]), want)
		}
	}
}

func TestRingIsSortedAndComplete(t *testing.T) {
	const n, v = 5, 64
	r, err := New(n, v)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.points) != n*v || len(r.owners) != n*v {
		t.Fatalf("%d points, %d owners, want %d", len(r.points), len(r.owners), n*v)
	}
	if !slices.IsSorted(r.points) {
		t.Fatal("points not sorted")
	}
	perPartition := make([]int, n)
	for i, at := range r.points {
		p := int(r.owners[i])
		perPartition[p]++
		found := false
		for vn := range v {
			if Point(p, vn) == at {
				found = true
				break
			}
		}
		if !found {
			t.Fatalf("point %#x owned by %d is none of its points", at, p)
		}
	}
	for p, c := range perPartition {
		if c != v {
			t.Errorf("partition %d owns %d points, want %d", p, c, v)
		}
	}
}

// A hash maps to the owner of the first point at or after it, wrapping.
func TestOwnerIsFirstPointAtOrAfter(t *testing.T) {
	r, err := New(7, 16)
	if err != nil {
		t.Fatal(err)
	}
	last := len(r.points) - 1
	for i, at := range r.points {
		if got := r.owner(at); got != int(r.owners[i]) {
			t.Fatalf("hash on point %d: partition %d, want its owner %d", i, got, r.owners[i])
		}
		if i > 0 && at-1 > r.points[i-1] {
			if got := r.owner(at - 1); got != int(r.owners[i]) {
				t.Fatalf("hash just before point %d: partition %d, want %d", i, got, r.owners[i])
			}
		}
		if i < last && at+1 < r.points[i+1] {
			if got := r.owner(at + 1); got != int(r.owners[i+1]) {
				t.Fatalf("hash just after point %d: partition %d, want the next owner %d", i, got, r.owners[i+1])
			}
		}
	}
	if r.points[last] == math.MaxUint64 || r.points[0] == 0 {
		t.Skip("a point at the very end of the ring: the wrap is not testable on this ring")
	}
	for _, h := range []uint64{r.points[last] + 1, math.MaxUint64, 0} {
		if got := r.owner(h); got != int(r.owners[0]) {
			t.Errorf("hash %#x (past the last point or before the first): partition %d, want the first point's owner %d", h, got, r.owners[0])
		}
	}
}

// Growing N to N+1 only adds partition N's points.
func TestGrowthOnlyAddsPoints(t *testing.T) {
	const v = 128
	prev, err := New(1, v)
	if err != nil {
		t.Fatal(err)
	}
	for n := 2; n <= 9; n++ {
		next, err := New(n, v)
		if err != nil {
			t.Fatal(err)
		}
		old := map[uint64]uint16{}
		for i, at := range prev.points {
			old[at] = prev.owners[i]
		}
		added := 0
		for i, at := range next.points {
			if p, ok := old[at]; ok {
				if p != next.owners[i] {
					t.Fatalf("%d partitions: point %#x changed owner %d → %d", n, at, p, next.owners[i])
				}
				delete(old, at)
				continue
			}
			if int(next.owners[i]) != n-1 {
				t.Fatalf("%d partitions: new point %#x owned by %d, want the new partition %d", n, at, next.owners[i], n-1)
			}
			added++
		}
		if len(old) != 0 || added != v {
			t.Fatalf("%d partitions: %d old points gone, %d added; want 0 and %d", n, len(old), added, v)
		}
		prev = next
	}
}

func TestConfigureVnodes(t *testing.T) {
	ctx := context.Background()
	for _, bad := range []string{"0", "-1", "4097", "1e3", "many", ""} {
		p := &Partitioner{}
		err := p.Configure(ctx, 4, map[string]string{OptVnodes: bad})
		if !errors.Is(err, partitioners.ErrInvalidArgument) {
			t.Errorf("vnodes %q: %v, want ErrInvalidArgument", bad, err)
			continue
		}
		want := fmt.Sprintf("ring partitioner: option vnodes: bad value %q: allowed values are 1..4096 (default 1024)", bad)
		if !strings.Contains(err.Error(), want) {
			t.Errorf("vnodes %q: error %q, want it to say %q", bad, err, want)
		}
		if err := p.Locate(ctx, [][]byte{[]byte("k")}, make([]int, 1)); err == nil {
			t.Errorf("vnodes %q: Locate works after a refused Configure", bad)
		}
	}
	for _, tc := range []struct {
		value  string
		points int
	}{{"1", 4}, {" 16 ", 64}, {"4096", 4 * 4096}} {
		p := &Partitioner{}
		if err := p.Configure(ctx, 4, map[string]string{OptVnodes: tc.value}); err != nil {
			t.Errorf("vnodes %q: %v", tc.value, err)
			continue
		}
		if len(p.ring.points) != tc.points {
			t.Errorf("vnodes %q on 4 partitions: %d points, want %d", tc.value, len(p.ring.points), tc.points)
		}
	}
	p := &Partitioner{}
	if err := p.Configure(ctx, 3, nil); err != nil {
		t.Fatal(err)
	}
	if len(p.ring.points) != 3*DefaultVnodes {
		t.Errorf("no options: %d points, want %d (the default vnodes)", len(p.ring.points), 3*DefaultVnodes)
	}
	err := p.Configure(ctx, 3, map[string]string{"vnode": "8"})
	if !errors.Is(err, partitioners.ErrInvalidArgument) || !strings.Contains(err.Error(), `option "vnode": allowed options are vnodes`) {
		t.Errorf("misspelt option: %v, want it named with the allowed options", err)
	}
}

// Locate agrees with the definition, computed by a linear scan over every point.
func TestLocateMatchesLinearScan(t *testing.T) {
	for _, tc := range [][2]int{{1, 1}, {2, 1}, {3, 7}, {10, 50}} {
		n, v := tc[0], tc[1]
		r, err := New(n, v)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 2000 {
			key := fmt.Appendf(nil, "key-%d", i)
			h := xxhash.Sum64(key)
			// The owner of the smallest point ≥ h, else of the smallest point;
			// on equal points the lower partition.
			best, bestAt, first, firstAt := -1, uint64(0), -1, uint64(0)
			for p := range n {
				for vn := range v {
					at := Point(p, vn)
					if at >= h && (best < 0 || at < bestAt) {
						best, bestAt = p, at
					}
					if first < 0 || at < firstAt {
						first, firstAt = p, at
					}
				}
			}
			if best < 0 {
				best = first
			}
			if got := r.Locate(key); got != best {
				t.Fatalf("%d partitions × %d vnodes: key %q: partition %d, the linear scan says %d", n, v, key, got, best)
			}
		}
	}
}

// Pinned values: a partition map must not change between releases.
func TestLocatePinned(t *testing.T) {
	for _, tc := range []struct {
		key             string
		n, vnodes, want int
	}{
		{"user:1", 2, 1024, 1},
		{"user:2", 2, 1024, 1},
		{"user:2", 7, 1024, 3},
		{"a", 7, 1024, 3},
		{"", 16, 1024, 7},
		{"a", 7, 1, 6},
		{"user:42", 1024, 1024, 41},
		{"user:42", 3, 256, 2},
	} {
		r, err := New(tc.n, tc.vnodes)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Locate([]byte(tc.key)); got != tc.want {
			t.Errorf("%d partitions × %d vnodes: Locate(%q) = %d, want %d", tc.n, tc.vnodes, tc.key, got, tc.want)
		}
	}
}
