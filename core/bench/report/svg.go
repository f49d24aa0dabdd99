package report

import (
	"fmt"
	"html/template"
	"math"
	"strings"
)

// group is one config's bars: a value per series, NaN where it has none.
type group struct {
	Label  string
	Values []float64
}

type axisKind int

const (
	linearAxis  axisKind = iota // 0 to a round maximum
	logAxis                     // powers of ten around the values (latencies)
	percentAxis                 // 0 to 100
)

// palette colours the series (colour-blind friendly, after Tableau 10).
var palette = []string{"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"}

// Geometry of a chart, in SVG user units (pixels at 100%).
const (
	chartWidth = 960
	labelWidth = 240 // config names, left of the bars
	valueWidth = 110 // value labels, right of the longest bar
	barHeight  = 14
	groupGap   = 10
	legendH    = 24
	axisH      = 24
)

// barChart draws groups as horizontal bars, one bar per series in each group,
// on the given axis; format writes a value's label. Every bar is a
// <rect class="bar" data-config=… data-series=…> with a <title>.
func barChart(name string, series []string, groups []group, axis axisKind, format func(float64) string) template.HTML {
	esc := template.HTMLEscapeString
	lo, hi := scale(axis, groups)
	plotW := float64(chartWidth - labelWidth - valueWidth)
	x := func(v float64) float64 {
		if axis == logAxis {
			v = math.Max(v, lo)
			return plotW * (math.Log10(v) - math.Log10(lo)) / (math.Log10(hi) - math.Log10(lo))
		}
		return plotW * (v - lo) / (hi - lo)
	}
	groupH := len(series)*barHeight + groupGap
	height := legendH + len(groups)*groupH + axisH
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" class="chart" data-chart-svg="%s" width="%d" height="%d" viewBox="0 0 %d %d" role="img">`,
		esc(name), chartWidth, height, chartWidth, height)
	b.WriteString(`<rect x="0" y="0" width="100%" height="100%" fill="#fff"/>`)
	// Legend.
	lx := float64(labelWidth)
	for i, s := range series {
		fmt.Fprintf(&b, `<rect x="%.0f" y="4" width="12" height="12" fill="%s"/><text x="%.0f" y="15">%s</text>`, lx, palette[i%len(palette)], lx+16, esc(s))
		lx += 24 + 7*float64(len(s))
	}
	// Grid and ticks.
	top, bottom := float64(legendH), float64(legendH+len(groups)*groupH)
	for _, t := range ticks(axis, lo, hi) {
		tx := labelWidth + x(t)
		fmt.Fprintf(&b, `<line class="grid" x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f"/>`, tx, top, tx, bottom)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle">%s</text>`, tx, bottom+16, esc(format(t)))
	}
	// Bars.
	for g, gr := range groups {
		y := top + float64(g*groupH)
		fmt.Fprintf(&b, `<text x="%d" y="%.0f" text-anchor="end">%s</text>`, labelWidth-8, y+float64(len(series)*barHeight)/2+4, esc(gr.Label))
		for i, v := range gr.Values {
			by := y + float64(i*barHeight)
			if math.IsNaN(v) {
				continue
			}
			w := math.Max(x(v), 1)
			fmt.Fprintf(&b, `<rect class="bar" data-config="%s" data-series="%s" x="%d" y="%.0f" width="%.1f" height="%d" fill="%s"><title>%s %s: %s</title></rect>`,
				esc(gr.Label), esc(series[i]), labelWidth, by, w, barHeight-2, palette[i%len(palette)], esc(gr.Label), esc(series[i]), esc(format(v)))
			fmt.Fprintf(&b, `<text x="%.1f" y="%.0f">%s</text>`, labelWidth+w+4, by+barHeight-3, esc(format(v)))
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // #nosec G203 -- every text above went through HTMLEscapeString
}

// scale returns the axis bounds for the values of groups.
func scale(axis axisKind, groups []group) (lo, hi float64) {
	most, least := 0.0, math.Inf(1)
	for _, g := range groups {
		for _, v := range g.Values {
			if math.IsNaN(v) {
				continue
			}
			most = math.Max(most, v)
			if v > 0 {
				least = math.Min(least, v)
			}
		}
	}
	switch axis {
	case percentAxis:
		return 0, 100
	case logAxis:
		if math.IsInf(least, 1) {
			return 1, 10
		}
		lo = math.Pow(10, math.Floor(math.Log10(least)))
		hi = math.Pow(10, math.Ceil(math.Log10(most)))
		if hi <= lo {
			hi = lo * 10
		}
		return lo, hi
	}
	if most <= 0 {
		return 0, 1
	}
	return 0, roundUp(most)
}

// roundUp rounds v up to a round number for an axis maximum: 1, 1.2, 1.5, 2,
// 2.5, 3, 4, 5, 6 or 8 times a power of ten.
func roundUp(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

// ticks returns the grid lines of an axis from lo to hi.
func ticks(axis axisKind, lo, hi float64) []float64 {
	var out []float64
	if axis == logAxis {
		for t := lo; t <= hi*1.0001; t *= 10 {
			out = append(out, t)
		}
		return out
	}
	step := (hi - lo) / 5
	if axis != percentAxis {
		step = niceCeil(step)
	}
	for t := lo; t <= hi+step/1000; t += step {
		out = append(out, t)
	}
	return out
}
