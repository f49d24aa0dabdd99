package local

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/plugdb/plugdb/core/api"
	"github.com/plugdb/plugdb/core/loader"
	"github.com/plugdb/plugdb/core/partition"
	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/engines/memory"
	"github.com/plugdb/plugdb/replicators"
)

func TestDevAck(t *testing.T) {
	ctx := context.Background()
	l := &loader.Loader{Self: os.Args[0], Engines: map[string]engines.OpenFunc{"memory": memory.Open}}
	b, err := Open(ctx, l, loader.Block{Plugin: "memory", Mode: loader.ModeInProcess}, t.TempDir(), 1, Info{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	put := []partition.Write{{Op: engines.OpPut, Key: []byte("k"), Value: []byte("v")}}
	// One copy: the default and async are served...
	for _, a := range []replicators.Ack{replicators.AckDefault, replicators.AckAsync} {
		if lsns, err := b.Write(ctx, 0, put, a, partition.RequestID{}); err != nil || len(lsns) != 1 {
			t.Errorf("write with ack %v: %v %v", a, lsns, err)
		}
	}
	// ... semi-sync and sync are refused as invalid arguments, saying why.
	for _, a := range []replicators.Ack{replicators.AckSemiSync, replicators.AckSync} {
		_, err := b.Write(ctx, 0, put, a, partition.RequestID{})
		want := "plugdb dev keeps one copy: ack " + a.String() + " needs a cluster whose replicator is statement"
		if !errors.Is(err, engines.ErrInvalidArgument) || err.Error() != want {
			t.Errorf("write with ack %v: %v, want %q wrapping ErrInvalidArgument", a, err, want)
		}
	}
	if row, err := b.Get(ctx, 0, []byte("k"), api.Read{}); err != nil || row.LSN != 2 {
		t.Errorf("after the refused writes: %+v %v, want lsn 2", row, err)
	}
}
