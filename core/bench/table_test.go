package bench

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestWriteTable(t *testing.T) {
	r := Report{Rows: []Row{
		{Config: "engine-rowfile-hash", System: "dev", Partitions: 2, ThroughputOps: 25311.6, P50US: 300, P99US: 1200, P999US: 4000,
			Ops: map[string]OpStats{
				OpRead:   {Count: 10, P50US: 250, P99US: 900, P999US: 3000},
				OpUpdate: {Count: 10, Errors: 3, P50US: 350, P99US: 1500, P999US: 5000},
			},
			Errors: 3, LoadThroughputOps: 12000, BytesOnDisk: 3 * 1024 * 1024, SpaceAmplification: 1.234,
			PartitionSkew: 1.02, KeysMoved: 0.5012},
		{Config: "replication-sync", System: "cluster", Partitions: 2, ThroughputOps: 800,
			Ops:            map[string]OpStats{OpRead: {Count: 5, P50US: 10}, OpUpdate: {Count: 5, P50US: 20}},
			ReplicationLag: &Lag{Statements: 1234, MS: 56}, PartitionSkew: 1, KeysMoved: 0.3333},
		{Config: "engine-bbolt", Error: "engine.plugin \"bbolt\": not a bundled engine"},
	}}
	var b bytes.Buffer
	if err := WriteTable(&b, r); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	t.Log("\n" + out)
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 5 {
		t.Fatalf("want a header, 3 rows and an error line, got %d lines", len(lines))
	}
	wants := map[int][]string{
		0: {"CONFIG", "OPS/S", "ALL µs p50/p99/p999", "READ µs p50/p99/p999", "UPDATE µs p50/p99/p999", "LOAD OPS/S", "DISK", "SPACE AMP", "LAG", "SKEW", "MOVED N→N+1"},
		1: {"engine-rowfile-hash", "25,312", "300 / 1,200 / 4,000", "250 / 900 / 3,000", "350 / 1,500 / 5,000 (3 errors)", "12,000", "3.0 MiB", "1.23x", "1.02", "50.1% (2→3)"},
		2: {"replication-sync", "cluster", "800", "1,234 stmts / 56 ms", "33.3% (2→3)"},
		3: {"engine-bbolt", "failed"},
		4: {"engine-bbolt: error: engine.plugin \"bbolt\": not a bundled engine"},
	}
	for i, subs := range wants {
		for _, s := range subs {
			if !strings.Contains(lines[i], s) {
				t.Errorf("line %d %q lacks %q", i, lines[i], s)
			}
		}
	}
	// Aligned: the read group starts in the header's column in every row.
	runeIndex := func(l, sub string) int { return utf8.RuneCountInString(l[:strings.Index(l, sub)]) }
	col := runeIndex(lines[0], "READ µs")
	if runeIndex(lines[1], "250 / 900") != col || runeIndex(lines[2], "10 / 0") != col {
		t.Errorf("read columns not aligned under the header:\n%s", out)
	}
	if strings.Contains(lines[2], "SCAN") || strings.Contains(lines[0], "SCAN") {
		t.Error("a column for an operation type no row has")
	}
}

func TestWriteTableOneOpType(t *testing.T) {
	var b bytes.Buffer
	r := Report{Rows: []Row{{Config: "c", Ops: map[string]OpStats{OpRead: {Count: 1}}}}}
	if err := WriteTable(&b, r); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "ALL µs") || !strings.Contains(b.String(), "READ µs") {
		t.Errorf("one operation type: want its group only:\n%s", b.String())
	}
}

func TestBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}
