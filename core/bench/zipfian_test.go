package bench

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

func TestZipfianMatchesTheory(t *testing.T) {
	const n, draws = 1000, 400000
	z := NewZipfian(n, ZipfianConstant, rand.New(rand.NewPCG(1, 2)))
	counts := make([]int, n)
	for range draws {
		r := z.Next()
		if r >= n {
			t.Fatalf("rank %d out of range 0..%d", r, n-1)
		}
		counts[r]++
	}
	// Ranks 0 and 1 get the share theory says (within 5%; Gray's method is
	// exact for them and approximates the tail, within 20% for the next
	// ranks), and popularity falls with rank.
	for k := range uint64(5) {
		got, want := float64(counts[k])/draws, z.Prob(k)
		tol := 0.05
		if k >= 2 {
			tol = 0.2
		}
		if math.Abs(got-want) > tol*want {
			t.Errorf("rank %d: share %.4f, theory %.4f", k, got, want)
		}
	}
	if counts[0] <= counts[10] || counts[10] <= counts[500] {
		t.Errorf("popularity does not fall with rank: rank 0 %d, 10 %d, 500 %d", counts[0], counts[10], counts[500])
	}
	// With theta 0.99 over 1000 items, rank 0 holds about 13% of the draws.
	if p := z.Prob(0); p < 0.12 || p > 0.14 {
		t.Errorf("theoretical share of rank 0 = %.4f, want about 0.13", p)
	}
}

func TestScrambledZipfian(t *testing.T) {
	const n, draws = 10000, 300000
	s := NewScrambledZipfian(n, rand.New(rand.NewPCG(7, 7)))
	counts := map[uint64]int{}
	for range draws {
		i := s.Next()
		if i >= n {
			t.Fatalf("index %d out of range 0..%d", i, n-1)
		}
		counts[i]++
	}
	// The most popular index is rank 0's, with at least rank 0's share (other
	// ranks may hash onto it too) and not much more.
	top, topCount := uint64(0), 0
	for i, c := range counts {
		if c > topCount {
			top, topCount = i, c
		}
	}
	if top != s.Index(0) {
		t.Errorf("most popular index %d, want rank 0's index %d", top, s.Index(0))
	}
	p0 := s.z.Prob(0)
	if got := float64(topCount) / draws; got < 0.95*p0 || got > 1.2*p0 {
		t.Errorf("most popular index share %.4f, theory for rank 0 %.4f", got, p0)
	}
	// Popular indices are scattered, not the lowest ones.
	var popular []uint64
	for i, c := range counts {
		if c > draws/1000 {
			popular = append(popular, i)
		}
	}
	sort.Slice(popular, func(a, b int) bool { return popular[a] < popular[b] })
	if len(popular) < 5 || popular[len(popular)-1] < n/2 {
		t.Errorf("popular indices %v: want several, spread over 0..%d", popular, n-1)
	}
}

func TestGeneratorsAreDeterministic(t *testing.T) {
	a := NewScrambledZipfian(5000, rand.New(rand.NewPCG(3, 4)))
	b := NewScrambledZipfian(5000, rand.New(rand.NewPCG(3, 4)))
	u1 := NewUniform(5000, rand.New(rand.NewPCG(3, 4)))
	u2 := NewUniform(5000, rand.New(rand.NewPCG(3, 4)))
	for i := range 1000 {
		if x, y := a.Next(), b.Next(); x != y {
			t.Fatalf("draw %d: %d and %d from the same seed", i, x, y)
		}
		if x, y := u1.Next(), u2.Next(); x != y || x >= 5000 {
			t.Fatalf("uniform draw %d: %d and %d from the same seed (range 0..4999)", i, x, y)
		}
	}
}

func TestZipfianSmallN(t *testing.T) {
	for _, n := range []uint64{1, 2, 3} {
		z := NewScrambledZipfian(n, rand.New(rand.NewPCG(1, 1)))
		for range 1000 {
			if i := z.Next(); i >= n {
				t.Fatalf("n=%d: index %d out of range", n, i)
			}
		}
	}
}
