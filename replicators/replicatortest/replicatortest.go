// Package replicatortest is the conformance kit for replicators, in the manner
// of testing/fstest and engines/enginetest: it checks that a
// replicators.Replicator keeps the contract, one case per behaviour, each on
// fresh instances in folders of their own.
//
// Cases for any replicator: ParseAck and the Ack helpers; unknown options and
// a bad ack option fail with ErrInvalidArgument; Replicate before Lead, and on
// a follower, fails with ErrNotLeader; Lead(epoch, applied) on an empty log
// returns applied; consecutive statements replicate with ack async, one by one
// and from concurrent calls that may arrive out of LSN order; malformed
// statements (empty, no epoch, non-consecutive or zero LSNs, LSNs at or below
// the last replicated one) fail with ErrInvalidArgument and leave the log
// alone, and a statement after a gap is not acknowledged; Status shows the role,
// epoch, commit point and configured ack; Deliveries ends when its context
// ends; after Close every call fails with ErrClosed and Deliveries ends.
//
// Cases for replicators that make copies (Addr() != ""; the others skip them),
// with a leader and a follower that reach each other on 127.0.0.1: 1000
// statements replicated with ack semi-sync from overlapping calls reach the
// follower's Deliveries whole and in LSN order, and the leader's Status shows
// the follower persisted them; semi-sync without an in-sync follower fails with
// ErrUnavailable within the call's context, and the statement stays in the
// log; a follower that has seen a newer epoch fences the leader (ErrFenced,
// then no more acknowledged writes); a follower restarted on its folder
// resumes right after the LSN its host applied, redelivering nothing applied
// and losing nothing persisted.
//
// Each error the kit expects must match its sentinel with errors.Is and no
// other of plugdb's sentinels (enginetest.WantError), in process and through a
// plugin alike.
//
// The kit opens every replicator with the harness's Params plus ack: async
// (a replicator under test must accept that option), listening on
// 127.0.0.1:0; cases that need a stronger ack ask for it per call. It plays
// the host: on a follower it ranges over Deliveries, applies each statement
// (it records it) and reports it with Applied.
//
// From a test:
//
//	func TestConformance(t *testing.T) {
//		replicatortest.Run(t, func(t *testing.T) replicatortest.Harness {
//			return replicatortest.Harness{Open: myreplicator.Open}
//		})
//	}
//
// Outside go test (plugdb plugin check), run each of Cases with RunCase.
package replicatortest

import (
	"context"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/plugdb/plugdb/engines/enginetest"
	"github.com/plugdb/plugdb/replicators"
)

// T is the part of *testing.T the kit uses (the same as enginetest's, so that
// one runner serves every kit outside go test).
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

// Harness opens replicators for the kit.
type Harness struct {
	// Open opens a replicator. The kit sets opts.Dir (an existing folder of
	// the case's own, opened again after a Close to check a restart),
	// opts.Partition (0), opts.Listen ("127.0.0.1:0"), opts.Params (Params
	// with ack: async) and opts.Logger, and closes every replicator it opens.
	// Required. A replicators.OpenFunc, such as statement.Open, is one.
	Open func(ctx context.Context, opts replicators.Options) (replicators.Replicator, error)
	// Params are options the kit opens replicators with (nil: none); the
	// kit's ack: async wins over an ack here.
	Params map[string]string
	// Logger receives the replicators' logs (nil: discarded).
	Logger hclog.Logger
}

// Case is one behaviour the kit checks.
type Case struct {
	Name string
	Test func(t T, h Harness)
}

// Cases returns the kit's cases in the order Run runs them.
func Cases() []Case {
	return []Case{
		{"ParseAck", testParseAck},
		{"RejectsBadOptions", testBadOptions},
		{"ReplicateNeedsLead", testReplicateNeedsLead},
		{"Lead", testLead},
		{"ReplicateAsync", testReplicateAsync},
		{"ReplicateConcurrent", testReplicateConcurrent},
		{"MalformedStatements", testMalformed},
		{"Status", testStatus},
		{"DeliveriesEndWithContext", testDeliveriesEnd},
		{"Closed", testClosed},
		{"CopiesInOrder", testCopiesInOrder},
		{"SemiSyncNeedsInSyncFollower", testSemiSyncNeedsISR},
		{"Fencing", testFencing},
		{"FollowerRestartResumes", testFollowerRestart},
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
