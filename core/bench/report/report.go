// Package report writes what `plugdb bench --report` writes: one
// self-contained HTML file with the run's settings, its table and five charts
// (workload and load throughput, latency percentiles, keys per partition, keys
// moved on growth) drawn as inline SVG. The file has no script and loads nothing, so it opens
// offline and renders the same in any browser.
package report

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"

	"github.com/plugdb/plugdb/core/bench"
)

// Charts returns, in a fresh slice, the data-chart names of the report's
// charts, in page order; each chart is an <svg> inside a
// <figure data-chart="NAME">.
func Charts() []string {
	return []string{"throughput", "load-throughput", "latency", "partition-keys", "keys-moved"}
}

// WriteHTML writes r as an HTML page to w.
func WriteHTML(w io.Writer, r bench.Report) error {
	head, cells, failed := bench.Table(r)
	var measured []bench.Row
	for _, row := range r.Rows {
		if row.Error == "" {
			measured = append(measured, row)
		}
	}
	page := pageData{
		Title:    "plugdb bench: workload " + r.Settings.Workload,
		Settings: settingsLine(r.Settings),
		Rows:     r.Rows,
		Head:     head,
		Cells:    cells,
		Failed:   failed,
		Charts: []chartData{
			throughputChart(measured),
			loadChart(measured),
			latencyChart(measured),
			partitionKeysChart(measured),
			keysMovedChart(measured),
		},
	}
	if err := pageTemplate.Execute(w, page); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

type pageData struct {
	Title, Settings string
	Rows            []bench.Row
	Head            []string
	Cells           [][]string
	Failed          []bench.Row
	Charts          []chartData
}

type chartData struct {
	Name, Title, Note string
	SVG               template.HTML // built by barChart, every text in it escaped
}

func settingsLine(s bench.Settings) string {
	parts := []string{
		"workload " + s.Workload, s.Distribution + " keys",
		bench.Thousands(int64(s.Keys)) + " keys loaded", fmt.Sprintf("%d-byte values", s.ValueSize),
		fmt.Sprintf("%d clients", s.Clients),
	}
	if s.WarmupS > 0 {
		parts = append(parts, fmt.Sprintf("%gs warm-up", s.WarmupS))
	}
	if s.LoadBatch > 1 {
		parts = append(parts, fmt.Sprintf("loaded in batches of %d", s.LoadBatch))
	}
	if s.Ops > 0 {
		parts = append(parts, bench.Thousands(s.Ops)+" operations")
	} else if s.DurationS > 0 {
		parts = append(parts, fmt.Sprintf("%gs per config", s.DurationS))
	}
	if s.Host != "" {
		parts = append(parts, fmt.Sprintf("on %s (%d CPUs)", s.Host, s.CPUs))
	}
	if s.Started != "" {
		parts = append(parts, "started "+s.Started)
	}
	return strings.Join(parts, " · ")
}

func throughputChart(rows []bench.Row) chartData {
	groups := make([]group, len(rows))
	for i, row := range rows {
		groups[i] = group{Label: row.Config, Values: []float64{row.ThroughputOps}}
	}
	return chartData{
		Name: "throughput", Title: "Workload throughput (operations per second, higher is better)",
		SVG: barChart("throughput", []string{"workload " + workloadOf(rows)}, groups, linearAxis, thousands),
	}
}

func loadChart(rows []bench.Row) chartData {
	groups := make([]group, len(rows))
	for i, row := range rows {
		groups[i] = group{Label: row.Config, Values: []float64{row.LoadThroughputOps}}
	}
	return chartData{
		Name: "load-throughput", Title: "Load throughput (keys inserted per second before the workload, higher is better)",
		SVG: barChart("load-throughput", []string{"load"}, groups, linearAxis, thousands),
	}
}

func workloadOf(rows []bench.Row) string {
	if len(rows) == 0 {
		return ""
	}
	return rows[0].Workload
}

func latencyChart(rows []bench.Row) chartData {
	groups := make([]group, len(rows))
	for i, row := range rows {
		groups[i] = group{Label: row.Config, Values: []float64{row.P50US, row.P99US, row.P999US}}
	}
	return chartData{
		Name: "latency", Title: "Latency of all operations (µs, log scale, lower is better)",
		SVG: barChart("latency", []string{"p50", "p99", "p999"}, groups, logAxis, func(v float64) string { return thousands(v) + " µs" }),
	}
}

func partitionKeysChart(rows []bench.Row) chartData {
	most := 0
	for _, row := range rows {
		most = max(most, len(row.PartitionKeys))
	}
	series := make([]string, most)
	for i := range series {
		series[i] = fmt.Sprintf("partition %d", i)
	}
	groups := make([]group, len(rows))
	for i, row := range rows {
		v := make([]float64, most)
		for p := range v {
			v[p] = math.NaN()
			if p < len(row.PartitionKeys) {
				v[p] = float64(row.PartitionKeys[p])
			}
		}
		groups[i] = group{Label: row.Config, Values: v}
	}
	return chartData{
		Name: "partition-keys", Title: "Live keys per partition (even bars are an even load)",
		SVG: barChart("partition-keys", series, groups, linearAxis, thousands),
	}
}

func keysMovedChart(rows []bench.Row) chartData {
	groups := make([]group, len(rows))
	for i, row := range rows {
		groups[i] = group{Label: fmt.Sprintf("%s (%d→%d)", row.Config, row.Partitions, row.Partitions+1), Values: []float64{100 * row.KeysMoved}}
	}
	return chartData{
		Name: "keys-moved", Title: "Keys that move when a partition is added (%, lower is better)",
		Note: "Computed through each config's partitioner on the loaded keys.",
		SVG:  barChart("keys-moved", []string{"keys moved"}, groups, percentAxis, func(v float64) string { return fmt.Sprintf("%.1f%%", v) }),
	}
}

func thousands(v float64) string { return bench.Thousands(int64(math.Round(v))) }

var pageTemplate = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{.Title}}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 28px 0 8px; }
p.settings { color: #555; margin: 0 0 16px; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; white-space: nowrap; }
th { background: #f4f4f4; }
td.failed { color: #b00020; }
div.wide { overflow-x: auto; }
figure { margin: 0 0 24px; }
figcaption { font-weight: 600; margin-bottom: 4px; }
.note { color: #555; font-size: 12px; }
svg text { font: 12px system-ui, sans-serif; fill: #222; }
svg .grid { stroke: #e4e4e4; }
</style>
</head>
<body>
<h1>{{.Title}}</h1>
<p class="settings">{{.Settings}}</p>
<h2>Configs</h2>
<table class="configs">
<tr><th>config</th><th>file</th><th>system</th><th>partitions</th><th>engine</th><th>partitioner</th><th>replicator</th></tr>
{{range .Rows}}<tr><td>{{.Config}}</td><td>{{.ConfigFile}}</td><td>{{.System}}</td><td>{{.Partitions}}</td><td>{{.Engine}}</td><td>{{.Partitioner}}</td><td>{{.Replicator}}</td></tr>
{{end}}</table>
<h2>Figures</h2>
<div class="wide"><table class="figures">
<tr>{{range .Head}}<th>{{.}}</th>{{end}}</tr>
{{range .Cells}}<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>
{{end}}</table></div>
{{range .Failed}}<p class="note failed">{{.Config}}: not measured: {{.Error}}</p>
{{end}}
{{range .Charts}}<h2>{{.Title}}</h2>
<figure data-chart="{{.Name}}">
{{.SVG}}
{{if .Note}}<figcaption class="note">{{.Note}}</figcaption>{{end}}
</figure>
{{end}}</body>
</html>
`))
