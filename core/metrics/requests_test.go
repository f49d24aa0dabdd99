package metrics

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
)

// getKV answers Get with NotFound for key "missing".
type getKV struct{ plugdbv1.UnimplementedKVServer }

func (getKV) Get(_ context.Context, req *plugdbv1.GetRequest) (*plugdbv1.GetResponse, error) {
	if string(req.GetKey()) == "missing" {
		return nil, status.Error(codes.NotFound, "no such key")
	}
	return &plugdbv1.GetResponse{}, nil
}

func TestRequestsByMethodAndCode(t *testing.T) {
	reg := prometheus.NewRegistry()
	r, err := NewRequests(reg)
	if err != nil {
		t.Fatal(err)
	}
	kv := r.KV(getKV{})
	for _, k := range []string{"a", "b", "missing"} {
		_, _ = kv.Get(t.Context(), &plugdbv1.GetRequest{Key: []byte(k)})
	}
	_, _ = kv.Put(t.Context(), &plugdbv1.PutRequest{Key: []byte("a")}) // Unimplemented
	f := gather(t, reg)
	for _, c := range []struct {
		method, code string
		want         float64
	}{{"Get", "OK", 2}, {"Get", "NotFound", 1}, {"Put", "Unimplemented", 1}, {"Delete", "OK", 0}} {
		labels := map[string]string{"method": c.method, "code": c.code}
		if v, ok := f.Sum("plugdb_requests_total", labels); !ok || v != c.want {
			t.Errorf("requests_total%v = %v, want %v", labels, v, c.want)
		}
		if v, _ := f.Sum("plugdb_request_duration_seconds", labels); v != c.want {
			t.Errorf("request_duration_seconds%v count = %v, want %v", labels, v, c.want)
		}
	}
	for _, l := range f["plugdb_requests_total"].GetMetric()[0].GetLabel() {
		if l.GetName() != "method" && l.GetName() != "code" {
			t.Errorf("label %s on plugdb_requests_total: only method and code", l.GetName())
		}
	}
}
