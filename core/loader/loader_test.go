package loader

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"go.uber.org/goleak"
	"google.golang.org/grpc"

	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/engines/enginetest"
	"github.com/plugdb/plugdb/engines/memory"
	"github.com/plugdb/plugdb/engines/rowfile"
	"github.com/plugdb/plugdb/internal/testutil"
	"github.com/plugdb/plugdb/partitioners/hash"
	"github.com/plugdb/plugdb/plugins"
	"github.com/plugdb/plugdb/replicators/none"
)

// The test binary doubles as the plugin binaries these tests launch:
// `loader.test plugin serve engine memory` serves the memory engine, and
// PLUGDB_TEST_ROLE picks a misbehaving plugin or a host to kill.
func TestMain(m *testing.M) {
	if len(os.Args) == 5 && os.Args[1] == "plugin" && os.Args[2] == "serve" {
		switch os.Args[3] {
		case string(plugins.KindPartitioner):
			plugins.Serve(plugins.ServeConfig{Partitioner: bundledPartitioners[os.Args[4]]})
		case string(plugins.KindReplicator):
			plugins.Serve(plugins.ServeConfig{Replicator: bundledReplicators[os.Args[4]]})
		default:
			plugins.Serve(plugins.ServeConfig{Engine: bundled[os.Args[4]]})
		}
		os.Exit(0)
	}
	switch os.Getenv("PLUGDB_TEST_ROLE") {
	case "engine":
		plugins.Serve(plugins.ServeConfig{Engine: memory.Open})
		os.Exit(0)
	case "partitioner-v2":
		serveVersion(2, "partitioner", &plugins.PartitionerPlugin{Open: hash.Open})
		os.Exit(0)
	case "replicator-v2":
		serveVersion(2, "replicator", &plugins.ReplicatorPlugin{Open: none.Open})
		os.Exit(0)
	case "engine-v2":
		serveVersion(2, "engine", &plugins.EnginePlugin{Open: memory.Open})
		os.Exit(0)
	case "other-kind":
		serveVersion(plugins.EngineProtocolVersion, "partitioner", otherKindPlugin{})
		os.Exit(0)
	case "host":
		runHost()
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// serveVersion serves p, named name, as the one plugin of protocol version v
// of a plugin process.
func serveVersion(v int, name string, p goplugin.Plugin) {
	goplugin.Serve(&goplugin.ServeConfig{
		HandshakeConfig:  plugins.Handshake,
		VersionedPlugins: map[int]goplugin.PluginSet{v: {name: p}},
		GRPCServer:       goplugin.DefaultGRPCServer,
	})
}

// otherKindPlugin stands for a plugin of another kind: it serves no engine service.
type otherKindPlugin struct {
	goplugin.NetRPCUnsupportedPlugin
}

func (otherKindPlugin) GRPCServer(*goplugin.GRPCBroker, *grpc.Server) error { return nil }
func (otherKindPlugin) GRPCClient(context.Context, *goplugin.GRPCBroker, *grpc.ClientConn) (any, error) {
	return nil, errors.New("host side not used")
}

// bundled are the engines the test binary serves as plugins.
var bundled = map[string]engines.OpenFunc{"memory": loggingMemory, "rowfile": rowfile.Open}

// loggingMemory is the memory engine, logging a line on open so tests can see
// plugin logs arrive in the host's logger.
func loggingMemory(ctx context.Context, opts engines.Options) (engines.Engine, error) {
	opts.Logger.Info("memory engine opening", "dir", opts.Dir)
	return memory.Open(ctx, opts)
}

// runHost opens a plugin, prints its pid and waits to be killed.
func runHost() {
	l := testLoader(nil)
	eng, err := l.OpenEngine(context.Background(), Block{Plugin: "memory"}, os.TempDir())
	if err != nil {
		fmt.Println("error", err)
		return
	}
	fmt.Println(eng.(*processEngine).PID())
	time.Sleep(time.Minute) // not a synchronisation: this child waits to be killed; the minute bounds it if the test dies first
}

// testLoader's StartTimeout bounds a plugin that never starts; under the
// race detector on a loaded 2-core machine a healthy start (each side makes
// a P-521 key for AutoMTLS) has taken over 5 s.
func testLoader(log hclog.Logger) *Loader {
	return &Loader{Logger: log, Self: os.Args[0], Engines: bundled, Partitioners: bundledPartitioners, Replicators: bundledReplicators, StartTimeout: 30 * time.Second}
}

// script writes an executable file that runs the test binary with env set.
func script(t *testing.T, env string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "plugin.sh")
	body := fmt.Sprintf("#!/bin/sh\nexec env %s %q \"$@\"\n", env, os.Args[0])
	if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestProcessAndInProcessServeTheSameEngine(t *testing.T) {
	logs := &syncBuffer{}
	l := testLoader(hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Info}))
	ctx := context.Background()
	for _, mode := range []string{ModeProcess, ModeInProcess} {
		eng, err := l.OpenEngine(ctx, Block{Plugin: "memory", Mode: mode}, t.TempDir())
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		if err := eng.Apply(ctx, []engines.Mutation{{Op: engines.OpPut, Key: []byte("k"), Value: []byte("v"), LSN: 1}}); err != nil {
			t.Fatalf("%s: apply: %v", mode, err)
		}
		row, err := eng.Get(ctx, []byte("k"))
		if err != nil || string(row.Value) != "v" {
			t.Fatalf("%s: get %q, %v", mode, row.Value, err)
		}
		if _, err := eng.Get(ctx, []byte("nope")); !errors.Is(err, engines.ErrNotFound) {
			t.Fatalf("%s: missing key: %v, want ErrNotFound", mode, err)
		}
		if err := eng.Close(); err != nil {
			t.Fatalf("%s: close: %v", mode, err)
		}
	}
	testutil.Eventually(t.Context(), 5*time.Second, func() bool { return strings.Contains(logs.String(), "memory engine opening") })
	if !strings.Contains(logs.String(), "engine.memory") || !strings.Contains(logs.String(), "memory engine opening") {
		t.Fatalf("plugin log line not in host log under the plugin's name:\n%s", logs)
	}
}

func TestRefusesBadPlugins(t *testing.T) {
	l := testLoader(nil)
	ctx := context.Background()
	notPlugin := filepath.Join(t.TempDir(), "notplugin.sh")
	os.WriteFile(notPlugin, []byte("#!/bin/sh\necho hello, I am not a plugin\n"), 0o755)
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	wrongSum := strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name  string
		block Block
		want  string
	}{
		{"unknown bundled", Block{Plugin: "nosuch"}, `engine.plugin "nosuch": no such bundled engine (bundled: memory, rowfile)`},
		{"missing binary", Block{Plugin: "/no/such/plugin"}, `engine.plugin "/no/such/plugin": plugin binary not found`},
		{"bad mode", Block{Plugin: "memory", Mode: "thread"}, `engine.mode "thread": allowed values are process, inprocess`},
		{"not a plugin", Block{Plugin: notPlugin}, "is not a plugdb plugin (it did not complete the plugin handshake: Unrecognized remote plugin message: hello, I am not a plugin)"},
		{"other version", Block{Plugin: script(t, "PLUGDB_TEST_ROLE=engine-v2")}, "speaks another engine protocol version than this plugdb (1)"},
		{"other kind", Block{Plugin: script(t, "PLUGDB_TEST_ROLE=other-kind")}, "is not an engine plugin (it does not serve the engine service)"},
		{"sha256 mismatch", Block{Plugin: "memory", SHA256: wrongSum}, "binary does not match the pinned sha256"},
		{"sha256 malformed", Block{Plugin: notPlugin, SHA256: "xyz"}, `engine.sha256: "xyz" is not a SHA-256 in hex`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eng, err := l.OpenEngine(ctx, tc.block, t.TempDir())
			if err == nil {
				eng.Close()
				t.Fatalf("opened; want error %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q\nwant it to contain %q", err, tc.want)
			}
		})
	}
	t.Run("sha256 match", func(t *testing.T) {
		sum := sha256.Sum256(self)
		eng, err := l.OpenEngine(ctx, Block{Plugin: "memory", SHA256: hex.EncodeToString(sum[:])}, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		eng.Close()
	})
}

func TestRestartsCrashedPlugin(t *testing.T) {
	logs := &syncBuffer{}
	l := testLoader(hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Info}))
	ctx := context.Background()
	eng, err := l.OpenEngine(ctx, Block{Plugin: "memory"}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	pid := eng.(*processEngine).PID()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The call in flight (or the first after the kill) fails naming the plugin.
	var failure error
	deadline := time.Now().Add(10 * time.Second)
	for failure == nil && time.Now().Before(deadline) {
		_, failure = engines.StatsOf(ctx, eng)
	}
	if failure == nil || !strings.Contains(failure.Error(), "engine plugin memory failed during stats") {
		t.Fatalf("call after kill: %v, want an error naming the plugin", failure)
	}
	// Then the plugin is back.
	if _, err := engines.StatsOf(ctx, eng); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if newPID := eng.(*processEngine).PID(); newPID == pid || newPID == 0 {
		t.Fatalf("pid %d after restart, was %d", newPID, pid)
	}
	if !strings.Contains(logs.String(), "engine plugin died; restarting") || !strings.Contains(logs.String(), "engine plugin restarted") {
		t.Fatalf("restart not logged:\n%s", logs)
	}
}

func TestPluginExitsWithHost(t *testing.T) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "PLUGDB_TEST_ROLE=host")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line := make([]byte, 64)
	n, _ := io.ReadAtLeast(out, line, 1)
	pid, err := strconv.Atoi(strings.TrimSpace(string(line[:n])))
	if err != nil || pid <= 0 {
		t.Fatalf("host printed %q", line[:n])
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("plugin %d not running: %v", pid, err)
	}
	cmd.Process.Kill() // SIGKILL: the host gets no chance to clean up
	cmd.Wait()
	testutil.Eventually(t.Context(), 10*time.Second, func() bool { return syscall.Kill(pid, 0) != nil })
	if err := syscall.Kill(pid, 0); err == nil {
		syscall.Kill(pid, syscall.SIGKILL)
		t.Fatalf("plugin %d still running after its host was killed", pid)
	}
}

// TestKitThroughPluginProcess runs the conformance kit against the bundled
// engines through real plugin processes (the in-process runs are beside each
// engine).
func TestKitThroughPluginProcess(t *testing.T) {
	l := testLoader(nil)
	for _, tc := range []struct {
		name   string
		engine string
		params map[string]string
	}{
		{"memory", "memory", nil},
		{"rowfile-hash", "rowfile", map[string]string{"index": "hash"}},
		{"rowfile-btree", "rowfile", map[string]string{"index": "btree"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enginetest.Run(t, func(*testing.T) enginetest.Harness {
				return processHarness{l: l, engine: tc.engine, params: tc.params}
			})
		})
	}
}

// processHarness opens engines in plugin processes, LogBacked or not, so the
// kit's LogBacked cases cross the plugin boundary too.
type processHarness struct {
	l      *Loader
	engine string
	params map[string]string
}

func (h processHarness) block(params map[string]string) Block {
	opts := map[string]string{}
	maps.Copy(opts, h.params)
	maps.Copy(opts, params)
	return Block{Plugin: h.engine, Options: opts}
}

func (h processHarness) Open(ctx context.Context, dir string, params map[string]string) (engines.Engine, error) {
	return h.l.OpenEngine(ctx, h.block(params), dir)
}

func (h processHarness) OpenLogBacked(ctx context.Context, dir string, params map[string]string) (engines.Engine, error) {
	return h.l.OpenLogBackedEngine(ctx, h.block(params), dir)
}
