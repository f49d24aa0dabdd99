package plugins

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"

	"github.com/plugdb/plugdb/partitioners"
	"github.com/plugdb/plugdb/partitioners/hash"
	"github.com/plugdb/plugdb/partitioners/partitionertest"
	partitionerv1 "github.com/plugdb/plugdb/proto/plugdb/partitioner/v1"
)

// startPartitionerShim serves the partitioners open returns through the real
// server shim on loopback, one gRPC server per partitioner as a plugin process
// serves one, and returns an unconfigured client shim.
func startPartitionerShim(t testing.TB, open partitioners.OpenFunc) *PartitionerClient {
	t.Helper()
	conn := serveLoopback(t, func(srv *grpc.Server) {
		partitionerv1.RegisterPartitionerServer(srv, newPartitionerServer(open, nil))
	})
	return NewPartitionerClient(conn)
}

func TestPartitionerKitThroughShim(t *testing.T) {
	partitionertest.Run(t, func(t *testing.T) partitionertest.Harness {
		return partitionertest.Harness{
			Open: func(context.Context) (partitioners.Partitioner, error) {
				return startPartitionerShim(t, hash.Open), nil
			},
			Reference: partitionertest.FromOpenFunc(hash.Open),
		}
	})
}

// pickyPartitioner fails the Locate of any batch holding a key "bad/…" (naming
// it), so the shim must fall back to locating each call on its own; other keys
// go to partition len(key) mod n.
type pickyPartitioner struct{ n int }

func (p *pickyPartitioner) Configure(_ context.Context, n int, opts map[string]string) error {
	if err := partitioners.CheckOptions(opts, "color"); err != nil {
		return err
	}
	if c, ok := opts["color"]; ok && c != "red" && c != "blue" {
		return fmt.Errorf("option color %q: allowed values are red, blue: %w", c, partitioners.ErrInvalidArgument)
	}
	p.n = n
	return nil
}

func (p *pickyPartitioner) Locate(_ context.Context, keys [][]byte, out []int) error {
	for i, k := range keys {
		if bytes.HasPrefix(k, []byte("bad/")) {
			return fmt.Errorf("key %q: %w", k, partitioners.ErrInvalidArgument)
		}
		if bytes.HasPrefix(k, []byte("plain/")) {
			return errors.New("partitioner on fire")
		}
		out[i] = len(k) % p.n
	}
	return nil
}

func (p *pickyPartitioner) Range(context.Context, []byte, []byte) ([]int, error) {
	return nil, fmt.Errorf("range: no ranges today: %w", partitioners.ErrInvalidArgument)
}

func (p *pickyPartitioner) Close() error { return nil }

func openPicky(context.Context, hclog.Logger) (partitioners.Partitioner, error) {
	return &pickyPartitioner{}, nil
}

func TestPartitionerErrorsSurviveRoundTrip(t *testing.T) {
	ctx := context.Background()
	c := startPartitionerShim(t, openPicky)
	err := c.Configure(ctx, 4, map[string]string{"color": "green"})
	if !errors.Is(err, partitioners.ErrInvalidArgument) || !strings.Contains(err.Error(), `option color "green": allowed values are red, blue`) {
		t.Fatalf("configure with a bad option: %v, want ErrInvalidArgument naming it", err)
	}
	if err := c.Configure(ctx, 0, nil); !errors.Is(err, partitioners.ErrInvalidArgument) {
		t.Fatalf("configure 0 partitions: %v, want ErrInvalidArgument", err)
	}
	if err := c.Configure(ctx, 4, map[string]string{"color": "red"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Locate(ctx, [][]byte{[]byte("a")}, make([]int, 2)); !errors.Is(err, partitioners.ErrInvalidArgument) {
		t.Fatalf("locate with len(out) != len(keys): %v", err)
	}
	if _, err := c.Range(ctx, nil, nil); !errors.Is(err, partitioners.ErrInvalidArgument) || !strings.Contains(err.Error(), "no ranges today") {
		t.Fatalf("range: %v", err)
	}

	// Concurrent callers: each gets its own answer or its own error, even when
	// their calls travel in one message whose batch Locate fails.
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			for i := range 200 {
				out := make([]int, 2)
				key := fmt.Appendf(nil, "k%0*d", g%5+1, i%7)
				switch i % 3 {
				case 0:
					if err := c.Locate(ctx, [][]byte{key, key[:1]}, out); err != nil || out[0] != len(key)%4 || out[1] != 1 {
						t.Errorf("locate %q: %v, %v", key, out, err)
						return
					}
				case 1:
					bad := append([]byte("bad/"), key...)
					err := c.Locate(ctx, [][]byte{key, bad}, out)
					if !errors.Is(err, partitioners.ErrInvalidArgument) || !strings.Contains(err.Error(), string(bad)) {
						t.Errorf("locate %q: %v, want ErrInvalidArgument naming it", bad, err)
						return
					}
				case 2:
					err := c.Locate(ctx, [][]byte{append([]byte("plain/"), key...)}, out[:1])
					if err == nil || err.Error() != "partitioner on fire" || errors.Is(err, partitioners.ErrInvalidArgument) || IsTransport(err) {
						t.Errorf("plain error: %v", err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Locate(ctx, [][]byte{[]byte("a")}, make([]int, 1)); err == nil {
		t.Fatal("locate after close succeeded")
	}
}

func TestPartitionerLocateSplitsLargeCalls(t *testing.T) {
	ctx := context.Background()
	c := startPartitionerShim(t, hash.Open)
	if err := c.Configure(ctx, 64, nil); err != nil {
		t.Fatal(err)
	}
	// 12,000 keys of 1 KiB: 12 MiB, over gRPC's 4 MiB message limit and over
	// maxLocateKeys keys.
	keys := make([][]byte, 12000)
	for i := range keys {
		keys[i] = bytes.Repeat(fmt.Appendf(nil, "%07d", i), 1024/7+1)[:1024]
	}
	out := make([]int, len(keys))
	if err := c.Locate(ctx, keys, out); err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		if want := hash.Locate(k, 64); out[i] != want {
			t.Fatalf("key %d: partition %d, want %d", i, out[i], want)
		}
	}
}

func TestPartitionerServerRefusesUnconfiguredAndReconfigure(t *testing.T) {
	ctx := context.Background()
	c := startPartitionerShim(t, hash.Open)
	if _, err := c.Range(ctx, nil, nil); err == nil || !strings.Contains(err.Error(), "not configured") {
		t.Fatalf("range before configure: %v", err)
	}
	if err := c.Locate(ctx, [][]byte{[]byte("a")}, make([]int, 1)); err == nil || !strings.Contains(err.Error(), "not configured") {
		t.Fatalf("locate before configure: %v", err)
	}
	if err := c.Configure(ctx, 2, map[string]string{"seed": "1"}); !errors.Is(err, partitioners.ErrInvalidArgument) || !strings.Contains(err.Error(), `"seed"`) {
		t.Fatalf("hash with an option: %v", err)
	}
	if err := c.Configure(ctx, 2, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Configure(ctx, 3, nil); err == nil || !strings.Contains(err.Error(), "already configured") {
		t.Fatalf("second configure: %v", err)
	}
	out := make([]int, 1)
	if err := c.Locate(ctx, [][]byte{[]byte("user:1")}, out); err != nil || out[0] != 1 {
		t.Fatalf("locate after configure: %v, %v", out, err)
	}
}
