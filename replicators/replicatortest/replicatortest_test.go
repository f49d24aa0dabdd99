package replicatortest_test

import (
	"context"
	"testing"

	"github.com/plugdb/plugdb/replicators"
	"github.com/plugdb/plugdb/replicators/none"
	"github.com/plugdb/plugdb/replicators/replicatortest"
)

// copyCases are the cases a replicator that makes no copies skips.
var copyCases = map[string]bool{
	"CopiesInOrder": true, "SemiSyncNeedsInSyncFollower": true, "Fencing": true, "FollowerRestartResumes": true,
}

func TestNone(t *testing.T) {
	replicatortest.Run(t, func(*testing.T) replicatortest.Harness {
		return replicatortest.Harness{Open: none.Open}
	})
}

// sloppy is the none replicator acknowledging statements it already has.
type sloppy struct{ replicators.Replicator }

func (s sloppy) Replicate(ctx context.Context, st replicators.Statement, ack replicators.Ack) error {
	err := s.Replicator.Replicate(ctx, st, ack)
	if err != nil && st.Check() == nil && st.Epoch == 1 {
		if _, lerr := s.Replicator.Status(ctx); lerr == nil {
			return nil
		}
	}
	return err
}

// immortal is the none replicator that ignores Close.
type immortal struct{ replicators.Replicator }

func (immortal) Close() error { return nil }

// The kit fails what breaks the contract and only that, and skips the copy
// cases for a replicator that makes no copies.
func TestKitCatchesBreakage(t *testing.T) {
	for _, tc := range []struct {
		name string
		wrap func(replicators.Replicator) replicators.Replicator
		fail map[string]bool
	}{
		{"none", func(r replicators.Replicator) replicators.Replicator { return r }, nil},
		{"sloppy", func(r replicators.Replicator) replicators.Replicator { return sloppy{r} },
			map[string]bool{"ReplicateNeedsLead": true, "Lead": true, "MalformedStatements": true}},
		{"immortal", func(r replicators.Replicator) replicators.Replicator { return immortal{r} },
			map[string]bool{"Closed": true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := replicatortest.Harness{Open: func(ctx context.Context, opts replicators.Options) (replicators.Replicator, error) {
				r, err := none.Open(ctx, opts)
				if err != nil {
					return nil, err
				}
				return tc.wrap(r), nil
			}}
			for _, c := range replicatortest.Cases() {
				res := replicatortest.RunCase(t.Context(), c, h)
				want := replicatortest.Pass
				switch {
				case copyCases[c.Name]:
					want = replicatortest.Skip
				case tc.fail[c.Name]:
					want = replicatortest.Fail
				}
				if res.Status != want {
					t.Errorf("%s: %s, want %s: %v", c.Name, res.Status, want, res.Log)
				}
			}
		})
	}
}
