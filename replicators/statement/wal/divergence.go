package wal

import "slices"

// Divergence returns the highest LSN up to which two logs agree, given each
// log's epoch history (as from Epochs) and last LSN; the follower truncates
// after it (TruncateAfter) and fetches the rest from the leader.
//
// Under one leader per epoch, two logs agree at LSN x iff both give x the
// same epoch, and agreement is prefix-closed. The rule for LSNs a history
// does not cover (below its first Start, as after Reset, whose base LSN is
// covered by its entry): an unknown epoch neither agrees nor disagrees. So
// the result is the end of the highest run of LSNs, at most
// min(leaderLast, followerLast), where both epochs are known and equal and
// below which no LSN has two known, different epochs; agreement below it,
// where one side is unknown, follows from prefix-closure. LSN 0 has epoch 0
// in every log, so the result is 0 when nothing else is known to agree.
//
// A result below the follower's First()-1 (trimmed or before its Reset
// base) means truncation cannot reconcile the follower: it needs a snapshot.
func Divergence(leader []EpochStart, leaderLast uint64, follower []EpochStart, followerLast uint64) uint64 {
	end := min(leaderLast, followerLast)
	if end == 0 {
		return 0
	}
	// The epoch functions of both logs are constant between consecutive
	// breakpoints: 1 and every Start in either history.
	points := []uint64{1}
	for _, h := range [][]EpochStart{leader, follower} {
		for _, e := range h {
			if e.Start >= 1 && e.Start <= end {
				points = append(points, e.Start)
			}
		}
	}
	slices.Sort(points)
	points = slices.Compact(points)
	var agreed uint64
	for i, p := range points {
		runEnd := end
		if i+1 < len(points) {
			runEnd = points[i+1] - 1
		}
		le, lok := epochOf(leader, p)
		fe, fok := epochOf(follower, p)
		switch {
		case lok && fok && le == fe:
			agreed = runEnd
		case lok && fok:
			return agreed
		}
	}
	return agreed
}
