package main

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestPluginCheckReplicators(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"none by name", []string{"none"}},
		{"none inprocess", []string{"none", "--mode", "inprocess"}},
		{"none with --kind", []string{"--kind", "replicator", "none"}},
		{"statement as a plugin", []string{"statement"}},
		{"statement inprocess", []string{"statement", "--mode", "inprocess"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"plugin", "check"}, tc.args...)
			res := runPlugdb(t, 5*time.Minute, args...)
			if res.code != 0 {
				t.Fatalf("plugdb %s: want exit 0\n%s", strings.Join(args, " "), res)
			}
			m := summaryLine.FindStringSubmatch(res.lastLine())
			if m == nil {
				t.Fatalf("last line %q, want %q\n%s", res.lastLine(), summaryLine, res)
			}
			passed, _ := strconv.Atoi(m[1])
			skipped, _ := strconv.Atoi(m[3])
			// none makes no copies: it skips the four cases that need two
			// replicas; statement runs them all.
			wantSkipped := 4
			if tc.args[0] == "statement" {
				wantSkipped = 0
			}
			if passed < 10 || skipped != wantSkipped {
				t.Fatalf("last line %q: want at least 10 passed and %d skipped\n%s", res.lastLine(), wantSkipped, res)
			}
			for _, c := range []string{"ParseAck", "MalformedStatements", "Closed", "CopiesInOrder"} {
				if !strings.Contains(res.stdout, ": "+c+" (") {
					t.Errorf("no line for case %s\n%s", c, res)
				}
			}
		})
	}
}

func TestPluginCheckReplicatorRefusals(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"an engine as replicator", []string{"--kind", "replicator", customBin}, []string{"is not a replicator plugin"}},
		{"engine name as replicator", []string{"--kind", "replicator", "memory"}, []string{`replicator.plugin "memory": no such bundled replicator (bundled: `, "none"}},
		{"replicator name as engine", []string{"--kind", "engine", "none"}, []string{`engine.plugin "none": no such bundled engine`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"plugin", "check"}, tc.args...)
			res := runPlugdb(t, time.Minute, args...)
			if res.code != 2 {
				t.Fatalf("plugdb %s: want exit 2\n%s", strings.Join(args, " "), res)
			}
			for _, w := range tc.want {
				if !strings.Contains(res.stderr, w) {
					t.Errorf("stderr does not say %q\n%s", w, res)
				}
			}
			if strings.Contains(res.stdout, "passed") {
				t.Errorf("ran cases although the plugin cannot be loaded\n%s", res)
			}
		})
	}
}

func TestPluginServeReplicatorByHandExits(t *testing.T) {
	res := runPlugdb(t, time.Minute, "plugin", "serve", "replicator", "none")
	if res.code == 0 || strings.TrimSpace(res.stdout+res.stderr) == "" {
		t.Fatalf("plugin serve replicator run by hand: want a message and a non-zero exit\n%s", res)
	}
	res = runPlugdb(t, time.Minute, "plugin", "serve", "replicator", "raft")
	if res.code != 2 || !strings.Contains(res.stderr, `no bundled replicator "raft" (bundled: `) {
		t.Fatalf("plugin serve of an unknown replicator\n%s", res)
	}
}
