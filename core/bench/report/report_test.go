package report

import (
	"bytes"
	"context"
	"image/color"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plugdb/plugdb/core/bench"
	"github.com/plugdb/plugdb/core/bench/report/headless"
)

// sample is a report of two measured configs (2 and 3 partitions) and one
// that failed.
func sample() bench.Report {
	op := func(p50 float64) bench.OpStats {
		return bench.OpStats{Count: 1000, MeanUS: p50 * 1.2, P50US: p50, P99US: p50 * 8, P999US: p50 * 30, MaxUS: p50 * 50}
	}
	return bench.Report{
		Settings: bench.Settings{Workload: "A", Distribution: "uniform", Keys: 10000, ValueSize: 100, Clients: 8, Ops: 2000, Started: "2026-12-04T20:00:00Z", Host: "h", CPUs: 2},
		Rows: []bench.Row{
			{Config: "engine-<rowfile>", ConfigFile: "a.yaml", Engine: "rowfile (process)", Partitioner: "hash (process)", Replicator: "none", System: "dev", Partitions: 2, Workload: "A",
				LoadOps: 10000, LoadThroughputOps: 9000, Operations: 2000, ThroughputOps: 6000, P50US: 900, P99US: 7000, P999US: 20000,
				Ops: map[string]bench.OpStats{"read": op(800), "update": op(1000)}, BytesOnDisk: 3 << 20, LogicalBytes: 1 << 20, SpaceAmplification: 3,
				PartitionKeys: []int64{5000, 5000}, PartitionSkew: 1, KeysMoved: 0.666},
			{Config: "engine-memory", ConfigFile: "b.yaml", Engine: "memory (process)", Partitioner: "ring (process)", Replicator: "none", System: "dev", Partitions: 3, Workload: "A",
				LoadOps: 10000, LoadThroughputOps: 12000, Operations: 2000, ThroughputOps: 8000, P50US: 700, P99US: 5000, P999US: 9000,
				Ops: map[string]bench.OpStats{"read": op(600), "update": op(800)}, PartitionKeys: []int64{3300, 3400, 3300}, PartitionSkew: 1.02, KeysMoved: 0.25},
			{Config: "engine-broken", ConfigFile: "c.yaml", Engine: "nosuch (process)", Error: "dev exited before it was ready"},
		},
	}
}

// wantBars checks the chart of each name and its bar count: a bar per
// measured config and series (partition-keys: per partition).
func wantBars(t *testing.T, doc string) {
	t.Helper()
	perChart, err := Bars(doc)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"throughput": 2, "load-throughput": 2, "latency": 2 * 3, "partition-keys": 2 + 3, "keys-moved": 2}
	if len(perChart) != len(Charts()) {
		t.Errorf("charts %v, want %v", perChart, Charts())
	}
	for _, name := range Charts() {
		if n, ok := perChart[name]; n != want[name] || !ok {
			t.Errorf("chart %s: %d bars (present %v), want %d", name, n, ok, want[name])
		}
	}
}

func TestWriteHTML(t *testing.T) {
	var b bytes.Buffer
	if err := WriteHTML(&b, sample()); err != nil {
		t.Fatal(err)
	}
	doc := b.String()
	wantBars(t, doc)
	for _, s := range []string{"engine-&lt;rowfile&gt;", "engine-broken: not measured: dev exited before it was ready", "6,000", "66.6% (2→3)", "rowfile (process)", "10,000 keys loaded"} {
		if !strings.Contains(doc, s) {
			t.Errorf("report lacks %q", s)
		}
	}
	// Self-contained: nothing to fetch, nothing to run.
	for _, s := range []string{"<script", "src=", "href=", "<link", "@import", "url("} {
		if strings.Contains(doc, s) {
			t.Errorf("report has %q: it must load nothing", s)
		}
	}
	if strings.Contains(doc, "engine-<rowfile>") {
		t.Error("a config name reached the page unescaped")
	}
}

func TestWriteHTMLNoMeasuredRows(t *testing.T) {
	r := sample()
	r.Rows = r.Rows[2:]
	var b bytes.Buffer
	if err := WriteHTML(&b, r); err != nil {
		t.Fatal(err)
	}
	perChart, err := Bars(b.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range Charts() {
		if n, ok := perChart[name]; !ok || n != 0 {
			t.Errorf("chart %s: %d bars (present %v), want an empty chart", name, n, ok)
		}
	}
}

// TestRenderInChromium loads the report in headless Chromium: the DOM it
// builds has every chart with its bars, and the screenshot is not blank and
// shows the bars' colours. PLUGDB_REPORT_SCREENSHOT=FILE keeps the picture.
func TestRenderInChromium(t *testing.T) {
	browser, err := headless.Find()
	if err != nil {
		t.Fatalf("%v (make test-deps installs Debian's chromium)", err)
	}
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	var b bytes.Buffer
	if err := WriteHTML(&b, sample()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(page, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dom, err := browser.DumpDOM(ctx, page)
	if err != nil {
		t.Fatal(err)
	}
	wantBars(t, dom)

	shot := filepath.Join(dir, "report.png")
	if err := browser.Screenshot(ctx, page, shot, 1100, 1800); err != nil {
		t.Fatal(err)
	}
	if keep := os.Getenv("PLUGDB_REPORT_SCREENSHOT"); keep != "" {
		data, _ := os.ReadFile(shot)
		if err := os.WriteFile(keep, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	WantPainted(t, shot)
}

// WantPainted fails t unless the PNG at path has a share of non-white pixels
// and pixels of the first two series colours.
func WantPainted(t *testing.T, path string) {
	t.Helper()
	inked, counts, err := headless.Ink(path, color.RGBA{0x4e, 0x79, 0xa7, 0xff}, color.RGBA{0xf2, 0x8e, 0x2b, 0xff})
	if err != nil {
		t.Fatal(err)
	}
	if inked < 0.02 {
		t.Errorf("screenshot is %.1f%% non-white: blank?", 100*inked)
	}
	if counts[0] < 200 || counts[1] < 200 {
		t.Errorf("screenshot has %d pixels of the first series colour and %d of the second: bars not drawn?", counts[0], counts[1])
	}
}
