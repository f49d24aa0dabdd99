package replicators

import (
	"slices"
	"sync"
	"time"
)

// Latency is a latency histogram a replicator reports in its Status, such
// as its log's fsyncs: Counts[i] observations took at most Bounds[i]
// seconds (cumulative, one count per bound), Count in all, Sum their total.
// The host exposes it as a Prometheus histogram (docs/metrics.md).
type Latency struct {
	Bounds []float64
	Counts []uint64
	Count  uint64
	Sum    time.Duration
}

// SyncBounds are the bounds a replicator's log fsync latencies are counted
// in: 100µs doubling to about 1.6s, as etcd's WAL fsync histogram.
var SyncBounds = []float64{0.0001, 0.0002, 0.0004, 0.0008, 0.0016, 0.0032, 0.0064, 0.0128, 0.0256, 0.0512, 0.1024, 0.2048, 0.4096, 0.8192, 1.6384}

// LatencyRecorder counts latencies into a Latency; it is safe for
// concurrent use. The zero value is not usable: use NewLatencyRecorder.
type LatencyRecorder struct {
	mu sync.Mutex
	l  Latency
}

// NewLatencyRecorder returns a recorder with bounds (seconds, ascending).
func NewLatencyRecorder(bounds []float64) *LatencyRecorder {
	return &LatencyRecorder{l: Latency{Bounds: slices.Clone(bounds), Counts: make([]uint64, len(bounds))}}
}

// Observe counts one latency d.
func (r *LatencyRecorder) Observe(d time.Duration) {
	s := d.Seconds()
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, b := range r.l.Bounds {
		if s <= b {
			r.l.Counts[i]++
		}
	}
	r.l.Count++
	r.l.Sum += d
}

// Latency returns what was counted so far.
func (r *LatencyRecorder) Latency() Latency {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Latency{Bounds: slices.Clone(r.l.Bounds), Counts: slices.Clone(r.l.Counts), Count: r.l.Count, Sum: r.l.Sum}
}
