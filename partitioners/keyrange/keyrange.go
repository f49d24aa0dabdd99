// Package keyrange is plugdb's order-keeping partitioner, bundled as "range":
// the key space is cut into N ordered ranges at N-1 split points, so a range
// scan touches only the partitions whose ranges it overlaps. (The package is
// named keyrange, not range, because range is a Go keyword.)
//
// With split points s[0] < s[1] < … < s[N-2] (compared bytewise), partition 0
// holds the keys below s[0], partition i the keys in [s[i-1], s[i]), and the
// last partition the keys at or above s[N-2]. Locate and Range find a key's
// range by binary search; Range returns exactly the partitions whose ranges
// intersect [start, end).
//
// Options:
//
//   - splits: the N-1 split points, ascending, separated by commas, e.g.
//     "user4,user8,userc" for 4 partitions. A byte that is not plain text is
//     written %XX (two hex digits): %2C is a comma, %25 a percent sign, %00 a
//     zero byte. Every point is at least one byte long and above the one
//     before it. With 1 partition, splits is empty or absent.
//
// Without splits, the ranges are N equal slices of the keys' first two bytes
// read as a big-endian number 0..65535 (a shorter key counts as padded with
// zero bytes): split i is ⌊i·65536/N⌋ as two bytes, a trailing zero byte
// dropped, so for 2 partitions keys below 0x80 go to 0 and the rest to 1. That
// spreads keys whose first bytes are uniform (random or hashed keys); keys
// with a common prefix such as "user…" all land in one partition, so give
// them splits (plugdb bench's keys, "user" and 16 hex digits, split evenly at
// "user8" for 2 partitions).
//
// Because it keeps key order, this partitioner does not spread arbitrary keys
// evenly: its balance depends on the split points matching the keys.
package keyrange

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"sort"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/plugdb/plugdb/partitioners"
)

// OptionSplits is the option that gives the split points.
const OptionSplits = "splits"

// Partitioner is the range partitioner.
type Partitioner struct {
	n      int      // 0 until configured
	splits [][]byte // n-1 split points, strictly ascending
}

var _ partitioners.Partitioner = (*Partitioner)(nil)

// Open returns a new range partitioner, not yet configured; it is the
// partitioners.OpenFunc of the bundled "range" plugin.
func Open(context.Context, hclog.Logger) (partitioners.Partitioner, error) {
	return &Partitioner{}, nil
}

// Configure sets the partition count and the split points (option splits, or
// the default slices of the first two bytes).
func (p *Partitioner) Configure(_ context.Context, partitions int, options map[string]string) error {
	if err := partitioners.CheckPartitions(partitions); err != nil {
		return fmt.Errorf("range partitioner: %w", err)
	}
	if err := partitioners.CheckOptions(options, OptionSplits); err != nil {
		return fmt.Errorf("range partitioner: %w", err)
	}
	splits := DefaultSplits(partitions)
	if text, ok := options[OptionSplits]; ok {
		var err error
		if splits, err = ParseSplits(text, partitions); err != nil {
			return fmt.Errorf("range partitioner: option %s: %w", OptionSplits, err)
		}
	}
	p.n, p.splits = partitions, splits
	return nil
}

// ParseSplits parses the value of option splits for n partitions: n-1
// comma-separated points, %XX escapes decoded, each non-empty and above the
// one before. Its errors wrap partitioners.ErrInvalidArgument.
func ParseSplits(text string, n int) ([][]byte, error) {
	var fields []string
	if text != "" {
		fields = strings.Split(text, ",")
	}
	if len(fields) != n-1 {
		return nil, fmt.Errorf("%d %s need%s %d split %s, got %d (split points are comma-separated, ascending): %w",
			n, plural(n, "partition", "partitions"), plural(n, "s", ""), n-1, plural(n-1, "point", "points"), len(fields), partitioners.ErrInvalidArgument)
	}
	splits := make([][]byte, len(fields))
	for i, f := range fields {
		if f == "" {
			return nil, fmt.Errorf("split point %d is empty (each point is at least one byte; write a comma as %%2C): %w", i+1, partitioners.ErrInvalidArgument)
		}
		s, err := url.PathUnescape(f)
		if err != nil {
			return nil, fmt.Errorf("split point %d %q: %v (write a byte as %%XX with two hex digits, a percent sign as %%25): %w", i+1, f, err, partitioners.ErrInvalidArgument)
		}
		splits[i] = []byte(s)
		if i > 0 && bytes.Compare(splits[i-1], splits[i]) >= 0 {
			return nil, fmt.Errorf("split point %d %q is not above split point %d %q (split points must be strictly ascending, compared bytewise): %w",
				i+1, f, i, fields[i-1], partitioners.ErrInvalidArgument)
		}
	}
	return splits, nil
}

// DefaultSplits returns the split points used without option splits: n equal
// slices of the first two bytes' 0..65535 range, split i being ⌊i·65536/n⌋ as
// two big-endian bytes with a trailing zero byte dropped.
func DefaultSplits(n int) [][]byte {
	splits := make([][]byte, n-1)
	for i := range splits {
		v := (i + 1) * 65536 / n
		s := []byte{byte(v >> 8), byte(v)}
		if s[1] == 0 {
			s = s[:1]
		}
		splits[i] = s
	}
	return splits
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// Locate sets out[i] to the partition whose range holds keys[i].
func (p *Partitioner) Locate(_ context.Context, keys [][]byte, out []int) error {
	if err := p.configured(); err != nil {
		return err
	}
	if err := partitioners.CheckLocate(keys, out); err != nil {
		return fmt.Errorf("range partitioner: %w", err)
	}
	for i, k := range keys {
		out[i] = p.locate(k)
	}
	return nil
}

// locate returns the partition of key: the number of split points at or below it.
func (p *Partitioner) locate(key []byte) int {
	return sort.Search(len(p.splits), func(i int) bool { return bytes.Compare(p.splits[i], key) > 0 })
}

// Range returns the partitions whose ranges intersect [start, end), an empty
// end meaning no upper bound: from start's partition to the last one whose
// range begins below end. An empty range (start ≥ end) touches none.
func (p *Partitioner) Range(_ context.Context, start, end []byte) ([]int, error) {
	if err := p.configured(); err != nil {
		return nil, err
	}
	first, last := p.locate(start), p.n-1
	if len(end) > 0 {
		if bytes.Compare(start, end) >= 0 {
			return []int{}, nil
		}
		// Partition j holds keys below end iff j == 0 or splits[j-1] < end.
		last = sort.Search(len(p.splits), func(i int) bool { return bytes.Compare(p.splits[i], end) >= 0 })
	}
	parts := make([]int, 0, last-first+1)
	for i := first; i <= last; i++ {
		parts = append(parts, i)
	}
	return parts, nil
}

// Close does nothing.
func (p *Partitioner) Close() error { return nil }

func (p *Partitioner) configured() error {
	if p.n == 0 {
		return fmt.Errorf("range partitioner: not configured (call Configure first): %w", partitioners.ErrInvalidArgument)
	}
	return nil
}
