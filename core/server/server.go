// Package server runs plugdb's public front door: the plugdb.v1.KV gRPC service
// (with server reflection and grpc.health.v1) and its REST gateway.
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/plugdb/plugdb/core/rest"
	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
	"github.com/plugdb/plugdb/tlsconfig"
)

// Server is a running gRPC server and REST gateway.
type Server struct {
	grpc    *grpc.Server
	http    *http.Server
	health  *health.Server
	conn    *grpc.ClientConn
	grpcLis net.Listener
	httpLis net.Listener
	tls     bool // gRPC and REST serve TLS
	errc    chan error
}

// Start listens on grpcAddr and httpAddr and serves kv on both, in
// plaintext; an empty httpAddr serves gRPC only. register adds more services
// to the gRPC server.
func Start(ctx context.Context, kv plugdbv1.KVServer, grpcAddr, httpAddr string, register ...func(*grpc.Server)) (*Server, error) {
	return StartWith(ctx, kv, grpcAddr, httpAddr, Extra{}, register...)
}

// StartTLS is Start with creds: with them, gRPC and REST serve TLS (mutual
// when creds have a CA: every client must present a certificate it signed);
// nil creds is plaintext.
func StartTLS(ctx context.Context, creds *tlsconfig.Creds, kv plugdbv1.KVServer, grpcAddr, httpAddr string, register ...func(*grpc.Server)) (*Server, error) {
	return StartWith(ctx, kv, grpcAddr, httpAddr, Extra{TLS: creds}, register...)
}

// StartWith is Start with x's gRPC options, HTTP handlers and TLS.
func StartWith(ctx context.Context, kv plugdbv1.KVServer, grpcAddr, httpAddr string, x Extra, register ...func(*grpc.Server)) (*Server, error) {
	creds := x.TLS
	tlsCfg, err := creds.ServerConfig()
	if err != nil {
		return nil, fmt.Errorf("TLS: %w", err)
	}
	opts := x.GRPCOptions
	if tlsCfg != nil {
		opts = append(append([]grpc.ServerOption(nil), opts...), grpc.Creds(credentials.NewTLS(tlsCfg)))
	}
	grpcLis, err := net.Listen("tcp", grpcAddr)
	if err != nil {
		return nil, fmt.Errorf("listen for gRPC on %s: %w", grpcAddr, err)
	}
	var httpLis net.Listener
	if httpAddr != "" {
		httpLis, err = net.Listen("tcp", httpAddr)
		if err != nil {
			grpcLis.Close()
			return nil, fmt.Errorf("listen for REST on %s: %w", httpAddr, err)
		}
	}
	s := &Server{grpc: grpc.NewServer(opts...), tls: tlsCfg != nil, health: health.NewServer(), grpcLis: grpcLis, httpLis: httpLis, errc: make(chan error, 2)}
	plugdbv1.RegisterKVServer(s.grpc, kv)
	for _, r := range register {
		r(s.grpc)
	}
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	s.health.SetServingStatus(plugdbv1.KV_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	go func() { s.errc <- s.grpc.Serve(grpcLis) }()
	if httpLis == nil {
		return s, nil
	}

	// The gateway calls the gRPC server over loopback, which streams Scan too
	// (with TLS, presenting the process's own certificate).
	s.conn, err = grpc.NewClient(grpcLis.Addr().String(), creds.SelfDialOption())
	if err != nil {
		s.grpc.Stop()
		httpLis.Close()
		return nil, fmt.Errorf("dial own gRPC port: %w", err)
	}
	handler, err := rest.NewHandler(ctx, s.conn)
	if err != nil {
		s.grpc.Stop()
		httpLis.Close()
		s.conn.Close()
		return nil, fmt.Errorf("REST gateway: %w", err)
	}
	s.http = &http.Server{Handler: x.handler(handler), ReadHeaderTimeout: 10 * time.Second, TLSConfig: tlsCfg}
	go func() {
		serve := s.http.Serve
		if s.tls {
			serve = func(l net.Listener) error { return s.http.ServeTLS(l, "", "") }
		}
		if err := serve(httpLis); !errors.Is(err, http.ErrServerClosed) {
			s.errc <- err
		}
	}()
	return s, nil
}

// GRPCAddr is where gRPC listens.
func (s *Server) GRPCAddr() string { return s.grpcLis.Addr().String() }

// HTTPAddr is where REST listens; empty if it does not.
func (s *Server) HTTPAddr() string {
	if s.httpLis == nil {
		return ""
	}
	return s.httpLis.Addr().String()
}

// HTTPURL is the REST base URL, http:// or https:// with TLS; empty if REST
// is not served.
func (s *Server) HTTPURL() string {
	if s.httpLis == nil {
		return ""
	}
	if s.tls {
		return "https://" + s.HTTPAddr()
	}
	return "http://" + s.HTTPAddr()
}

// Err reports a server that stopped serving on its own.
func (s *Server) Err() <-chan error { return s.errc }

// Stop stops accepting, lets requests in flight finish (until ctx ends), and
// closes the listeners.
func (s *Server) Stop(ctx context.Context) {
	s.health.Shutdown()
	if s.http != nil {
		_ = s.http.Shutdown(ctx)
	}
	done := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.grpc.Stop()
	}
	if s.conn != nil {
		s.conn.Close()
	}
}
