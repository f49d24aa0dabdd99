package datadir

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/plugdb/plugdb/core/config"
)

var rowfile = config.Plugin{Plugin: "rowfile", Mode: "process", Options: map[string]string{"sync": "batch"}}

// names lists a folder's entries.
func names(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func TestPrepareCreatesAndRecords(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "plugdb-data")
	before := time.Now().Add(-time.Second)
	if err := Prepare(dir, rowfile, 2); err != nil {
		t.Fatal(err)
	}
	if got := names(t, dir); !reflect.DeepEqual(got, []string{RecordFile}) {
		t.Fatalf("data folder holds %v, want only %s (no temporary file left)", got, RecordFile)
	}
	st, err := os.Stat(filepath.Join(dir, RecordFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("record mode %v, want 0644", st.Mode().Perm())
	}
	rec, err := Meta(dir)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Format != Format || rec.Engine != "rowfile" || !reflect.DeepEqual(rec.Options, rowfile.Options) ||
		rec.Created.Before(before) || rec.Created.After(time.Now()) {
		t.Fatalf("record = %+v", rec)
	}
	// The file is plain JSON a person can read.
	b, _ := os.ReadFile(filepath.Join(dir, RecordFile))
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil || m["engine"] != "rowfile" {
		t.Fatalf("plugdb.json = %s (%v)", b, err)
	}

	// Same engine again, other non-decisive options: accepted, record unchanged.
	other := rowfile
	other.Options = map[string]string{"sync": "always", "index": "btree"}
	other.Mode = "inprocess"
	if err := Prepare(dir, other, 2); err != nil {
		t.Fatalf("same engine, other options: %v", err)
	}
	again, err := Meta(dir)
	if err != nil || !reflect.DeepEqual(again, rec) {
		t.Fatalf("record changed: %+v, %v", again, err)
	}
}

func TestPrepareEmptyExistingFolder(t *testing.T) {
	dir := t.TempDir()
	if err := Prepare(dir, config.Plugin{Plugin: "memory"}, 2); err != nil {
		t.Fatal(err)
	}
	if rec, err := Meta(dir); err != nil || rec.Engine != "memory" || rec.Options != nil {
		t.Fatalf("record = %+v, %v", rec, err)
	}
}

func TestPrepareRefusesOtherEngine(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "plugdb-data")
	if err := Prepare(dir, rowfile, 2); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, RecordFile))
	err := Prepare(dir, config.Plugin{Plugin: "memory"}, 2)
	want := `data folder ` + dir + ` was created by engine "rowfile"; this config uses engine "memory": use a new data folder (--data DIR) or the original engine`
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v\nwant    %s", err, want)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, RecordFile)); string(after) != string(b) {
		t.Fatal("a refused Prepare changed the record")
	}

	// And the other way round, with a plugin binary.
	dir2 := t.TempDir()
	if err := Prepare(dir2, config.Plugin{Plugin: "memory"}, 2); err != nil {
		t.Fatal(err)
	}
	err = Prepare(dir2, config.Plugin{Plugin: "./bin/myengine"}, 2)
	want = `data folder ` + dir2 + ` was created by engine "memory"; this config uses engine "./bin/myengine": use a new data folder (--data DIR) or the original engine`
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v\nwant    %s", err, want)
	}
}

func TestPrepareBinaryByPath(t *testing.T) {
	dir := t.TempDir()
	rel := "./bin/../bin/myengine"
	abs, err := filepath.Abs(rel)
	if err != nil {
		t.Fatal(err)
	}
	if err := Prepare(dir, config.Plugin{Plugin: rel}, 2); err != nil {
		t.Fatal(err)
	}
	rec, err := Meta(dir)
	if err != nil || rec.Engine != abs {
		t.Fatalf("record engine = %q (%v), want %q", rec.Engine, err, abs)
	}
	// The same binary by another spelling of its path.
	if err := Prepare(dir, config.Plugin{Plugin: abs}, 2); err != nil {
		t.Fatalf("same binary by absolute path: %v", err)
	}
	// Another binary.
	err = Prepare(dir, config.Plugin{Plugin: "/opt/otherengine"}, 2)
	if err == nil || !strings.Contains(err.Error(), `was created by engine "`+abs+`"; this config uses engine "/opt/otherengine"`) {
		t.Fatalf("error = %v", err)
	}
	// A bundled engine whose name is the binary's base name is another engine.
	if err := Prepare(dir, config.Plugin{Plugin: "myengine"}, 2); err == nil {
		t.Fatal("bundled name accepted on a folder made by a binary")
	}
}

func TestPrepareRefusesForeignFolder(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "p0"), 0o755); err != nil {
		t.Fatal(err)
	}
	err := Prepare(dir, rowfile, 2)
	want := `data folder ` + dir + ` is not empty (it holds p0) and has no plugdb.json, so plugdb did not create it: use a new or empty data folder (--data DIR)`
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v\nwant    %s", err, want)
	}
	if _, err := os.Stat(filepath.Join(dir, RecordFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("a refused Prepare wrote a record")
	}

	// A file where the folder should be.
	f := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	err = Prepare(f, rowfile, 2)
	if err == nil || err.Error() != `data folder `+f+` is not a folder: use a new data folder (--data DIR)` {
		t.Fatalf("error = %v", err)
	}

	if err := Prepare("", rowfile, 2); err == nil || !strings.Contains(err.Error(), "no folder given") {
		t.Fatalf("empty dir: %v", err)
	}
	if err := Prepare(t.TempDir(), config.Plugin{}, 2); err == nil || !strings.Contains(err.Error(), "no engine plugin given") {
		t.Fatalf("empty plugin: %v", err)
	}
}

// TestPrepareAfterInterruptedWrite: a temporary file left by a crash before the
// rename does not count as content and is cleaned up.
func TestPrepareAfterInterruptedWrite(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, tempPrefix+"123")
	if err := os.WriteFile(stale, []byte(`{"format":1,"eng`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Meta(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Meta with only a temporary file: %v", err)
	}
	if err := Prepare(dir, rowfile, 2); err != nil {
		t.Fatal(err)
	}
	if got := names(t, dir); !reflect.DeepEqual(got, []string{RecordFile}) {
		t.Fatalf("data folder holds %v", got)
	}
}

// TestWriteReplacesAtomically: writing over an existing record replaces it whole
// and leaves no temporary file.
func TestWriteReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	if err := write(dir, Record{Format: 1, Engine: "rowfile"}); err != nil {
		t.Fatal(err)
	}
	if err := write(dir, Record{Format: 1, Engine: "memory"}); err != nil {
		t.Fatal(err)
	}
	rec, err := Meta(dir)
	if err != nil || rec.Engine != "memory" {
		t.Fatalf("record = %+v, %v", rec, err)
	}
	if got := names(t, dir); !reflect.DeepEqual(got, []string{RecordFile}) {
		t.Fatalf("data folder holds %v", got)
	}
}

// TestWriteFailureLeavesNothing: when the record cannot be written, neither a
// partial plugdb.json nor a temporary file is left.
func TestWriteFailureLeavesNothing(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root writes to read-only folders")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(dir, 0o755) })
	err := Prepare(dir, rowfile, 2)
	if err == nil || !strings.Contains(err.Error(), "data folder "+dir+": writing plugdb.json: ") {
		t.Fatalf("error = %v", err)
	}
	if got := names(t, dir); len(got) != 0 {
		t.Fatalf("data folder holds %v", got)
	}
}

func TestMetaErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := Meta(dir)
	if !errors.Is(err, fs.ErrNotExist) || err.Error() != "data folder "+dir+" has no plugdb.json: file does not exist" {
		t.Fatalf("no record: %v", err)
	}

	tests := []struct{ name, text, want string }{
		{"not json", "{not json", "plugdb.json is damaged (invalid character"},
		{"no engine", `{"format":1}`, "plugdb.json is damaged (no format or engine): restore it or use a new data folder (--data DIR)"},
		{"newer", `{"format":2,"engine":"rowfile"}`, "plugdb.json has format 2, newer than this plugdb's 1: use a newer plugdb"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, RecordFile)
			if err := os.WriteFile(path, []byte(tt.text), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Meta(dir)
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Meta: %v, want %q", err, tt.want)
			}
			// Prepare refuses too, and leaves the file alone.
			if err := Prepare(dir, rowfile, 2); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Prepare: %v", err)
			}
			if b, _ := os.ReadFile(path); string(b) != tt.text {
				t.Fatal("Prepare overwrote a damaged record")
			}
		})
	}
}

func TestPartitionDir(t *testing.T) {
	if got := PartitionDir("./plugdb-data", 0); got != "plugdb-data/p0" {
		t.Errorf("PartitionDir(./plugdb-data, 0) = %s", got)
	}
	if got := PartitionDir("/data", 12); got != "/data/p12" {
		t.Errorf("PartitionDir(/data, 12) = %s", got)
	}
}

// TestWriteRenameFailureLeavesNoTemp: a write that fails at the rename (here:
// plugdb.json is a non-empty folder) leaves no temporary file; this runs as root too.
func TestWriteRenameFailureLeavesNoTemp(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, RecordFile, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	err := write(dir, Record{Format: 1, Engine: "rowfile"})
	if err == nil || !strings.Contains(err.Error(), "data folder "+dir+": writing plugdb.json: ") {
		t.Fatalf("error = %v", err)
	}
	if got := names(t, dir); !reflect.DeepEqual(got, []string{RecordFile}) {
		t.Fatalf("data folder holds %v", got)
	}
}

func TestRefusesAnotherPartitionCount(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := Prepare(dir, config.Plugin{Plugin: "rowfile"}, 2); err != nil {
		t.Fatal(err)
	}
	if rec, err := Meta(dir); err != nil || rec.Partitions != 2 {
		t.Fatalf("record %+v, %v: want partitions 2", rec, err)
	}
	err := Prepare(dir, config.Plugin{Plugin: "rowfile"}, 3)
	want := "was created with 2 partitions; this config has partitions: 3"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("prepare with 3 partitions: %v, want %q", err, want)
	}
	if err := Prepare(dir, config.Plugin{Plugin: "rowfile"}, 2); err != nil {
		t.Fatalf("same count again: %v", err)
	}
}

func TestCheckPartitionerRecordsAndRefusesAnother(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := Prepare(dir, config.Plugin{Plugin: "rowfile"}, 2); err != nil {
		t.Fatal(err)
	}
	ring := config.Plugin{Plugin: "ring", Options: map[string]string{"vnodes": "512"}}
	if err := CheckPartitioner(dir, ring); err != nil {
		t.Fatalf("first use: %v", err)
	}
	rec, err := Meta(dir)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Partitioner != "ring" || rec.PartitionerOptions["vnodes"] != "512" {
		t.Fatalf("record %+v: want partitioner ring {vnodes: 512}", rec)
	}
	if err := CheckPartitioner(dir, ring); err != nil {
		t.Fatalf("same partitioner again: %v", err)
	}
	err = CheckPartitioner(dir, config.Plugin{Plugin: "hash"})
	if err == nil || !strings.Contains(err.Error(), `partitioned by partitioner "ring"`) || !strings.Contains(err.Error(), `"hash"`) {
		t.Fatalf("another partitioner: got %v, want a refusal naming ring and hash", err)
	}
	err = CheckPartitioner(dir, config.Plugin{Plugin: "ring", Options: map[string]string{"vnodes": "64"}})
	if err == nil || !strings.Contains(err.Error(), "{vnodes: 512}") || !strings.Contains(err.Error(), "{vnodes: 64}") {
		t.Fatalf("other options: got %v, want a refusal naming both", err)
	}
}

func TestCheckPartitionerAdoptsAnOldRecord(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if err := Prepare(dir, config.Plugin{Plugin: "rowfile"}, 2); err != nil {
		t.Fatal(err)
	}
	// Prepare writes no partitioner, as records before them did.
	if rec, err := Meta(dir); err != nil || rec.Partitioner != "" {
		t.Fatalf("record %+v, %v: want no partitioner", rec, err)
	}
	if err := CheckPartitioner(dir, config.Plugin{Plugin: "hash"}); err != nil {
		t.Fatal(err)
	}
	if err := CheckPartitioner(dir, config.Plugin{Plugin: "ring"}); err == nil {
		t.Fatal("ring after hash was recorded: want a refusal")
	}
}

// TestPrepareBesideOtherKeyspaces: a data folder whose only content is the
// other keyspaces' folders (made first by their nodes) is still taken.
func TestPrepareBesideOtherKeyspaces(t *testing.T) {
	dir := t.TempDir()
	ks := filepath.Join(dir, KeyspacesDir, "events")
	if err := Prepare(ks, rowfile, 3); err != nil {
		t.Fatal(err)
	}
	if err := Prepare(dir, rowfile, 2); err != nil {
		t.Fatalf("default keyspace beside keyspaces/: %v", err)
	}
	for d, n := range map[string]int{dir: 2, ks: 3} {
		if rec, err := Meta(d); err != nil || rec.Partitions != n {
			t.Fatalf("%s: record %+v, %v", d, rec, err)
		}
	}
	// A file named keyspaces is not a keyspaces folder.
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, KeyspacesDir), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Prepare(other, rowfile, 2); err == nil || !strings.Contains(err.Error(), "is not empty (it holds keyspaces)") {
		t.Fatalf("file named keyspaces: %v", err)
	}
}
