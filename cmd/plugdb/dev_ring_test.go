package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plugdb/plugdb/internal/testutil"
	"github.com/plugdb/plugdb/partitioners/hash"
	"github.com/plugdb/plugdb/partitioners/ring"
	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
)

// plugdb dev with partitioner ring (as a plugin process, with a vnodes option
// from the config file) places every key where the ring says, serves it back
// through the CLI, says ring in its status, and keeps the rows across a restart.
func TestDevRingPartitioner(t *testing.T) {
	t.Parallel()
	const partitions, vnodes, keys = 4, 512, 60
	cfg := filepath.Join(t.TempDir(), "plugdb.yaml")
	text := fmt.Sprintf("partitions: %d\npartitioner: {plugin: ring, options: {vnodes: \"%d\"}}\n", partitions, vnodes)
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := ring.New(partitions, vnodes)
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(t.TempDir(), "data")
	d := startDev(t, data, nil, "--config", cfg)

	kv := plugdbv1.NewKVClient(dial(t, d.grpcAddr))
	perPartition := map[uint32]int{}
	differsFromHash := 0
	for i := range keys {
		key := fmt.Sprintf("ring:%03d", i)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := kv.Put(ctx, &plugdbv1.PutRequest{Key: []byte(key), Value: []byte("v-" + key)})
		cancel()
		if err != nil {
			t.Fatalf("put %s: %v\n%s", key, err, d.output())
		}
		want := r.Locate([]byte(key))
		if int(resp.GetPartition()) != want {
			t.Errorf("put %s: stored in partition %d, the ring (%d partitions × %d vnodes) says %d", key, resp.GetPartition(), partitions, vnodes, want)
		}
		if want != hash.Locate([]byte(key), partitions) {
			differsFromHash++
		}
		perPartition[resp.GetPartition()]++
	}
	t.Logf("%d keys per partition %v; %d of them placed elsewhere than hash would", keys, perPartition, differsFromHash)
	if len(perPartition) != partitions {
		t.Errorf("%d keys landed on partitions %v, want all %d", keys, perPartition, partitions)
	}
	if differsFromHash == 0 {
		t.Fatalf("every key has the same partition under ring and hash: the test cannot tell them apart")
	}

	wantRun(t, d.cli(t, "get", "ring:007"), 0, "v-ring:007\n", "")
	wantRun(t, d.cli(t, "get", "ring:999"), 1, "", "not found: ring:999\n")
	var scan string
	for i := range keys {
		scan += fmt.Sprintf("ring:%03d\tv-ring:%03d\n", i, i)
	}
	wantRun(t, d.cli(t, "scan", "--prefix", "ring:"), 0, scan, "")

	res := d.cli(t, "status", "-o", "json")
	var st statusJSON
	if err := json.Unmarshal([]byte(res.stdout), &st); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, res)
	}
	if st.Partitioner.Plugin != "ring" || st.Partitioner.Mode != "process" || st.Partitioner.Options["vnodes"] != fmt.Sprint(vnodes) || len(st.Partitions) != partitions {
		t.Errorf("status -o json: want partitioner ring (process, vnodes %d) and %d partitions\n%s", vnodes, partitions, res.stdout)
	}
	res = d.cli(t, "status")
	if res.code != 0 || !strings.Contains(res.stdout, "partitioner=ring (process") {
		t.Errorf("status (text): want partitioner=ring (process…)\n%s", res)
	}
	d.stop(t, partitions+1) // an engine plugin process per partition, and the ring's

	d = startDev(t, data, nil, "--config", cfg)
	wantRun(t, d.cli(t, "get", "ring:042"), 0, "v-ring:042\n", "")
	wantRun(t, d.cli(t, "scan", "--prefix", "ring:"), 0, scan, "")
	d.stop(t, partitions+1)

	// The folder's keys were placed by the ring: hash, or the ring with other
	// vnodes, would look for them elsewhere, so both are refused by name.
	for _, tc := range []struct{ config, want string }{
		{fmt.Sprintf("partitions: %d\n", partitions), `partitioned by partitioner "ring"; this config uses partitioner "hash"`},
		{fmt.Sprintf("partitions: %d\npartitioner: {plugin: ring, options: {vnodes: \"64\"}}\n", partitions), "options {vnodes: 512}; this config gives it {vnodes: 64}"},
	} {
		other := filepath.Join(t.TempDir(), "other.yaml")
		if err := os.WriteFile(other, []byte(tc.config), 0o644); err != nil {
			t.Fatal(err)
		}
		res := runPlugdb(t, 30*time.Second, "dev", "--config", other, "--data", data, "--grpc", testutil.FreeAddr(t), "--http", testutil.FreeAddr(t))
		if res.code == 0 || !strings.Contains(res.stderr, tc.want) {
			t.Errorf("plugdb dev on the ring's folder with %q: want a non-zero exit and %q\n%s", tc.config, tc.want, res)
		}
	}
	d = startDev(t, data, nil, "--config", cfg)
	wantRun(t, d.cli(t, "get", "ring:042"), 0, "v-ring:042\n", "")
	d.stop(t, partitions+1)
}

// A bad vnodes option stops plugdb dev before anything is written, naming the
// option and its allowed values.
func TestDevRingBadVnodes(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "plugdb.yaml")
	if err := os.WriteFile(cfg, []byte("partitioner: {plugin: ring, options: {vnodes: \"0\"}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(t.TempDir(), "data")
	res := runPlugdb(t, 30*time.Second, "dev", "--config", cfg, "--data", data, "--grpc", testutil.FreeAddr(t), "--http", testutil.FreeAddr(t))
	want := `option vnodes: bad value "0": allowed values are 1..4096 (default 1024)`
	if res.code == 0 || !strings.Contains(res.stderr, "plugdb: ") || !strings.Contains(res.stderr, want) {
		t.Errorf("plugdb dev with vnodes 0: want a non-zero exit and %q\n%s", want, res)
	}
	emptyOrAbsent(t, data)
}
