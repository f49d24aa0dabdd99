// Package loader turns a config block ({plugin, mode, sha256, options}) into a
// running plugin: a process launched through go-plugin, or a bundled
// implementation linked in process, behind the same contract interface.
package loader

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"

	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/partitioners"
	"github.com/plugdb/plugdb/plugins"
	"github.com/plugdb/plugdb/replicators"
)

// Modes of a block.
const (
	ModeProcess   = "process"
	ModeInProcess = "inprocess"
)

// Block is one plugin's config block.
type Block struct {
	// Plugin is a bundled plugin's name or a path to a plugin binary.
	Plugin string
	// Mode is "process" (default) or "inprocess" (bundled plugins only).
	Mode string
	// SHA256, if set, pins the plugin binary: a binary with another SHA-256 is refused.
	SHA256 string
	// Options are the plugin's own options.
	Options map[string]string
}

// ErrWrongKind is matched (errors.Is) by the error of loading a plugin that
// completed the handshake but serves another kind than the one asked for.
var ErrWrongKind = errors.New("plugin of another kind")

// wrongKind is an error of a plugin of another kind: its text is err's.
type wrongKind struct{ err error }

func (e wrongKind) Error() string   { return e.err.Error() }
func (e wrongKind) Unwrap() []error { return []error{ErrWrongKind, e.err} }

// Loader loads plugins. The zero value is not usable: set Self and Engines
// (and Partitioners, Replicators).
type Loader struct {
	// Logger receives the host's and the plugins' logs.
	Logger hclog.Logger
	// Self is the binary that serves the bundled plugins (`Self plugin serve KIND NAME`).
	Self string
	// Engines are the bundled engines by name.
	Engines map[string]engines.OpenFunc
	// Partitioners are the bundled partitioners by name.
	Partitioners map[string]partitioners.OpenFunc
	// Replicators are the bundled replicators by name.
	Replicators map[string]replicators.OpenFunc
	// MaxRestarts bounds the attempts to restart a plugin after it died (default 5).
	MaxRestarts int
	// StartTimeout bounds a plugin's start-up handshake (default 10s).
	StartTimeout time.Duration
	// OnRestart, if set, is called after a plugin process that died was
	// restarted, with its kind ("engine") and plugin (name or path).
	OnRestart func(kind, plugin string)
}

// IsBundled reports whether name is a bundled engine rather than a path.
func (l *Loader) IsBundled(name string) bool { return l.isBundled(plugins.KindEngine, name) }

// isBundled reports whether name is a bundled plugin of kind rather than a path.
func (l *Loader) isBundled(kind plugins.Kind, name string) bool {
	if strings.ContainsRune(name, filepath.Separator) {
		return false
	}
	return slices.Contains(l.names(kind), name)
}

// EngineNames lists the bundled engines, sorted.
func (l *Loader) EngineNames() []string { return l.names(plugins.KindEngine) }

// PartitionerNames lists the bundled partitioners, sorted.
func (l *Loader) PartitionerNames() []string { return l.names(plugins.KindPartitioner) }

// ReplicatorNames lists the bundled replicators, sorted.
func (l *Loader) ReplicatorNames() []string { return l.names(plugins.KindReplicator) }

// names lists the bundled plugins of kind, sorted.
func (l *Loader) names(kind plugins.Kind) []string {
	var names []string
	switch kind {
	case plugins.KindEngine:
		names = slices.Collect(maps.Keys(l.Engines))
	case plugins.KindPartitioner:
		names = slices.Collect(maps.Keys(l.Partitioners))
	case plugins.KindReplicator:
		names = slices.Collect(maps.Keys(l.Replicators))
	}
	sort.Strings(names)
	return names
}

// CheckEngineBlock validates an engine block without starting anything.
func (l *Loader) CheckEngineBlock(b Block) error { return l.checkBlock(plugins.KindEngine, b) }

// CheckPartitionerBlock validates a partitioner block without starting anything.
func (l *Loader) CheckPartitionerBlock(b Block) error {
	return l.checkBlock(plugins.KindPartitioner, b)
}

// CheckReplicatorBlock validates a replicator block without starting anything.
func (l *Loader) CheckReplicatorBlock(b Block) error {
	return l.checkBlock(plugins.KindReplicator, b)
}

// checkBlock validates a block of kind without starting anything; its errors
// name the config key ("engine.plugin", …) and the allowed values.
func (l *Loader) checkBlock(kind plugins.Kind, b Block) error {
	bundled := strings.Join(l.names(kind), ", ")
	switch b.Mode {
	case "", ModeProcess, ModeInProcess:
	default:
		return fmt.Errorf("%s.mode %q: allowed values are process, inprocess", kind, b.Mode)
	}
	if b.Plugin == "" {
		return fmt.Errorf("%s.plugin is empty: name a bundled %s (%s) or a plugin binary path", kind, kind, bundled)
	}
	if l.isBundled(kind, b.Plugin) {
		return nil
	}
	if !strings.ContainsRune(b.Plugin, filepath.Separator) {
		return fmt.Errorf("%s.plugin %q: no such bundled %s (bundled: %s); a plugin binary is given by path, e.g. ./bin/my%s", kind, b.Plugin, kind, bundled, kind)
	}
	if b.Mode == ModeInProcess {
		return fmt.Errorf("%s.mode inprocess: only bundled %ss (%s) link in process; %s runs as a process", kind, kind, bundled, b.Plugin)
	}
	st, err := os.Stat(b.Plugin)
	if err != nil {
		return fmt.Errorf("%s.plugin %q: plugin binary not found: %w", kind, b.Plugin, err)
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return fmt.Errorf("%s.plugin %q: not an executable file", kind, b.Plugin)
	}
	if b.SHA256 != "" {
		if _, err := decodeSHA256(b.SHA256); err != nil {
			return fmt.Errorf("%s.sha256: %w", kind, err)
		}
	}
	return nil
}

// openInProcess opens the bundled plugin name of kind, linked in process,
// with open and opts.
func openInProcess[O, T any](ctx context.Context, kind plugins.Kind, name string, open func(context.Context, O) (T, error), opts O) (T, error) {
	x, err := open(ctx, opts)
	if err != nil {
		var zero T
		return zero, fmt.Errorf("open %s %s in process: %w", kind, name, err)
	}
	return x, nil
}

func decodeSHA256(s string) ([]byte, error) {
	sum, err := hex.DecodeString(s)
	if err != nil || len(sum) != sha256.Size {
		return nil, fmt.Errorf("%q is not a SHA-256 in hex (64 hex digits)", s)
	}
	return sum, nil
}

// command returns the command that starts the plugin of block b of kind.
func (l *Loader) command(kind plugins.Kind, b Block) (*exec.Cmd, error) {
	var cmd *exec.Cmd
	if l.isBundled(kind, b.Plugin) {
		if l.Self == "" {
			return nil, errors.New("loader: Self (the binary serving bundled plugins) is not set")
		}
		cmd = exec.Command(l.Self, "plugin", "serve", string(kind), b.Plugin)
	} else {
		cmd = exec.Command(b.Plugin)
	}
	setParentDeathSignal(cmd)
	return cmd, nil
}

// startClient launches the plugin process and dispenses kind from it.
func (l *Loader) startClient(kind plugins.Kind, b Block, versions map[int]goplugin.PluginSet, stderr *tailBuffer) (*goplugin.Client, any, error) {
	cmd, err := l.command(kind, b)
	if err != nil {
		return nil, nil, err
	}
	cfg := &goplugin.ClientConfig{
		HandshakeConfig:  plugins.Handshake,
		VersionedPlugins: versions,
		Cmd:              cmd,
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		Logger:           l.logger().Named(string(kind) + "." + filepath.Base(b.Plugin)),
		StartTimeout:     l.startTimeout(),
		Stderr:           stderr,
		// Mutual TLS on the plugin connection, with a certificate pair each
		// side makes at start: only this host can call the plugin, and it
		// talks to no other process on the plugin's socket.
		AutoMTLS: true,
	}
	if b.SHA256 != "" {
		sum, err := decodeSHA256(b.SHA256)
		if err != nil {
			return nil, nil, fmt.Errorf("%s.sha256: %w", kind, err)
		}
		cfg.SecureConfig = &goplugin.SecureConfig{Checksum: sum, Hash: sha256.New()}
	}
	client := goplugin.NewClient(cfg)
	rpc, err := client.Client()
	if err != nil {
		client.Kill()
		return nil, nil, explainStartError(kind, b.Plugin, err, stderr)
	}
	raw, err := rpc.Dispense(string(kind))
	if err != nil {
		client.Kill()
		return nil, nil, fmt.Errorf("plugin %s is not %s plugin (it does not serve the %s kind): %w", b.Plugin, article(kind), kind, wrongKind{err})
	}
	return client, raw, nil
}

// explainStartError turns go-plugin's start-up errors into ones that say what is wrong.
func explainStartError(kind plugins.Kind, path string, err error, stderr *tailBuffer) error {
	msg := err.Error()
	switch {
	case errors.Is(err, goplugin.ErrChecksumsDoNotMatch):
		return fmt.Errorf("plugin %s: binary does not match the pinned sha256; refusing to run it: %w", path, err)
	case strings.Contains(msg, "incompatible API version"):
		return fmt.Errorf("plugin %s speaks another %s protocol version than this plugdb (%d); rebuild it against this plugdb's SDK: %w", path, kind, versionOf(kind), err)
	case strings.Contains(msg, "Unrecognized remote plugin message"),
		strings.Contains(msg, "plugin exited before we could connect"),
		strings.Contains(msg, "timeout while waiting for plugin to start"):
		first, _, _ := strings.Cut(msg, "\n") // go-plugin appends a long generic explanation
		if strings.HasSuffix(first, ": ") {
			first += "(it printed nothing)"
		}
		detail := ""
		if tail := stderr.String(); tail != "" {
			detail = "; its stderr: " + tail
		}
		return fmt.Errorf("%s is not a plugdb plugin (it did not complete the plugin handshake: %s)%s", path, first, detail)
	}
	return fmt.Errorf("start %s plugin %s: %w", kind, path, err)
}

func versionOf(kind plugins.Kind) int {
	switch kind {
	case plugins.KindEngine:
		return plugins.EngineProtocolVersion
	case plugins.KindPartitioner:
		return plugins.PartitionerProtocolVersion
	case plugins.KindReplicator:
		return plugins.ReplicatorProtocolVersion
	}
	return 0
}

func (l *Loader) logger() hclog.Logger {
	if l.Logger == nil {
		return hclog.NewNullLogger()
	}
	return l.Logger
}

func (l *Loader) startTimeout() time.Duration {
	if l.StartTimeout > 0 {
		return l.StartTimeout
	}
	return 10 * time.Second
}

func (l *Loader) maxRestarts() int {
	if l.MaxRestarts > 0 {
		return l.MaxRestarts
	}
	return 5
}

// article returns "an engine", "a partitioner", ….
func article(kind plugins.Kind) string {
	if strings.ContainsRune("aeiou", rune(kind[0])) {
		return "an " + string(kind)
	}
	return "a " + string(kind)
}
