package keyrange

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/plugdb/plugdb/partitioners"
)

func TestFormatSplitsRoundTrips(t *testing.T) {
	points := [][]byte{{0x00, 'x'}, []byte("a,b"), []byte("c%d"), []byte("user8"), {0xff}}
	text := FormatSplits(points)
	if text != "%00x,a%2Cb,c%25d,user8,%FF" {
		t.Errorf("FormatSplits = %q", text)
	}
	got, err := ParseSplits(text, len(points)+1)
	if err != nil {
		t.Fatal(err)
	}
	for i := range points {
		if !bytes.Equal(got[i], points[i]) {
			t.Errorf("point %d: %q after the round trip, want %q", i, got[i], points[i])
		}
	}
}

// Growing cuts the fullest range at its median: about half of its keys move
// (all to the new partition after it), no other key moves.
func TestSplitFullestMovesHalfOfTheFullestRange(t *testing.T) {
	ctx := context.Background()
	keys := make([][]byte, 30000)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "user%04x", i*2) // 0x0000..0xea5e: "user0…" to "usere…"
	}
	points := [][]byte{[]byte("user4"), []byte("userc")} // the middle range holds most
	grown, fullest := SplitFullest(points, keys)
	if fullest != 1 || len(grown) != 3 || !bytes.Equal(grown[0], points[0]) || !bytes.Equal(grown[2], points[1]) {
		t.Fatalf("grown splits %q: want the middle range cut", grown)
	}
	open := func(splits [][]byte) partitioners.Partitioner {
		p := &Partitioner{}
		if err := p.Configure(ctx, len(splits)+1, map[string]string{OptionSplits: FormatSplits(splits)}); err != nil {
			t.Fatal(err)
		}
		return p
	}
	before, after := open(points), open(grown)
	moved, err := partitioners.MovedRenumbered(ctx, before, after, keys, Renumber(fullest))
	if err != nil {
		t.Fatal(err)
	}
	a, b := make([]int, len(keys)), make([]int, len(keys))
	_ = before.Locate(ctx, keys, a)
	_ = after.Locate(ctx, keys, b)
	middle := 0
	for i := range keys {
		if a[i] == 1 {
			middle++
		}
		switch {
		case a[i] == 2 && b[i] != 3:
			t.Fatalf("key %s of the top range went to %d, want 3 (renumbered, not moved)", keys[i], b[i])
		case a[i] != 2 && a[i] != b[i] && b[i] != 2:
			t.Fatalf("key %s moved from %d to %d, want only moves to the new partition 2", keys[i], a[i], b[i])
		}
	}
	if want := middle / 2; moved < want-1 || moved > want+1 {
		t.Errorf("moved %d keys, want half of the middle range's %d", moved, middle)
	}
}

func TestSplitFullestNeedsTwoKeys(t *testing.T) {
	if got, _ := SplitFullest([][]byte{[]byte("m")}, [][]byte{[]byte("a"), []byte("a")}); got != nil {
		t.Errorf("one distinct key: got %q, want nil", got)
	}
}
