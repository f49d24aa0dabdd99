// Package partitioners is the partitioner contract of plugdb: a partitioner maps
// keys to partitions, and says which partitions a key range touches.
//
// Like database/sql/driver, this package imports neither gRPC nor the plugdb
// core: a third party implements Partitioner and serves it as a plugin with
// plugins.Serve (ServeConfig.Partitioner), or links it in process. The bundled
// default is partitioners/hash; partitioners/ring is consistent hashing.
//
// All methods except Configure must be safe for concurrent use. Byte slices
// passed to a partitioner belong to the caller until the call returns.
package partitioners

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/plugdb/plugdb/errdefs"
)

// MaxPartitions is the largest partition count a partitioner is configured with.
const MaxPartitions = 1024

// Sentinel errors, plugdb's own (package errdefs) re-exported: they are the same
// values as engines' and replicators'. Partitioners wrap them with context;
// callers test them with errors.Is, which keeps working across the plugin
// boundary.
var (
	// ErrInvalidArgument: a bad partition count or option (the wrapping message
	// names the option and its allowed values), or a malformed call such as
	// len(out) != len(keys) in Locate.
	ErrInvalidArgument = errdefs.ErrInvalidArgument
	// ErrClosed: (loaded as a plugin) the partitioner was closed or its
	// process failed for good; the wrapping message names the partitioner.
	// A partitioner in process may keep answering after Close: a pure
	// function of its configuration has nothing to release, so the
	// bundled ones do, and the kit does not require ErrClosed.
	ErrClosed = errdefs.ErrClosed
)

// OpenFunc returns a new partitioner, not yet configured. It is what a plugin's
// main hands to plugins.Serve. logger is where the partitioner logs; a plugin's
// logs reach the host's log under the plugin's name. It is never nil when the
// host or plugins.Serve calls OpenFunc.
type OpenFunc func(ctx context.Context, logger hclog.Logger) (Partitioner, error)

// Partitioner maps keys to partitions 0..N-1. Its answers depend only on the
// partition count and options it was configured with and on the keys: the same
// key maps to the same partition in every process, on every platform and in
// every release that keeps the same configuration.
type Partitioner interface {
	// Configure sets the partition count (1..MaxPartitions) and the options; it
	// is called once, before any other method. A bad count or an unknown or
	// malformed option fails with ErrInvalidArgument, naming the option and its
	// allowed values.
	Configure(ctx context.Context, partitions int, options map[string]string) error

	// Locate sets out[i] to the partition of keys[i]. len(out) must equal
	// len(keys), else it fails with ErrInvalidArgument. Any key is valid,
	// including the empty key.
	Locate(ctx context.Context, keys [][]byte, out []int) error

	// Range returns, ascending and without duplicates, the partitions that may
	// hold keys in [start, end); an empty end means no upper bound. It may
	// return more partitions than hold such keys (a hash partitioner returns
	// all of them), never fewer.
	Range(ctx context.Context, start, end []byte) ([]int, error)

	// Close releases the partitioner.
	Close() error
}

// CheckPartitions verifies a partition count for Configure.
func CheckPartitions(partitions int) error {
	if partitions < 1 || partitions > MaxPartitions {
		return fmt.Errorf("partition count %d: allowed values are 1..%d: %w", partitions, MaxPartitions, ErrInvalidArgument)
	}
	return nil
}

// CheckOptions verifies that every option is one of allowed, for Configure.
// The error names the first unknown option (in sorted order) and the allowed ones.
func CheckOptions(options map[string]string, allowed ...string) error {
	for _, name := range slices.Sorted(maps.Keys(options)) {
		if slices.Contains(allowed, name) {
			continue
		}
		if len(allowed) == 0 {
			return fmt.Errorf("option %q: this partitioner takes no options: %w", name, ErrInvalidArgument)
		}
		return fmt.Errorf("option %q: allowed options are %s: %w", name, strings.Join(allowed, ", "), ErrInvalidArgument)
	}
	return nil
}

// CheckLocate verifies the arguments of Locate.
func CheckLocate(keys [][]byte, out []int) error {
	if len(out) != len(keys) {
		return fmt.Errorf("locate: %d keys but room for %d partitions (len(out) must equal len(keys)): %w", len(keys), len(out), ErrInvalidArgument)
	}
	return nil
}

// All returns the partitions 0..n-1, the answer of Range for a partitioner that
// scatters keys.
func All(n int) []int {
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	return all
}
