package replicators

import (
	"slices"
	"testing"
	"time"
)

func TestLatencyRecorder(t *testing.T) {
	r := NewLatencyRecorder([]float64{0.001, 0.01, 0.1})
	for _, d := range []time.Duration{500 * time.Microsecond, time.Millisecond, 5 * time.Millisecond, 50 * time.Millisecond, time.Second} {
		r.Observe(d)
	}
	l := r.Latency()
	if want := []uint64{2, 3, 4}; !slices.Equal(l.Counts, want) {
		t.Errorf("Counts = %v, want %v (cumulative)", l.Counts, want)
	}
	if l.Count != 5 || l.Sum != 500*time.Microsecond+time.Millisecond+5*time.Millisecond+50*time.Millisecond+time.Second {
		t.Errorf("Count %d Sum %v", l.Count, l.Sum)
	}
	l.Counts[0] = 99 // a copy
	if r.Latency().Counts[0] != 2 {
		t.Error("Latency shares its counts with the recorder")
	}
}
