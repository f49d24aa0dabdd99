// Package partitionertest is the conformance kit for partitioners, in the
// manner of testing/fstest and engines/enginetest: it checks that a
// partitioners.Partitioner keeps the contract, one case per behaviour, each on
// fresh instances. The kit is deterministic: its random keys come from fixed
// seeds.
//
// What it checks: Configure refuses 0 and more than 1024 partitions and unknown
// options (ErrInvalidArgument, naming the option); Locate is deterministic (the
// same keys twice, one key at a time or in a batch, two instances) and maps
// every key, including the empty key and a 64 KiB key, to 0..N-1 for N in
// {1, 2, 3, 7, 64}; Locate with len(out) != len(keys) fails with
// ErrInvalidArgument (and matches no other of plugdb's sentinels:
// enginetest.WantError); Range returns sorted, distinct, valid partitions that
// include the partition of every key inside the range; concurrent Locate calls
// get their own answers; and, if the harness gives a reference implementation,
// the partitioner agrees with it key for key (the same partitioner in process
// and through a plugin, say).
//
// Balance: on 100,000 random keys (1 to 40 random bytes), for every N in 2..16,
// the fullest partition holds at most MaxImbalance (1.10) times the mean. That
// is the bound for a partitioner that spreads arbitrary keys, such as a hash;
// a partitioner that keeps key order (ranges) may fail it and say so.
//
// From a test:
//
//	func TestConformance(t *testing.T) {
//		partitionertest.Run(t, func(t *testing.T) partitionertest.Harness {
//			return partitionertest.Harness{Open: mypartitioner.Open}
//		})
//	}
//
// Outside go test (plugdb plugin check), run each of Cases with RunCase.
package partitionertest

import (
	"context"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/plugdb/plugdb/engines/enginetest"
	"github.com/plugdb/plugdb/partitioners"
)

// MaxImbalance bounds the fullest partition over the mean in the Balance case.
const MaxImbalance = 1.10

// T is the part of *testing.T the kit uses (the same as enginetest's, so that
// one runner serves both kits outside go test).
type T = enginetest.T

// Result is the outcome of one case run by RunCase.
type Result = enginetest.Result

// Status is the outcome of a case: Pass, Fail or Skip.
type Status = enginetest.Status

// Outcomes of a case.
const (
	Pass = enginetest.Pass
	Fail = enginetest.Fail
	Skip = enginetest.Skip
)

// Harness opens partitioners for the kit.
type Harness struct {
	// Open returns a new partitioner, not yet configured (the kit configures it
	// and closes it). Required.
	Open func(ctx context.Context) (partitioners.Partitioner, error)
	// Options are the options the kit configures partitioners with (nil: none).
	Options map[string]string
	// Reference, if set, returns a new, unconfigured instance of the
	// implementation the partitioner must agree with key for key, such as the
	// same partitioner linked in process when Open goes through a plugin.
	// Without it the MatchesReference case is skipped.
	Reference func(ctx context.Context) (partitioners.Partitioner, error)
}

// FromOpenFunc returns an Open function for a Harness that calls open with a
// logger that discards everything.
func FromOpenFunc(open partitioners.OpenFunc) func(ctx context.Context) (partitioners.Partitioner, error) {
	return func(ctx context.Context) (partitioners.Partitioner, error) {
		return open(ctx, hclog.NewNullLogger())
	}
}

// OpenConfigured returns an Open function for a Harness from a function that
// opens an already configured partitioner (as loader.OpenPartitioner does):
// the partitioner it returns opens one with open when the kit calls its
// Configure, and fails every other call until then.
func OpenConfigured(open func(ctx context.Context, partitions int, options map[string]string) (partitioners.Partitioner, error)) func(ctx context.Context) (partitioners.Partitioner, error) {
	return func(context.Context) (partitioners.Partitioner, error) {
		return &deferred{open: open}, nil
	}
}

// Case is one behaviour the kit checks.
type Case struct {
	Name string
	Test func(t T, h Harness)
}

// Cases returns the kit's cases in the order Run runs them.
func Cases() []Case {
	return []Case{
		{"ConfigureRejectsBadArguments", testConfigure},
		{"Deterministic", testDeterministic},
		{"ValidPartitions", testValidPartitions},
		{"EdgeKeys", testEdgeKeys},
		{"LocateLengthMismatch", testLengthMismatch},
		{"Range", testRange},
		{"Balance", testBalance},
		{"Concurrent", testConcurrent},
		{"MatchesReference", testMatchesReference},
	}
}

// Run runs every case as a subtest of t. newHarness is called once per subtest
// with the subtest's t, so a harness may register cleanups on it.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	t.Helper()
	for _, c := range Cases() {
		t.Run(c.Name, func(t *testing.T) {
			c.Test(t, newHarness(t))
		})
	}
}

// RunCase runs c against h outside go test and returns its result; see
// enginetest.RunCase, whose runner it shares.
func RunCase(ctx context.Context, c Case, h Harness) Result {
	return enginetest.RunCase(ctx, enginetest.Case{Name: c.Name, Test: func(t enginetest.T, _ enginetest.Harness) {
		c.Test(t, h)
	}}, nil)
}
