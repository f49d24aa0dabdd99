package statement

import (
	"testing"

	"github.com/plugdb/plugdb/replicators/replicatortest"
)

func TestConformance(t *testing.T) {
	replicatortest.Run(t, func(*testing.T) replicatortest.Harness { return replicatortest.Harness{Open: Open} })
}
