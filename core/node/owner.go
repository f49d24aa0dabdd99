package node

import (
	"bytes"
	"context"
	"fmt"
	"iter"
	"slices"

	"github.com/plugdb/plugdb/core/api"
	"github.com/plugdb/plugdb/core/partition"
	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/partitioners"
)

// scanChunk is how many scanned rows Owner.Scan places with one Locate call.
const scanChunk = 256

// Owner decides which keys belong to a node's partition, with the cluster's
// partitioner: a node refuses the others' keys and leaves them out of its
// scans, so that a client that addresses the wrong node or a router with an
// old view never strands a row where the router will not look for it.
//
// The partition's internal rows (partition.ReservedPrefix, its request
// table) belong to no partition of the partitioner: Check lets such keys
// through (the partition refuses them as a user's keys) and Scan leaves them
// out without placing them.
type Owner struct {
	part int
	addr string
	p    partitioners.Partitioner
}

// NewOwner returns the ownership of partition part, served at addr, as p
// places keys.
func NewOwner(p partitioners.Partitioner, part int, addr string) *Owner {
	return &Owner{part: part, addr: addr, p: p}
}

// Check returns a *api.WrongPartitionError naming the first of keys that
// another partition owns, or nil if the partition owns them all. One Locate
// call places them all.
func (o *Owner) Check(ctx context.Context, keys ...[]byte) error {
	if slices.ContainsFunc(keys, partition.Reserved) {
		keys = slices.DeleteFunc(slices.Clone(keys), partition.Reserved)
		if len(keys) == 0 {
			return nil
		}
	}
	var one [1]int
	out := one[:]
	if len(keys) > 1 {
		out = make([]int, len(keys))
	}
	if err := o.locate(ctx, keys, out[:len(keys)]); err != nil {
		return err
	}
	for i, p := range out[:len(keys)] {
		if p != o.part {
			return &api.WrongPartitionError{Key: keys[i], Owner: p, Partition: o.part, Addr: o.addr}
		}
	}
	return nil
}

func (o *Owner) locate(ctx context.Context, keys [][]byte, out []int) error {
	if err := o.p.Locate(ctx, keys, out); err != nil {
		return fmt.Errorf("partition %d: partitioner: locate %d keys to check their owner: %w", o.part, len(keys), err)
	}
	return nil
}

// ScanFunc reads a range of a partition's rows in key order.
type ScanFunc func(context.Context, engines.ScanRange) iter.Seq2[engines.Row, error]

// Scan returns the rows of r that the partition owns, in key order, reading
// them with scan: rows of other partitions (written before ownership was
// checked, say) are skipped. Rows are placed scanChunk at a time. With a
// limit, when rows were skipped and scan stopped at the limit, the scan
// resumes after the last row read, so that the limit counts owned rows.
func (o *Owner) Scan(ctx context.Context, r engines.ScanRange, scan ScanFunc) iter.Seq2[engines.Row, error] {
	return func(yield func(engines.Row, error) bool) {
		cur := r
		for {
			res := o.scanOnce(ctx, cur, scan, yield)
			if res.stopped || r.Limit <= 0 || res.read < cur.Limit || res.yielded >= cur.Limit {
				return
			}
			// The engine stopped at the limit but rows were skipped: go on
			// after the last row read, for the rows still owed.
			cur.Start = append(bytes.Clone(res.last), 0)
			cur.Limit -= res.yielded
			if len(cur.End) > 0 && bytes.Compare(cur.Start, cur.End) >= 0 {
				return
			}
		}
	}
}

// scanResult is what one scan of Owner.Scan did.
type scanResult struct {
	read, yielded int    // rows read, and yielded (owned)
	last          []byte // the last key read
	stopped       bool   // yield stopped, or an error was yielded
}

// scanOnce runs one scan of r and yields its owned rows.
func (o *Owner) scanOnce(ctx context.Context, r engines.ScanRange, scan ScanFunc, yield func(engines.Row, error) bool) scanResult {
	size := scanChunk
	if r.Limit > 0 && r.Limit < size {
		size = r.Limit
	}
	chunk := make([]engines.Row, 0, size)
	keys := make([][]byte, 0, size)
	out := make([]int, size)
	var res scanResult
	flush := func() bool {
		if len(chunk) == 0 {
			return true
		}
		keys = keys[:0]
		for _, row := range chunk {
			keys = append(keys, row.Key)
		}
		if err := o.locate(ctx, keys, out[:len(keys)]); err != nil {
			yield(engines.Row{}, err)
			return false
		}
		for i, row := range chunk {
			if out[i] != o.part {
				continue
			}
			res.yielded++
			if !yield(row, nil) {
				return false
			}
		}
		chunk = chunk[:0]
		return true
	}
	for row, err := range scan(ctx, r) {
		if err != nil {
			if flush() {
				yield(engines.Row{}, err)
			}
			res.stopped = true
			return res
		}
		res.read++
		res.last = row.Key
		if partition.Reserved(row.Key) {
			continue
		}
		if chunk = append(chunk, row); len(chunk) == size && !flush() {
			res.stopped = true
			return res
		}
	}
	res.stopped = !flush()
	return res
}
