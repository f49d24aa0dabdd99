package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/plugdb/plugdb/internal/testutil"
	"github.com/plugdb/plugdb/plugins"
	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
)

// End-to-end tests of `plugdb dev`: the real binary built by TestMain, on free
// loopback ports and a temp data folder, driven through the CLI, REST and gRPC.

// syncBuffer is a bytes.Buffer safe for the exec copy goroutine and the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// devEnv is the test's environment without go-plugin's cookie and without any
// PLUGDB_ variable, plus extra.
func devEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, plugins.Handshake.MagicCookieKey+"=") || strings.HasPrefix(kv, "PLUGDB_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// devProc is a running `plugdb dev`.
type devProc struct {
	cmd            *exec.Cmd
	grpcAddr, http string
	stdout, stderr *syncBuffer
	done           chan struct{} // closed when Wait returned
	waitErr        error
}

func (d *devProc) output() string {
	return fmt.Sprintf("--- stdout:\n%s--- stderr:\n%s", d.stdout.String(), d.stderr.String())
}

func (d *devProc) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// startDev starts `plugdb dev --data data --grpc … --http …` (plus args) in its
// own process group with env extra, and waits until it prints "ready" and its
// gRPC health service answers SERVING. The process group is killed at cleanup
// if the test did not stop it.
func startDev(t testing.TB, data string, env []string, args ...string) *devProc {
	t.Helper()
	d := &devProc{grpcAddr: testutil.FreeAddr(t), http: testutil.FreeAddr(t), stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	all := append([]string{"dev", "--data", data, "--grpc", d.grpcAddr, "--http", d.http}, args...)
	d.cmd = exec.Command(plugdbBin, all...)
	d.cmd.Env = devEnv(env...)
	d.cmd.Dir = t.TempDir()
	d.cmd.Stdout, d.cmd.Stderr = d.stdout, d.stderr
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	d.cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		d.waitErr = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		if !d.exited() {
			syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
			<-d.done
		}
	})
	ready := func() bool { return strings.Contains("\n"+d.stdout.String(), "\nready") }
	if !testutil.Eventually(t.Context(), 30*time.Second, func() bool { return ready() || d.exited() }) {
		t.Fatalf("plugdb dev not ready after 30s\n%s", d.output())
	}
	if !ready() {
		t.Fatalf("plugdb dev exited before ready: %v\n%s", d.waitErr, d.output())
	}
	conn := dial(t, d.grpcAddr)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health check: %v %v\n%s", resp, err, d.output())
	}
	t.Logf("plugdb dev ready in %v (pid %d, grpc %s, http %s)", time.Since(start).Round(time.Millisecond), d.cmd.Process.Pid, d.grpcAddr, d.http)
	return d
}

// children returns the PIDs of the direct children of pid.
func children(pid int) []int {
	var pids []int
	files, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, s := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(s); err == nil {
				pids = append(pids, n)
			}
		}
	}
	if len(files) == 0 {
		out, _ := exec.Command("pgrep", "-P", strconv.Itoa(pid)).Output()
		for _, s := range strings.Fields(string(out)) {
			if n, err := strconv.Atoi(s); err == nil {
				pids = append(pids, n)
			}
		}
	}
	return pids
}

// running reports whether pid is a live (non-zombie) process, and its command line.
func running(pid int) (bool, string) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false, ""
	}
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	s := string(stat)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && len(s) > i+2 && s[i+2] == 'Z' {
		return false, ""
	}
	return true, strings.ReplaceAll(string(cmdline), "\x00", " ")
}

// waitGone waits (bounded) until none of pids runs and fails the test otherwise.
func waitGone(t *testing.T, pids []int) {
	t.Helper()
	gone := func() bool {
		for _, pid := range pids {
			if alive, _ := running(pid); alive {
				return false
			}
		}
		return true
	}
	if testutil.Eventually(t.Context(), 5*time.Second, gone) {
		return
	}
	for _, pid := range pids {
		if alive, cmdline := running(pid); alive {
			t.Errorf("child %d (%s) still running after plugdb dev stopped", pid, cmdline)
		}
	}
}

// stop sends SIGTERM to plugdb dev, checks it exits 0 within 15s, and that the
// engine plugin processes it started (wantChildren of them at least) are gone.
func (d *devProc) stop(t *testing.T, wantChildren int) {
	t.Helper()
	pid := d.cmd.Process.Pid
	kids := children(pid)
	for _, k := range kids {
		_, cmdline := running(k)
		t.Logf("child %d: %s", k, cmdline)
	}
	if len(kids) < wantChildren {
		t.Errorf("plugdb dev has %d child processes, want at least %d", len(kids), wantChildren)
	}
	start := time.Now()
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("plugdb dev still running 15s after SIGTERM\n%s", d.output())
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("plugdb dev exited %d after SIGTERM (%v), want 0\n%s", code, d.waitErr, d.output())
	}
	t.Logf("plugdb dev stopped in %v", time.Since(start).Round(time.Millisecond))
	if errOut := d.stderr.String(); strings.Contains(errOut, "[ERROR]") || strings.Contains(errOut, "[WARN]") {
		t.Errorf("plugdb dev logged errors or warnings\n%s", d.output())
	}
	waitGone(t, kids)
}

func dial(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// cli runs a client verb of the built plugdb against d.
func (d *devProc) cli(t *testing.T, args ...string) runResult {
	t.Helper()
	return runPlugdb(t, 30*time.Second, append(args, "--addr", d.grpcAddr)...)
}

func wantRun(t *testing.T, res runResult, code int, stdout, stderr string) {
	t.Helper()
	if res.code != code || res.stdout != stdout || res.stderr != stderr {
		t.Errorf("want exit %d, stdout %q, stderr %q; got\n%s", code, stdout, stderr, res)
	}
}

func TestDevEndToEnd(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "data")
	d := startDev(t, data, nil)
	t.Run("cli", func(t *testing.T) { devCLI(t, d) })
	t.Run("rest", func(t *testing.T) { devREST(t, d) })
	t.Run("grpc", func(t *testing.T) { devGRPC(t, d) })
	d.stop(t, 1)

	// The rows outlive a clean stop.
	d = startDev(t, data, nil)
	wantRun(t, d.cli(t, "get", "cli-k"), 0, "v3\n", "")
	wantRun(t, d.cli(t, "get", "cli-new"), 1, "", "not found: cli-new\n")
	res := d.cli(t, "scan", "--prefix", "scan:", "--limit", "3")
	wantRun(t, res, 0, "scan:00\tval-00\nscan:01\tval-01\nscan:02\tval-02\n", "")
	d.stop(t, 1)
}

func devCLI(t *testing.T, d *devProc) {
	wantRun(t, d.cli(t, "put", "cli-k", "v1"), 0, "", "")
	wantRun(t, d.cli(t, "get", "cli-k"), 0, "v1\n", "")
	wantRun(t, d.cli(t, "get", "cli-missing"), 1, "", "not found: cli-missing\n")
	res := d.cli(t, "create", "cli-k", "v2")
	if res.code != 2 || !strings.Contains(res.stderr, "plugdb: ") || !strings.Contains(res.stderr, "already exists") {
		t.Errorf("create of an existing key: want exit 2 and \"plugdb: …already exists…\"\n%s", res)
	}
	wantRun(t, d.cli(t, "create", "cli-new", "n1"), 0, "", "")
	wantRun(t, d.cli(t, "get", "cli-new"), 0, "n1\n", "")
	wantRun(t, d.cli(t, "update", "cli-missing", "x"), 1, "", "not found: cli-missing\n")
	wantRun(t, d.cli(t, "update", "cli-k", "v3"), 0, "", "")
	wantRun(t, d.cli(t, "get", "cli-k"), 0, "v3\n", "")
	wantRun(t, d.cli(t, "delete", "cli-missing"), 1, "", "not found: cli-missing\n")
	wantRun(t, d.cli(t, "delete", "cli-new"), 0, "", "")
	wantRun(t, d.cli(t, "get", "cli-new"), 1, "", "not found: cli-new\n")

	// Scan across partitions: 20 keys written in a scrambled order.
	const n = 20
	var want []string
	for i := range n {
		want = append(want, fmt.Sprintf("scan:%02d\tval-%02d\n", i, i))
	}
	for _, i := range []int{7, 3, 19, 0, 11, 15, 1, 8, 12, 4, 16, 9, 2, 18, 13, 6, 10, 17, 5, 14} {
		wantRun(t, d.cli(t, "put", fmt.Sprintf("scan:%02d", i), fmt.Sprintf("val-%02d", i)), 0, "", "")
	}
	// Which partitions hold them: an Update with the same value tells.
	kv := plugdbv1.NewKVClient(dial(t, d.grpcAddr))
	parts := map[uint32]int{}
	for i := range n {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := kv.Update(ctx, &plugdbv1.PutRequest{Key: fmt.Appendf(nil, "scan:%02d", i), Value: fmt.Appendf(nil, "val-%02d", i)})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		parts[resp.GetPartition()]++
	}
	if len(parts) != 2 {
		t.Errorf("the %d scan keys landed on partitions %v, want both 0 and 1", n, parts)
	}
	t.Logf("scan keys per partition: %v", parts)
	wantRun(t, d.cli(t, "scan", "--prefix", "scan:"), 0, strings.Join(want, ""), "")
	wantRun(t, d.cli(t, "scan", "--prefix", "scan:", "--limit", "5"), 0, strings.Join(want[:5], ""), "")
	wantRun(t, d.cli(t, "scan", "--start", "scan:05", "--end", "scan:10"), 0, strings.Join(want[5:10], ""), "")
	wantRun(t, d.cli(t, "scan", "--prefix", "nosuchprefix:"), 0, "", "")

	// --ack: dev keeps one copy, so async is served and semi-sync and sync are
	// refused, saying why; a bad value is refused by the CLI.
	wantRun(t, d.cli(t, "put", "--ack", "async", "ack:cli", "a1"), 0, "", "")
	for _, args := range [][]string{{"put", "--ack", "semi-sync", "ack:cli", "a2"}, {"create", "--ack", "semi-sync", "ack:new", "a2"},
		{"update", "--ack", "semi-sync", "ack:cli", "a2"}, {"delete", "--ack", "semi-sync", "ack:cli"}} {
		wantRun(t, d.cli(t, args...), 2, "", "plugdb: plugdb dev keeps one copy: ack semi-sync needs a cluster whose replicator is statement\n")
	}
	wantRun(t, d.cli(t, "put", "--ack", "sync", "ack:cli", "a2"), 2, "", "plugdb: plugdb dev keeps one copy: ack sync needs a cluster whose replicator is statement\n")
	wantRun(t, d.cli(t, "put", "--ack", "quorum", "ack:cli", "a2"), 2, "", "plugdb: --ack \"quorum\": allowed values are async, semi-sync, sync\n")
	wantRun(t, d.cli(t, "get", "ack:cli"), 0, "a1\n", "")
	wantRun(t, d.cli(t, "get", "ack:new"), 1, "", "not found: ack:new\n")

	res = d.cli(t, "status", "-o", "json")
	if res.code != 0 {
		t.Fatalf("status -o json\n%s", res)
	}
	var st statusJSON
	if err := json.Unmarshal([]byte(res.stdout), &st); err != nil {
		t.Fatalf("status -o json: %v\n%s", err, res)
	}
	if st.Cluster != "dev" || st.Engine.Plugin != "rowfile" || st.Engine.Mode != "process" ||
		st.Partitioner.Plugin != "hash" || st.Partitioner.Mode != "process" || st.Replicator.Plugin != "none" || len(st.Partitions) != 2 {
		t.Errorf("status -o json: unexpected shape\n%s", res.stdout)
	}
	var applied uint64
	for i, p := range st.Partitions {
		if p.Partition != uint32(i) || len(p.Replicas) != 1 {
			t.Errorf("partition %d: %+v, want partition %d with 1 replica", i, p, i)
			continue
		}
		r := p.Replicas[0]
		if r.Role != "leader" || r.Addr != d.grpcAddr || r.Keys <= 0 {
			t.Errorf("partition %d replica %+v: want role leader, addr %s, keys > 0", i, r, d.grpcAddr)
		}
		applied = max(applied, r.AppliedLSN)
	}
	if applied == 0 {
		t.Errorf("status: applied_lsn is 0 on every partition\n%s", res.stdout)
	}
	res = d.cli(t, "status")
	if res.code != 0 || !strings.Contains(res.stdout, "PARTITION") || !strings.Contains(res.stdout, "leader") ||
		!strings.Contains(res.stdout, "ISR") || !strings.Contains(res.stdout, "LAG") {
		t.Errorf("status (text)\n%s", res)
	}
}

// httpDo sends a request to d's REST port and returns status, body and Content-Type.
func httpDo(t *testing.T, d *devProc, method, path, body string) (int, string, string) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "http://"+d.http+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp.Header.Get("Content-Type")
}

func wantHTTP(t *testing.T, d *devProc, method, path, body string, code int) map[string]any {
	t.Helper()
	got, resp, _ := httpDo(t, d, method, path, body)
	if got != code {
		t.Errorf("%s %s %s: status %d, want %d\n%s", method, path, body, got, code, resp)
		return nil
	}
	m := map[string]any{}
	if err := json.Unmarshal([]byte(resp), &m); err != nil {
		t.Errorf("%s %s: body is not a JSON object: %v\n%s", method, path, err, resp)
	}
	return m
}

// wantHTTPError checks a REST error: status code and {"code":N,"error":NAME,"message":…}.
func wantHTTPError(t *testing.T, d *devProc, method, path, body string, code int, grpcCode codes.Code, name string) {
	t.Helper()
	m := wantHTTP(t, d, method, path, body, code)
	if m == nil {
		return
	}
	if m["code"] != float64(grpcCode) || m["error"] != name || m["message"] == nil || m["message"] == "" {
		t.Errorf("%s %s: error object %v, want code %d, error %s and a message", method, path, m, grpcCode, name)
	}
}

func devREST(t *testing.T, d *devProc) {
	key := "rest:user/42 x" // ':' '/' and a space in the key
	p := "/v1/kv/" + url.PathEscape(key)
	if !strings.Contains(p, "%2F") {
		t.Fatalf("path %s: '/' not percent-encoded", p)
	}
	m := wantHTTP(t, d, "PUT", p, `{"value":"hello"}`, 200)
	if m != nil && (m["lsn"] == nil || m["partition"] == nil) {
		t.Errorf("PUT response %v: want lsn and partition", m)
	}
	m = wantHTTP(t, d, "GET", p, "", 200)
	if m != nil && (m["key"] != key || m["value"] != "hello") {
		t.Errorf("GET %s: %v, want key %q value hello", p, m, key)
	}
	// '/' as is in the path names the same key.
	m = wantHTTP(t, d, "GET", "/v1/kv/rest:user/42%20x", "", 200)
	if m != nil && m["key"] != key {
		t.Errorf("GET with a raw '/': %v, want key %q", m, key)
	}
	wantHTTPError(t, d, "POST", "/v1/kv", fmt.Sprintf(`{"key":%q,"value":"again"}`, key), 409, codes.AlreadyExists, "ALREADY_EXISTS")
	wantHTTP(t, d, "POST", "/v1/kv", `{"key":"rest:created","value":"c"}`, 200)
	wantHTTPError(t, d, "PATCH", "/v1/kv/rest:missing", `{"value":"x"}`, 404, codes.NotFound, "NOT_FOUND")
	wantHTTP(t, d, "PATCH", "/v1/kv/rest:created", `{"value":"c2"}`, 200)
	m = wantHTTP(t, d, "GET", "/v1/kv/rest:created", "", 200)
	if m != nil && m["value"] != "c2" {
		t.Errorf("after PATCH: %v, want value c2", m)
	}
	wantHTTPError(t, d, "DELETE", "/v1/kv/rest:missing", "", 404, codes.NotFound, "NOT_FOUND")
	wantHTTPError(t, d, "GET", "/v1/kv/rest:missing", "", 404, codes.NotFound, "NOT_FOUND")

	// A value that is not UTF-8 goes in and out as value_base64.
	raw := []byte{0xff, 0x00, 0xfe, 'a'}
	b64 := base64.StdEncoding.EncodeToString(raw)
	wantHTTP(t, d, "PUT", "/v1/kv/rest:bin", fmt.Sprintf(`{"value_base64":%q}`, b64), 200)
	m = wantHTTP(t, d, "GET", "/v1/kv/rest:bin", "", 200)
	if m != nil && m["value_base64"] != b64 {
		t.Errorf("GET rest:bin: %v, want value_base64 %s", m, b64)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	g, err := plugdbv1.NewKVClient(dial(t, d.grpcAddr)).Get(ctx, &plugdbv1.GetRequest{Key: []byte("rest:bin")})
	if err != nil || !bytes.Equal(g.GetValue(), raw) {
		t.Errorf("gRPC Get rest:bin: %v %v, want %x", g, err, raw)
	}

	// A key that is not UTF-8, percent-encoded byte by byte, comes back as key_base64.
	binKey := []byte("bin\xffkey")
	wantHTTP(t, d, "PUT", "/v1/kv/bin%FFkey", `{"value":"x"}`, 200)
	m = wantHTTP(t, d, "GET", "/v1/kv/bin%FFkey", "", 200)
	if m != nil && m["key_base64"] != base64.StdEncoding.EncodeToString(binKey) {
		t.Errorf("GET bin%%FFkey: %v, want key_base64 of %q", m, binKey)
	}
	if g, err := plugdbv1.NewKVClient(dial(t, d.grpcAddr)).Get(ctx, &plugdbv1.GetRequest{Key: binKey}); err != nil || string(g.GetValue()) != "x" {
		t.Errorf("gRPC Get %q: %v %v, want x", binKey, g, err)
	}
	wantHTTP(t, d, "DELETE", "/v1/kv/bin%FFkey", "", 200)

	// Bad input on REST: empty key, oversized key and value, unknown field, bad limit.
	wantHTTPError(t, d, "PUT", "/v1/kv/", `{"value":"x"}`, 400, codes.InvalidArgument, "INVALID_ARGUMENT")
	wantHTTPError(t, d, "POST", "/v1/kv", `{"key":"","value":"x"}`, 400, codes.InvalidArgument, "INVALID_ARGUMENT")
	wantHTTPError(t, d, "PUT", "/v1/kv/"+strings.Repeat("k", 1025), `{"value":"x"}`, 400, codes.InvalidArgument, "INVALID_ARGUMENT")
	big, _ := json.Marshal(map[string]string{"value": strings.Repeat("a", 1<<20+1)})
	wantHTTPError(t, d, "PUT", "/v1/kv/rest:big", string(big), 400, codes.InvalidArgument, "INVALID_ARGUMENT")
	wantHTTPError(t, d, "PUT", "/v1/kv/rest:bad", `{"value":"x","bogus":1}`, 400, codes.InvalidArgument, "INVALID_ARGUMENT")
	wantHTTPError(t, d, "GET", "/v1/kv?limit=-1", "", 400, codes.InvalidArgument, "INVALID_ARGUMENT")

	// Scan: NDJSON in key order, with prefix and limit.
	all := []string{"rest:bin", "rest:created", key}
	slices.Sort(all)
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"?prefix=rest:", all},
		{"?prefix=rest:&limit=2", all[:2]},
		{"?prefix=nosuch:", nil},
	} {
		code, body, ctype := httpDo(t, d, "GET", "/v1/kv"+tc.query, "")
		if code != 200 || !strings.HasPrefix(ctype, "application/x-ndjson") {
			t.Errorf("GET /v1/kv%s: status %d, Content-Type %q\n%s", tc.query, code, ctype, body)
			continue
		}
		var keys []string
		sc := bufio.NewScanner(strings.NewReader(body))
		for sc.Scan() {
			var kv map[string]any
			if err := json.Unmarshal(sc.Bytes(), &kv); err != nil {
				t.Errorf("GET /v1/kv%s: line %q: %v", tc.query, sc.Text(), err)
				continue
			}
			k, _ := kv["key"].(string)
			keys = append(keys, k)
		}
		if !slices.Equal(keys, tc.want) {
			t.Errorf("GET /v1/kv%s: keys %q, want %q\n%s", tc.query, keys, tc.want, body)
		}
	}

	// Deletes, then 404.
	wantHTTP(t, d, "DELETE", "/v1/kv/rest:created", "", 200)
	wantHTTPError(t, d, "GET", "/v1/kv/rest:created", "", 404, codes.NotFound, "NOT_FOUND")

	// Malformed JSON.
	wantHTTPError(t, d, "PUT", "/v1/kv/rest:bad", `{"value":`, 400, codes.InvalidArgument, "INVALID_ARGUMENT")
	wantHTTPError(t, d, "POST", "/v1/kv", `not json`, 400, codes.InvalidArgument, "INVALID_ARGUMENT")

	// ?ack=: dev serves async and refuses semi-sync and sync with 400, saying why.
	wantHTTP(t, d, "PUT", "/v1/kv/ack:rest?ack=async", `{"value":"a1"}`, 200)
	for _, tc := range []struct{ method, path, body, msg string }{
		{"PUT", "/v1/kv/ack:rest?ack=sync", `{"value":"a2"}`, "plugdb dev keeps one copy: ack sync needs a cluster whose replicator is statement"},
		{"POST", "/v1/kv?ack=semi-sync", `{"key":"ack:new","value":"a2"}`, "plugdb dev keeps one copy: ack semi-sync needs a cluster whose replicator is statement"},
		{"PATCH", "/v1/kv/ack:rest?ack=sync", `{"value":"a2"}`, "plugdb dev keeps one copy: ack sync needs a cluster whose replicator is statement"},
		{"DELETE", "/v1/kv/ack:rest?ack=sync", "", "plugdb dev keeps one copy: ack sync needs a cluster whose replicator is statement"},
		{"POST", "/v1/batch?ack=sync", `{"ops":[{"op":"put","key":"ack:rest","value":"a2"}]}`, "plugdb dev keeps one copy: ack sync needs a cluster whose replicator is statement"},
		{"PUT", "/v1/kv/ack:rest?ack=quorum", `{"value":"a2"}`, `query parameter "ack": "quorum" is not supported (allowed: async, semi-sync, sync)`},
	} {
		m := wantHTTP(t, d, tc.method, tc.path, tc.body, 400)
		if msg, _ := m["message"].(string); m != nil && (m["error"] != "INVALID_ARGUMENT" || !strings.HasSuffix(msg, tc.msg)) {
			t.Errorf("%s %s: %v, want INVALID_ARGUMENT with message ending %q", tc.method, tc.path, m, tc.msg)
		}
	}
	m = wantHTTP(t, d, "GET", "/v1/kv/ack:rest", "", 200)
	if m != nil && m["value"] != "a1" {
		t.Errorf("GET ack:rest after refused writes: %v, want value a1", m)
	}

	m = wantHTTP(t, d, "GET", "/v1/status", "", 200)
	if ps, _ := m["partitions"].([]any); m != nil && len(ps) != 2 {
		t.Errorf("GET /v1/status: %v, want 2 partitions", m)
	}
	m = wantHTTP(t, d, "GET", "/v1/openapi.json", "", 200)
	if m != nil && (m["swagger"] == nil && m["openapi"] == nil || m["paths"] == nil) {
		t.Errorf("GET /v1/openapi.json: no swagger/openapi version or paths")
	}
}

func wantCode(t *testing.T, what string, err error, code codes.Code, msg string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code || !strings.Contains(st.Message(), msg) {
		t.Errorf("%s: %v, want %v with message containing %q", what, err, code, msg)
	}
}

func devGRPC(t *testing.T, d *devProc) {
	conn := dial(t, d.grpcAddr)
	kv := plugdbv1.NewKVClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	_, err := kv.Put(ctx, &plugdbv1.PutRequest{Key: nil, Value: []byte("v")})
	wantCode(t, "Put empty key", err, codes.InvalidArgument, "key is empty")
	_, err = kv.Get(ctx, &plugdbv1.GetRequest{Key: nil})
	wantCode(t, "Get empty key", err, codes.InvalidArgument, "")
	_, err = kv.Put(ctx, &plugdbv1.PutRequest{Key: bytes.Repeat([]byte("k"), 1025), Value: []byte("v")})
	wantCode(t, "Put 1025-byte key", err, codes.InvalidArgument, "max_key_size 1024")
	_, err = kv.Get(ctx, &plugdbv1.GetRequest{Key: bytes.Repeat([]byte("k"), 1025)})
	wantCode(t, "Get 1025-byte key", err, codes.InvalidArgument, "max_key_size 1024")
	_, err = kv.Put(ctx, &plugdbv1.PutRequest{Key: []byte("grpc:big"), Value: make([]byte, 1<<20+1)})
	wantCode(t, "Put 1 MiB + 1 value", err, codes.InvalidArgument, "max_value_size")
	if _, err := kv.Put(ctx, &plugdbv1.PutRequest{Key: []byte("grpc:max"), Value: make([]byte, 1<<20)}); err != nil {
		t.Errorf("Put 1 MiB value: %v", err)
	}
	_, err = kv.Get(ctx, &plugdbv1.GetRequest{Key: []byte("grpc:missing")})
	wantCode(t, "Get missing", err, codes.NotFound, "")
	_, err = kv.Update(ctx, &plugdbv1.PutRequest{Key: []byte("grpc:missing"), Value: []byte("v")})
	wantCode(t, "Update missing", err, codes.NotFound, "")
	_, err = kv.Delete(ctx, &plugdbv1.DeleteRequest{Key: []byte("grpc:missing")})
	wantCode(t, "Delete missing", err, codes.NotFound, "")
	if _, err := kv.Create(ctx, &plugdbv1.PutRequest{Key: []byte("grpc:c"), Value: []byte("1")}); err != nil {
		t.Errorf("Create: %v", err)
	}
	_, err = kv.Create(ctx, &plugdbv1.PutRequest{Key: []byte("grpc:c"), Value: []byte("2")})
	wantCode(t, "Create existing", err, codes.AlreadyExists, "")
	if g, err := kv.Get(ctx, &plugdbv1.GetRequest{Key: []byte("grpc:c")}); err != nil || string(g.GetValue()) != "1" || g.GetLsn() == 0 {
		t.Errorf("Get grpc:c: %v %v, want value 1 and an lsn", g, err)
	}

	for _, svc := range []string{"", "plugdb.v1.KV"} {
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health %q: %v %v, want SERVING", svc, resp, err)
		}
	}

	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("reflection ListServices: %v", err)
	}
	stream.CloseSend()
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{"plugdb.v1.KV", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
		if !slices.Contains(names, want) {
			t.Errorf("reflection lists %v, missing %s", names, want)
		}
	}
}

// smoke is a small put/get/scan through the CLI.
func smoke(t *testing.T, d *devProc) {
	t.Helper()
	smokeEngine(t, d, true)
}

// smokeEngine is smoke; on an engine that is not an engines.Scanner
// (scanner false) the scan fails with an error that names the interface.
func smokeEngine(t *testing.T, d *devProc, scanner bool) {
	t.Helper()
	var want string
	for i := range 6 {
		wantRun(t, d.cli(t, "put", fmt.Sprintf("s:%d", i), fmt.Sprintf("v%d", i)), 0, "", "")
		want += fmt.Sprintf("s:%d\tv%d\n", i, i)
	}
	wantRun(t, d.cli(t, "get", "s:3"), 0, "v3\n", "")
	wantRun(t, d.cli(t, "get", "s:9"), 1, "", "not found: s:9\n")
	if scanner {
		wantRun(t, d.cli(t, "scan", "--prefix", "s:"), 0, want, "")
	} else if res := d.cli(t, "scan", "--prefix", "s:"); res.code != 2 || !strings.Contains(res.stderr, "cannot serve scans (it does not implement engines.Scanner)") {
		t.Errorf("scan of an engine without scans: want exit 2 and an error naming engines.Scanner; got\n%s", res)
	}
	code, body, _ := httpDo(t, d, "GET", "/v1/kv/s:2", "")
	if code != 200 || !strings.Contains(body, `"value":"v2"`) {
		t.Errorf("REST GET s:2: %d %s", code, body)
	}
}

func TestDevSwapEngines(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name         string
		env          []string
		config       string
		plugin, mode string
		children     int
		durable      bool // a put survives a restart
		noScanner    bool // the engine has no scans (examples/customengine)
	}{
		{name: "memory", env: []string{"PLUGDB_ENGINE_PLUGIN=memory"}, plugin: "memory", mode: "process", children: 1},
		{name: "bbolt", env: []string{"PLUGDB_ENGINE_PLUGIN=bbolt"}, plugin: "bbolt", mode: "process", children: 1},
		{name: "pebble", env: []string{"PLUGDB_ENGINE_PLUGIN=pebble"}, plugin: "pebble", mode: "process", children: 1, durable: true},
		{name: "inprocess", env: []string{"PLUGDB_ENGINE_MODE=inprocess"}, plugin: "rowfile", mode: "inprocess"},
		{name: "customengine", config: "engine: {plugin: " + customBin + "}\n", plugin: customBin, mode: "process", children: 1, noScanner: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var args []string
			if tc.config != "" {
				f := filepath.Join(t.TempDir(), "plugdb.yaml")
				if err := os.WriteFile(f, []byte(tc.config), 0o644); err != nil {
					t.Fatal(err)
				}
				args = append(args, "--config", f)
			}
			data := filepath.Join(t.TempDir(), "data")
			d := startDev(t, data, tc.env, args...)
			smokeEngine(t, d, !tc.noScanner)
			res := d.cli(t, "status", "-o", "json")
			var st statusJSON
			if err := json.Unmarshal([]byte(res.stdout), &st); err != nil || st.Engine.Plugin != tc.plugin || st.Engine.Mode != tc.mode {
				t.Errorf("status: want engine %s (%s)\n%s", tc.plugin, tc.mode, res)
			}
			if !tc.durable {
				d.stop(t, tc.children)
				return
			}
			wantRun(t, d.cli(t, "put", "restart:key", "before the restart"), 0, "", "")
			wantRun(t, d.cli(t, "delete", "s:0"), 0, "", "")
			d.stop(t, tc.children)
			d = startDev(t, data, tc.env, args...)
			wantRun(t, d.cli(t, "get", "restart:key"), 0, "before the restart\n", "")
			wantRun(t, d.cli(t, "get", "s:0"), 1, "", "not found: s:0\n")
			wantRun(t, d.cli(t, "get", "s:5"), 0, "v5\n", "")
			d.stop(t, tc.children)
		})
	}
}

// TestDevBboltRestart: with the bbolt engine, puts survive a clean stop and a
// kill -9 of plugdb dev and its engine process, and live in the engine's file.
func TestDevBboltRestart(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	env := []string{"PLUGDB_ENGINE_PLUGIN=bbolt"}
	d := startDev(t, data, env)
	wantRun(t, d.cli(t, "put", "b:1", "one"), 0, "", "")
	wantRun(t, d.cli(t, "put", "b:2", "two"), 0, "", "")
	wantRun(t, d.cli(t, "delete", "b:2"), 0, "", "")
	d.stop(t, 1)

	// Each partition's engine folder (datadir.PartitionDir) holds the file.
	if files, _ := filepath.Glob(filepath.Join(data, "p*", "plugdb.bolt")); len(files) == 0 {
		t.Errorf("no p*/plugdb.bolt in the data folder: %v", listTree(t, data))
	}

	d = startDev(t, data, env)
	wantRun(t, d.cli(t, "get", "b:1"), 0, "one\n", "")
	wantRun(t, d.cli(t, "get", "b:2"), 1, "", "not found: b:2\n")
	wantRun(t, d.cli(t, "put", "b:3", "three"), 0, "", "")
	kids := children(d.cmd.Process.Pid)
	if err := syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-d.done
	waitGone(t, kids)

	d = startDev(t, data, env)
	wantRun(t, d.cli(t, "scan", "--prefix", "b:"), 0, "b:1\tone\nb:3\tthree\n", "")
	d.stop(t, 1)
}

func TestDevDurabilityKill9(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "data")
	d := startDev(t, data, nil)
	kids := children(d.cmd.Process.Pid)
	kv := plugdbv1.NewKVClient(dial(t, d.grpcAddr))

	const writers, perWriter = 8, 5000
	acked := make([][]string, writers)
	var ackedN atomic.Int64 // acked's length, for the test's goroutine
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				if ctx.Err() != nil {
					return
				}
				key := fmt.Sprintf("dur:%d:%06d", w, i)
				cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := kv.Put(cctx, &plugdbv1.PutRequest{Key: []byte(key), Value: []byte("value-of-" + key)})
				ccancel()
				if err != nil {
					return // killed (or failing): stop this writer
				}
				acked[w] = append(acked[w], key)
				ackedN.Add(1)
			}
		}()
	}
	// kill -9 the whole process group while the writers still write, once
	// they have a good number of acknowledged writes (of 40000).
	testutil.WaitFor(t, 30*time.Second, func() bool { return ackedN.Load() >= 1000 }, "1000 acknowledged writes")
	if err := syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-d.done
	wg.Wait()
	waitGone(t, kids)
	total := 0
	for _, a := range acked {
		total += len(a)
	}
	if total == 0 {
		t.Fatalf("no write acknowledged before the kill\n%s", d.output())
	}

	d2 := startDev(t, data, nil)
	kv2 := plugdbv1.NewKVClient(dial(t, d2.grpcAddr))
	sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer scancel()
	stream, err := kv2.Scan(sctx, &plugdbv1.ScanRequest{Prefix: []byte("dur:")})
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]string{}
	for {
		kvp, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		found[string(kvp.GetKey())] = string(kvp.GetValue())
	}
	missing := 0
	for _, a := range acked {
		for _, k := range a {
			if v, ok := found[k]; !ok || v != "value-of-"+k {
				if missing < 10 {
					t.Errorf("acknowledged key %s: found %v, value %q", k, ok, v)
				}
				missing++
			}
		}
	}
	t.Logf("%d writes acknowledged, %d keys found after kill -9 and restart, %d acknowledged missing", total, len(found), missing)
	if missing > 0 {
		t.Errorf("%d of %d acknowledged keys lost", missing, total)
	}
	d2.stop(t, 1)
}

// emptyOrAbsent fails the test if dir exists with something in it.
func emptyOrAbsent(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if len(entries) > 0 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("data folder %s was written: %v", dir, names)
	}
}

func TestDevBadInput(t *testing.T) {
	writeFile := func(t *testing.T, name, text string, mode os.FileMode) string {
		f := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(f, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
		return f
	}
	// runDev runs `plugdb dev` expected to fail, with env extra.
	runDev := func(t *testing.T, env []string, args ...string) runResult {
		t.Helper()
		for _, kv := range env {
			k, v, _ := strings.Cut(kv, "=")
			t.Setenv(k, v)
		}
		all := append([]string{"dev", "--grpc", testutil.FreeAddr(t), "--http", testutil.FreeAddr(t)}, args...)
		start := time.Now()
		res := runPlugdb(t, 30*time.Second, all...)
		if res.code == 0 {
			t.Fatalf("plugdb dev: want a non-zero exit\n%s", res)
		}
		if el := time.Since(start); el > 10*time.Second {
			t.Errorf("plugdb dev took %v to fail", el)
		}
		return res
	}
	wantStderr := func(t *testing.T, res runResult, want string) {
		t.Helper()
		lines := strings.Split(strings.TrimRight(res.stderr, "\n"), "\n")
		last := lines[len(lines)-1] // before it, the engine loader may log
		if !strings.HasPrefix(last, "plugdb: ") || !strings.Contains(last, want) {
			t.Errorf("last line of stderr does not say \"plugdb: …%s…\"\n%s", want, res)
		}
	}

	t.Run("unknown config key", func(t *testing.T) {
		data := filepath.Join(t.TempDir(), "data")
		f := writeFile(t, "x.yaml", "engine: {plugn: x}\n", 0o644)
		res := runDev(t, nil, "--config", f, "--data", data)
		wantStderr(t, res, `unknown key "engine.plugn"`)
		emptyOrAbsent(t, data)
	})
	t.Run("unknown plugin", func(t *testing.T) {
		data := filepath.Join(t.TempDir(), "data")
		res := runDev(t, []string{"PLUGDB_ENGINE_PLUGIN=nosuch"}, "--data", data)
		wantStderr(t, res, `"nosuch": no such bundled engine`)
		emptyOrAbsent(t, data)
	})
	t.Run("not a plugin", func(t *testing.T) {
		script := writeFile(t, "notplugin.sh", "#!/bin/sh\necho hello\nexit 0\n", 0o755)
		for _, bin := range []string{"/bin/true", script} {
			if _, err := os.Stat(bin); err != nil {
				continue
			}
			f := writeFile(t, "p.yaml", "engine: {plugin: "+bin+"}\n", 0o644)
			data := filepath.Join(t.TempDir(), "data")
			res := runDev(t, nil, "--config", f, "--data", data)
			wantStderr(t, res, bin+" is not a plugdb plugin")
			// The failed start does not claim the folder for that binary.
			if _, err := os.Stat(data); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("data folder left behind by a failed start: %v", listTree(t, data))
			}
		}
	})
	t.Run("data folder of another engine", func(t *testing.T) {
		data := filepath.Join(t.TempDir(), "data")
		d := startDev(t, data, []string{"PLUGDB_ENGINE_PLUGIN=memory"})
		d.stop(t, 1)
		before := listTree(t, data)
		res := runDev(t, nil, "--data", data)
		wantStderr(t, res, `was created by engine "memory"`)
		if after := listTree(t, data); !slices.Equal(before, after) {
			t.Errorf("data folder changed by the refused run: before %v, after %v", before, after)
		}
	})
}

// listTree lists the files under dir with their sizes.
func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		out = append(out, fmt.Sprintf("%s %d %v", p, info.Size(), info.ModTime().UnixNano()))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
