package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plugdb/plugdb/tlsconfig"
)

// TestTLSKeys: the tls block loads from the file, the environment and
// flags, and Validate reads its files with errors that name the key.
func TestTLSKeys(t *testing.T) {
	dir := t.TempDir()
	ca, err := tlsconfig.WriteCA(dir, "test-ca")
	if err != nil {
		t.Fatal(err)
	}
	good, err := ca.IssueFiles(dir, "node", tlsconfig.LocalHosts())
	if err != nil {
		t.Fatal(err)
	}
	other, err := ca.IssueFiles(dir, "other", tlsconfig.LocalHosts())
	if err != nil {
		t.Fatal(err)
	}
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := writeFile(t, "tls: {ca: "+good.CA+", cert: "+good.Cert+"}\n")
	c := mustLoad(t, Source{File: file, Env: []string{"PLUGDB_TLS_KEY=" + good.Key}})
	if c.TLS != (TLS{CA: good.CA, Cert: good.Cert, Key: good.Key}) {
		t.Fatalf("tls = %+v", c.TLS)
	}
	known := Known{Engines: []string{"rowfile"}, Partitioners: []string{"hash"}, Replicators: []string{"none"}}
	if err := c.Validate(known); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if creds, err := c.TLS.Creds(); err != nil || !creds.Mutual() {
		t.Fatalf("Creds = %v, %v; want mutual TLS", creds, err)
	}
	c = mustLoad(t, Source{Flags: map[string]string{"tls.cert": good.Cert, "tls.key": good.Key}})
	if creds, err := c.TLS.Creds(); err != nil || creds == nil || creds.Mutual() {
		t.Fatalf("Creds without ca = %v, %v; want TLS, not mutual", creds, err)
	}
	if creds, err := Default().TLS.Creds(); err != nil || creds != nil {
		t.Fatalf("default Creds = %v, %v; want plaintext", creds, err)
	}

	missing := filepath.Join(dir, "missing.crt")
	tests := []struct {
		name string
		tls  TLS
		want string
	}{
		{"missing file", TLS{CA: good.CA, Cert: missing, Key: good.Key}, `tls.cert "` + missing + `": no such file or directory`},
		{"bad PEM", TLS{CA: junk, Cert: good.Cert, Key: good.Key}, `tls.ca "` + junk + `": no PEM data of the expected type: want one or more CERTIFICATE blocks`},
		{"mismatch", TLS{CA: good.CA, Cert: good.Cert, Key: other.Key}, `tls.key "` + other.Key + `": private key does not match the certificate ` + good.Cert},
		{"cert alone", TLS{Cert: good.Cert}, `tls.key: not set (the certificate ` + good.Cert + ` needs its private key)`},
		{"ca alone", TLS{CA: good.CA}, `tls.cert and tls.key: not set`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			c.TLS = tc.tls
			err := c.Validate(known)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want %q", err, tc.want)
			}
		})
	}
}
