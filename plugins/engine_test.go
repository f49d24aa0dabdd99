package plugins

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"iter"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/engines/enginetest"
	"github.com/plugdb/plugdb/engines/rowfile"
	enginev1 "github.com/plugdb/plugdb/proto/plugdb/engine/v1"
)

// fakeEngine answers gets from the key itself, so concurrent callers can check
// they got their own answer: "missing/…" is not found, "bad/…" is invalid,
// anything else has the value "value-of-KEY". Applies are recorded.
type fakeEngine struct {
	mu      sync.Mutex
	applied [][]engines.Mutation
	closed  bool
}

func (f *fakeEngine) Get(_ context.Context, key []byte) (engines.Row, error) {
	switch {
	case bytes.HasPrefix(key, []byte("missing/")):
		return engines.Row{}, fmt.Errorf("get %q: %w", key, engines.ErrNotFound)
	case bytes.HasPrefix(key, []byte("bad/")):
		return engines.Row{}, fmt.Errorf("key %q exceeds max_key_size 7: %w", key, engines.ErrInvalidArgument)
	case bytes.HasPrefix(key, []byte("corrupt/")):
		return engines.Row{}, fmt.Errorf("segment 3 offset 99: %w", engines.ErrCorrupt)
	case bytes.HasPrefix(key, []byte("plain/")):
		return engines.Row{}, errors.New("disk on fire")
	}
	return engines.Row{Key: key, Value: append([]byte("value-of-"), key...), LSN: uint64(len(key))}, nil
}

func (f *fakeEngine) Apply(_ context.Context, batch []engines.Mutation) error {
	if err := engines.CheckBatch(engines.Capabilities{}, batch); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = append(f.applied, batch)
	return nil
}

func (f *fakeEngine) Scan(_ context.Context, r engines.ScanRange) iter.Seq2[engines.Row, error] {
	return func(yield func(engines.Row, error) bool) {
		for i := 0; i < 2000; i++ {
			if r.Limit > 0 && i >= r.Limit {
				return
			}
			if !yield(engines.Row{Key: fmt.Appendf(nil, "k%05d", i), Value: []byte("v"), LSN: uint64(i + 1)}, nil) {
				return
			}
		}
	}
}

func (f *fakeEngine) Snapshot(ctx context.Context) (uint64, iter.Seq2[engines.Row, error], error) {
	return 77, f.Scan(ctx, engines.ScanRange{}), nil
}

func (f *fakeEngine) Restore(_ context.Context, lsn uint64, rows iter.Seq2[engines.Row, error]) error {
	var batch []engines.Mutation
	for r, err := range rows {
		if err != nil {
			return err
		}
		batch = append(batch, engines.Mutation{Op: engines.OpPut, Key: r.Key, Value: r.Value, LSN: r.LSN})
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = [][]engines.Mutation{batch, {{LSN: lsn}}}
	return nil
}

func (f *fakeEngine) AppliedLSN(context.Context) (uint64, error) { return 42, nil }
func (f *fakeEngine) Stats(context.Context) (engines.Stats, error) {
	return engines.Stats{Keys: 3, BytesOnDisk: 4096, GarbageRatio: 0.25}, nil
}
func (f *fakeEngine) Capabilities() engines.Capabilities {
	return engines.Capabilities{Durable: true, MaxKeySize: 7, MaxValueSize: 9}
}
func (f *fakeEngine) Close() error { f.closed = true; return nil }

// startShim serves fake through the real server shim on loopback and returns a
// connected client shim.
func startShim(t *testing.T, fake *fakeEngine) *EngineClient {
	t.Helper()
	return startShimOpen(t, func(context.Context, engines.Options) (engines.Engine, error) { return fake, nil }, engines.Options{Dir: t.TempDir()})
}

// startShimOpen serves the engine open opens through the real server shim on
// loopback and returns a client shim that opened it with opts.
func startShimOpen(t *testing.T, open engines.OpenFunc, opts engines.Options) *EngineClient {
	t.Helper()
	conn := serveLoopback(t, func(srv *grpc.Server) {
		enginev1.RegisterEngineServer(srv, newEngineServer(open, nil))
	})
	c := &EngineClient{rpc: enginev1.NewEngineClient(conn)}
	if err := c.Open(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestLogBackedAndFlushCrossTheBoundary checks that Open carries LogBacked to
// the plugin's engine (rowfile), that
// Flush reaches it and returns its durable LSN, and that Flush on an engine
// without one fails with an error wrapping errors.ErrUnsupported.
func TestLogBackedAndFlushCrossTheBoundary(t *testing.T) {
	ctx := context.Background()
	for _, logBacked := range []bool{false, true} {
		t.Run(fmt.Sprintf("log_backed=%v", logBacked), func(t *testing.T) {
			var got engines.Options
			open := func(ctx context.Context, opts engines.Options) (engines.Engine, error) {
				got = opts
				return rowfile.Open(ctx, opts)
			}
			dir := t.TempDir()
			c := startShimOpen(t, open, engines.Options{Dir: dir, LogBacked: logBacked, Params: map[string]string{"sync": "always"}})
			if got.LogBacked != logBacked || got.Dir != dir || got.Params["sync"] != "always" {
				t.Fatalf("the plugin's engine was opened with %+v, want dir %s, sync always, LogBacked %v", got, dir, logBacked)
			}
			if lsn, err := c.Flush(ctx); err != nil || lsn != 0 {
				t.Fatalf("flush of a new engine: got %d, %v; want 0", lsn, err)
			}
			batch := []engines.Mutation{{Op: engines.OpPut, Key: []byte("a"), Value: []byte("1"), LSN: 1}, {Op: engines.OpPut, Key: []byte("b"), Value: []byte("2"), LSN: 2}}
			if err := c.Apply(ctx, batch); err != nil {
				t.Fatal(err)
			}
			if lsn, err := c.Flush(ctx); err != nil || lsn != 2 {
				t.Fatalf("flush: got %d, %v; want 2", lsn, err)
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("engine without Flush", func(t *testing.T) {
		c := startShim(t, &fakeEngine{})
		_, err := c.Flush(ctx)
		if !errors.Is(err, errors.ErrUnsupported) || IsTransport(err) {
			t.Fatalf("flush of an engine without Flush: got %v, want an error wrapping errors.ErrUnsupported", err)
		}
	})
}

func TestSentinelErrorsSurviveRoundTrip(t *testing.T) {
	c := startShim(t, &fakeEngine{})
	ctx := context.Background()
	for _, tc := range []struct {
		key  string
		want error
		code codes.Code
	}{
		{"missing/a", engines.ErrNotFound, codes.NotFound},
		{"bad/a", engines.ErrInvalidArgument, codes.InvalidArgument},
		{"corrupt/a", engines.ErrCorrupt, codes.DataLoss},
	} {
		_, err := c.Get(ctx, []byte(tc.key))
		if !errors.Is(err, tc.want) {
			t.Errorf("get %s: err %v, want errors.Is %v", tc.key, err, tc.want)
		}
		if status.Code(err) != tc.code {
			t.Errorf("get %s: code %v, want %v", tc.key, status.Code(err), tc.code)
		}
		if !strings.Contains(err.Error(), tc.key) && tc.want != engines.ErrCorrupt {
			t.Errorf("get %s: message %q lost the plugin's text", tc.key, err)
		}
	}
	_, err := c.Get(ctx, []byte("plain/x"))
	if err == nil || !strings.Contains(err.Error(), "disk on fire") || IsTransport(err) {
		t.Errorf("plain error: %v (transport=%v), want the plugin's message, not a transport error", err, IsTransport(err))
	}
	if got := c.Capabilities(); got.MaxKeySize != 7 || !got.Durable {
		t.Errorf("capabilities %+v", got)
	}
}

// TestConcurrentCallersGetOwnResults checks the multiplexed stream hands every
// caller its own value or error.
func TestConcurrentCallersGetOwnResults(t *testing.T) {
	fake := &fakeEngine{}
	c := startShim(t, fake)
	ctx := context.Background()
	const callers, calls = 64, 200
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for g := 0; g < callers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < calls; i++ {
				key := fmt.Sprintf("g%d/i%d", g, i)
				if i%3 == 1 {
					key = "missing/" + key
				}
				row, err := c.Get(ctx, []byte(key))
				switch {
				case i%3 == 1 && !errors.Is(err, engines.ErrNotFound):
					errs <- fmt.Errorf("get %s: %v, want not found", key, err)
					return
				case i%3 != 1 && (err != nil || string(row.Value) != "value-of-"+key):
					errs <- fmt.Errorf("get %s: %q, %v", key, row.Value, err)
					return
				}
				if i%3 == 2 {
					err := c.Apply(ctx, []engines.Mutation{{Op: engines.OpPut, Key: []byte(key), Value: []byte("v"), LSN: uint64(i + 1)}})
					if err != nil {
						errs <- fmt.Errorf("apply %s: %v", key, err)
						return
					}
					bad := c.Apply(ctx, []engines.Mutation{{Op: engines.OpPut, Key: []byte(key), LSN: 0}})
					if !errors.Is(bad, engines.ErrInvalidArgument) {
						errs <- fmt.Errorf("apply lsn 0: %v, want invalid argument", bad)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if want := callers * (calls / 3); len(fake.applied) != want {
		t.Errorf("%d batches applied, want %d", len(fake.applied), want)
	}
}

func TestStreamsScanSnapshotRestore(t *testing.T) {
	fake := &fakeEngine{}
	c := startShim(t, fake)
	ctx := context.Background()
	n := 0
	for row, err := range c.Scan(ctx, engines.ScanRange{Limit: 1500}) {
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("k%05d", n); string(row.Key) != want {
			t.Fatalf("row %d: key %q, want %q", n, row.Key, want)
		}
		n++
	}
	if n != 1500 {
		t.Fatalf("scan gave %d rows, want 1500 (more than one chunk)", n)
	}
	// Stopping early ends the stream.
	n = 0
	for range c.Scan(ctx, engines.ScanRange{}) {
		if n++; n == 10 {
			break
		}
	}
	lsn, rows, err := c.Snapshot(ctx)
	if err != nil || lsn != 77 {
		t.Fatalf("snapshot lsn %d, %v", lsn, err)
	}
	if err := c.Restore(ctx, lsn, rows); err != nil {
		t.Fatal(err)
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if len(fake.applied[0]) != 2000 || fake.applied[1][0].LSN != 77 {
		t.Fatalf("restore got %d rows, lsn %d", len(fake.applied[0]), fake.applied[1][0].LSN)
	}
}

func TestBrokenStreamIsTransportError(t *testing.T) {
	fake := &fakeEngine{}
	var srv *grpc.Server
	conn := serveLoopback(t, func(s *grpc.Server) {
		srv = s
		enginev1.RegisterEngineServer(srv, newEngineServer(func(context.Context, engines.Options) (engines.Engine, error) { return fake, nil }, nil))
	})
	c := &EngineClient{rpc: enginev1.NewEngineClient(conn)}
	if err := c.Open(context.Background(), engines.Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(context.Background(), []byte("a")); err != nil {
		t.Fatal(err)
	}
	srv.Stop() // the "plugin" goes away
	_, err := c.Get(context.Background(), []byte("a"))
	if !IsTransport(err) {
		t.Fatalf("get after server stopped: %v, want a transport error", err)
	}
}

// TestOptionalInterfacesCrossTheBoundary: the client of a plugin whose engine
// has only the required interface says so (Interfaces), fails each optional
// method at once with an error wrapping errors.ErrUnsupported that names the
// interface, and the server answers UNIMPLEMENTED to a host that calls anyway;
// the client of a full engine has them all.
func TestOptionalInterfacesCrossTheBoundary(t *testing.T) {
	ctx := context.Background()
	open := func(ctx context.Context, opts engines.Options) (engines.Engine, error) {
		e, err := rowfile.Open(ctx, opts)
		return enginetest.RequiredOnly(e), err
	}
	c := startShimOpen(t, open, engines.Options{Dir: t.TempDir()})
	if got := engines.InterfacesOf(c); got != (engines.Interfaces{}) {
		t.Errorf("interfaces of a required-only engine: %+v, want none", got)
	}
	if _, ok := engines.AsScanner(c); ok {
		t.Errorf("AsScanner of a required-only plugin: ok")
	}
	if got := c.Capabilities(); got != engines.DefaultCapabilities {
		t.Errorf("capabilities: %+v, want the defaults %+v", got, engines.DefaultCapabilities)
	}
	want := func(what, iface string, err error) {
		t.Helper()
		if !errors.Is(err, errors.ErrUnsupported) || !strings.Contains(err.Error(), "does not implement engines."+iface) {
			t.Errorf("%s: got %v, want an error wrapping errors.ErrUnsupported naming engines.%s", what, err, iface)
		}
	}
	for _, err := range c.Scan(ctx, engines.ScanRange{}) {
		want("scan", "Scanner", err)
		break
	}
	_, _, err := c.Snapshot(ctx)
	want("snapshot", "Snapshotter", err)
	_, err = c.Stats(ctx)
	want("stats", "StatsReporter", err)
	_, err = c.Flush(ctx)
	want("flush", "Flusher", err)

	// A host that calls anyway (one built before Interfaces) gets UNIMPLEMENTED.
	stream, err := c.rpc.Scan(ctx, &enginev1.ScanRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.Unimplemented || !strings.Contains(err.Error(), "engines.Scanner") {
		t.Errorf("raw scan: %v, want UNIMPLEMENTED naming engines.Scanner", err)
	}
	_, err = c.rpc.Stats(ctx, &enginev1.StatsRequest{})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("raw stats: %v, want UNIMPLEMENTED", err)
	}

	// Gets and applies work.
	if err := c.Apply(ctx, []engines.Mutation{{Op: engines.OpPut, Key: []byte("k"), Value: []byte("v"), LSN: 1}}); err != nil {
		t.Fatal(err)
	}
	if row, err := c.Get(ctx, []byte("k")); err != nil || string(row.Value) != "v" {
		t.Errorf("get: %q, %v", row.Value, err)
	}

	full := startShimOpen(t, rowfile.Open, engines.Options{Dir: t.TempDir()})
	if got := engines.InterfacesOf(full); got != (engines.Interfaces{Scanner: true, Snapshotter: true, StatsReporter: true, Flusher: true}) {
		t.Errorf("interfaces of rowfile: %+v, want all", got)
	}
}

// TestInterfacesOfAnOlderPlugin: an Open answer without interfaces (a plugin
// built when every engine had every method) means all of them.
func TestInterfacesOfAnOlderPlugin(t *testing.T) {
	if got := ifacesFromProto(nil); got != (engines.Interfaces{Scanner: true, Snapshotter: true, StatsReporter: true, Flusher: true}) {
		t.Errorf("ifacesFromProto(nil) = %+v, want all", got)
	}
}
