package keyrange

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/plugdb/plugdb/partitioners"
)

func configure(t *testing.T, n int, options map[string]string) *Partitioner {
	t.Helper()
	p := &Partitioner{}
	if err := p.Configure(context.Background(), n, options); err != nil {
		t.Fatalf("configure %d partitions, options %v: %v", n, options, err)
	}
	return p
}

func locateOne(t *testing.T, p *Partitioner, key []byte) int {
	t.Helper()
	out := make([]int, 1)
	if err := p.Locate(context.Background(), [][]byte{key}, out); err != nil {
		t.Fatalf("locate %q: %v", key, err)
	}
	return out[0]
}

func TestConfigureRefusesBadSplits(t *testing.T) {
	for _, tc := range []struct {
		n       int
		options map[string]string
		want    string
	}{
		{2, map[string]string{"splits": "a,b,c"}, "option splits: 2 partitions need 1 split point, got 3"},
		{4, map[string]string{"splits": "a"}, "option splits: 4 partitions need 3 split points, got 1"},
		{3, map[string]string{"splits": ""}, "option splits: 3 partitions need 2 split points, got 0"},
		{1, map[string]string{"splits": "m"}, "option splits: 1 partition needs 0 split points, got 1"},
		{3, map[string]string{"splits": "m,c"}, `option splits: split point 2 "c" is not above split point 1 "m" (split points must be strictly ascending`},
		{3, map[string]string{"splits": "m,m"}, `split point 2 "m" is not above split point 1 "m"`},
		{3, map[string]string{"splits": "a%00,a"}, `split point 2 "a" is not above split point 1 "a%00"`},
		{3, map[string]string{"splits": "a,"}, "option splits: split point 2 is empty"},
		{2, map[string]string{"splits": ""}, "2 partitions need 1 split point, got 0"},
		{3, map[string]string{"splits": "a,b%zz"}, `split point 2 "b%zz": invalid URL escape "%zz"`},
		{2, map[string]string{"split": "m"}, `option "split": allowed options are splits`},
		{0, nil, "partition count 0: allowed values are 1..1024"},
	} {
		p := &Partitioner{}
		err := p.Configure(context.Background(), tc.n, tc.options)
		if !errors.Is(err, partitioners.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("configure %d partitions, options %v: %v, want ErrInvalidArgument saying %q", tc.n, tc.options, err, tc.want)
		}
		if err := p.Locate(context.Background(), [][]byte{[]byte("k")}, make([]int, 1)); err == nil {
			t.Errorf("locate after a failed configure: no error")
		}
	}
}

func TestSplitsOption(t *testing.T) {
	p := configure(t, 4, map[string]string{"splits": "g,n%2Cx,%ff%00"})
	for _, tc := range []struct {
		key  string
		want int
	}{
		{"", 0}, {"a", 0}, {"fzzz", 0}, {"g", 1}, {"g\x00", 1}, {"n", 1}, {"n,", 1}, {"n,x", 2}, {"zzz", 2},
		{"\xff", 2}, {"\xff\x00", 3}, {"\xff\xff", 3},
	} {
		if got := locateOne(t, p, []byte(tc.key)); got != tc.want {
			t.Errorf("key %q: partition %d, want %d", tc.key, got, tc.want)
		}
	}
	// One partition: no split points, every key in 0.
	for _, opts := range []map[string]string{nil, {"splits": ""}} {
		one := configure(t, 1, opts)
		if got := locateOne(t, one, []byte("anything")); got != 0 {
			t.Errorf("1 partition, options %v: partition %d", opts, got)
		}
	}
	// plugdb bench's keys, "user" and 16 hex digits, halved at user8.
	bench := configure(t, 2, map[string]string{"splits": "user8"})
	for key, want := range map[string]int{"user0000000000000000": 0, "user7fffffffffffffff": 0, "user8000000000000000": 1, "userffffffffffffffff": 1} {
		if got := locateOne(t, bench, []byte(key)); got != want {
			t.Errorf("splits user8: key %s in %d, want %d", key, got, want)
		}
	}
}

func TestDefaultSplits(t *testing.T) {
	for n := 1; n <= partitioners.MaxPartitions; n++ {
		s := DefaultSplits(n)
		if len(s) != n-1 {
			t.Fatalf("%d partitions: %d default split points", n, len(s))
		}
		for i := range s {
			if len(s[i]) == 0 || (i > 0 && bytes.Compare(s[i-1], s[i]) >= 0) {
				t.Fatalf("%d partitions: default split points %x are not ascending and non-empty", n, s)
			}
		}
	}
	if got := DefaultSplits(2); !slices.EqualFunc(got, [][]byte{{0x80}}, bytes.Equal) {
		t.Errorf("default splits of 2: %x, want [80]", got)
	}
	if got := DefaultSplits(3); !slices.EqualFunc(got, [][]byte{{0x55, 0x55}, {0xaa, 0xaa}}, bytes.Equal) {
		t.Errorf("default splits of 3: %x, want [5555 aaaa]", got)
	}
	p := configure(t, 2, nil)
	for key, want := range map[string]int{"": 0, "\x7f\xff\xff": 0, "\x80": 1, "\x80\x00": 1, "\xff": 1} {
		if got := locateOne(t, p, []byte(key)); got != want {
			t.Errorf("default, 2 partitions: key %x in %d, want %d", key, got, want)
		}
	}
	// Without splits, N partitions are N equal slices of the first two bytes.
	p = configure(t, 256, nil)
	for b := range 256 {
		if got := locateOne(t, p, []byte{byte(b), 0x42}); got != b {
			t.Errorf("default, 256 partitions: key %02x42 in %d, want %d", b, got, b)
		}
	}
}

// TestRangeIsExact compares Range with the partitions whose ranges, computed
// from the split points by hand, intersect [start, end): never more, never fewer.
func TestRangeIsExact(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	alphabet := []byte("abc\x00\xff")
	word := func() []byte {
		w := make([]byte, r.IntN(4))
		for i := range w {
			w[i] = alphabet[r.IntN(len(alphabet))]
		}
		return w
	}
	for round := range 200 {
		n := 1 + r.IntN(8)
		var splits [][]byte
		for len(splits) < n-1 {
			if w := word(); len(w) > 0 && !slices.ContainsFunc(splits, func(s []byte) bool { return bytes.Equal(s, w) }) {
				splits = append(splits, w)
			}
		}
		slices.SortFunc(splits, bytes.Compare)
		var text []string
		for _, s := range splits {
			text = append(text, escape(s))
		}
		p := configure(t, n, map[string]string{"splits": strings.Join(text, ",")})
		for range 50 {
			start, end := word(), word()
			got, err := p.Range(context.Background(), start, end)
			if err != nil {
				t.Fatal(err)
			}
			want := []int{}
			for q := range n {
				lo, hi := []byte{}, []byte(nil) // hi nil: no upper bound
				if q > 0 {
					lo = splits[q-1]
				}
				if q < n-1 {
					hi = splits[q]
				}
				from := lo
				if bytes.Compare(start, from) > 0 {
					from = start
				}
				below := func(k []byte) bool { // k < min(hi, end)
					return (hi == nil || bytes.Compare(k, hi) < 0) && (len(end) == 0 || bytes.Compare(k, end) < 0)
				}
				if below(from) {
					want = append(want, q)
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("round %d, splits %q: range [%q, %q) = %v, want %v", round, splits, start, end, got, want)
			}
			// Every partition Range names holds a key of the range: its lowest one there.
			for _, q := range got {
				k := start
				if q > 0 && bytes.Compare(splits[q-1], k) > 0 {
					k = splits[q-1]
				}
				if locateOne(t, p, k) != q {
					t.Fatalf("splits %q: range [%q, %q) names %d, but its key %q is in %d", splits, start, end, q, k, locateOne(t, p, k))
				}
			}
		}
	}
}

func TestRangeExamples(t *testing.T) {
	p := configure(t, 4, map[string]string{"splits": "g,n,t"})
	for _, tc := range []struct {
		start, end string
		want       []int
	}{
		{"", "", []int{0, 1, 2, 3}},
		{"a", "b", []int{0}},
		{"a", "g", []int{0}},
		{"a", "g\x00", []int{0, 1}},
		{"g", "n", []int{1}},
		{"h", "p", []int{1, 2}},
		{"n", "", []int{2, 3}},
		{"", "g", []int{0}},
		{"u", "z", []int{3}},
		{"m", "m", []int{}},
		{"z", "a", []int{}},
	} {
		got, err := p.Range(context.Background(), []byte(tc.start), []byte(tc.end))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("range [%q, %q) = %v, want %v", tc.start, tc.end, got, tc.want)
		}
	}
}

// escape writes s as a split point: bytes other than letters and digits as %XX.
func escape(s []byte) string {
	var b strings.Builder
	for _, c := range s {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
