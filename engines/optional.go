package engines

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strings"
)

// DefaultCapabilities are what the host assumes of an engine that is not a
// CapabilitiesReporter: not durable (the conformance kit skips its reopen
// cases), keys up to 1 KiB and values up to 1 MiB. Such an engine checks its
// input against them: CheckKey(DefaultCapabilities, key) and
// CheckBatch(DefaultCapabilities, batch).
var DefaultCapabilities = Capabilities{MaxKeySize: 1024, MaxValueSize: 1 << 20}

// Interfaces says which optional interfaces an engine has.
type Interfaces struct {
	Scanner       bool
	Snapshotter   bool
	StatsReporter bool
	Flusher       bool
}

// String lists the interfaces ("Scanner Snapshotter StatsReporter Flusher"),
// or says "none".
func (i Interfaces) String() string {
	var names []string
	for _, n := range []struct {
		has  bool
		name string
	}{{i.Scanner, "Scanner"}, {i.Snapshotter, "Snapshotter"}, {i.StatsReporter, "StatsReporter"}, {i.Flusher, "Flusher"}} {
		if n.has {
			names = append(names, n.name)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, " ")
}

// Proxy is an Engine that stands for another, such as the host's client of an
// engine plugin: it has every optional method, and Interfaces says which of
// them the engine behind it has; the others fail with an error wrapping
// errors.ErrUnsupported. (Capabilities a proxy reports as the engine behind it
// does, DefaultCapabilities when that one has none.)
type Proxy interface {
	Engine
	Interfaces() Interfaces
}

// InterfacesOf says which optional interfaces e has: a Proxy's Interfaces,
// otherwise by type assertion.
func InterfacesOf(e Engine) Interfaces {
	if p, ok := e.(Proxy); ok {
		return p.Interfaces()
	}
	_, scan := e.(Scanner)
	_, snap := e.(Snapshotter)
	_, stats := e.(StatsReporter)
	_, flush := e.(Flusher)
	return Interfaces{Scanner: scan, Snapshotter: snap, StatsReporter: stats, Flusher: flush}
}

// AsScanner returns e as a Scanner, if it is one (a Proxy: if the engine behind
// it is one).
func AsScanner(e Engine) (Scanner, bool) {
	return as[Scanner](e, func(i Interfaces) bool { return i.Scanner })
}

// AsSnapshotter returns e as a Snapshotter, if it is one (a Proxy: if the
// engine behind it is one).
func AsSnapshotter(e Engine) (Snapshotter, bool) {
	return as[Snapshotter](e, func(i Interfaces) bool { return i.Snapshotter })
}

// AsStatsReporter returns e as a StatsReporter, if it is one (a Proxy: if the
// engine behind it is one).
func AsStatsReporter(e Engine) (StatsReporter, bool) {
	return as[StatsReporter](e, func(i Interfaces) bool { return i.StatsReporter })
}

// AsFlusher returns e as a Flusher, if it is one (a Proxy: if the engine
// behind it is one).
func AsFlusher(e Engine) (Flusher, bool) {
	return as[Flusher](e, func(i Interfaces) bool { return i.Flusher })
}

// as returns e as the optional interface I when e has its methods and, for a
// Proxy, has says the engine behind it has I too.
func as[I any](e Engine, has func(Interfaces) bool) (I, bool) {
	i, ok := e.(I)
	return i, ok && has(InterfacesOf(e))
}

// CapabilitiesOf returns e's Capabilities, or DefaultCapabilities when e is not
// a CapabilitiesReporter.
func CapabilitiesOf(e Engine) Capabilities {
	if c, ok := e.(CapabilitiesReporter); ok {
		return c.Capabilities()
	}
	return DefaultCapabilities
}

// Unsupported returns the error for a call of optional interface iface
// ("Scanner") that e lacks, what being the service ("scans"): it wraps
// errors.ErrUnsupported and names e (its String method if it has one, else
// its type):
//
//	engine *main.mapEngine cannot serve scans (it does not implement engines.Scanner): unsupported operation
func Unsupported(e Engine, what, iface string) error {
	name := fmt.Sprintf("%T", e)
	if s, ok := e.(fmt.Stringer); ok {
		name = s.String()
	}
	return fmt.Errorf("engine %s cannot serve %s (it does not implement engines.%s): %w", name, what, iface, errors.ErrUnsupported)
}

// Scan is e's Scan, or a sequence of one error (Unsupported) when e is not a
// Scanner.
func Scan(ctx context.Context, e Engine, r ScanRange) iter.Seq2[Row, error] {
	if s, ok := AsScanner(e); ok {
		return s.Scan(ctx, r)
	}
	err := Unsupported(e, "scans", "Scanner")
	return func(yield func(Row, error) bool) { yield(Row{}, err) }
}

// Snapshot is e's Snapshot, or an error (Unsupported) when e is not a
// Snapshotter.
func Snapshot(ctx context.Context, e Engine) (uint64, iter.Seq2[Row, error], error) {
	if s, ok := AsSnapshotter(e); ok {
		return s.Snapshot(ctx)
	}
	return 0, nil, Unsupported(e, "snapshots", "Snapshotter")
}

// Restore is e's Restore, or an error (Unsupported) when e is not a
// Snapshotter.
func Restore(ctx context.Context, e Engine, lsn uint64, rows iter.Seq2[Row, error]) error {
	if s, ok := AsSnapshotter(e); ok {
		return s.Restore(ctx, lsn, rows)
	}
	return Unsupported(e, "restores", "Snapshotter")
}

// StatsOf is e's Stats, or zero Stats and an error (Unsupported) when e is not
// a StatsReporter; the status shows those zeros.
func StatsOf(ctx context.Context, e Engine) (Stats, error) {
	if s, ok := AsStatsReporter(e); ok {
		return s.Stats(ctx)
	}
	return Stats{}, Unsupported(e, "stats", "StatsReporter")
}
