package metrics

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/partitioners"
	"github.com/plugdb/plugdb/replicators"
)

// Plugins measures the host's side of its plugins: the calls it makes to
// them, timed where the host makes them (so over the plugin boundary for a
// plugin process, whose own figures it cannot see), and their restarts:
//
//	plugdb_plugin_call_duration_seconds{kind,plugin,method}  every call's latency (histogram)
//	plugdb_plugin_call_errors_total{kind,plugin,method}      calls that failed
//	plugdb_plugin_restarts_total{kind,plugin}                plugin processes restarted after they died
//	plugdb_engine_apply_duration_seconds{keyspace,partition} the engine's Apply of a batch (histogram)
type Plugins struct {
	calls    *prometheus.HistogramVec
	errors   *prometheus.CounterVec
	restarts *prometheus.CounterVec
	apply    *prometheus.HistogramVec
}

// NewPlugins registers the plugin families with reg.
func NewPlugins(reg prometheus.Registerer) (*Plugins, error) {
	call := []string{"kind", "plugin", "method"}
	p := &Plugins{
		calls: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: "plugin_call_duration_seconds",
			Help: "Latency of the host's calls to a plugin, by method, as the host sees them (the plugin boundary included).", Buckets: LatencyBuckets}, call),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "plugin_call_errors_total",
			Help: "The host's calls to a plugin that returned an error, by method."}, call),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "plugin_restarts_total",
			Help: "Plugin processes the host restarted after they died."}, []string{"kind", "plugin"}),
		apply: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: "engine_apply_duration_seconds",
			Help: "Latency of the engine's Apply of one batch of writes, as the host sees it.", Buckets: LatencyBuckets}, []string{"keyspace", "partition"}),
	}
	for _, c := range []prometheus.Collector{p.calls, p.errors, p.restarts, p.apply} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Restarted counts a restart of the plugin process of kind ("engine") and
// plugin (its name or path). It is the loader's OnRestart.
func (p *Plugins) Restarted(kind, plugin string) {
	p.restarts.WithLabelValues(kind, plugin).Inc()
}

// observer times the calls of one plugin.
type observer struct {
	p            *Plugins
	kind, plugin string
}

// done records a call of method that began at began and returned err.
func (o observer) done(method string, began time.Time, err error) {
	o.p.calls.WithLabelValues(o.kind, o.plugin, method).Observe(time.Since(began).Seconds())
	if err != nil {
		o.p.errors.WithLabelValues(o.kind, o.plugin, method).Inc()
	}
}

// The methods whose error series exist from the start, by plugin kind.
var (
	engineMethods     = []string{"Get", "Apply", "AppliedLSN", "Stats", "Flush", "Close"}
	replicatorMethods = []string{"Lead", "SetPeers", "Replicate", "Follow", "Applied", "EpochAt", "Restored", "Status", "Close"}
)

func (p *Plugins) observer(kind, plugin string, methods []string) observer {
	p.restarts.WithLabelValues(kind, plugin) // the series exist from the start
	for _, m := range methods {
		p.errors.WithLabelValues(kind, plugin, m)
	}
	return observer{p: p, kind: kind, plugin: plugin}
}

// Engine returns e with its calls timed: plugin names it, keyspace and
// partition the partition it holds. The result has the optional interfaces
// e has (it is an engines.Proxy).
func (p *Plugins) Engine(e engines.Engine, plugin, keyspace string, partition int) engines.Engine {
	return &engine{e: e, o: p.observer("engine", plugin, engineMethods), apply: p.apply.WithLabelValues(keyspace, strconv.Itoa(partition))}
}

// engine is a timed engines.Engine.
type engine struct {
	e     engines.Engine
	o     observer
	apply prometheus.Observer
}

var _ engines.Proxy = (*engine)(nil)

func (m *engine) String() string {
	if s, ok := m.e.(fmt.Stringer); ok {
		return s.String()
	}
	return fmt.Sprintf("%T", m.e)
}

func (m *engine) Interfaces() engines.Interfaces { return engines.InterfacesOf(m.e) }

func (m *engine) Capabilities() engines.Capabilities { return engines.CapabilitiesOf(m.e) }

func (m *engine) Get(ctx context.Context, key []byte) (engines.Row, error) {
	began := time.Now()
	row, err := m.e.Get(ctx, key)
	if errors.Is(err, engines.ErrNotFound) {
		m.o.done("Get", began, nil) // an answer, not a failure
	} else {
		m.o.done("Get", began, err)
	}
	return row, err
}

func (m *engine) Apply(ctx context.Context, batch []engines.Mutation) error {
	began := time.Now()
	err := m.e.Apply(ctx, batch)
	m.o.done("Apply", began, err)
	if err == nil {
		m.apply.Observe(time.Since(began).Seconds())
	}
	return err
}

func (m *engine) AppliedLSN(ctx context.Context) (uint64, error) {
	began := time.Now()
	lsn, err := m.e.AppliedLSN(ctx)
	m.o.done("AppliedLSN", began, err)
	return lsn, err
}

func (m *engine) Close() error {
	began := time.Now()
	err := m.e.Close()
	m.o.done("Close", began, err)
	return err
}

// Scan, Snapshot and Restore stream: they are passed through untimed.

func (m *engine) Scan(ctx context.Context, r engines.ScanRange) iter.Seq2[engines.Row, error] {
	return engines.Scan(ctx, m.e, r)
}

func (m *engine) Snapshot(ctx context.Context) (uint64, iter.Seq2[engines.Row, error], error) {
	return engines.Snapshot(ctx, m.e)
}

func (m *engine) Restore(ctx context.Context, lsn uint64, rows iter.Seq2[engines.Row, error]) error {
	return engines.Restore(ctx, m.e, lsn, rows)
}

func (m *engine) Stats(ctx context.Context) (engines.Stats, error) {
	began := time.Now()
	st, err := engines.StatsOf(ctx, m.e)
	m.o.done("Stats", began, err)
	return st, err
}

func (m *engine) Flush(ctx context.Context) (uint64, error) {
	f, ok := engines.AsFlusher(m.e)
	if !ok {
		return 0, engines.Unsupported(m.e, "flushes", "Flusher")
	}
	began := time.Now()
	lsn, err := f.Flush(ctx)
	m.o.done("Flush", began, err)
	return lsn, err
}

// Replicator returns r with its calls timed; plugin names it.
func (p *Plugins) Replicator(r replicators.Replicator, plugin string) replicators.Replicator {
	return &replicator{r: r, o: p.observer("replicator", plugin, replicatorMethods)}
}

// replicator is a timed replicators.Replicator. Deliveries streams: it is
// passed through untimed.
type replicator struct {
	r replicators.Replicator
	o observer
}

func (m *replicator) Addr() string { return m.r.Addr() }

func (m *replicator) Lead(ctx context.Context, epoch, applied uint64) (uint64, error) {
	began := time.Now()
	end, err := m.r.Lead(ctx, epoch, applied)
	m.o.done("Lead", began, err)
	return end, err
}

func (m *replicator) SetPeers(ctx context.Context, peers []replicators.Peer) error {
	began := time.Now()
	err := m.r.SetPeers(ctx, peers)
	m.o.done("SetPeers", began, err)
	return err
}

func (m *replicator) Replicate(ctx context.Context, st replicators.Statement, ack replicators.Ack) error {
	began := time.Now()
	err := m.r.Replicate(ctx, st, ack)
	m.o.done("Replicate", began, err)
	return err
}

func (m *replicator) Follow(ctx context.Context, epoch uint64, leader string) error {
	began := time.Now()
	err := m.r.Follow(ctx, epoch, leader)
	m.o.done("Follow", began, err)
	return err
}

func (m *replicator) Deliveries(ctx context.Context) iter.Seq2[replicators.Delivery, error] {
	return m.r.Deliveries(ctx)
}

func (m *replicator) Applied(ctx context.Context, lsn uint64) error {
	began := time.Now()
	err := m.r.Applied(ctx, lsn)
	m.o.done("Applied", began, err)
	return err
}

func (m *replicator) EpochAt(ctx context.Context, lsn uint64) (uint64, error) {
	began := time.Now()
	e, err := m.r.EpochAt(ctx, lsn)
	m.o.done("EpochAt", began, err)
	return e, err
}

func (m *replicator) Restored(ctx context.Context, lsn, epoch uint64) error {
	began := time.Now()
	err := m.r.Restored(ctx, lsn, epoch)
	m.o.done("Restored", began, err)
	return err
}

func (m *replicator) Status(ctx context.Context) (replicators.Status, error) {
	began := time.Now()
	st, err := m.r.Status(ctx)
	m.o.done("Status", began, err)
	return st, err
}

func (m *replicator) Close() error {
	began := time.Now()
	err := m.r.Close()
	m.o.done("Close", began, err)
	return err
}

// Partitioner returns p with its calls timed; plugin names it.
func (p *Plugins) Partitioner(part partitioners.Partitioner, plugin string) partitioners.Partitioner {
	return &partitioner{p: part, o: p.observer("partitioner", plugin, partitionerMethods)}
}

var partitionerMethods = []string{"Configure", "Locate", "Range", "Close"}

// partitioner is a timed partitioners.Partitioner.
type partitioner struct {
	p partitioners.Partitioner
	o observer
}

func (m *partitioner) Configure(ctx context.Context, partitions int, options map[string]string) error {
	began := time.Now()
	err := m.p.Configure(ctx, partitions, options)
	m.o.done("Configure", began, err)
	return err
}

func (m *partitioner) Locate(ctx context.Context, keys [][]byte, out []int) error {
	began := time.Now()
	err := m.p.Locate(ctx, keys, out)
	m.o.done("Locate", began, err)
	return err
}

func (m *partitioner) Range(ctx context.Context, start, end []byte) ([]int, error) {
	began := time.Now()
	parts, err := m.p.Range(ctx, start, end)
	m.o.done("Range", began, err)
	return parts, err
}

func (m *partitioner) Close() error {
	began := time.Now()
	err := m.p.Close()
	m.o.done("Close", began, err)
	return err
}
