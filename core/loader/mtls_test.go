package loader

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/plugdb/plugdb/engines"
)

// TestPluginConnectionIsMutualTLS: an engine plugin process serves the
// host over go-plugin's AutoMTLS: the plugin got the host's certificate in
// its environment, calls work, and its socket refuses a plaintext client
// and a TLS client with a certificate of its own.
func TestPluginConnectionIsMutualTLS(t *testing.T) {
	l := testLoader(nil)
	ctx := context.Background()
	eng, err := l.OpenEngine(ctx, Block{Plugin: "memory", Mode: ModeProcess}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	if err := eng.Apply(ctx, []engines.Mutation{{Op: engines.OpPut, Key: []byte("k"), Value: []byte("v"), LSN: 1}}); err != nil {
		t.Fatalf("apply over mutual TLS: %v", err)
	}
	if row, err := eng.Get(ctx, []byte("k")); err != nil || string(row.Value) != "v" {
		t.Fatalf("get over mutual TLS: %q, %v", row.Value, err)
	}

	p := eng.(*processEngine)
	p.mu.RLock()
	rc := p.live.client.ReattachConfig()
	p.mu.RUnlock()
	if rc == nil || rc.Addr == nil {
		t.Fatal("no plugin address")
	}
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", rc.Pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	if !strings.Contains(string(environ), "\x00PLUGIN_CLIENT_CERT=-----BEGIN CERTIFICATE-----") {
		t.Error("the plugin process has no host certificate (PLUGIN_CLIENT_CERT) in its environment")
	}

	target := rc.Addr.Network() + ":" + rc.Addr.String()
	if rc.Addr.Network() == "unix" {
		target = "unix://" + rc.Addr.String()
	}
	if err := healthCheck(target, grpc.WithTransportCredentials(insecure.NewCredentials())); err == nil {
		t.Error("the plugin served a plaintext client")
	}
	stranger := &tls.Config{
		Certificates: []tls.Certificate{selfSigned(t)},
		// The stranger does not check the plugin: the plugin must check it.
		InsecureSkipVerify: true,
	}
	if err := healthCheck(target, grpc.WithTransportCredentials(credentials.NewTLS(stranger))); err == nil {
		t.Error("the plugin served a client with a certificate of its own")
	}
}

// healthCheck makes one health call.
func healthCheck(target string, opt grpc.DialOption) error {
	conn, err := grpc.NewClient(target, opt)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "plugin"})
	return err
}

// selfSigned makes a throwaway self-signed client certificate.
func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
