package tlsconfig_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/plugdb/plugdb/tlsconfig"
)

// issue writes a CA and one certificate for 127.0.0.1 into a fresh folder.
func issue(t *testing.T, name string) (*tlsconfig.CA, tlsconfig.Files) {
	t.Helper()
	dir := t.TempDir()
	ca, err := tlsconfig.WriteCA(dir, name+"-ca")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ca.IssueFiles(dir, name, tlsconfig.LocalHosts())
	if err != nil {
		t.Fatal(err)
	}
	return ca, f
}

func mustLoad(t *testing.T, f tlsconfig.Files) *tlsconfig.Creds {
	t.Helper()
	c, err := tlsconfig.Load(f)
	if err != nil {
		t.Fatalf("Load(%+v): %v", f, err)
	}
	return c
}

func TestLoadZeroIsPlaintext(t *testing.T) {
	c, err := tlsconfig.Load(tlsconfig.Files{})
	if err != nil || c != nil {
		t.Fatalf("Load(zero) = %v, %v; want nil, nil", c, err)
	}
	if c.Enabled() || c.Mutual() || c.ClientConfig() != nil {
		t.Fatal("nil Creds is not plaintext")
	}
	if cfg, err := c.ServerConfig(); cfg != nil || err != nil {
		t.Fatalf("nil Creds ServerConfig = %v, %v", cfg, err)
	}
}

func TestLoadErrors(t *testing.T) {
	_, good := issue(t, "good")
	_, other := issue(t, "other")
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	tests := []struct {
		name  string
		files tlsconfig.Files
		field tlsconfig.Field
		is    error
		text  string
	}{
		{"missing CA file", tlsconfig.Files{CA: missing, Cert: good.Cert, Key: good.Key}, tlsconfig.FieldCA, os.ErrNotExist,
			"ca file " + missing + ": no such file or directory"},
		{"CA not PEM", tlsconfig.Files{CA: junk, Cert: good.Cert, Key: good.Key}, tlsconfig.FieldCA, tlsconfig.ErrNoPEM,
			"ca file " + junk + ": no PEM data of the expected type: want one or more CERTIFICATE blocks"},
		{"CA is a key", tlsconfig.Files{CA: good.Key, Cert: good.Cert, Key: good.Key}, tlsconfig.FieldCA, tlsconfig.ErrNoPEM, "want one or more CERTIFICATE blocks"},
		{"missing cert file", tlsconfig.Files{CA: good.CA, Cert: missing, Key: good.Key}, tlsconfig.FieldCert, os.ErrNotExist,
			"cert file " + missing + ": no such file or directory"},
		{"missing key file", tlsconfig.Files{CA: good.CA, Cert: good.Cert, Key: missing}, tlsconfig.FieldKey, os.ErrNotExist,
			"key file " + missing + ": no such file or directory"},
		{"cert not PEM", tlsconfig.Files{CA: good.CA, Cert: junk, Key: good.Key}, tlsconfig.FieldCert, tlsconfig.ErrNoPEM, "want a CERTIFICATE block"},
		{"key is a certificate", tlsconfig.Files{CA: good.CA, Cert: good.Cert, Key: good.Cert}, tlsconfig.FieldKey, tlsconfig.ErrNoPEM, "want a PRIVATE KEY block"},
		{"key of another certificate", tlsconfig.Files{CA: good.CA, Cert: good.Cert, Key: other.Key}, tlsconfig.FieldKey, tlsconfig.ErrKeyMismatch,
			"key file " + other.Key + ": private key does not match the certificate " + good.Cert},
		{"cert without key", tlsconfig.Files{CA: good.CA, Cert: good.Cert}, tlsconfig.FieldKey, tlsconfig.ErrMissing, "key: not set"},
		{"key without cert", tlsconfig.Files{Key: good.Key}, tlsconfig.FieldCert, tlsconfig.ErrMissing, "cert: not set"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tlsconfig.Load(tc.files)
			if err == nil {
				t.Fatalf("Load = %v, want an error", c)
			}
			var fe *tlsconfig.FileError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("error %q (%T) is not a FileError of field %s", err, err, tc.field)
			}
			if !errors.Is(err, tc.is) {
				t.Errorf("error %q is not %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.text) {
				t.Errorf("error %q does not say %q", err, tc.text)
			}
		})
	}
}

func TestServerNeedsCertificate(t *testing.T) {
	_, good := issue(t, "good")
	c := mustLoad(t, tlsconfig.Files{CA: good.CA})
	if _, err := c.ServerConfig(); !errors.Is(err, tlsconfig.ErrMissing) {
		t.Fatalf("ServerConfig of a CA alone: %v, want ErrMissing", err)
	}
	if _, err := c.ServerOption(); err == nil {
		t.Fatal("ServerOption of a CA alone: no error")
	}
	if cfg := c.ClientConfig(); cfg == nil || cfg.RootCAs == nil || len(cfg.Certificates) != 0 {
		t.Fatalf("ClientConfig of a CA alone = %+v, want the CA as roots and no certificate", cfg)
	}
}

func TestOpenCAIssuesForTheSameCA(t *testing.T) {
	dir := t.TempDir()
	if _, err := tlsconfig.WriteCA(dir, "test-ca"); err != nil {
		t.Fatal(err)
	}
	ca, err := tlsconfig.OpenCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.IssueFiles(dir, "server", tlsconfig.LocalHosts())
	if err != nil {
		t.Fatal(err)
	}
	cli, err := ca.IssueFiles(dir, "client", nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, mustLoad(t, srv), "127.0.0.1:0")
	if err := check(addr, mustLoad(t, cli).DialOption()); err != nil {
		t.Fatalf("client of the reopened CA refused: %v", err)
	}
	if st, err := os.Stat(filepath.Join(dir, tlsconfig.CAKeyFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("CA key mode: %v, %v; want 0600", st, err)
	}
}

// serve runs a gRPC health server with creds on addr until the test ends.
func serve(t *testing.T, creds *tlsconfig.Creds, addr string) string {
	t.Helper()
	opt, err := creds.ServerOption()
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(opt)
	healthpb.RegisterHealthServer(s, health.NewServer())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(lis) }()
	t.Cleanup(func() { s.Stop(); <-done })
	return lis.Addr().String()
}

// check makes one health call to addr.
func check(addr string, opt grpc.DialOption) error {
	conn, err := grpc.NewClient(addr, opt)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

// TestMutualTLSRefusesStrangers: a server with a CA serves a client with a
// certificate of that CA, and refuses a plaintext client, a client with no
// certificate, and a client whose certificate another CA signed.
func TestMutualTLSRefusesStrangers(t *testing.T) {
	ca, srvFiles := issue(t, "server")
	cliFiles, err := ca.IssueFiles(t.TempDir(), "client", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, foreign := issue(t, "foreign")
	srv := mustLoad(t, srvFiles)
	if !srv.Mutual() {
		t.Fatal("creds with a CA are not mutual")
	}
	addr := serve(t, srv, "127.0.0.1:0")

	if err := check(addr, mustLoad(t, cliFiles).DialOption()); err != nil {
		t.Fatalf("client with a certificate of the CA refused: %v", err)
	}
	var plaintext *tlsconfig.Creds
	if err := check(addr, plaintext.DialOption()); err == nil {
		t.Error("plaintext client served")
	}
	if err := check(addr, mustLoad(t, tlsconfig.Files{CA: cliFiles.CA}).DialOption()); err == nil {
		t.Error("client without a certificate served")
	}
	// The foreign client trusts the server's CA: only its own certificate
	// is wrong.
	stranger := mustLoad(t, tlsconfig.Files{CA: srvFiles.CA, Cert: foreign.Cert, Key: foreign.Key})
	if err := check(addr, stranger.DialOption()); err == nil {
		t.Error("client with a certificate of another CA served")
	}
	// A client of the other CA refuses this server.
	if err := check(addr, mustLoad(t, foreign).DialOption()); err == nil {
		t.Error("client of another CA accepted the server")
	}
}

// TestSelfDial: a process reaches its own server on a wildcard address,
// which its certificate does not name, and only its own server.
func TestSelfDial(t *testing.T) {
	ca, _ := issue(t, "ca")
	files, err := ca.IssueFiles(t.TempDir(), "nameless", nil) // names no address
	if err != nil {
		t.Fatal(err)
	}
	creds := mustLoad(t, files)
	addr := serve(t, creds, "127.0.0.1:0")
	if err := check(addr, creds.DialOption()); err == nil {
		t.Fatal("plain dial accepted a certificate that does not name the address")
	}
	if err := check(addr, creds.SelfDialOption()); err != nil {
		t.Fatalf("self dial: %v", err)
	}
	twin, err := ca.IssueFiles(t.TempDir(), "twin", tlsconfig.LocalHosts())
	if err != nil {
		t.Fatal(err)
	}
	other := serve(t, mustLoad(t, twin), "127.0.0.1:0")
	if err := check(other, creds.SelfDialOption()); err == nil {
		t.Fatal("self dial accepted another server of the same CA")
	}
}
