package cluster

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"

	"github.com/plugdb/plugdb/core/config"
	"github.com/plugdb/plugdb/tlsconfig"
)

// `plugdb cluster up --tls`: a throwaway CA in DIR/tls (kept, and used
// again by a later start from DIR), a certificate for each child
// (DIR/tls/<name>.crt and .key, for 127.0.0.1, ::1 and localhost, made anew
// at each start) handed to it as PLUGDB_TLS_CA, PLUGDB_TLS_CERT and
// PLUGDB_TLS_KEY, and one for clients (DIR/tls/client.crt), which the
// supervisor uses too. Every child then serves mutual TLS and uses it toward
// the others.

// TLSDir is the folder under the cluster folder that holds the CA and the
// certificates.
const TLSDir = "tls"

// ClientName is the name of the clients' certificate: TLSDir/client.crt and
// client.key.
const ClientName = "client"

// clusterTLS issues the children's certificates; nil: the cluster is
// plaintext (or uses the config's tls block as it is).
type clusterTLS struct {
	dir    string
	ca     *tlsconfig.CA
	client tlsconfig.Files
	mu     sync.Mutex // serializes the writing of certificates
}

// prepareTLS opens the CA in dir/TLSDir, or makes one, and issues the
// clients' certificate.
func prepareTLS(dir, cluster string) (*clusterTLS, error) {
	tdir := filepath.Join(dir, TLSDir)
	ca, err := tlsconfig.OpenCA(tdir)
	if errors.Is(err, fs.ErrNotExist) {
		ca, err = tlsconfig.WriteCA(tdir, "plugdb cluster "+cluster+" CA")
	}
	if err != nil {
		return nil, fmt.Errorf("cluster TLS in %s: %w (remove the folder to make a new CA)", tdir, err)
	}
	client, err := ca.IssueFiles(tdir, ClientName, nil)
	if err != nil {
		return nil, fmt.Errorf("cluster TLS: %w", err)
	}
	return &clusterTLS{dir: tdir, ca: ca, client: client}, nil
}

// childEnv is env with the TLS files of child name, whose certificate it
// issues, in place of any PLUGDB_TLS_ variables; env itself for nil t.
func (t *clusterTLS) childEnv(name string, env []string) ([]string, error) {
	if t == nil {
		return env, nil
	}
	t.mu.Lock()
	files, err := t.ca.IssueFiles(t.dir, name, tlsconfig.LocalHosts())
	t.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	set := map[string]string{
		config.EnvName("tls.ca"): files.CA, config.EnvName("tls.cert"): files.Cert, config.EnvName("tls.key"): files.Key,
	}
	out := make([]string, 0, len(env)+len(set))
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if _, ok := set[name]; !ok {
			out = append(out, kv)
		}
	}
	for _, name := range []string{config.EnvName("tls.ca"), config.EnvName("tls.cert"), config.EnvName("tls.key")} {
		out = append(out, name+"="+set[name])
	}
	return out, nil
}

// spawn starts a child as startChild does, with its own certificate when
// the cluster makes them.
func (c *Cluster) spawn(name, addr, logPath string, args, env []string) (*child, error) {
	env, err := c.tls.childEnv(name, env)
	if err != nil {
		return nil, err
	}
	return startChild(name, addr, logPath, c.opts.Binary, args, env)
}

// clientCreds are the supervisor's credentials toward the router: the
// clients' certificate with --tls, else the config's tls block.
func (c *Cluster) clientCreds() (*tlsconfig.Creds, error) {
	if c.tls != nil {
		return tlsconfig.Load(c.tls.client)
	}
	return c.opts.Config.TLS.Creds()
}

// RecordTLS are the clients' TLS files in a cluster's record.
type RecordTLS struct {
	CA   string `json:"ca"`
	Cert string `json:"cert"`
	Key  string `json:"key"`
}

// Flags are the CLI flags that use the files: --cacert CA --cert CERT --key KEY.
func (r RecordTLS) Flags() string {
	return fmt.Sprintf("--cacert %s --cert %s --key %s", r.CA, r.Cert, r.Key)
}

// endpointTLS returns what the printed endpoints need under TLS: the REST
// scheme, the CLI's TLS flags (with a leading space) and curl's.
func (c *Cluster) endpointTLS() (scheme, flags, curl string) {
	if c.tls != nil {
		f := c.tls.client
		return "https://", " " + RecordTLS{CA: f.CA, Cert: f.Cert, Key: f.Key}.Flags(),
			fmt.Sprintf("   (curl --cacert %s --cert %s --key %s)", f.CA, f.Cert, f.Key)
	}
	if creds, err := c.opts.Config.TLS.Creds(); err == nil && creds.Enabled() {
		return "https://", "", ""
	}
	return "http://", "", ""
}
