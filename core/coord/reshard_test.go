package coord_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/plugdb/plugdb/core/coord"
	"github.com/plugdb/plugdb/core/zkserver/zktest"
)

// TestReshardRecordSteps walks a move through its steps on a real
// ZooKeeper: begin (new partitions' znodes), fence, acknowledge, flip (the
// metadata and the state in one write), end; and refuses the steps out of
// order.
func TestReshardRecordSteps(t *testing.T) {
	cfg, c := newMetaCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, ok, err := coord.ReadReshard(ctx, c); err != nil || ok {
		t.Fatalf("ReadReshard before any move = %v, %v", ok, err)
	}
	to := coord.Meta{Partitions: 3, Partitioner: coord.PluginMeta{Plugin: "ring", Options: map[string]string{"vnodes": "64"}}}
	r, err := coord.BeginReshard(ctx, c, to)
	if err != nil {
		t.Fatal(err)
	}
	if r.State != coord.ReshardCopying || r.From.Partitions != 2 || r.To.Version != 2 || r.From.LayoutVersion() != 1 {
		t.Fatalf("begun: %+v", r)
	}
	if _, err := coord.BeginReshard(ctx, c, to); !errors.Is(err, coord.ErrReshardRunning) || !strings.Contains(err.Error(), "copying") {
		t.Fatalf("second BeginReshard: %v", err)
	}
	// The new partition can hold an election.
	startCandidate(t, cfg, coord.CandidateConfig{Partition: 2, Addr: "127.0.0.1:1"})

	_, _, w, err := coord.WatchReshard(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if err := coord.FlipReshard(ctx, c); err == nil || !strings.Contains(err.Error(), "flips once fenced") {
		t.Fatalf("flip while copying: %v", err)
	}
	if err := coord.EndReshard(ctx, c); err == nil || !strings.Contains(err.Error(), "ends once flipped") {
		t.Fatalf("end while copying: %v", err)
	}
	if err := coord.SetReshardState(ctx, c, coord.ReshardCopying, coord.ReshardFenced); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w:
	case <-ctx.Done():
		t.Fatal("the watch did not fire at the fence")
	}
	if err := coord.SetReshardState(ctx, c, coord.ReshardCopying, coord.ReshardFenced); err == nil || !strings.Contains(err.Error(), "is fenced, not copying") {
		t.Fatalf("fence twice: %v", err)
	}
	if e, err := coord.FenceAcked(ctx, c, 0); err != nil || e != 0 {
		t.Fatalf("FenceAcked before any = %d, %v", e, err)
	}
	for _, e := range []uint64{3, 4} {
		if err := coord.AckFence(ctx, c, 0, e); err != nil {
			t.Fatal(err)
		}
	}
	if e, err := coord.FenceAcked(ctx, c, 0); err != nil || e != 4 {
		t.Fatalf("FenceAcked = %d, %v", e, err)
	}
	if m, _ := coord.ReadMeta(ctx, c); m.Partitions != 2 {
		t.Fatalf("meta changed before the flip: %+v", m)
	}
	if err := coord.FlipReshard(ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := coord.FlipReshard(ctx, c); err != nil {
		t.Fatalf("a second flip (a resumed move) must do nothing: %v", err)
	}
	m, err := coord.ReadMeta(ctx, c)
	if err != nil || m.Partitions != 3 || m.Partitioner.Plugin != "ring" || m.Version != 2 {
		t.Fatalf("meta after the flip = %+v, %v", m, err)
	}
	if r, ok, _ := coord.ReadReshard(ctx, c); !ok || r.State != coord.ReshardFlipped {
		t.Fatalf("record after the flip: %+v %v", r, ok)
	}
	if err := coord.AbortReshard(ctx, c); err == nil || !strings.Contains(err.Error(), "can only go forward") {
		t.Fatalf("abort after the flip: %v", err)
	}
	// The config the cluster was created with no longer conflicts: the
	// recorded layout is the cluster's.
	if got, err := coord.EnsureMeta(ctx, c, meta); err != nil || got.Partitions != 3 {
		t.Fatalf("EnsureMeta after a reshard = %+v, %v", got, err)
	}
	if err := coord.EndReshard(ctx, c); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := coord.ReadReshard(ctx, c); err != nil || ok {
		t.Fatalf("record after the end: %v, %v", ok, err)
	}
	if e, err := coord.FenceAcked(ctx, c, 0); err != nil || e != 0 {
		t.Fatalf("acks after the end = %d, %v", e, err)
	}
	if err := coord.EndReshard(ctx, c); !errors.Is(err, coord.ErrNoReshard) {
		t.Fatalf("end with no move: %v", err)
	}
}

// TestReshardAbort: an aborted move leaves the layout as it was.
func TestReshardAbort(t *testing.T) {
	_, c := newMetaCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := coord.BeginReshard(ctx, c, coord.Meta{Partitions: 4, Partitioner: meta.Partitioner}); err != nil {
		t.Fatal(err)
	}
	if err := coord.SetReshardState(ctx, c, coord.ReshardCopying, coord.ReshardFenced); err != nil {
		t.Fatal(err)
	}
	if err := coord.AckFence(ctx, c, 1, 2); err != nil {
		t.Fatal(err)
	}
	if err := coord.AbortReshard(ctx, c); err != nil {
		t.Fatal(err)
	}
	if m, err := coord.ReadMeta(ctx, c); err != nil || m.Partitions != 2 || m.LayoutVersion() != 1 {
		t.Fatalf("meta after abort = %+v, %v", m, err)
	}
	if _, ok, _ := coord.ReadReshard(ctx, c); ok {
		t.Fatal("record left after abort")
	}
	if r, err := coord.BeginReshard(ctx, c, coord.Meta{Partitions: 3, Partitioner: meta.Partitioner}); err != nil || r.To.Version != 2 {
		t.Fatalf("a new move after an abort: %+v, %v", r, err)
	}
}

// TestWatchMetaFiresAtTheFlip reads the metadata with a watch, and sees the
// watch fire when a move flips; read again, the metadata is the new layout.
func TestWatchMetaFiresAtTheFlip(t *testing.T) {
	_, c := newMetaCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, w, err := coord.WatchMeta(ctx, c)
	if err != nil || w == nil {
		t.Fatalf("WatchMeta = %+v, %v, %v", m, w, err)
	}
	if m.Partitions != meta.Partitions || m.LayoutVersion() != 1 {
		t.Fatalf("WatchMeta = %+v, want the created layout", m)
	}
	to := coord.Meta{Partitions: 3, Partitioner: coord.PluginMeta{Plugin: "hash"}}
	if _, err := coord.BeginReshard(ctx, c, to); err != nil {
		t.Fatal(err)
	}
	if err := coord.SetReshardState(ctx, c, coord.ReshardCopying, coord.ReshardFenced); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w:
		t.Fatal("the meta watch fired before the flip")
	default:
	}
	if err := coord.FlipReshard(ctx, c); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w:
	case <-ctx.Done():
		t.Fatal("the meta watch did not fire at the flip")
	}
	m, w2, err := coord.WatchMeta(ctx, c)
	if err != nil || w2 == nil || m.Partitions != 3 || m.LayoutVersion() != 2 {
		t.Fatalf("WatchMeta after the flip = %+v, %v, %v; want 3 partitions, version 2", m, w2, err)
	}
}

// newMetaCluster returns a cluster of its own on the shared ZooKeeper, with
// its metadata (meta) written, and a client of it.
func newMetaCluster(t *testing.T) (coord.Config, *coord.Client) {
	t.Helper()
	cfg := newCluster(t, zktest.Shared(t).Servers())
	c := connect(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := coord.EnsureMeta(ctx, c, meta); err != nil {
		t.Fatal(err)
	}
	return cfg, c
}
