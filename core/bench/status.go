package bench

import (
	"sort"

	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
)

// Leaders returns each partition's leader replica in st, by partition number
// ascending; a partition without a leader is left out.
func Leaders(st *plugdbv1.StatusResponse) []*plugdbv1.Replica {
	var out []*plugdbv1.Replica
	for _, p := range st.GetPartitions() {
		for _, r := range p.GetReplicas() {
			if r.GetRole() == "leader" {
				out = append(out, r)
				break
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetPartition() < out[j].GetPartition() })
	return out
}

// Ready reports whether each of partitions 0..n-1 has a leader and, with
// followers > 0, that many in-sync followers.
func Ready(st *plugdbv1.StatusResponse, n, followers int) bool {
	ok := 0
	for _, p := range st.GetPartitions() {
		leader, isr := false, 0
		for _, r := range p.GetReplicas() {
			switch {
			case r.GetRole() == "leader":
				leader = true
			case r.GetIsr():
				isr++
			}
		}
		if leader && isr >= followers && int(p.GetPartition()) < n {
			ok++
		}
	}
	return ok == n
}

// FollowerLag returns the largest lag of any follower in st, in statements
// and in milliseconds (each its own maximum), and false if st has no
// follower.
func FollowerLag(st *plugdbv1.StatusResponse) (Lag, bool) {
	var lag Lag
	found := false
	for _, p := range st.GetPartitions() {
		for _, r := range p.GetReplicas() {
			if r.GetRole() == "leader" {
				continue
			}
			found = true
			lag.Statements = max(lag.Statements, r.GetLagStatements())
			lag.MS = max(lag.MS, r.GetLagMs())
		}
	}
	return lag, found
}

// maxLag is the larger of a and b in each figure; nil when both are.
func maxLag(a *Lag, b Lag) *Lag {
	if a == nil {
		return &b
	}
	return &Lag{Statements: max(a.Statements, b.Statements), MS: max(a.MS, b.MS)}
}

// fillStatus sets row's figures read from the system's status at the end:
// bytes on disk and keys per partition of each partition's leader (one copy
// of the data, so the space amplification compares engines), and the skew.
func fillStatus(row *Row, st *plugdbv1.StatusResponse) {
	row.BytesOnDisk = 0
	row.PartitionKeys = nil
	for _, r := range Leaders(st) {
		row.BytesOnDisk += r.GetBytes()
		row.PartitionKeys = append(row.PartitionKeys, r.GetKeys())
	}
	row.PartitionSkew = Skew(row.PartitionKeys)
	if row.LogicalBytes > 0 {
		row.SpaceAmplification = float64(row.BytesOnDisk) / float64(row.LogicalBytes)
	}
}

// Skew is max/mean of counts: 1 when even, 0 when there are no counts or no
// keys.
func Skew(counts []int64) float64 {
	var sum, top int64
	for _, c := range counts {
		sum += c
		top = max(top, c)
	}
	if sum == 0 {
		return 0
	}
	return float64(top) / (float64(sum) / float64(len(counts)))
}
