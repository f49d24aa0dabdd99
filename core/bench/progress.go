package bench

import (
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
)

// PhaseStart is the phase of starting a system and waiting until it is ready,
// shown before the runner's "load" and "workload".
const PhaseStart = "start"

// ProgressPrinter shows how far each phase of each config has got: on a
// terminal, a progress bar per phase (github.com/schollz/progressbar); else a
// plain line at most once a second and one at each phase's end, such as
// "bench engine-bbolt: load 5000/10000 keys, 4,321 ops/s". Safe for concurrent
// use.
type ProgressPrinter struct {
	w        io.Writer
	terminal bool
	workload string

	mu     sync.Mutex
	config string
	phase  string
	bar    *progressbar.ProgressBar
	last   time.Time
}

// NewProgressPrinter returns a printer writing to w, with bars when terminal.
// workload names the workload in its lines.
func NewProgressPrinter(w io.Writer, terminal bool, workload string) *ProgressPrinter {
	return &ProgressPrinter{w: w, terminal: terminal, workload: workload}
}

// Config starts the lines of the next config, named name.
func (p *ProgressPrinter) Config(name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.config, p.phase, p.bar = name, "", nil
}

// Show shows pr, a phase's progress (start, load or workload).
func (p *ProgressPrinter) Show(pr Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pr.Phase != p.phase {
		p.endBar()
		p.phase, p.last = pr.Phase, time.Time{}
	}
	text := p.describe(pr)
	if !p.terminal {
		if pr.Final || time.Since(p.last) >= time.Second {
			fmt.Fprintf(p.w, "bench %s: %s\n", p.config, text)
			p.last = time.Now()
		}
		return
	}
	desc := p.config + " " + text
	if p.bar == nil {
		p.bar = p.newBar(pr, desc)
	} else {
		p.bar.Describe(desc)
	}
	switch {
	case pr.Phase == PhaseStart:
		_ = p.bar.Add(1) // a spinner
	case pr.Total > 0:
		_ = p.bar.Set64(min(pr.Done, pr.Total))
	default:
		_ = p.bar.Set64(min(pr.Elapsed.Milliseconds(), pr.Limit.Milliseconds()))
	}
	if pr.Final {
		p.endBar()
	}
}

func (p *ProgressPrinter) newBar(pr Progress, desc string) *progressbar.ProgressBar {
	max := int64(-1) // start: a spinner
	switch {
	case pr.Phase == PhaseStart:
	case pr.Total > 0:
		max = pr.Total
	default:
		max = pr.Limit.Milliseconds()
	}
	return progressbar.NewOptions64(max,
		progressbar.OptionSetWriter(p.w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionShowDescriptionAtLineEnd(),
	)
}

// endBar ends the current bar's line.
func (p *ProgressPrinter) endBar() {
	if p.bar != nil {
		_ = p.bar.Finish()
		fmt.Fprintln(p.w)
		p.bar = nil
	}
}

// describe is pr in words: "load 5000/10000 keys, 4,321 ops/s".
func (p *ProgressPrinter) describe(pr Progress) string {
	secs := func(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s" }
	switch pr.Phase {
	case PhaseStart:
		if pr.Final {
			return "start: ready in " + secs(pr.Elapsed)
		}
		return "start: waiting until the system is ready, " + secs(pr.Elapsed)
	case "load":
		return fmt.Sprintf("load %d/%d keys, %s ops/s", pr.Done, pr.Total, Thousands(int64(pr.Rate())))
	case PhaseWarmup:
		return fmt.Sprintf("warm-up %s/%s, %s reads (not measured)", secs(pr.Elapsed), secs(pr.Limit), Thousands(pr.Done))
	}
	if pr.Total > 0 {
		return fmt.Sprintf("workload %s %d/%d ops, %s ops/s", p.workload, pr.Done, pr.Total, Thousands(int64(pr.Rate())))
	}
	return fmt.Sprintf("workload %s %s/%s, %s ops, %s ops/s", p.workload, secs(pr.Elapsed), secs(pr.Limit),
		Thousands(pr.Done), Thousands(int64(pr.Rate())))
}

// Thousands formats n with a comma between groups of three digits: 4,321.
func Thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}
