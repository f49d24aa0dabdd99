package server

import (
	"context"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
)

type noKV struct{ plugdbv1.UnimplementedKVServer }

// TestStartWithExtra: the extra handlers answer their paths on the HTTP
// address, the REST gateway every other one, and the gRPC options and
// register functions reach the gRPC server.
func TestStartWithExtra(t *testing.T) {
	var intercepted atomic.Bool
	registered := false
	x := Extra{
		GRPCOptions: []grpc.ServerOption{grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			intercepted.Store(true)
			return h(ctx, req)
		})},
		HTTP: map[string]http.Handler{"/healthz": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })},
	}
	s, err := StartWith(t.Context(), noKV{}, "127.0.0.1:0", "127.0.0.1:0", x, func(*grpc.Server) { registered = true })
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Stop(ctx)
	}()
	client := &http.Client{Timeout: 5 * time.Second}
	get := func(path string) (int, string) {
		resp, err := client.Get("http://" + s.HTTPAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	// The gateway calls the (unimplemented) KV server through the gRPC
	// server, past the interceptor.
	if code, _ := get("/v1/kv/k"); code != http.StatusNotImplemented {
		t.Errorf("/v1/kv/k: %d, want the gateway's 501 for an unimplemented method", code)
	}
	if !intercepted.Load() || !registered {
		t.Errorf("interceptor ran: %v, register ran: %v", intercepted.Load(), registered)
	}
}
