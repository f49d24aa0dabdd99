package wal

// SegmentInfo describes one segment file, for retention decisions.
type SegmentInfo struct {
	First, Last uint64 // LSNs it holds (Last < First when empty)
	Bytes       int64
	Time        int64 // Time of its first record (0 when empty)
}

// Segments describes the segment files, oldest first; the last is active.
func (l *Log) Segments() []SegmentInfo {
	l.mu.RLock()
	defer l.mu.RUnlock()
	out := make([]SegmentInfo, 0, len(l.segs))
	for _, s := range l.segs {
		out = append(out, SegmentInfo{First: s.first, Last: s.lastLSN(), Bytes: s.size, Time: s.firstTime})
	}
	return out
}

// TrimPoint returns the LSN to pass to TrimBefore so that the log keeps at
// most maxBytes and no record older than notBefore (unix nanoseconds),
// dropping whole segments, never the active one, and never a segment holding
// an LSN above keepAbove (what the host has yet to apply). 0 means trim
// nothing.
func TrimPoint(segs []SegmentInfo, maxBytes, notBefore int64, keepAbove uint64) uint64 {
	var total int64
	for _, s := range segs {
		total += s.Bytes
	}
	var upTo uint64
	for _, s := range segs[:max(len(segs)-1, 0)] {
		if s.Last > keepAbove || (total <= maxBytes && s.Time >= notBefore) {
			break
		}
		total -= s.Bytes
		upTo = s.Last + 1
	}
	return upTo
}
