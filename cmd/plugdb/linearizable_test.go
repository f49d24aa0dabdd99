package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
)

// A linearizability check of the cluster under leader kills: clients
// through the router run puts, strong gets, creates and deletes on a few
// keys while the leader is killed and restarted; porcupine checks the history
// against a key-value model.

// kvInput is one operation on a key.
type kvInput struct {
	op    string // get, put, create, delete
	key   string
	value string // put, create
}

// kvOutput is what the client saw. kind is ok, notfound, exists or
// unknown (the outcome is unknown: the write may or may not have happened).
type kvOutput struct {
	kind  string
	value string // get ok
}

// kvState is one key's state.
type kvState struct {
	exists bool
	value  string
}

// kvModel is a key-value register per key: the history is partitioned by key.
var kvModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(kvInput).key
			byKey[k] = append(byKey[k], op)
		}
		keys := make([]string, 0, len(byKey))
		for k := range byKey {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return kvState{} },
	Step: func(state, input, output any) (bool, any) {
		s, in, out := state.(kvState), input.(kvInput), output.(kvOutput)
		switch in.op {
		case "get":
			switch out.kind {
			case "ok":
				return s.exists && s.value == out.value, s
			case "notfound":
				return !s.exists, s
			}
			return true, s // unknown: no constraint
		case "put":
			// ok, or unknown: an unknown write that did not happen is
			// linearized at the end (its return), where nothing sees it.
			return true, kvState{exists: true, value: in.value}
		case "create":
			switch out.kind {
			case "ok":
				return !s.exists, kvState{exists: true, value: in.value}
			case "exists":
				return s.exists, s
			case "unknown":
				if !s.exists {
					return true, kvState{exists: true, value: in.value}
				}
				return true, s
			}
		case "delete":
			switch out.kind {
			case "ok":
				return s.exists, kvState{}
			case "notfound":
				return !s.exists, s
			case "unknown":
				return true, kvState{}
			}
		}
		return false, s
	},
	DescribeOperation: func(input, output any) string {
		in, out := input.(kvInput), output.(kvOutput)
		switch in.op {
		case "get":
			if out.kind == "ok" {
				return fmt.Sprintf("get(%s) -> %s", in.key, out.value)
			}
			return fmt.Sprintf("get(%s) -> %s", in.key, out.kind)
		case "delete":
			return fmt.Sprintf("delete(%s) -> %s", in.key, out.kind)
		}
		return fmt.Sprintf("%s(%s, %s) -> %s", in.op, in.key, in.value, out.kind)
	},
	DescribeState: func(state any) string {
		s := state.(kvState)
		if !s.exists {
			return "(absent)"
		}
		return s.value
	},
}

// linHistory records operations with their call and return times.
type linHistory struct {
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
	// unknown writes get their return time at the end of the test
	open   []int
	counts map[string]int
}

func (h *linHistory) count(what string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.counts == nil {
		h.counts = map[string]int{}
	}
	h.counts[what]++
}

func (h *linHistory) summary() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var s []string
	for k, n := range h.counts {
		s = append(s, fmt.Sprintf("%s: %d", k, n))
	}
	sort.Strings(s)
	return s
}

func (h *linHistory) now() int64 { return time.Since(h.start).Nanoseconds() }

func (h *linHistory) add(client int, in kvInput, call int64, out kvOutput) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if out.kind == "unknown" && in.op == "get" {
		return // a read without an answer constrains nothing
	}
	op := porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: h.now()}
	if out.kind == "unknown" {
		h.open = append(h.open, len(h.ops))
	}
	h.ops = append(h.ops, op)
}

// finish closes the unknown operations at end and returns the history.
func (h *linHistory) finish() []porcupine.Operation {
	h.mu.Lock()
	defer h.mu.Unlock()
	end := h.now()
	for _, i := range h.open {
		h.ops[i].Return = end
	}
	return h.ops
}

// outcome maps a client's result to the model's output.
func outcome(err error) kvOutput {
	switch status.Code(err) {
	case codes.OK:
		return kvOutput{kind: "ok"}
	case codes.NotFound:
		return kvOutput{kind: "notfound"}
	case codes.AlreadyExists:
		return kvOutput{kind: "exists"}
	}
	return kvOutput{kind: "unknown"}
}

// runLinClient runs random operations through the router (kv) until stop.
func runLinClient(kv plugdbv1.KVClient, h *linHistory, id int, keys []string, stop <-chan struct{}) {
	rng := rand.New(rand.NewPCG(uint64(id), uint64(time.Now().UnixNano())))
	for i := 0; i < 100_000; i++ {
		select {
		case <-stop:
			return
		default:
		}
		key := keys[rng.IntN(len(keys))]
		in := randomKVInput(rng, key, id, i)
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
		call := h.now()
		var out kvOutput
		var err error
		switch in.op {
		case "get":
			var resp *plugdbv1.GetResponse
			resp, err = kv.Get(ctx, &plugdbv1.GetRequest{Key: []byte(key), Consistency: plugdbv1.Consistency_CONSISTENCY_STRONG})
			out = outcome(err)
			if err == nil {
				out.value = string(resp.GetValue())
			}
		case "put":
			_, err = kv.Put(ctx, &plugdbv1.PutRequest{Key: []byte(key), Value: []byte(in.value)})
			out = outcome(err)
		case "create":
			_, err = kv.Create(ctx, &plugdbv1.PutRequest{Key: []byte(key), Value: []byte(in.value)})
			out = outcome(err)
		case "delete":
			_, err = kv.Delete(ctx, &plugdbv1.DeleteRequest{Key: []byte(key)})
			out = outcome(err)
		}
		cancel()
		h.add(id, in, call, out)
		h.count(in.op + " " + out.kind)
		time.Sleep(time.Duration(2+rng.IntN(6)) * time.Millisecond) // not a synchronisation: the client's think time
	}
}

// TestLinearizableUnderLeaderKills checks with porcupine that a history of
// puts, strong gets, creates and deletes through the router, on 5 keys from
// 8 clients, stays linearizable across leader kills (kill -9, restart,
// rejoin), with ack semi-sync and sync. Long failover series: make test-long.
func TestLinearizableUnderLeaderKills(t *testing.T) {
	requireLong(t)
	duration, kills := 20*time.Second, 3
	if testing.Short() {
		duration, kills = 8*time.Second, 1
	}
	for _, ack := range []string{"semi-sync", "sync"} {
		t.Run(ack, func(t *testing.T) {
			c := newReplicatedCluster(t, 1, 2, statementRepl(ack))
			keys := []string{"lin-a", "lin-b", "lin-c", "lin-d", "lin-e"}
			h := &linHistory{start: time.Now()}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var stopOnce sync.Once
			halt := func() {
				stopOnce.Do(func() { close(stop) })
				wg.Wait()
			}
			t.Cleanup(halt) // if the test ends early
			for id := range 8 {
				wg.Go(func() { runLinClient(c.kv, h, id, keys, stop) })
			}
			begin := time.Now()
			for i := range kills {
				// Kill at evenly spread points of the run.
				at := begin.Add(time.Duration(i+1) * duration / time.Duration(kills+1))
				time.Sleep(time.Until(at)) // not a synchronisation: the fault injection's planned moment
				k := c.killLeaderAndRejoin(0)
				t.Logf("kill %d at +%v: %s (epoch %d) killed; %s leads epoch %d after %v; rejoined after %v",
					i+1, time.Since(begin).Round(100*time.Millisecond), k.old, k.oldEpoch, k.leader, k.epoch, k.failover.Round(time.Millisecond), k.rejoined.Round(time.Millisecond))
			}
			// Operations go on for a while after the last rejoin. Not a
			// synchronisation: the history's planned length.
			time.Sleep(max(time.Until(begin.Add(duration)), 2*time.Second))
			halt()
			ops := h.finish()
			summary := h.summary()
			t.Logf("ack %s: %d operations by 8 clients on %d keys in %v with %d leader kills (%d with unknown outcome): %v",
				ack, len(ops), len(keys), time.Since(begin).Round(time.Second), kills, len(h.open), summary)
			checkHistory(t, ack, ops, c.logs)
		})
	}
}

// checkHistory checks ops with porcupine and fails the test, keeping the
// history and its visualization in a temporary folder, if it is not
// linearizable; logs gives the processes' logs.
func checkHistory(t *testing.T, name string, ops []porcupine.Operation, logs func() string) {
	t.Helper()
	checkStart := time.Now()
	res, info := porcupine.CheckOperationsVerbose(kvModel, ops, 60*time.Second)
	t.Logf("porcupine: %s in %v", res, time.Since(checkStart).Round(time.Millisecond))
	switch res {
	case porcupine.Illegal:
		// Kept after the test, for a look in a browser.
		path := "(none)"
		if dir, err := os.MkdirTemp("", "plugdb-linearizability-"); err == nil {
			path = filepath.Join(dir, "history-"+name+".html")
			if err := porcupine.VisualizePath(kvModel, info, path); err != nil {
				t.Logf("visualize: %v", err)
			}
			var b strings.Builder
			for _, op := range ops {
				in, out := op.Input.(kvInput), op.Output.(kvOutput)
				fmt.Fprintf(&b, "%d %d %d %s %s %s %s %s\n", op.ClientId, op.Call, op.Return, in.op, in.key, in.value, out.kind, out.value)
			}
			_ = os.WriteFile(filepath.Join(dir, "history-"+name+".txt"), []byte(b.String()), 0o644)
		}
		t.Fatalf("%s: the history is not linearizable; visualization in %s\n%s", name, path, logs())
	case porcupine.Unknown:
		t.Logf("%s: porcupine did not decide within its timeout", name)
	}
}

// randomKVInput is client id's i-th operation on key: 40% gets, 30% puts,
// 15% creates, 15% deletes, each value naming its client and operation.
func randomKVInput(rng *rand.Rand, key string, id, i int) kvInput {
	in := kvInput{key: key}
	switch r := rng.IntN(100); {
	case r < 40:
		in.op = "get"
	case r < 70:
		in.op = "put"
	case r < 85:
		in.op = "create"
	default:
		in.op = "delete"
	}
	if in.op == "put" || in.op == "create" {
		in.value = fmt.Sprintf("c%d-%d", id, i)
	}
	return in
}
