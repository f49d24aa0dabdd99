package bench

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// The operation types of a workload, as named in Row.Ops.
const (
	OpRead            = "read"
	OpUpdate          = "update"
	OpInsert          = "insert"
	OpScan            = "scan"
	OpReadModifyWrite = "read_modify_write"
)

// OpTypes are every operation type, in the order tables show them.
var OpTypes = []string{OpRead, OpUpdate, OpInsert, OpScan, OpReadModifyWrite}

// MaxScanLength is the longest scan of workload E: a scan's length is drawn
// uniformly from 1..MaxScanLength, YCSB's default.
const MaxScanLength = 100

// Workload is a mix of operation types: the share of each, summing to 1.
type Workload struct {
	Name string // A, B, C, E, F or load
	Mix  []Share
}

// Share is one operation type's part of a workload.
type Share struct {
	Op    string
	Share float64
}

// workloads are the YCSB core workloads plugdb bench runs, and load.
var workloads = []Workload{
	{Name: "A", Mix: []Share{{OpRead, 0.5}, {OpUpdate, 0.5}}},
	{Name: "B", Mix: []Share{{OpRead, 0.95}, {OpUpdate, 0.05}}},
	{Name: "C", Mix: []Share{{OpRead, 1}}},
	{Name: "E", Mix: []Share{{OpScan, 0.95}, {OpInsert, 0.05}}},
	{Name: "F", Mix: []Share{{OpRead, 0.5}, {OpReadModifyWrite, 0.5}}},
	{Name: "load", Mix: []Share{{OpInsert, 1}}},
}

// WorkloadNames are the allowed workload names.
func WorkloadNames() []string {
	names := make([]string, len(workloads))
	for i, w := range workloads {
		names[i] = w.Name
	}
	return names
}

// ParseWorkload returns the workload of name, case-insensitively.
func ParseWorkload(name string) (Workload, error) {
	for _, w := range workloads {
		if strings.EqualFold(w.Name, name) {
			return w, nil
		}
	}
	return Workload{}, fmt.Errorf("--workload %q: allowed values are %s (YCSB core A 50/50 read/update, B 95/5, C read only, E scans and inserts, F read/read-modify-write; load: inserts only)",
		name, strings.Join(WorkloadNames(), ", "))
}

// Ops are the operation types the workload uses, in the order of OpTypes.
func (w Workload) Ops() []string {
	var out []string
	for _, op := range OpTypes {
		for _, s := range w.Mix {
			if s.Op == op && s.Share > 0 {
				out = append(out, op)
			}
		}
	}
	return out
}

// Choose returns the operation type for a uniform draw u in [0, 1).
func (w Workload) Choose(u float64) string {
	acc := 0.0
	for _, s := range w.Mix {
		acc += s.Share
		if u < acc {
			return s.Op
		}
	}
	return w.Mix[len(w.Mix)-1].Op
}

// Distributions are the allowed key choices.
var Distributions = []string{"uniform", "zipfian"}

// ParseDistribution checks a key distribution's name, case-insensitively, and
// returns it in lower case.
func ParseDistribution(name string) (string, error) {
	for _, d := range Distributions {
		if strings.EqualFold(d, name) {
			return d, nil
		}
	}
	return "", fmt.Errorf("--distribution %q: allowed values are %s", name, strings.Join(Distributions, ", "))
}

// KeyChooser draws the index of an existing key. It is not safe for
// concurrent use.
type KeyChooser interface{ Next() uint64 }

// newChoosers returns a function that makes a chooser over indices 0..n-1 of
// the distribution (uniform or zipfian) drawing from rng; the zipfian
// constants are computed once.
func newChoosers(distribution string, n uint64) func(rng *rand.Rand) KeyChooser {
	if distribution == "zipfian" {
		z := NewScrambledZipfian(n, nil)
		return func(rng *rand.Rand) KeyChooser { return z.WithRand(rng) }
	}
	return func(rng *rand.Rand) KeyChooser { return NewUniform(n, rng) }
}
