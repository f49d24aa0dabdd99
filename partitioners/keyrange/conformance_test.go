package keyrange_test

import (
	"testing"

	"github.com/plugdb/plugdb/partitioners/keyrange"
	"github.com/plugdb/plugdb/partitioners/partitionertest"
)

func TestConformance(t *testing.T) {
	partitionertest.Run(t, func(*testing.T) partitionertest.Harness {
		return partitionertest.Harness{
			Open:      partitionertest.FromOpenFunc(keyrange.Open),
			Reference: partitionertest.FromOpenFunc(keyrange.Open),
		}
	})
}
