package ring_test

import (
	"testing"

	"github.com/plugdb/plugdb/partitioners/partitionertest"
	"github.com/plugdb/plugdb/partitioners/ring"
)

func TestConformance(t *testing.T) {
	partitionertest.Run(t, func(*testing.T) partitionertest.Harness {
		return partitionertest.Harness{
			Open:      partitionertest.FromOpenFunc(ring.Open),
			Reference: partitionertest.FromOpenFunc(ring.Open),
		}
	})
}
