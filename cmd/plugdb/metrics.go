package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/plugdb/plugdb/core/config"
	"github.com/plugdb/plugdb/core/coord"
	"github.com/plugdb/plugdb/core/metrics"
	"github.com/plugdb/plugdb/core/node"
	"github.com/plugdb/plugdb/core/server"
	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
	"github.com/plugdb/plugdb/replicators"
)

// processMetrics is a router's or a node's Prometheus registry and what
// every such process measures: its gRPC server and the KV requests it
// serves (docs/metrics.md).
type processMetrics struct {
	// health is the process's /healthz (nil: none).
	health   metrics.HealthFunc
	reg      *prometheus.Registry
	grpc     *metrics.GRPC
	requests *metrics.Requests
	plugins  *metrics.Plugins
}

func newProcessMetrics() (*processMetrics, error) {
	m := &processMetrics{reg: metrics.NewRegistry()}
	var err error
	if m.grpc, err = metrics.NewGRPC(m.reg); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if m.requests, err = metrics.NewRequests(m.reg); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if m.plugins, err = metrics.NewPlugins(m.reg); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return m, nil
}

// extra is what the process's server adds for its metrics: the gRPC
// interceptors, and on an HTTP address (the router's) /metrics and /healthz.
func (m *processMetrics) extra(health metrics.HealthFunc) server.Extra {
	x := server.Extra{GRPCOptions: m.grpc.ServerOptions()}
	if health != nil {
		x.HTTP = metrics.Handlers(m.reg, health)
	}
	return x
}

// keyspaceLabel is a keyspace's name in labels: "default" for the top-level one.
func keyspaceLabel(name string) string {
	if name == "" {
		return config.DefaultKeyspace
	}
	return name
}

// routerKeyspaces are the keyspaces a router watches, for metrics;
// onChange (if set) hears of their leader changes.
func routerKeyspaces(routers []*keyspaceRouter, onChange func(metrics.LeaderChange)) []metrics.Keyspace {
	out := make([]metrics.Keyspace, len(routers))
	for i, kr := range routers {
		out[i] = metrics.Keyspace{Name: keyspaceLabel(kr.cfg.Keyspace), Session: kr.client, Partition: -1, OnLeaderChange: onChange,
			Topology: func() metrics.Topology {
				if t := kr.r.Topology(); t != nil {
					return t
				}
				return nil
			}}
	}
	return out
}

// startRouterMetrics adds to m the router's keyspaces' partitions and
// sessions, whose leader changes it counts until stop, telling onChange (if
// set) of each, and sets m.health: every session up, every partition led.
func startRouterMetrics(m *processMetrics, routers []*keyspaceRouter, onChange func(metrics.LeaderChange)) (stop func(), err error) {
	parts, err := metrics.NewPartitions(m.reg, routerKeyspaces(routers, onChange)...)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	m.health = parts.Health
	ctx, cancel := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() { parts.Watch(ctx); close(watched) }()
	return func() { cancel(); <-watched }, nil
}

// nodeMetrics is a node's metrics: its partition's view in ZooKeeper, its
// replica's role and replication, and the address that serves them.
type nodeMetrics struct {
	*processMetrics
	serving  atomic.Bool // the node serves its API (set once started)
	stopping atomic.Bool
	parts    *metrics.Partitions
	srv      *metrics.Server // nil: no metrics address
	stop     context.CancelFunc
	wg       sync.WaitGroup
}

// startNodeMetrics watches partition p of cfg's keyspace for metrics and,
// if cfg.Metrics.Addr is set, serves /metrics and /healthz there. Stop ends
// both.
func startNodeMetrics(m *processMetrics, cfg config.Config, p int, client *coord.Client, n *node.Node, repl replicators.Replicator) (*nodeMetrics, error) {
	ks := keyspaceLabel(cfg.Keyspace)
	nm := &nodeMetrics{processMetrics: m}
	ctx, stop := context.WithCancel(context.Background())
	topo := coord.WatchTopology(ctx, client, p+1)
	parts, err := metrics.NewPartitions(m.reg, metrics.Keyspace{Name: ks, Session: client, Partition: p,
		Topology: func() metrics.Topology { return topo }})
	if err == nil {
		err = metrics.RegisterReplica(m.reg, metrics.Replica{Keyspace: ks, Partition: p, Role: n.Role, Status: repl.Status})
	}
	if err != nil {
		stop()
		topo.Close()
		return nil, fmt.Errorf("metrics: %w", err)
	}
	nm.parts = parts
	nm.stop = func() { stop(); topo.Close() }
	nm.wg.Go(func() { parts.Watch(ctx) })
	if cfg.Metrics.Addr != "" {
		if nm.srv, err = metrics.Serve(cfg.Metrics.Addr, m.reg, nm.health); err != nil {
			nm.Stop()
			return nil, err
		}
	}
	return nm, nil
}

// health is a node's /healthz: it serves its partition and knows a leader.
func (nm *nodeMetrics) health(ctx context.Context) error {
	switch {
	case nm.stopping.Load():
		return errors.New("stopping")
	case !nm.serving.Load():
		return errors.New("starting: the partition is not served yet")
	}
	return nm.parts.Health(ctx)
}

// Addr is the metrics address, "" if none.
func (nm *nodeMetrics) Addr() string {
	if nm.srv == nil {
		return ""
	}
	return nm.srv.Addr()
}

// Err reports a metrics server that stopped serving on its own; nil (a
// channel that never delivers) without a metrics address.
func (nm *nodeMetrics) Err() <-chan error {
	if nm.srv == nil {
		return nil
	}
	return nm.srv.Err()
}

// Stop stops serving the metrics and watching ZooKeeper for them.
func (nm *nodeMetrics) Stop() {
	nm.stopping.Store(true)
	if nm.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = nm.srv.Close(ctx)
		cancel()
	}
	nm.stop()
	nm.wg.Wait()
}

// countedKV is kv with its requests counted.
func (m *processMetrics) countedKV(kv plugdbv1.KVServer) plugdbv1.KVServer { return m.requests.KV(kv) }
