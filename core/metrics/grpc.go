package metrics

import (
	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
)

// LatencyBuckets are the buckets of plugdb's request latency histograms,
// in seconds: 100µs to about 6.5s.
var LatencyBuckets = prometheus.ExponentialBuckets(0.0001, 2, 17)

// GRPC is a gRPC server's metrics, by go-grpc-middleware's prometheus
// provider: plugdb_grpc_server_started_total, plugdb_grpc_server_handled_total
// (by grpc_service, grpc_method, grpc_type and grpc_code),
// plugdb_grpc_server_msg_received_total, plugdb_grpc_server_msg_sent_total and
// plugdb_grpc_server_handling_seconds.
type GRPC struct {
	m *grpcprom.ServerMetrics
}

// NewGRPC registers a gRPC server's metrics with reg.
func NewGRPC(reg prometheus.Registerer) (*GRPC, error) {
	m := grpcprom.NewServerMetrics(
		grpcprom.WithServerCounterOptions(grpcprom.WithNamespace(Namespace)),
		grpcprom.WithServerHandlingTimeHistogram(grpcprom.WithHistogramNamespace(Namespace), grpcprom.WithHistogramBuckets(LatencyBuckets)),
	)
	if err := reg.Register(m); err != nil {
		return nil, err
	}
	return &GRPC{m: m}, nil
}

// ServerOptions are the interceptors that count a server's calls.
func (g *GRPC) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(g.m.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(g.m.StreamServerInterceptor()),
	}
}

// Init sets every method of s's services to zero, so that its series exist
// before the first call. Call it once every service is registered.
func (g *GRPC) Init(s *grpc.Server) { g.m.InitializeMetrics(s) }
