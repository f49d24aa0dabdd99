package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/plugdb/plugdb/tlsconfig"
)

// tlsFlags are a client's TLS files, named as etcdctl names them. None set:
// plaintext.
type tlsFlags struct {
	cacert, cert, key string
}

func (t *tlsFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&t.cacert, "cacert", "", "verify the server with this CA certificate (PEM) and use TLS")
	cmd.Flags().StringVar(&t.cert, "cert", "", "present this client certificate (PEM; with --key) to a server that asks for one (mutual TLS)")
	cmd.Flags().StringVar(&t.key, "key", "", "the private key (PEM) of --cert")
}

// flagOf names the flag of a tlsconfig field.
var tlsFlagOf = map[tlsconfig.Field]string{tlsconfig.FieldCA: "--cacert", tlsconfig.FieldCert: "--cert", tlsconfig.FieldKey: "--key"}

// creds loads the files: nil when none is given (plaintext). Errors name
// the flag.
func (t *tlsFlags) creds() (*tlsconfig.Creds, error) {
	c, err := tlsconfig.Load(tlsconfig.Files{CA: t.cacert, Cert: t.cert, Key: t.key})
	var fe *tlsconfig.FileError
	if errors.As(err, &fe) {
		if fe.Path == "" {
			return nil, fmt.Errorf("%s: %v", tlsFlagOf[fe.Field], fe.Err)
		}
		return nil, fmt.Errorf("%s %s: %v", tlsFlagOf[fe.Field], fe.Path, fe.Err)
	}
	return c, err
}

// tlsHint is what the CLI adds to a connection failure's message that looks
// like a TLS mismatch: a plaintext client of a TLS server, or a handshake
// refused either way. "" when msg is about something else.
func tlsHint(msg string, creds *tlsconfig.Creds) string {
	closed := strings.Contains(msg, "server preface") || strings.Contains(msg, "connection reset") ||
		strings.Contains(msg, "broken pipe") || strings.Contains(msg, "EOF")
	switch {
	case strings.Contains(msg, "authentication handshake failed"), strings.Contains(msg, "tls:"), strings.Contains(msg, "x509:"):
		return " (TLS handshake failed: the server must present a certificate --cacert's CA signed, and a server with mutual TLS wants --cert and --key of its CA)"
	case creds.Enabled() && closed:
		// With TLS 1.3 a server checks the client's certificate after the
		// client has finished its handshake: the refusal is a closed connection.
		return " (the server closed the connection at or right after the TLS handshake: a server with mutual TLS wants --cert and --key of its CA)"
	case !creds.Enabled() && closed:
		return " (does it serve TLS? give --cacert, and --cert and --key for mutual TLS)"
	}
	return ""
}

// restScheme is the scheme of a REST server with creds: https, or http
// (plaintext).
func restScheme(creds *tlsconfig.Creds) string {
	if creds.Enabled() {
		return "https"
	}
	return "http"
}
