package keyrange

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
)

// FormatSplits writes split points as the value of option splits: points
// joined by commas, every byte that is not plain text (and ',' and '%') as %XX.
// ParseSplits reads it back.
func FormatSplits(points [][]byte) string {
	var b strings.Builder
	for i, p := range points {
		if i > 0 {
			b.WriteByte(',')
		}
		for _, c := range p {
			if c > ' ' && c < 0x7f && c != ',' && c != '%' {
				b.WriteByte(c)
			} else {
				fmt.Fprintf(&b, "%%%02X", c)
			}
		}
	}
	return b.String()
}

// SplitFullest returns the split points of one partition more, the way a
// range-partitioned store grows: the range that holds most of keys is cut in
// two at its median key, and every other range stays as it is. The upper half
// is the new partition, numbered fullest+1; the ranges above it keep their
// keys and are numbered one up (Renumber maps the old numbers to the new).
// It returns nil when that range has fewer than two distinct keys (nothing to
// cut between).
func SplitFullest(points, keys [][]byte) (grown [][]byte, fullest int) {
	in := make([][][]byte, len(points)+1) // keys per range
	p := &Partitioner{n: len(points) + 1, splits: points}
	for _, k := range keys {
		i := p.locate(k)
		in[i] = append(in[i], k)
	}
	for i := range in {
		if len(in[i]) > len(in[fullest]) {
			fullest = i
		}
	}
	ks := in[fullest]
	slices.SortFunc(ks, bytes.Compare)
	ks = slices.CompactFunc(ks, bytes.Equal)
	if len(ks) < 2 {
		return nil, fullest
	}
	cut := ks[len(ks)/2] // above the first key, so both halves are non-empty
	grown = make([][]byte, 0, len(points)+1)
	grown = append(grown, points[:fullest]...)
	grown = append(grown, cut)
	return append(grown, points[fullest:]...), fullest
}

// Renumber returns the map from a partition's number before SplitFullest cut
// range fullest to its number after: ranges above the cut move one up.
func Renumber(fullest int) func(int) int {
	return func(p int) int {
		if p > fullest {
			return p + 1
		}
		return p
	}
}
