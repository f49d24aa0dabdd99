package config

import (
	"errors"
	"fmt"

	"github.com/plugdb/plugdb/tlsconfig"
)

// TLS names the PEM files of the process's TLS (docs/security.md). All
// empty: plaintext, the default. With cert and key, every server of the
// process (client API, node API, replicator) serves TLS and every
// connection it makes to another plugdb process uses TLS; with ca too, TLS
// is mutual: clients and peers must present a certificate the CA signed, and
// servers must present one.
type TLS struct {
	// CA is the certificate authority peers' certificates must chain to.
	CA string `koanf:"ca" json:"ca,omitempty"`
	// Cert is this process's certificate, for its servers and as a client.
	Cert string `koanf:"cert" json:"cert,omitempty"`
	// Key is Cert's private key.
	Key string `koanf:"key" json:"key,omitempty"`
}

// Files returns the files as tlsconfig takes them.
func (t TLS) Files() tlsconfig.Files { return tlsconfig.Files{CA: t.CA, Cert: t.Cert, Key: t.Key} }

// Creds loads the files (see tlsconfig.Load): nil for plaintext. Errors
// name the config key.
func (t TLS) Creds() (*tlsconfig.Creds, error) {
	if !t.Files().IsZero() && t.Cert == "" && t.Key == "" {
		return nil, fmt.Errorf("tls.cert and tls.key: not set (allowed: all of tls.ca, tls.cert, tls.key empty for plaintext, or tls.cert and tls.key set, with tls.ca for mutual TLS): every plugdb process serves, so it needs its certificate and key")
	}
	c, err := tlsconfig.Load(t.Files())
	var fe *tlsconfig.FileError
	if errors.As(err, &fe) {
		if fe.Path == "" {
			return nil, fmt.Errorf("tls.%s: %v", fe.Field, fe.Err)
		}
		return nil, fmt.Errorf("tls.%s %q: %v", fe.Field, fe.Path, fe.Err)
	}
	return c, err
}

// allowedFile describes a TLS file key.
const allowedFile = "a PEM file's path, or empty"

// checkFile checks a TLS file key's value when it is loaded; Validate reads
// the files.
func checkFile(string) *valueError { return nil }
