package partitionertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"

	"github.com/plugdb/plugdb/engines/enginetest"
	"github.com/plugdb/plugdb/partitioners"
)

// deferred is the partitioner of OpenConfigured: it opens the real one on Configure.
type deferred struct {
	open func(ctx context.Context, partitions int, options map[string]string) (partitioners.Partitioner, error)
	p    partitioners.Partitioner
}

var errNotConfigured = fmt.Errorf("not configured: %w", partitioners.ErrInvalidArgument)

func (d *deferred) Configure(ctx context.Context, partitions int, options map[string]string) error {
	if d.p != nil {
		return errors.New("configured twice")
	}
	p, err := d.open(ctx, partitions, options)
	if err != nil {
		return err
	}
	d.p = p
	return nil
}

func (d *deferred) Locate(ctx context.Context, keys [][]byte, out []int) error {
	if d.p == nil {
		return errNotConfigured
	}
	return d.p.Locate(ctx, keys, out)
}

func (d *deferred) Range(ctx context.Context, start, end []byte) ([]int, error) {
	if d.p == nil {
		return nil, errNotConfigured
	}
	return d.p.Range(ctx, start, end)
}

func (d *deferred) Close() error {
	if d.p == nil {
		return nil
	}
	return d.p.Close()
}

// open returns a new partitioner of opener, closed when the case ends.
func open(t T, opener func(ctx context.Context) (partitioners.Partitioner, error)) partitioners.Partitioner {
	t.Helper()
	p, err := opener(t.Context())
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if p == nil {
		t.Fatalf("open: nil partitioner and nil error")
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return p
}

// configured returns a new partitioner of h configured with n partitions.
func configured(t T, h Harness, n int) partitioners.Partitioner {
	t.Helper()
	p := open(t, h.Open)
	if err := p.Configure(t.Context(), n, maps.Clone(h.Options)); err != nil {
		t.Fatalf("configure %d partitions, options %v: %v", n, h.Options, err)
	}
	return p
}

// randomKeys returns n keys of 1 to 40 random bytes, the same for the same seed.
func randomKeys(seed uint64, n int) [][]byte {
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	keys := make([][]byte, n)
	for i := range keys {
		k := make([]byte, 1+r.IntN(40))
		for j := range k {
			k[j] = byte(r.Uint32())
		}
		keys[i] = k
	}
	return keys
}

// locate locates keys in chunks of at most 1000 and checks every partition is in 0..n-1.
func locate(t T, p partitioners.Partitioner, n int, keys [][]byte) []int {
	t.Helper()
	out := make([]int, len(keys))
	for i := 0; i < len(keys); i += 1000 {
		end := min(i+1000, len(keys))
		if err := p.Locate(t.Context(), keys[i:end], out[i:end]); err != nil {
			t.Fatalf("locate %d keys: %v", end-i, err)
		}
	}
	for i, part := range out {
		if part < 0 || part >= n {
			t.Fatalf("key %x: partition %d, want 0..%d", keys[i], part, n-1)
		}
	}
	return out
}

func testConfigure(t T, h Harness) {
	for _, n := range []int{0, -1, partitioners.MaxPartitions + 1, 1 << 20} {
		p := open(t, h.Open)
		err := p.Configure(t.Context(), n, maps.Clone(h.Options))
		enginetest.WantError(t, fmt.Sprintf("configure %d partitions", n), err, partitioners.ErrInvalidArgument)
	}
	const bad = "plugdb_kit_no_such_option"
	opts := maps.Clone(h.Options)
	if opts == nil {
		opts = map[string]string{}
	}
	opts[bad] = "1"
	p := open(t, h.Open)
	err := p.Configure(t.Context(), 4, opts)
	enginetest.WantError(t, fmt.Sprintf("configure with unknown option %q", bad), err, partitioners.ErrInvalidArgument)
	if err != nil && !strings.Contains(err.Error(), bad) {
		t.Errorf("configure with unknown option: error %q does not name the option %q", err, bad)
	}
	for _, n := range []int{1, partitioners.MaxPartitions} {
		configured(t, h, n)
	}
}

func testDeterministic(t T, h Harness) {
	const n = 7
	keys := randomKeys(1, 2000)
	a, b := configured(t, h, n), configured(t, h, n)
	first := locate(t, a, n, keys)
	if again := locate(t, a, n, keys); !slices.Equal(first, again) {
		t.Errorf("the same keys located twice got different partitions")
	}
	if other := locate(t, b, n, keys); !slices.Equal(first, other) {
		t.Errorf("two instances configured alike disagree")
	}
	one := make([]int, 1)
	for i, k := range keys[:200] {
		if err := a.Locate(t.Context(), [][]byte{k}, one); err != nil {
			t.Fatalf("locate one key: %v", err)
		}
		if one[0] != first[i] {
			t.Fatalf("key %x: partition %d alone, %d in a batch", k, one[0], first[i])
		}
	}
	copied := make([][]byte, len(keys))
	for i, k := range keys {
		copied[i] = bytes.Clone(k)
	}
	if again := locate(t, b, n, copied); !slices.Equal(first, again) {
		t.Errorf("equal keys in other buffers got other partitions")
	}
}

func testValidPartitions(t T, h Harness) {
	keys := append(randomKeys(2, 5000), []byte{}, bytes.Repeat([]byte{0xff}, 64<<10))
	for _, n := range []int{1, 2, 3, 7, 64} {
		p := configured(t, h, n)
		out := locate(t, p, n, keys)
		if n == 1 && slices.ContainsFunc(out, func(p int) bool { return p != 0 }) {
			t.Errorf("1 partition: a key mapped elsewhere than 0")
		}
		if n > 1 && !slices.ContainsFunc(out, func(p int) bool { return p != out[0] }) {
			t.Errorf("%d partitions: 5000 random keys all in partition %d", n, out[0])
		}
	}
}

func testEdgeKeys(t T, h Harness) {
	const n = 16
	p := configured(t, h, n)
	if err := p.Locate(t.Context(), nil, nil); err != nil {
		t.Errorf("locate no keys: %v", err)
	}
	big := make([]byte, 64<<10)
	for i := range big {
		big[i] = byte(i * 7)
	}
	keys := [][]byte{{}, nil, {0}, {0xff}, big, bytes.Repeat([]byte{'a'}, 1000)}
	first := locate(t, p, n, keys)
	if first[0] != first[1] {
		t.Errorf("empty and nil key: partitions %d and %d, want equal", first[0], first[1])
	}
	if again := locate(t, p, n, keys); !slices.Equal(first, again) {
		t.Errorf("edge keys located twice: %v then %v", first, again)
	}
}

func testLengthMismatch(t T, h Harness) {
	p := configured(t, h, 4)
	keys := randomKeys(3, 3)
	for _, n := range []int{0, 2, 4} {
		err := p.Locate(t.Context(), keys, make([]int, n))
		enginetest.WantError(t, fmt.Sprintf("locate 3 keys into %d", n), err, partitioners.ErrInvalidArgument)
	}
	enginetest.WantError(t, "locate 0 keys into 1", p.Locate(t.Context(), nil, make([]int, 1)), partitioners.ErrInvalidArgument)
}

// checkRange checks that parts is sorted, distinct and within 0..n-1.
func checkRange(t T, n int, parts []int, what string) bool {
	t.Helper()
	for i, p := range parts {
		if p < 0 || p >= n || (i > 0 && p <= parts[i-1]) {
			t.Errorf("range %s: %v is not ascending distinct partitions in 0..%d", what, parts, n-1)
			return false
		}
	}
	return true
}

func testRange(t T, h Harness) {
	const n = 16
	p := configured(t, h, n)
	keys := randomKeys(4, 4000)
	slices.SortFunc(keys, bytes.Compare)
	keys = slices.CompactFunc(keys, bytes.Equal)
	out := locate(t, p, n, keys)

	check := func(start, end []byte) {
		t.Helper()
		what := fmt.Sprintf("[%x, %x)", start, end)
		parts, err := p.Range(t.Context(), start, end)
		if err != nil {
			t.Fatalf("range %s: %v", what, err)
		}
		if !checkRange(t, n, parts, what) {
			return
		}
		for i, k := range keys {
			in := bytes.Compare(k, start) >= 0 && (len(end) == 0 || bytes.Compare(k, end) < 0)
			if in && !slices.Contains(parts, out[i]) {
				t.Errorf("range %s = %v misses partition %d of key %x inside it", what, parts, out[i], k)
				return
			}
		}
	}
	check(nil, nil)
	check([]byte{}, nil)
	r := rand.New(rand.NewPCG(5, 5))
	for range 50 {
		i := r.IntN(len(keys))
		j := i + 1 + r.IntN(len(keys)-i)
		var end []byte
		if j < len(keys) {
			end = keys[j]
		}
		check(keys[i], end)
	}
	check(keys[len(keys)/2], nil)
	check(nil, keys[len(keys)/3])
}

func testBalance(t T, h Harness) {
	keys := randomKeys(6, 100_000)
	for n := 2; n <= 16; n++ {
		p := configured(t, h, n)
		counts := make([]int, n)
		for _, part := range locate(t, p, n, keys) {
			counts[part]++
		}
		mean := float64(len(keys)) / float64(n)
		fullest := float64(slices.Max(counts))
		if fullest/mean > MaxImbalance {
			t.Errorf("%d partitions: fullest holds %.0f keys, %.3f times the mean %.0f (bound %.2f); counts %v", n, fullest, fullest/mean, mean, MaxImbalance, counts)
		}
	}
}

func testConcurrent(t T, h Harness) {
	const n, workers, calls = 32, 16, 300
	p := configured(t, h, n)
	keys := randomKeys(7, 2000)
	want := locate(t, p, n, keys)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(8, uint64(w)))
			out := make([]int, 8)
			for range calls {
				i := r.IntN(len(keys) - 8)
				k := 1 + r.IntN(8)
				if err := p.Locate(t.Context(), keys[i:i+k], out[:k]); err != nil {
					t.Errorf("worker %d: locate: %v", w, err)
					return
				}
				if !slices.Equal(out[:k], want[i:i+k]) {
					t.Errorf("worker %d: keys %d..%d got %v, want %v", w, i, i+k-1, out[:k], want[i:i+k])
					return
				}
			}
		})
	}
	wg.Wait()
}

func testMatchesReference(t T, h Harness) {
	if h.Reference == nil {
		t.Skipf("no reference implementation to compare with (only bundled partitioners have one)")
	}
	keys := append(randomKeys(9, 20_000), []byte{}, bytes.Repeat([]byte{'k'}, 64<<10))
	for _, n := range []int{1, 3, 16, 64, partitioners.MaxPartitions} {
		p := configured(t, h, n)
		ref := configured(t, Harness{Open: h.Reference, Options: h.Options}, n)
		got, want := locate(t, p, n, keys), locate(t, ref, n, keys)
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("%d partitions: key %x: partition %d, reference says %d", n, keys[i], got[i], want[i])
				break
			}
		}
		for _, r := range [][2][]byte{{nil, nil}, {keys[0], keys[1]}, {[]byte("a"), []byte("b")}, {[]byte("m"), nil}} {
			gotR, err := p.Range(t.Context(), r[0], r[1])
			if err != nil {
				t.Fatalf("range: %v", err)
			}
			wantR, err := ref.Range(t.Context(), r[0], r[1])
			if err != nil {
				t.Fatalf("reference range: %v", err)
			}
			if !slices.Equal(gotR, wantR) {
				t.Errorf("%d partitions: range [%x, %x) = %v, reference says %v", n, r[0], r[1], gotR, wantR)
			}
		}
	}
}
