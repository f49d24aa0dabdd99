package router

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plugdb/plugdb/core/partition"
	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/replicators"
)

// lossyNode fails its first write with Unavailable after "applying" it (an
// ack lost on the way) and records the request id of every write.
type lossyNode struct {
	refusingNode
	mu  sync.Mutex
	ids []partition.RequestID
}

func (n *lossyNode) Write(_ context.Context, _ int, writes []partition.Write, _ replicators.Ack, id partition.RequestID) ([]uint64, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.ids = append(n.ids, id)
	if len(n.ids) == 1 {
		return nil, replicators.ErrUnavailable
	}
	return []uint64{7}, nil
}

func (n *lossyNode) take() []partition.RequestID {
	n.mu.Lock()
	defer n.mu.Unlock()
	ids := n.ids
	n.ids = nil
	return ids
}

// A create whose outcome is unknown is retried with the same request id: the
// router's own, or the client's.
func TestRouterRetriesAWriteWithItsRequestID(t *testing.T) {
	n := &lossyNode{}
	r := routeTo(t, n)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	create := []partition.Write{{Op: engines.OpPut, Key: []byte("k"), Value: []byte("v"), Cond: partition.MustNotExist}}
	if lsns, err := r.Write(ctx, 0, create, replicators.AckDefault, partition.RequestID{}); err != nil || lsns[0] != 7 {
		t.Fatalf("create: %v %v, want it retried to lsn 7", lsns, err)
	}
	ids := n.take()
	if len(ids) != 2 || ids[0] != ids[1] || !strings.HasPrefix(ids[0].Client, "router-") || ids[0].Seq != 1 {
		t.Fatalf("request ids of the attempts: %v, want the router's, twice", ids)
	}
	// The session is used again, with its next seq.
	n.mu.Lock()
	n.ids = []partition.RequestID{{}} // no loss this time
	n.mu.Unlock()
	if _, err := r.Write(ctx, 0, create, replicators.AckDefault, partition.RequestID{}); err != nil {
		t.Fatal(err)
	}
	if got := n.take(); len(got) != 2 || got[1].Client != ids[0].Client || got[1].Seq != 2 {
		t.Fatalf("next write's id: %v, want %s seq 2", got[1:], ids[0].Client)
	}
	// A client's own id is sent as it is.
	own := partition.RequestID{Client: "app", Seq: 41}
	if _, err := r.Write(ctx, 0, create, replicators.AckDefault, own); err != nil {
		t.Fatal(err)
	}
	if got := n.take(); len(got) != 2 || got[0] != own || got[1] != own {
		t.Fatalf("request ids: %v, want %v twice", got, own)
	}
}

// Concurrent writes never share a client id.
func TestRouterSessionsOneWriteAtATime(t *testing.T) {
	s := newSessions()
	a, ida := s.take()
	b, idb := s.take()
	if ida.Client == idb.Client {
		t.Fatalf("two writes in flight share client id %s", ida.Client)
	}
	s.put(a)
	if _, id := s.take(); id.Client != ida.Client || id.Seq != 2 {
		t.Fatalf("a returned session: %v, want %s seq 2", id, ida.Client)
	}
	s.put(b)
}
