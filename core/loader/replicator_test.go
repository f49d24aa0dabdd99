package loader

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/internal/testutil"
	"github.com/plugdb/plugdb/replicators"
	"github.com/plugdb/plugdb/replicators/none"
	"github.com/plugdb/plugdb/replicators/replicatortest"
)

// bundledReplicators are the replicators the test binary serves as plugins.
var bundledReplicators = map[string]replicators.OpenFunc{"none": none.Open, "crashy": openCrashy}

// crashy is the none replicator whose process dies, saying why in its log
// (hclog JSON on stderr), when it replicates a statement with the key "crash".
type crashy struct {
	replicators.Replicator
	log hclog.Logger
}

func openCrashy(ctx context.Context, opts replicators.Options) (replicators.Replicator, error) {
	r, err := none.Open(ctx, opts)
	return crashy{r, opts.Logger}, err
}

func (c crashy) Replicate(ctx context.Context, st replicators.Statement, ack replicators.Ack) error {
	for _, m := range st.Mutations {
		if string(m.Key) == "crash" {
			c.log.Error(fmt.Sprintf("replicator on fire at lsn %d", m.LSN))
			os.Exit(3)
		}
	}
	return c.Replicator.Replicate(ctx, st, ack)
}

// TestReplicatorKit runs the conformance kit against the none replicator
// through the loader, in a real plugin process and linked in.
func TestReplicatorKit(t *testing.T) {
	l := testLoader(nil)
	for _, mode := range []string{ModeProcess, ModeInProcess} {
		t.Run(mode, func(t *testing.T) {
			replicatortest.Run(t, func(*testing.T) replicatortest.Harness {
				return replicatortest.Harness{Open: func(ctx context.Context, opts replicators.Options) (replicators.Replicator, error) {
					return l.OpenReplicator(ctx, Block{Plugin: "none", Mode: mode, Options: opts.Params}, opts)
				}}
			})
		})
	}
}

func TestRefusesBadReplicators(t *testing.T) {
	l := testLoader(nil)
	ctx := context.Background()
	for _, tc := range []struct {
		name      string
		block     Block
		want      string
		wrongKind bool
	}{
		{"unknown bundled", Block{Plugin: "raft"}, `replicator.plugin "raft": no such bundled replicator (bundled: crashy, none)`, false},
		{"bad mode", Block{Plugin: "none", Mode: "thread"}, `replicator.mode "thread": allowed values are process, inprocess`, false},
		{"missing binary", Block{Plugin: "/no/such/replicator"}, `replicator.plugin "/no/such/replicator": plugin binary not found`, false},
		{"unknown option", Block{Plugin: "none", Options: map[string]string{"lag": "1s"}}, `replicator none: unknown option "lag" (allowed: ack)`, false},
		{"ack semi-sync", Block{Plugin: "none", Options: map[string]string{"ack": "semi-sync"}}, `option ack "semi-sync": the allowed value is async`, false},
		{"ack semi-sync inprocess", Block{Plugin: "none", Mode: ModeInProcess, Options: map[string]string{"ack": "semi-sync"}}, `open replicator none in process: replicator none: option ack "semi-sync": the allowed value is async`, false},
		{"other version", Block{Plugin: script(t, "PLUGDB_TEST_ROLE=replicator-v2")}, "speaks another replicator protocol version than this plugdb (1)", false},
		{"an engine", Block{Plugin: script(t, "PLUGDB_TEST_ROLE=engine")}, "is not a replicator plugin (it does not serve the replicator service)", true},
		{"sha256 mismatch", Block{Plugin: "none", SHA256: strings.Repeat("ab", 32)}, "binary does not match the pinned sha256", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := l.OpenReplicator(ctx, tc.block, replicators.Options{Dir: t.TempDir(), Listen: "127.0.0.1:0"})
			if err == nil {
				r.Close()
				t.Fatalf("opened; want error %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q\nwant it to contain %q", err, tc.want)
			}
			if errors.Is(err, ErrWrongKind) != tc.wrongKind {
				t.Fatalf("errors.Is(%q, ErrWrongKind) = %v", err, !tc.wrongKind)
			}
		})
	}
}

func TestCrashedReplicatorIsClosed(t *testing.T) {
	l := testLoader(nil)
	ctx := context.Background()
	open := func() *processReplicator {
		r, err := l.OpenReplicator(ctx, Block{Plugin: "crashy"}, replicators.Options{Dir: t.TempDir(), Listen: "127.0.0.1:0"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close() })
		if _, err := r.Lead(ctx, 1, 0); err != nil {
			t.Fatal(err)
		}
		return r.(*processReplicator)
	}
	st := func(lsn uint64, key string) replicators.Statement {
		return replicators.Statement{Epoch: 1, Mutations: []engines.Mutation{{Op: engines.OpPut, Key: []byte(key), Value: []byte("v"), LSN: lsn}}}
	}

	// The call that kills the plugin fails, quoting its last words; so does
	// every call after it, and the plugin is not restarted.
	r := open()
	if err := r.Replicate(ctx, st(1, "a"), replicators.AckAsync); err != nil {
		t.Fatal(err)
	}
	pid := r.PID()
	err := r.Replicate(ctx, st(2, "crash"), replicators.AckAsync)
	for _, want := range []string{"replicator plugin crashy died during replicate", "replicator on fire at lsn 2", "not restarted"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("replicate that kills the plugin: %v, want an error containing %q", err, want)
		}
	}
	if !errors.Is(err, replicators.ErrClosed) {
		t.Fatalf("replicate that kills the plugin: %v, want ErrClosed", err)
	}
	t.Logf("crash: %v", err)
	if _, serr := r.Status(ctx); !errors.Is(serr, replicators.ErrClosed) || serr.Error() != err.Error() {
		t.Fatalf("status after the crash: %v, want the crash's error", serr)
	}
	for d, derr := range r.Deliveries(ctx) {
		if !errors.Is(derr, replicators.ErrClosed) {
			t.Fatalf("deliveries after the crash: %+v, %v; want ErrClosed", d, derr)
		}
	}
	if r.PID() != pid || syscall.Kill(pid, 0) == nil {
		t.Fatalf("plugin process %d restarted or still alive", pid)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("close after the crash: %v", err)
	}

	// A plugin killed under a running Deliveries: the sequence reports it and ends.
	r = open()
	items := make(chan error, 10)
	gid := make(chan uint64, 1)
	go func() {
		defer close(items)
		gid <- testutil.GoroutineID()
		for _, err := range r.Deliveries(ctx) {
			items <- err
		}
	}()
	id := <-gid // the sequence runs once its goroutine waits inside it for a delivery
	testutil.WaitFor(t, 10*time.Second, func() bool { return testutil.GoroutineBlocked(id) }, "the Deliveries sequence to start and wait")
	if err := syscall.Kill(r.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-items:
		if !errors.Is(err, replicators.ErrClosed) || !strings.Contains(err.Error(), "replicator plugin crashy died during deliveries") {
			t.Fatalf("deliveries when the plugin was killed: %v, want ErrClosed naming the plugin", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("deliveries did not report the killed plugin within 10s")
	}
	if _, ok := <-items; ok {
		t.Fatal("deliveries went on after reporting the killed plugin")
	}
	if err := r.Applied(ctx, 1); !errors.Is(err, replicators.ErrClosed) {
		t.Fatalf("applied after the kill: %v, want ErrClosed", err)
	}
}
