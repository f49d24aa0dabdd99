package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
)

// Requests counts the plugdb.v1.KV requests a process serves, each one
// (also those a router sends a node many to a stream, core/callstream, and
// REST requests, which reach the gRPC server):
//
//	plugdb_requests_total{method,code}          requests by method and gRPC status code (OK, NotFound, Unavailable, …)
//	plugdb_request_duration_seconds{method,code} their latency (histogram)
type Requests struct {
	total    *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// methods are the KV methods, whose OK series exist from the start.
var methods = []string{"Get", "Put", "Create", "Update", "Delete", "Scan", "Batch", "Status"}

// NewRequests registers the request families with reg.
func NewRequests(reg prometheus.Registerer) (*Requests, error) {
	labels := []string{"method", "code"}
	r := &Requests{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "requests_total",
			Help: "plugdb.v1.KV requests served, by method and gRPC status code (OK: served; any other: an error)."}, labels),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: "request_duration_seconds",
			Help: "Latency of the plugdb.v1.KV requests served, by method and gRPC status code.", Buckets: LatencyBuckets}, labels),
	}
	for _, c := range []prometheus.Collector{r.total, r.duration} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, m := range methods {
		r.total.WithLabelValues(m, "OK")
		r.duration.WithLabelValues(m, "OK")
	}
	return r, nil
}

func (r *Requests) done(method string, began time.Time, err error) {
	code := status.Code(err).String()
	r.total.WithLabelValues(method, code).Inc()
	r.duration.WithLabelValues(method, code).Observe(time.Since(began).Seconds())
}

// KV returns kv with its requests counted.
func (r *Requests) KV(kv plugdbv1.KVServer) plugdbv1.KVServer { return &kvServer{kv: kv, r: r} }

type kvServer struct {
	plugdbv1.UnimplementedKVServer
	kv plugdbv1.KVServer
	r  *Requests
}

func (s *kvServer) Get(ctx context.Context, req *plugdbv1.GetRequest) (*plugdbv1.GetResponse, error) {
	began := time.Now()
	resp, err := s.kv.Get(ctx, req)
	s.r.done("Get", began, err)
	return resp, err
}

func (s *kvServer) Put(ctx context.Context, req *plugdbv1.PutRequest) (*plugdbv1.WriteResponse, error) {
	began := time.Now()
	resp, err := s.kv.Put(ctx, req)
	s.r.done("Put", began, err)
	return resp, err
}

func (s *kvServer) Create(ctx context.Context, req *plugdbv1.PutRequest) (*plugdbv1.WriteResponse, error) {
	began := time.Now()
	resp, err := s.kv.Create(ctx, req)
	s.r.done("Create", began, err)
	return resp, err
}

func (s *kvServer) Update(ctx context.Context, req *plugdbv1.PutRequest) (*plugdbv1.WriteResponse, error) {
	began := time.Now()
	resp, err := s.kv.Update(ctx, req)
	s.r.done("Update", began, err)
	return resp, err
}

func (s *kvServer) Delete(ctx context.Context, req *plugdbv1.DeleteRequest) (*plugdbv1.WriteResponse, error) {
	began := time.Now()
	resp, err := s.kv.Delete(ctx, req)
	s.r.done("Delete", began, err)
	return resp, err
}

func (s *kvServer) Scan(req *plugdbv1.ScanRequest, stream grpc.ServerStreamingServer[plugdbv1.KeyValue]) error {
	began := time.Now()
	err := s.kv.Scan(req, stream)
	s.r.done("Scan", began, err)
	return err
}

func (s *kvServer) Batch(ctx context.Context, req *plugdbv1.BatchRequest) (*plugdbv1.BatchResponse, error) {
	began := time.Now()
	resp, err := s.kv.Batch(ctx, req)
	s.r.done("Batch", began, err)
	return resp, err
}

func (s *kvServer) Status(ctx context.Context, req *plugdbv1.StatusRequest) (*plugdbv1.StatusResponse, error) {
	began := time.Now()
	resp, err := s.kv.Status(ctx, req)
	s.r.done("Status", began, err)
	return resp, err
}
