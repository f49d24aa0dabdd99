package server

import (
	"net/http"

	"google.golang.org/grpc"

	"github.com/plugdb/plugdb/tlsconfig"
)

// Extra is what a caller adds to the servers besides the KV service:
// options of the gRPC server (interceptors, such as the metrics'), and
// handlers served on the HTTP address beside the REST gateway.
type Extra struct {
	// GRPCOptions are passed to grpc.NewServer.
	GRPCOptions []grpc.ServerOption
	// HTTP are handlers by path ("/metrics", "/healthz"), served on the HTTP
	// address before the gateway; the gateway serves every other path.
	HTTP map[string]http.Handler
	// TLS, when set, makes gRPC and REST serve TLS (see StartTLS); nil:
	// plaintext.
	TLS *tlsconfig.Creds
}

// handler returns gateway with x's HTTP handlers in front of it.
func (x Extra) handler(gateway http.Handler) http.Handler {
	if len(x.HTTP) == 0 {
		return gateway
	}
	mux := http.NewServeMux()
	for path, h := range x.HTTP {
		mux.Handle(path, h)
	}
	mux.Handle("/", gateway)
	return mux
}
