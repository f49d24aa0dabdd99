package main

import (
	"strings"
	"testing"
	"time"
)

func TestNodeAdvertise(t *testing.T) {
	for _, c := range []struct {
		addr, advertise, want, wantErr string
	}{
		{addr: "127.0.0.1:7101", want: "127.0.0.1:7101"},
		{addr: "10.0.0.5:7101", advertise: "db1.example:7101", want: "db1.example:7101"},
		{addr: "0.0.0.0:7101", advertise: "10.0.0.5:7101", want: "10.0.0.5:7101"},
		{addr: "[::]:7101", advertise: "node-p0-r0:7101", want: "node-p0-r0:7101"},
		{addr: "0.0.0.0:7101", wantErr: "give --advertise HOST:PORT"},
		{addr: "[::]:7101", wantErr: "listens on every interface"},
		{addr: ":7101", wantErr: "listens on every interface"},
		{addr: "127.0.0.1:0", wantErr: "port 0"},
		{addr: "0.0.0.0:7101", advertise: "0.0.0.0:7101", wantErr: "is every interface"},
		{addr: "0.0.0.0:7101", advertise: ":7101", wantErr: "every interface"},
		{addr: "0.0.0.0:7101", advertise: "10.0.0.5", wantErr: "--advertise \"10.0.0.5\""},
		{addr: "0.0.0.0:7101", advertise: "10.0.0.5:0", wantErr: "--advertise"},
	} {
		got, err := nodeAdvertise(c.addr, c.advertise)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("nodeAdvertise(%q, %q) = %q, %v; want an error with %q", c.addr, c.advertise, got, err, c.wantErr)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("nodeAdvertise(%q, %q) = %q, %v; want %q", c.addr, c.advertise, got, err, c.want)
		}
	}
}

func TestReplAdvertise(t *testing.T) {
	for _, c := range []struct{ listening, flag, advertise, want string }{
		{"127.0.0.1:40001", "", "127.0.0.1:7101", "127.0.0.1:40001"},
		{"[::]:40001", "", "10.0.0.5:7101", "10.0.0.5:40001"},
		{"0.0.0.0:40001", "", "node-p0-r0:7101", "node-p0-r0:40001"},
		{"0.0.0.0:40001", "10.9.9.9:7201", "10.0.0.5:7101", "10.9.9.9:7201"},
		{"", "", "10.0.0.5:7101", ""},
	} {
		if got := replAdvertise(c.listening, c.flag, c.advertise); got != c.want {
			t.Errorf("replAdvertise(%q, %q, %q) = %q, want %q", c.listening, c.flag, c.advertise, got, c.want)
		}
	}
}

func TestReachableAddr(t *testing.T) {
	if got := reachableAddr("127.0.0.1:7070"); got != "127.0.0.1:7070" {
		t.Errorf("reachableAddr(127.0.0.1:7070) = %q", got)
	}
	for _, a := range []string{"0.0.0.0:7070", "[::]:7070"} {
		if got := reachableAddr(a); strings.HasPrefix(got, "0.0.0.0") || strings.HasPrefix(got, "[::]") || !strings.HasSuffix(got, ":7070") {
			t.Errorf("reachableAddr(%q) = %q, want this machine's name and port 7070", a, got)
		}
	}
}

// TestNodeRefusesEveryInterfaceWithoutAdvertise runs the binary: a node
// told to listen on 0.0.0.0 without --advertise stops before it joins the
// cluster, and says what to give.
func TestNodeRefusesEveryInterfaceWithoutAdvertise(t *testing.T) {
	t.Parallel()
	res := runPlugdb(t, 30*time.Second, "node", "--partition", "0", "--addr", "0.0.0.0:7101", "--data", t.TempDir())
	if res.code == 0 || !strings.Contains(res.stderr, "give --advertise HOST:PORT") {
		t.Fatalf("plugdb node --addr 0.0.0.0:7101: exit %d, stderr %q; want a refusal asking for --advertise", res.code, res.stderr)
	}
}
