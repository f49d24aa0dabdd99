package partitioners

import (
	"context"
	"fmt"
)

// Moved returns how many of keys before and after place in different
// partitions: the keys that would have to move if a cluster partitioned by
// before were repartitioned by after (the same partitioner with one partition
// more, say). Both must be configured.
func Moved(ctx context.Context, before, after Partitioner, keys [][]byte) (int, error) {
	return MovedRenumbered(ctx, before, after, keys, nil)
}

// MovedRenumbered is Moved for a growth that renumbers partitions: renumber
// maps a partition of before to the number the same partition has in after
// (a range store that splits range i renumbers the ranges above it one up,
// without moving their keys). A nil renumber keeps the numbers.
func MovedRenumbered(ctx context.Context, before, after Partitioner, keys [][]byte, renumber func(int) int) (int, error) {
	if renumber == nil {
		renumber = func(p int) int { return p }
	}
	const chunk = 4096 // keys per Locate call: few calls, bounded memory
	a, b := make([]int, chunk), make([]int, chunk)
	moved := 0
	for i := 0; i < len(keys); i += chunk {
		part := keys[i:min(i+chunk, len(keys))]
		if err := before.Locate(ctx, part, a[:len(part)]); err != nil {
			return 0, fmt.Errorf("locate before: %w", err)
		}
		if err := after.Locate(ctx, part, b[:len(part)]); err != nil {
			return 0, fmt.Errorf("locate after: %w", err)
		}
		for j := range part {
			if renumber(a[j]) != b[j] {
				moved++
			}
		}
	}
	return moved, nil
}
