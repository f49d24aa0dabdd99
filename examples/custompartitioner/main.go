// Command custompartitioner is a partitioner plugin as a third party writes
// one: it imports only plugdb's SDK (partitioners, plugins), maps a key to
// FNV-1a 64 of the key, optionally salted, mod N, and serves it with
// plugins.Serve. Build it, then check it or point a config at the binary:
//
//	go build -o bin/custompartitioner ./examples/custompartitioner
//	plugdb plugin check ./bin/custompartitioner
package main

import (
	"context"
	"fmt"
	"hash/fnv"

	"github.com/hashicorp/go-hclog"

	"github.com/plugdb/plugdb/partitioners"
	"github.com/plugdb/plugdb/plugins"
)

type fnvPartitioner struct {
	n    uint64
	salt string
}

func open(context.Context, hclog.Logger) (partitioners.Partitioner, error) {
	return &fnvPartitioner{}, nil
}

// Configure takes one option, salt: a string hashed before every key.
func (p *fnvPartitioner) Configure(_ context.Context, n int, options map[string]string) error {
	if err := partitioners.CheckPartitions(n); err != nil {
		return err
	}
	if err := partitioners.CheckOptions(options, "salt"); err != nil {
		return err
	}
	p.n, p.salt = uint64(n), options["salt"]
	return nil
}

func (p *fnvPartitioner) Locate(_ context.Context, keys [][]byte, out []int) error {
	if err := partitioners.CheckLocate(keys, out); err != nil {
		return err
	}
	if p.n == 0 {
		return fmt.Errorf("not configured: %w", partitioners.ErrInvalidArgument)
	}
	for i, k := range keys {
		h := fnv.New64a()
		h.Write([]byte(p.salt))
		h.Write(k)
		out[i] = int(h.Sum64() % p.n)
	}
	return nil
}

// Range returns every partition: hashing scatters any range.
func (p *fnvPartitioner) Range(context.Context, []byte, []byte) ([]int, error) {
	return partitioners.All(int(p.n)), nil
}

func (p *fnvPartitioner) Close() error { return nil }

func main() { plugins.Serve(plugins.ServeConfig{Partitioner: open}) }
