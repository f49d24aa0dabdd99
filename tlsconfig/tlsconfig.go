// Package tlsconfig turns the PEM files of a process's TLS settings (a CA
// certificate, a certificate and its private key) into what its servers and
// clients use: *tls.Config for HTTP, and gRPC credentials. It is the one
// place every plugdb listener and dialer takes its credentials from; a nil
// *Creds is plaintext, plugdb's default.
//
// With a CA, TLS is mutual: a server requires every client to present a
// certificate that chains to the CA, and a client accepts only a server whose
// certificate chains to it (and names the address dialed). Without a CA, a
// server takes any client and a client verifies the server against the
// system's roots.
//
// The package imports only the standard library and gRPC's credentials, so
// the bundled plugins (the statement replicator dials its peers itself) use
// it as the host does.
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// Files names a process's TLS files, each PEM; the zero value is plaintext.
type Files struct {
	// CA is the certificate authority (one or more certificates) that the
	// peers' certificates must chain to; empty: a server asks no client
	// certificate and a client trusts the system's roots.
	CA string
	// Cert is this process's certificate (chain), presented to every peer.
	Cert string
	// Key is Cert's private key.
	Key string
}

// IsZero reports whether no file is named: plaintext.
func (f Files) IsZero() bool { return f == Files{} }

// Field names one of the files of Files, for FileError.
type Field string

// The fields of Files.
const (
	FieldCA   Field = "ca"
	FieldCert Field = "cert"
	FieldKey  Field = "key"
)

// FileError is a TLS file that cannot be used: missing, not PEM, or a
// certificate and key that do not belong together. Callers name Field in
// their own terms (a config key, a flag).
type FileError struct {
	Field Field
	Path  string // empty when the file is missing from the settings
	Err   error
}

func (e *FileError) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("%s: %v", e.Field, e.Err)
	}
	return fmt.Sprintf("%s file %s: %v", e.Field, e.Path, e.Err)
}

func (e *FileError) Unwrap() error { return e.Err }

// Errors a FileError wraps.
var (
	// ErrMissing is a file the settings need but do not name (a
	// certificate without its key, or the reverse).
	ErrMissing = errors.New("not set")
	// ErrNoPEM is a file with no PEM block of the expected type.
	ErrNoPEM = errors.New("no PEM data of the expected type")
	// ErrKeyMismatch is a private key that is not the certificate's.
	ErrKeyMismatch = errors.New("private key does not match the certificate")
)

// Creds are a process's loaded TLS settings. A nil *Creds is plaintext: its
// methods return plaintext options, so callers need no branch.
type Creds struct {
	files Files
	cert  *tls.Certificate // nil: this process presents no certificate
	pool  *x509.CertPool   // nil: no CA (system roots, no client certificates asked)
}

// Load reads and checks f's files: each must exist and hold PEM of its kind,
// Cert and Key must both be set (or neither) and belong together. It
// returns nil, nil for the zero Files. Errors are *FileError.
func Load(f Files) (*Creds, error) {
	if f.IsZero() {
		return nil, nil
	}
	c := &Creds{files: f}
	switch {
	case f.Cert != "" && f.Key == "":
		return nil, &FileError{Field: FieldKey, Err: fmt.Errorf("%w (the certificate %s needs its private key)", ErrMissing, f.Cert)}
	case f.Key != "" && f.Cert == "":
		return nil, &FileError{Field: FieldCert, Err: fmt.Errorf("%w (the private key %s needs its certificate)", ErrMissing, f.Key)}
	}
	if f.CA != "" {
		pem, err := readFile(FieldCA, f.CA)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &FileError{Field: FieldCA, Path: f.CA, Err: fmt.Errorf("%w: want one or more CERTIFICATE blocks", ErrNoPEM)}
		}
		c.pool = pool
	}
	if f.Cert != "" {
		certPEM, err := readFile(FieldCert, f.Cert)
		if err != nil {
			return nil, err
		}
		keyPEM, err := readFile(FieldKey, f.Key)
		if err != nil {
			return nil, err
		}
		cert, err := keyPair(f, certPEM, keyPEM)
		if err != nil {
			return nil, err
		}
		c.cert = &cert
	}
	return c, nil
}

// keyPair parses a certificate and its key, telling which file is wrong.
func keyPair(f Files, certPEM, keyPEM []byte) (tls.Certificate, error) {
	if !hasPEM(certPEM, func(t string) bool { return t == "CERTIFICATE" }) {
		return tls.Certificate{}, &FileError{Field: FieldCert, Path: f.Cert, Err: fmt.Errorf("%w: want a CERTIFICATE block", ErrNoPEM)}
	}
	if !hasPEM(keyPEM, func(t string) bool { return strings.HasSuffix(t, "PRIVATE KEY") }) {
		return tls.Certificate{}, &FileError{Field: FieldKey, Path: f.Key, Err: fmt.Errorf("%w: want a PRIVATE KEY block", ErrNoPEM)}
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	switch {
	case err == nil:
		return cert, nil
	case strings.Contains(err.Error(), "does not match"):
		// crypto/tls: "private key (type) does not match public key (type)".
		return cert, &FileError{Field: FieldKey, Path: f.Key, Err: fmt.Errorf("%w %s", ErrKeyMismatch, f.Cert)}
	}
	return cert, &FileError{Field: FieldCert, Path: f.Cert, Err: fmt.Errorf("with key %s: %w", f.Key, err)}
}

// hasPEM reports whether data holds a PEM block whose type is wanted.
func hasPEM(data []byte, want func(blockType string) bool) bool {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return false
		}
		if want(b.Type) {
			return true
		}
	}
}

func readFile(field Field, path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is in the FileError already
		}
		return nil, &FileError{Field: field, Path: path, Err: err}
	}
	return b, nil
}

// Files returns the files c was loaded from (zero for nil).
func (c *Creds) Files() Files {
	if c == nil {
		return Files{}
	}
	return c.files
}

// Enabled reports whether c is TLS (non-nil).
func (c *Creds) Enabled() bool { return c != nil }

// Mutual reports whether c verifies peers against a CA: a server with it
// requires client certificates.
func (c *Creds) Mutual() bool { return c != nil && c.pool != nil }

// ServerConfig returns the TLS configuration of a server: it presents the
// certificate and, with a CA, requires and verifies a client certificate.
// It returns an error when c has no certificate to present, and nil, nil for
// nil c (plaintext).
func (c *Creds) ServerConfig() (*tls.Config, error) {
	if c == nil {
		return nil, nil
	}
	if c.cert == nil {
		return nil, &FileError{Field: FieldCert, Err: fmt.Errorf("%w (a server needs a certificate and its key)", ErrMissing)}
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*c.cert}}
	if c.pool != nil {
		cfg.ClientCAs = c.pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// ClientConfig returns the TLS configuration of a client: it verifies the
// server against the CA (the system's roots without one) and presents the
// certificate if c has one. Nil for nil c (plaintext).
func (c *Creds) ClientConfig() *tls.Config {
	if c == nil {
		return nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: c.pool}
	if c.cert != nil {
		cfg.Certificates = []tls.Certificate{*c.cert}
	}
	return cfg
}

// ServerOption returns the gRPC server option of c: its TLS credentials,
// or no option for nil c (plaintext). See ServerConfig for the error.
func (c *Creds) ServerOption() (grpc.ServerOption, error) {
	cfg, err := c.ServerConfig()
	if err != nil || cfg == nil {
		return grpc.EmptyServerOption{}, err
	}
	return grpc.Creds(credentials.NewTLS(cfg)), nil
}

// DialOption returns the gRPC dial option of c: TLS credentials as
// ClientConfig, or plaintext for nil c.
func (c *Creds) DialOption() grpc.DialOption {
	if c == nil {
		return grpc.WithTransportCredentials(insecure.NewCredentials())
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(c.ClientConfig()))
}

// SelfDialOption returns the dial option of a process calling its own
// server (a REST gateway calling its gRPC port): it presents c's
// certificate and accepts only a server that presents the same one, whatever
// address it dials (a wildcard listener's address is in no certificate).
// Plaintext for nil c.
func (c *Creds) SelfDialOption() grpc.DialOption {
	if c == nil || c.cert == nil {
		return c.DialOption()
	}
	own := c.cert.Certificate[0]
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{*c.cert},
		// Verification is the pin below, not a chain: the peer is this
		// process's own server.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || string(raw[0]) != string(own) {
				return errors.New("tlsconfig: the server is not this process (it presents another certificate)")
			}
			return nil
		},
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(cfg))
}
