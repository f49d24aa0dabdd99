package hash_test

import (
	"testing"

	"github.com/plugdb/plugdb/partitioners/hash"
	"github.com/plugdb/plugdb/partitioners/partitionertest"
)

func TestConformance(t *testing.T) {
	partitionertest.Run(t, func(*testing.T) partitionertest.Harness {
		return partitionertest.Harness{
			Open:      partitionertest.FromOpenFunc(hash.Open),
			Reference: partitionertest.FromOpenFunc(hash.Open),
		}
	})
}
