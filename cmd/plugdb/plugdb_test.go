package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/plugdb/plugdb/core/zkserver/zktest"
	"github.com/plugdb/plugdb/plugins"
)

// End-to-end tests of the real binary: TestMain builds plugdb and the example
// custom engine once, and the tests run them as a user would.
//
// The end-to-end tests that take seconds call t.Parallel(): each has its own
// free 127.0.0.1 ports (testutil), temp folders, processes and ZooKeeper
// root znode (the clusters share one ZooKeeper, zktest.Shared; a test that
// stops ZooKeeper starts its own), so they do not meet. A test stays serial
// when it sets the environment (t.Setenv), or when it is in the long
// failover series (requireLong), whose reported failover times should not
// share the cores with other tests.

var (
	plugdbBin string // the built plugdb
	customBin string // the built examples/customengine
)

// longFlag runs the long failover series: the tests that call requireLong.
// `make test` leaves them out to stay within 5 minutes on 2 cores; `make
// test-long` runs them (go test ./cmd/plugdb -long), and CI's .ci/run runs
// both targets.
var longFlag = flag.Bool("long", false, "also run the long failover series (make test-long): "+strings.Join(longTests, ", "))

// longTests are the tests of the long failover series, for -long's help and
// the Makefile's test-long -run pattern (TestLongTestsListed keeps the two in step).
var longTests = []string{
	"TestFailoverLosesNoAcknowledgedWrite",
	"TestLinearizableUnderLeaderKills",
	"TestClusterFailoverTimes",
	"TestNemesis",
	"TestReshardSeries",
	"TestReshardSurvivesKills",
	"TestReshardSurvivesNetworkFaults",
	"TestClusterReshardSurvivesLeaderKills",
}

// requireLong skips t unless -long was given: t is one of longTests, a
// repeated-failover test that takes 30 s to 1.5 min.
func requireLong(t *testing.T) {
	t.Helper()
	if !*longFlag {
		t.Skip("long failover series: run by make test-long (go test ./cmd/plugdb -long), which CI runs after make test")
	}
}

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	flag.Parse()
	setParallel()
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	bin, err := os.MkdirTemp("", "plugdb-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(bin)
	plugdbBin = filepath.Join(bin, "plugdb")
	customBin = filepath.Join(bin, "customengine")
	for _, b := range []struct{ out, pkg string }{{plugdbBin, "./cmd/plugdb"}, {customBin, "./examples/customengine"}} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", b.out, b.pkg)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			fmt.Fprintf(os.Stderr, "go build -o %s %s: %v\n%s", b.out, b.pkg, err, out)
			return 1
		}
	}
	return zktest.Run(m) // m.Run, then stops the shared ZooKeeper of the clusters
}

// e2eParallel is how many parallel end-to-end tests run at once unless
// -test.parallel says otherwise: they spend most of their time waiting on
// child processes, ZooKeeper sessions and the network, so twice the cores
// keep a 2-core machine busy without starving the tests' timeouts.
func e2eParallel() int { return 2 * runtime.GOMAXPROCS(0) }

// setParallel sets -test.parallel to e2eParallel when the command line did
// not set it.
func setParallel() {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		_ = flag.Set("test.parallel", strconv.Itoa(e2eParallel()))
	}
}

// moduleRoot walks up from the working directory to the folder holding go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the test's working directory")
		}
		dir = parent
	}
}

// runResult is what one run of the binary did.
type runResult struct {
	code           int
	stdout, stderr string
}

func (r runResult) String() string {
	return fmt.Sprintf("exit %d\n--- stdout:\n%s--- stderr:\n%s", r.code, r.stdout, r.stderr)
}

// lastLine returns the last non-empty line of stdout.
func (r runResult) lastLine() string {
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	return lines[len(lines)-1]
}

// runPlugdb runs the built plugdb with args, without go-plugin's magic cookie in
// its environment (as a user runs it), and fails the test if it outlives timeout.
func runPlugdb(t *testing.T, timeout time.Duration, args ...string) runResult {
	t.Helper()
	return runPlugdbEnv(t, timeout, nil, args...)
}

// runPlugdbEnv is runPlugdb with env (KEY=VALUE) added to the environment.
func runPlugdbEnv(t *testing.T, timeout time.Duration, env []string, args ...string) runResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, plugdbBin, args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, plugins.Handshake.MagicCookieKey+"=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.Dir = t.TempDir()
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	res := runResult{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String()}
	if ctx.Err() != nil {
		t.Fatalf("plugdb %s: still running after %v\n%s", strings.Join(args, " "), timeout, res)
	}
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("plugdb %s: %v\n%s", strings.Join(args, " "), err, res)
	}
	t.Logf("plugdb %s: exit %d in %v", strings.Join(args, " "), res.code, time.Since(start).Round(time.Millisecond))
	return res
}

var summaryLine = regexp.MustCompile(`^(\d+) passed, 0 failed(, (\d+) skipped)?$`)

func TestPluginCheckPasses(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, plugin string }{
		{"rowfile", "rowfile"},
		{"memory", "memory"},
		{"bbolt", "bbolt"},
		{"pebble", "pebble"},
		{"customengine", customBin},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := runPlugdb(t, 5*time.Minute, "plugin", "check", tc.plugin)
			if res.code != 0 {
				t.Fatalf("plugdb plugin check %s: want exit 0\n%s", tc.plugin, res)
			}
			last := res.lastLine()
			m := summaryLine.FindStringSubmatch(last)
			if m == nil {
				t.Fatalf("last line %q, want %q\n%s", last, summaryLine, res)
			}
			if passed, _ := strconv.Atoi(m[1]); passed == 0 {
				t.Fatalf("no case passed: %q", last)
			}
			t.Logf("%s: %s", tc.name, last)
		})
	}
}

func TestPluginCheckRefusesWhatItCannotLoad(t *testing.T) {
	if _, err := os.Stat("/bin/true"); err != nil {
		t.Skip("/bin/true not present")
	}
	for _, tc := range []struct {
		name, plugin string
		want         []string
	}{
		{"missing binary", "/no/such", []string{`"/no/such": plugin binary not found`}},
		{"not a plugin", "/bin/true", []string{"/bin/true is not a plugdb plugin"}},
		{"unknown bundled name", "nosuch", []string{`"nosuch": no such bundled engine`, "bbolt, memory, pebble, rowfile"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := runPlugdb(t, time.Minute, "plugin", "check", tc.plugin)
			if res.code != 2 {
				t.Fatalf("plugdb plugin check %s: want exit 2\n%s", tc.plugin, res)
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

func TestDemoKeepsRowsAcrossRuns(t *testing.T) {
	data := t.TempDir()
	first := runPlugdb(t, 2*time.Minute, "demo", "--data", data)
	if first.code != 0 {
		t.Fatalf("first demo run\n%s", first)
	}
	if strings.Contains(first.stdout, "found earlier rows") {
		t.Fatalf("first run on an empty folder found earlier rows\n%s", first)
	}
	if !strings.Contains(first.stdout, "get greeting -> \"hello from plugdb\"") {
		t.Errorf("first run did not read its row back\n%s", first)
	}
	second := runPlugdb(t, 2*time.Minute, "demo", "--data", data)
	if second.code != 0 {
		t.Fatalf("second demo run\n%s", second)
	}
	if !strings.Contains(second.stdout, "found earlier rows: applied lsn 4") {
		t.Fatalf("second run does not report the first run's rows (want \"found earlier rows: applied lsn 4\")\n%s", second)
	}
}

func TestPluginServeByHandExits(t *testing.T) {
	res := runPlugdb(t, time.Minute, "plugin", "serve", "engine", "rowfile")
	if res.code == 0 {
		t.Fatalf("plugin serve run by hand exited 0\n%s", res)
	}
	if strings.TrimSpace(res.stdout+res.stderr) == "" {
		t.Fatalf("plugin serve run by hand said nothing\n%s", res)
	}
	t.Logf("plugin serve by hand: %s", strings.TrimSpace(res.stdout+res.stderr))
}

// TestLongTestsListed keeps the long failover series in step: the Makefile's
// LONG_TESTS (test-long's -run pattern) names exactly longTests, and each of
// them starts with requireLong, so that every test `make test` skips is run
// by `make test-long`.
func TestLongTestsListed(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^LONG_TESTS\s*:=\s*(\S+)\s*$`).FindSubmatch(mk)
	if m == nil {
		t.Fatal("the Makefile has no LONG_TESTS := line")
	}
	if got, want := string(m[1]), strings.Join(longTests, "|"); got != want {
		t.Errorf("Makefile LONG_TESTS = %s, want %s (longTests)", got, want)
	}
	files, err := filepath.Glob("*_test.go")
	if err != nil {
		t.Fatal(err)
	}
	var src strings.Builder
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src.Write(b)
	}
	all := src.String()
	for _, name := range longTests {
		if !strings.Contains(all, "func "+name+"(t *testing.T) {\n\trequireLong(t)\n") {
			t.Errorf("%s is in longTests but does not start with requireLong(t)", name)
		}
	}
	if n := strings.Count(all, "\trequireLong(t)\n"); n != len(longTests) {
		t.Errorf("%d tests call requireLong, %d are in longTests", n, len(longTests))
	}
}
