package server_test

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/plugdb/plugdb/core/server"
	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
	"github.com/plugdb/plugdb/tlsconfig"
)

// echoKV answers every Get with the key as its value.
type echoKV struct{ plugdbv1.UnimplementedKVServer }

func (echoKV) Get(_ context.Context, req *plugdbv1.GetRequest) (*plugdbv1.GetResponse, error) {
	return &plugdbv1.GetResponse{Key: req.GetKey(), Value: req.GetKey(), Lsn: 1}, nil
}

func load(t *testing.T, f tlsconfig.Files) *tlsconfig.Creds {
	t.Helper()
	c, err := tlsconfig.Load(f)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func grpcGet(addr string, opt grpc.DialOption) error {
	conn, err := grpc.NewClient(addr, opt)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = plugdbv1.NewKVClient(conn).Get(ctx, &plugdbv1.GetRequest{Key: []byte("k")})
	return err
}

func restGet(url string, cfg *tls.Config) (string, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.Status + " " + string(b), err
}

// TestStartTLS: with mutual TLS, gRPC and REST serve a client with a
// certificate of the CA and refuse a plaintext one and one whose
// certificate another CA signed.
func TestStartTLS(t *testing.T) {
	dir := t.TempDir()
	ca, err := tlsconfig.WriteCA(dir, "ca")
	if err != nil {
		t.Fatal(err)
	}
	srvFiles, err := ca.IssueFiles(dir, "server", tlsconfig.LocalHosts())
	if err != nil {
		t.Fatal(err)
	}
	cliFiles, err := ca.IssueFiles(dir, "client", nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err := tlsconfig.WriteCA(t.TempDir(), "other")
	if err != nil {
		t.Fatal(err)
	}
	foreignFiles, err := other.IssueFiles(t.TempDir(), "foreign", tlsconfig.LocalHosts())
	if err != nil {
		t.Fatal(err)
	}
	// The foreign client trusts the server's CA; only its certificate is foreign.
	foreignFiles.CA = srvFiles.CA

	srv, err := server.StartTLS(context.Background(), load(t, srvFiles), echoKV{}, "127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Stop(ctx)
	})
	if !strings.HasPrefix(srv.HTTPURL(), "https://") {
		t.Fatalf("HTTPURL = %s, want https://", srv.HTTPURL())
	}
	client, foreign := load(t, cliFiles), load(t, foreignFiles)
	var plaintext *tlsconfig.Creds

	if err := grpcGet(srv.GRPCAddr(), client.DialOption()); err != nil {
		t.Errorf("gRPC client of the CA refused: %v", err)
	}
	if err := grpcGet(srv.GRPCAddr(), plaintext.DialOption()); err == nil {
		t.Error("gRPC plaintext client served")
	}
	if err := grpcGet(srv.GRPCAddr(), foreign.DialOption()); err == nil {
		t.Error("gRPC client of another CA served")
	}

	// REST goes through the gateway, which calls gRPC with its own certificate.
	if got, err := restGet(srv.HTTPURL()+"/v1/kv/k", client.ClientConfig()); err != nil || !strings.HasPrefix(got, "200 ") || !strings.Contains(got, `"value":"k"`) {
		t.Errorf("REST client of the CA: %q, %v; want 200 with the value", got, err)
	}
	if got, err := restGet("http://"+srv.HTTPAddr()+"/v1/kv/k", nil); err == nil && !strings.HasPrefix(got, "400 ") {
		t.Errorf("REST plaintext client: %q; want refused", got)
	}
	if got, err := restGet(srv.HTTPURL()+"/v1/kv/k", foreign.ClientConfig()); err == nil {
		t.Errorf("REST client of another CA served: %q", got)
	}
}

// TestStartTLSNeedsCertificate: a server refuses to start with a CA alone.
func TestStartTLSNeedsCertificate(t *testing.T) {
	dir := t.TempDir()
	if _, err := tlsconfig.WriteCA(dir, "ca"); err != nil {
		t.Fatal(err)
	}
	creds := load(t, tlsconfig.Files{CA: dir + "/" + tlsconfig.CAFile})
	if srv, err := server.StartTLS(context.Background(), creds, echoKV{}, "127.0.0.1:0", ""); err == nil {
		srv.Stop(context.Background())
		t.Fatal("started without a certificate")
	}
}
