package bench

import (
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds, 1 µs to 60 s, with 3 significant
// digits (HdrHistogram: a percentile is within 0.1% of the true value).
const (
	minLatencyUS = 1
	maxLatencyUS = 60_000_000
	latencySig   = 3
)

// opRecorder records one operation type's latencies and errors.
type opRecorder struct {
	h      *hdrhistogram.Histogram
	errors int64
}

func newOpRecorder() *opRecorder {
	return &opRecorder{h: hdrhistogram.New(minLatencyUS, maxLatencyUS, latencySig)}
}

// record adds one operation: its latency when it succeeded, else an error.
func (r *opRecorder) record(d time.Duration, err error) {
	if err != nil {
		r.errors++
		return
	}
	us := max(d.Microseconds(), minLatencyUS)
	_ = r.h.RecordValue(min(us, maxLatencyUS))
}

// merge adds o's figures to r's.
func (r *opRecorder) merge(o *opRecorder) {
	r.h.Merge(o.h)
	r.errors += o.errors
}

// stats returns the figures.
func (r *opRecorder) stats() OpStats {
	return OpStats{
		Count:  r.h.TotalCount(),
		Errors: r.errors,
		MeanUS: r.h.Mean(),
		P50US:  float64(r.h.ValueAtQuantile(50)),
		P99US:  float64(r.h.ValueAtQuantile(99)),
		P999US: float64(r.h.ValueAtQuantile(99.9)),
		MaxUS:  float64(r.h.Max()),
	}
}
