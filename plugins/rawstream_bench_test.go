package plugins

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"

	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/engines/memory"
	"github.com/plugdb/plugdb/engines/rowfile"
	enginev1 "github.com/plugdb/plugdb/proto/plugdb/engine/v1"
)

// The test binary doubles as a plugin: `plugins.test plugin serve engine
// memory` serves the memory engine (BenchmarkRawStream), `… rowfile` the
// rowfile engine (BenchmarkPluginCalls).
func TestMain(m *testing.M) {
	if len(os.Args) == 5 && os.Args[1] == "plugin" && os.Args[2] == "serve" && os.Args[3] == "engine" {
		switch os.Args[4] {
		case "memory":
			Serve(ServeConfig{Engine: memory.Open})
			os.Exit(0)
		case "rowfile":
			Serve(ServeConfig{Engine: rowfile.Open})
			os.Exit(0)
		}
	}
	os.Exit(m.Run())
}

// startPluginProcess launches this test binary as a memory engine plugin and
// returns its opened client.
func startPluginProcess(b *testing.B) *EngineClient {
	return startEnginePlugin(b, "memory", nil)
}

// startEnginePlugin launches this test binary as a plugin serving engine
// (memory or rowfile) and returns its client, opened with params.
func startEnginePlugin(b *testing.B, engine string, params map[string]string) *EngineClient {
	b.Helper()
	client := goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: EnginePluginSet(nil, nil),
		Cmd:              exec.Command(os.Args[0], "plugin", "serve", "engine", engine),
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		Logger:           hclog.NewNullLogger(),
		StartTimeout:     10 * time.Second,
	})
	b.Cleanup(client.Kill)
	rpc, err := client.Client()
	if err != nil {
		b.Fatal(err)
	}
	raw, err := rpc.Dispense(string(KindEngine))
	if err != nil {
		b.Fatal(err)
	}
	c := raw.(*EngineClient)
	if err := c.Open(context.Background(), engines.Options{Dir: b.TempDir(), Params: params}); err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkRawStream is the ceiling of one gRPC stream between two processes
// carrying small messages: the engine's Calls stream opened directly, one
// sender sending CallBatch messages of one Get each back to back (pipelined,
// no waiting), one receiver counting the results. The plugin serves them as it
// serves EngineClient's calls. Reports calls (= messages sent) per second.
func BenchmarkRawStream(b *testing.B) {
	c := startPluginProcess(b)
	ctx := context.Background()
	key := []byte("key:0123456789ab") // 16 bytes
	value := make([]byte, 100)
	if err := c.Apply(ctx, []engines.Mutation{{Op: engines.OpPut, Key: key, Value: value, LSN: 1}}); err != nil {
		b.Fatal(err)
	}
	b.Run("get", func(b *testing.B) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := c.rpc.Calls(ctx)
		if err != nil {
			b.Fatal(err)
		}
		sendErr := make(chan error, 1)
		b.ResetTimer()
		go func() {
			for i := range b.N {
				batch := &enginev1.CallBatch{GetIds: []uint64{uint64(i + 1)}, GetKeys: appendBytes(make([]byte, 0, 1+len(key)), key)}
				if err := stream.Send(batch); err != nil {
					sendErr <- err
					return
				}
			}
			sendErr <- stream.CloseSend()
		}()
		got := 0
		for got < b.N {
			batch, err := stream.Recv()
			if err != nil {
				b.Fatalf("after %d of %d results: %v", got, b.N, err)
			}
			results, err := unpackResults(batch, nil)
			if err != nil {
				b.Fatal(err)
			}
			for _, r := range results {
				if r.err != nil || len(r.row.Value) != len(value) {
					b.Fatalf("result %d: %v", r.id, r.err)
				}
			}
			got += len(results)
		}
		b.StopTimer()
		if err := <-sendErr; err != nil && !errors.Is(err, context.Canceled) {
			b.Fatal(err)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	})
}
