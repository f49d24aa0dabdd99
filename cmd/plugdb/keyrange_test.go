package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
)

// End-to-end tests of the range partitioner: real router, node and plugin
// processes; which partitions a scan reached is read from the scans_served
// counter each replica reports in its status.

// rangeKeys are the keys the tests load, 20 in each of the ranges of the
// split points "g,n": a… in partition 0, h… in 1, p… in 2.
func rangeKeys() []string {
	var keys []string
	for _, prefix := range []string{"a:", "h:", "p:"} {
		for i := range 20 {
			keys = append(keys, fmt.Sprintf("%s%02d", prefix, i))
		}
	}
	return keys
}

// scansByAddr returns each replica's scans_served by address, and the
// partition of each address, from a status.
func scansByAddr(st *plugdbv1.StatusResponse) (map[string]uint64, map[string]int) {
	scans, part := map[string]uint64{}, map[string]int{}
	for _, p := range st.GetPartitions() {
		for _, r := range p.GetReplicas() {
			scans[r.GetAddr()] = r.GetScansServed()
			part[r.GetAddr()] = int(p.GetPartition())
		}
	}
	return scans, part
}

// scanKeys scans [start, end) through kv and returns the keys, checking each value.
func scanKeys(t *testing.T, kv plugdbv1.KVClient, start, end string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := kv.Scan(ctx, &plugdbv1.ScanRequest{Start: []byte(start), End: []byte(end)})
	if err != nil {
		t.Fatalf("scan [%q, %q): %v", start, end, err)
	}
	var keys []string
	for {
		row, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return keys
		}
		if err != nil {
			t.Fatalf("scan [%q, %q): %v", start, end, err)
		}
		if string(row.GetValue()) != "v-"+string(row.GetKey()) {
			t.Fatalf("scan: key %q has value %q", row.GetKey(), row.GetValue())
		}
		keys = append(keys, string(row.GetKey()))
	}
}

// keysIn returns the keys of rangeKeys in [start, end), in order.
func keysIn(start, end string) []string {
	var in []string
	for _, k := range rangeKeys() {
		if k >= start && (end == "" || k < end) {
			in = append(in, k)
		}
	}
	return in
}

// checkScanTouches scans [start, end), checks the rows are exactly those of
// rangeKeys in the range, in key order, and that the scan reached the
// replicas of the partitions in want and no other replica (one scan each).
func checkScanTouches(t *testing.T, kv plugdbv1.KVClient, status func() *plugdbv1.StatusResponse, start, end string, want []int) {
	t.Helper()
	before, _ := scansByAddr(status())
	got := scanKeys(t, kv, start, end)
	if wantKeys := keysIn(start, end); !slices.Equal(got, wantKeys) {
		t.Errorf("scan [%q, %q): %d keys %q, want %d keys %q", start, end, len(got), got, len(wantKeys), wantKeys)
	}
	after, part := scansByAddr(status())
	touched := map[int]bool{}
	for addr, n := range after {
		delta := n - before[addr]
		switch {
		case slices.Contains(want, part[addr]) && delta != 1:
			t.Errorf("scan [%q, %q): replica %s of partition %d served %d scans, want 1", start, end, addr, part[addr], delta)
		case !slices.Contains(want, part[addr]) && delta != 0:
			t.Errorf("scan [%q, %q): replica %s of partition %d served %d scans, want 0 (the range is not in it)", start, end, addr, part[addr], delta)
		}
		if delta > 0 {
			touched[part[addr]] = true
		}
	}
	t.Logf("scan [%q, %q): %d rows from partitions %v", start, end, len(got), slices.Sorted(func(yield func(int) bool) {
		for p := range touched {
			if !yield(p) {
				return
			}
		}
	}))
}

// loadRangeKeys writes rangeKeys through put and checks the partition each
// landed in, when want is set.
func loadRangeKeys(t *testing.T, kv plugdbv1.KVClient, want func(key string) int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, k := range rangeKeys() {
		resp, err := kv.Put(ctx, &plugdbv1.PutRequest{Key: []byte(k), Value: []byte("v-" + k)})
		if err != nil {
			t.Fatalf("put %s: %v", k, err)
		}
		if want != nil && int(resp.GetPartition()) != want(k) {
			t.Errorf("put %s: partition %d, want %d", k, resp.GetPartition(), want(k))
		}
	}
}

// rangePartition is the partition of a rangeKeys key under splits "g,n".
func rangePartition(key string) int {
	switch {
	case key < "g":
		return 0
	case key < "n":
		return 1
	}
	return 2
}

func TestClusterRangePartitionerScansOnlyTheirPartitions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, partitioner string
		want              func(key string) int // nil: any partition
		one, two          []int                // partitions of a scan inside one range, across two
	}{
		{"range", "{plugin: range, options: {splits: 'g,n'}}", rangePartition, []int{1}, []int{0, 1}},
		{"hash", "{plugin: hash}", nil, []int{0, 1, 2}, []int{0, 1, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := startCluster(t, 3, 1, tc.partitioner, "{plugin: none}")
			status := func() *plugdbv1.StatusResponse {
				st, err := c.status()
				if err != nil {
					t.Fatalf("status: %v\n%s", err, c.logs())
				}
				return st
			}
			if _, part := scansByAddr(status()); len(part) != 3 {
				t.Fatalf("status lists replicas %v, want 3 nodes", part)
			}
			loadRangeKeys(t, c.kv, tc.want)
			checkScanTouches(t, c.kv, status, "h:", "h;", tc.one)     // inside partition 1's range
			checkScanTouches(t, c.kv, status, "a:10", "h:10", tc.two) // across 0 and 1, merged in order
			checkScanTouches(t, c.kv, status, "", "", []int{0, 1, 2}) // everything
			if tc.name != "range" {
				return
			}
			checkScanTouches(t, c.kv, status, "h:05", "", []int{1, 2}) // unbounded end
			checkScanTouches(t, c.kv, status, "", "b", []int{0})       // unbounded start
			checkScanTouches(t, c.kv, status, "n", "o", []int{2})      // no key there, still one partition
			// plugdb status shows the counters: partitions 0, 1, 2 took part in 3, 4 and 3 of the 6 scans.
			res := runPlugdb(t, 30*time.Second, "status", "--addr", c.grpc, "-o", "json")
			var st statusJSON
			if err := json.Unmarshal([]byte(res.stdout), &st); res.code != 0 || err != nil {
				t.Fatalf("plugdb status -o json: %v\n%s", err, res)
			}
			for _, p := range st.Partitions {
				if len(p.Replicas) != 1 || p.Replicas[0].ScansServed != []uint64{3, 4, 3}[p.Partition] {
					t.Errorf("plugdb status: partition %d replicas %+v, want one that served %d scans", p.Partition, p.Replicas, []uint64{3, 4, 3}[p.Partition])
				}
			}
			if res := runPlugdb(t, 30*time.Second, "status", "--addr", c.grpc); res.code != 0 || !strings.Contains(res.stdout, "SCANS") {
				t.Errorf("plugdb status: no SCANS column\n%s", res)
			}
		})
	}
}

// plugdb dev, where the router and the partitions share one process, prunes
// the same way.
func TestDevRangePartitionerScansOnlyTheirPartitions(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "plugdb.yaml")
	if err := os.WriteFile(cfg, []byte("partitions: 3\npartitioner: {plugin: range, options: {splits: 'g,n'}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := startDev(t, filepath.Join(t.TempDir(), "data"), nil, "--config", cfg)
	kv := plugdbv1.NewKVClient(dial(t, d.grpcAddr))
	// In dev every partition reports the one address: count by partition.
	status := func() *plugdbv1.StatusResponse {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := kv.Status(ctx, &plugdbv1.StatusRequest{})
		if err != nil {
			t.Fatalf("status: %v", err)
		}
		for _, p := range st.GetPartitions() {
			for _, r := range p.GetReplicas() {
				r.Addr = fmt.Sprintf("partition %d", p.GetPartition())
			}
		}
		return st
	}
	if got := status().GetPartitioner().GetPlugin(); got != "range" {
		t.Fatalf("status: partitioner %q, want range", got)
	}
	loadRangeKeys(t, kv, rangePartition)
	checkScanTouches(t, kv, status, "h:", "h;", []int{1})
	checkScanTouches(t, kv, status, "a:10", "h:10", []int{0, 1})
	checkScanTouches(t, kv, status, "h:05", "", []int{1, 2})
	d.stop(t, 1)
}
