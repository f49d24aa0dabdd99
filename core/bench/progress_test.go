package bench

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestProgressPlainLines(t *testing.T) {
	var b bytes.Buffer
	p := NewProgressPrinter(&b, false, "A")
	p.Config("engine-bbolt")
	p.Show(Progress{Phase: PhaseStart, Elapsed: 200 * time.Millisecond})
	p.Show(Progress{Phase: PhaseStart, Elapsed: 400 * time.Millisecond}) // within a second: not shown
	p.Show(Progress{Phase: PhaseStart, Elapsed: 1200 * time.Millisecond, Final: true})
	p.Show(Progress{Phase: "load", Done: 5000, Total: 10000, Elapsed: 2 * time.Second})
	p.Show(Progress{Phase: "load", Done: 10000, Total: 10000, Elapsed: 3 * time.Second, Final: true})
	p.Show(Progress{Phase: "workload", Done: 43210, Elapsed: 4 * time.Second, Limit: 10 * time.Second})
	want := []string{
		"bench engine-bbolt: start: waiting until the system is ready, 0.2s",
		"bench engine-bbolt: start: ready in 1.2s",
		"bench engine-bbolt: load 5000/10000 keys, 2,500 ops/s",
		"bench engine-bbolt: load 10000/10000 keys, 3,333 ops/s",
		"bench engine-bbolt: workload A 4.0s/10.0s, 43,210 ops, 10,802 ops/s",
	}
	if got := strings.Split(strings.TrimSpace(b.String()), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("lines:\n%s\nwant:\n%s", b.String(), strings.Join(want, "\n"))
	}
}

func TestProgressBars(t *testing.T) {
	var b bytes.Buffer
	p := NewProgressPrinter(&b, true, "C")
	p.Config("memory")
	p.Show(Progress{Phase: PhaseStart, Elapsed: time.Second, Final: true})
	p.Show(Progress{Phase: "load", Done: 50, Total: 100, Elapsed: time.Second})
	p.Show(Progress{Phase: "load", Done: 100, Total: 100, Elapsed: 2 * time.Second, Final: true})
	p.Show(Progress{Phase: "workload", Done: 10, Total: 10, Elapsed: time.Second, Final: true})
	out := b.String()
	for _, s := range []string{"memory start: ready in 1.0s", "100%", "load 100/100 keys", "workload C 10/10 ops"} {
		if !strings.Contains(out, s) {
			t.Errorf("bar output lacks %q:\n%q", s, out)
		}
	}
	if strings.Count(out, "\n") < 3 {
		t.Errorf("want a line per phase:\n%q", out)
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 4321: "4,321", 1234567: "1,234,567", -12345: "-12,345"} {
		if got := Thousands(n); got != want {
			t.Errorf("Thousands(%d) = %q, want %q", n, got, want)
		}
	}
}
