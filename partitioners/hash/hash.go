// Package hash is plugdb's default partitioner: xxHash64 of the key mod N.
//
// Why xxHash64: it is fast (several GB/s, so locating a key never shows up next
// to a network hop), well distributed on short and similar keys (it passes
// SMHasher, so "user:1", "user:2", … spread evenly), and its output is specified
// and stable across versions, platforms and endianness, which a partition map
// must be: a key stored in partition p must be found in p by every later release.
// The modulo bias is negligible (N ≤ 1024 against 2^64).
//
// A hash partitioner scatters keys, so Range returns every partition. It takes
// no options.
package hash

import (
	"context"
	"fmt"

	"github.com/cespare/xxhash/v2"
	"github.com/hashicorp/go-hclog"

	"github.com/plugdb/plugdb/partitioners"
)

// Locate returns the partition of key among n (n ≥ 1). It is the partitioner's
// function itself, for callers that link it.
func Locate(key []byte, n int) int {
	return int(xxhash.Sum64(key) % uint64(n))
}

// Partitioner is the hash partitioner.
type Partitioner struct {
	n int // 0 until configured
}

var _ partitioners.Partitioner = (*Partitioner)(nil)

// Open returns a new hash partitioner, not yet configured; it is the
// partitioners.OpenFunc of the bundled "hash" plugin.
func Open(context.Context, hclog.Logger) (partitioners.Partitioner, error) {
	return &Partitioner{}, nil
}

// Configure sets the partition count; the hash partitioner takes no options.
func (p *Partitioner) Configure(_ context.Context, partitions int, options map[string]string) error {
	if err := partitioners.CheckPartitions(partitions); err != nil {
		return fmt.Errorf("hash partitioner: %w", err)
	}
	if err := partitioners.CheckOptions(options); err != nil {
		return fmt.Errorf("hash partitioner: %w", err)
	}
	p.n = partitions
	return nil
}

// Locate sets out[i] to xxHash64(keys[i]) mod N.
func (p *Partitioner) Locate(_ context.Context, keys [][]byte, out []int) error {
	if err := p.configured(); err != nil {
		return err
	}
	if err := partitioners.CheckLocate(keys, out); err != nil {
		return fmt.Errorf("hash partitioner: %w", err)
	}
	n := uint64(p.n)
	for i, k := range keys {
		out[i] = int(xxhash.Sum64(k) % n)
	}
	return nil
}

// Range returns every partition: hashing scatters any range over all of them.
func (p *Partitioner) Range(context.Context, []byte, []byte) ([]int, error) {
	if err := p.configured(); err != nil {
		return nil, err
	}
	return partitioners.All(p.n), nil
}

// Close does nothing.
func (p *Partitioner) Close() error { return nil }

func (p *Partitioner) configured() error {
	if p.n == 0 {
		return fmt.Errorf("hash partitioner: not configured (call Configure first): %w", partitioners.ErrInvalidArgument)
	}
	return nil
}
