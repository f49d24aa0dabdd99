// Package metrics is plugdb's Prometheus instrumentation
// (github.com/prometheus/client_golang): the families the router and the
// nodes expose at /metrics, and /healthz. Every family is named plugdb_…,
// in base units (seconds), counters end in _total, and no label holds a key.
// docs/metrics.md lists them.
//
// Nothing here is global: each process makes its registry (NewRegistry) and
// hands it, as a prometheus.Registerer, to what it instruments.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every family plugdb defines.
const Namespace = "plugdb"

// NewRegistry returns a registry with the Go runtime's and the process's
// collectors (go_…, process_…).
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// HealthFunc says whether the process can serve: nil if it can, otherwise
// an error saying why not.
type HealthFunc func(ctx context.Context) error

// healthTimeout bounds one /healthz check.
const healthTimeout = 5 * time.Second

// HealthHandler serves /healthz: 200 "ok" when health returns nil, 503 with
// the reason otherwise.
func HealthHandler(health HealthFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if err := health(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "unavailable: %v\n", err)
			return
		}
		fmt.Fprintln(w, "ok")
	})
}

// Handlers are the handlers by path: /metrics (g in the exposition
// format) and /healthz (HealthHandler).
func Handlers(g prometheus.Gatherer, health HealthFunc) map[string]http.Handler {
	return map[string]http.Handler{
		"/metrics": promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}),
		"/healthz": HealthHandler(health),
	}
}

// Server serves Handlers on an address of its own (a node's metrics address).
type Server struct {
	lis  net.Listener
	http *http.Server
	errc chan error
}

// Serve listens on addr and serves g at /metrics and health at /healthz.
func Serve(addr string, g prometheus.Gatherer, health HealthFunc) (*Server, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("open metrics listener %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	for path, h := range Handlers(g, health) {
		mux.Handle(path, h)
	}
	s := &Server{lis: lis, http: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, errc: make(chan error, 1)}
	go func() {
		if err := s.http.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
			s.errc <- fmt.Errorf("metrics server %s: %w", addr, err)
		}
	}()
	return s, nil
}

// Addr is where the server listens.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// Err reports a server that stopped serving on its own.
func (s *Server) Err() <-chan error { return s.errc }

// Close stops the server, letting requests in flight finish until ctx ends.
func (s *Server) Close(ctx context.Context) error {
	return s.http.Shutdown(ctx)
}
