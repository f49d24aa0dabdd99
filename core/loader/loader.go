// Package loader turns a config block ({plugin, mode, sha256, options}) into a
// running plugin: a process launched through go-plugin, or a bundled
// implementation linked in process, behind the same contract interface.
package loader

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"

	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/plugins"
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

// Loader loads plugins. The zero value is not usable: set Self and Engines.
type Loader struct {
	// Logger receives the host's and the plugins' logs.
	Logger hclog.Logger
	// Self is the binary that serves the bundled plugins (`Self plugin serve KIND NAME`).
	Self string
	// Engines are the bundled engines by name.
	Engines map[string]engines.OpenFunc
	// MaxRestarts bounds the attempts to restart a plugin after it died (default 5).
	MaxRestarts int
	// StartTimeout bounds a plugin's start-up handshake (default 10s).
	StartTimeout time.Duration
}

// IsBundled reports whether name is a bundled engine rather than a path.
func (l *Loader) IsBundled(name string) bool {
	_, ok := l.Engines[name]
	return ok && !strings.ContainsRune(name, filepath.Separator)
}

// EngineNames lists the bundled engines, sorted.
func (l *Loader) EngineNames() []string {
	names := make([]string, 0, len(l.Engines))
	for n := range l.Engines {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// CheckEngineBlock validates a block without starting anything.
func (l *Loader) CheckEngineBlock(b Block) error {
	switch b.Mode {
	case "", ModeProcess, ModeInProcess:
	default:
		return fmt.Errorf("engine.mode %q: allowed values are process, inprocess", b.Mode)
	}
	if b.Plugin == "" {
		return fmt.Errorf("engine.plugin is empty: name a bundled engine (%s) or a plugin binary path", strings.Join(l.EngineNames(), ", "))
	}
	if l.IsBundled(b.Plugin) {
		return nil
	}
	if !strings.ContainsRune(b.Plugin, filepath.Separator) {
		return fmt.Errorf("engine.plugin %q: no such bundled engine (bundled: %s); a plugin binary is given by path, e.g. ./bin/myengine", b.Plugin, strings.Join(l.EngineNames(), ", "))
	}
	if b.Mode == ModeInProcess {
		return fmt.Errorf("engine.mode inprocess: only bundled engines (%s) link in process; %s runs as a process", strings.Join(l.EngineNames(), ", "), b.Plugin)
	}
	st, err := os.Stat(b.Plugin)
	if err != nil {
		return fmt.Errorf("engine.plugin %q: plugin binary not found: %w", b.Plugin, err)
	}
	if st.IsDir() || st.Mode()&0o111 == 0 {
		return fmt.Errorf("engine.plugin %q: not an executable file", b.Plugin)
	}
	if b.SHA256 != "" {
		if _, err := decodeSHA256(b.SHA256); err != nil {
			return fmt.Errorf("engine.sha256: %w", err)
		}
	}
	return nil
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
	if l.IsBundled(b.Plugin) {
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
		return nil, nil, fmt.Errorf("plugin %s is not %s plugin (it does not serve the %s kind): %w", b.Plugin, article(kind), kind, err)
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
