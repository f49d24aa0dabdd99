package plugins

import (
	"bytes"
	"encoding/binary"
	"errors"
	"reflect"
	"testing"

	"github.com/plugdb/plugdb/engines"
)

func TestMutationsRoundTrip(t *testing.T) {
	big := bytes.Repeat([]byte("v"), 20000) // a length of 3 varint bytes
	for _, batch := range [][]engines.Mutation{
		nil,
		{{Op: engines.OpPut, Key: []byte("k"), Value: []byte("v"), LSN: 1}},
		{
			{Op: engines.OpPut, Key: []byte("a"), Value: big, LSN: 1 << 40},
			{Op: engines.OpDelete, Key: []byte("b"), LSN: 1<<64 - 1},
			{Op: engines.OpPut, Key: []byte("c")}, // empty value, LSN 0
			{Op: 0xff, Key: bytes.Repeat([]byte("k"), 200), Value: []byte{0}},
		},
	} {
		packed := appendMutations(nil, batch)
		if len(packed) != mutationsSize(batch) {
			t.Fatalf("packed %d bytes, mutationsSize says %d", len(packed), mutationsSize(batch))
		}
		got, err := decodeMutations(packed)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(batch) {
			t.Fatalf("decoded %d mutations, want %d", len(got), len(batch))
		}
		for i, m := range got {
			if m.Op != batch[i].Op || m.LSN != batch[i].LSN || !bytes.Equal(m.Key, batch[i].Key) || !bytes.Equal(m.Value, batch[i].Value) {
				t.Fatalf("mutation %d: got %+v, want %+v", i, m, batch[i])
			}
			if cap(m.Key) != len(m.Key) || cap(m.Value) != len(m.Value) {
				t.Fatalf("mutation %d: sub-slices not capped: key %d/%d value %d/%d", i, len(m.Key), cap(m.Key), len(m.Value), cap(m.Value))
			}
		}
	}
}

func TestMutationsMalformed(t *testing.T) {
	good := appendMutations(nil, []engines.Mutation{{Op: engines.OpPut, Key: []byte("key"), Value: []byte("value"), LSN: 7}})
	cases := map[string][]byte{
		"empty":        nil,
		"trailing":     append(bytes.Clone(good), 0),
		"huge count":   binary.AppendUvarint(nil, 1<<62),
		"count beyond": append(binary.AppendUvarint(nil, 2), good[1:]...),
	}
	for i := 1; i < len(good); i++ {
		cases["truncated at "+string(rune('0'+i))] = good[:i]
	}
	for name, b := range cases {
		if _, err := decodeMutations(b); !errors.Is(err, engines.ErrInvalidArgument) {
			t.Errorf("%s: err %v, want ErrInvalidArgument", name, err)
		}
	}
}

// FuzzDecodeMutations: decoding never panics, and what decodes re-encodes to
// the same bytes.
func FuzzDecodeMutations(f *testing.F) {
	f.Add(appendMutations(nil, []engines.Mutation{{Op: engines.OpPut, Key: []byte("k"), Value: []byte("v"), LSN: 3}}))
	f.Add(appendMutations(nil, []engines.Mutation{{Op: engines.OpDelete, Key: []byte("k")}, {Op: engines.OpPut, Key: []byte("x"), LSN: 1 << 50}}))
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, b []byte) {
		batch, err := decodeMutations(b)
		if err != nil {
			return
		}
		// Varints have more than one encoding; compare what they decode to.
		again, err := decodeMutations(appendMutations(nil, batch))
		if err != nil {
			t.Fatalf("re-encoded batch does not decode: %v", err)
		}
		norm := func(ms []engines.Mutation) []engines.Mutation {
			for i := range ms {
				if len(ms[i].Key) == 0 {
					ms[i].Key = nil
				}
				if len(ms[i].Value) == 0 {
					ms[i].Value = nil
				}
			}
			return ms
		}
		if !reflect.DeepEqual(norm(batch), norm(again)) {
			t.Fatalf("round trip changed the batch:\n%+v\n%+v", batch, again)
		}
	})
}

func TestResultsRoundTrip(t *testing.T) {
	rs := []callResult{
		{id: 1, row: engines.Row{Key: []byte("k1"), Value: []byte("v1"), LSN: 9}},
		{id: 2}, // an apply
		{id: 3},
		{id: 4, row: engines.Row{Key: []byte("k4"), LSN: 1}}, // empty value
	}
	rs[2].setErr(engines.ErrNotFound)
	results, err := unpackResults(packResults([][]callResult{rs}), nil)
	if err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	for _, r := range results {
		ids = append(ids, r.id)
	}
	if !reflect.DeepEqual(ids, []uint64{1, 2, 3, 4}) {
		t.Fatalf("ids %v", ids)
	}
	if r := results[0]; r.err != nil || string(r.row.Key) != "k1" || string(r.row.Value) != "v1" || r.row.LSN != 9 {
		t.Fatalf("result 1: %+v", r)
	}
	if r := results[1]; r.err != nil || r.row.Key != nil || r.row.Value != nil {
		t.Fatalf("result 2: %+v", r)
	}
	if r := results[2]; !errors.Is(r.err, engines.ErrNotFound) {
		t.Fatalf("result 3: %+v", r)
	}
	if r := results[3]; r.err != nil || string(r.row.Key) != "k4" || len(r.row.Value) != 0 || r.row.LSN != 1 {
		t.Fatalf("result 4: %+v", r)
	}
	batch := packResults([][]callResult{rs[:2], rs[2:]})
	batch.Messages = nil
	if _, err := unpackResults(batch, nil); err == nil {
		t.Fatal("a result batch missing its error message unpacked")
	}
}
