package coord_test

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/plugdb/plugdb/core/coord"
	"github.com/plugdb/plugdb/core/zkserver/zktest"
)

// zkCli runs ZooKeeper's command-line client against servers with the
// commands on its standard input, one a line, and returns what it printed.
func zkCli(t *testing.T, servers []string, commands ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, zktest.CLI(t), "-server", strings.Join(servers, ","))
	cmd.Stdin = strings.NewReader(strings.Join(append(commands, "quit"), "\n") + "\n")
	out, err := cmd.CombinedOutput()
	t.Logf("zkCli.sh %q: %v\n%s", commands, err, out)
	return string(out)
}

// TestZkCliRefusedWithoutCredentials: ZooKeeper's own client, Debian's
// zkCli.sh, can neither read nor change a secured cluster's znodes, without
// credentials or with wrong ones; with `addauth digest user:password` it can.
func TestZkCliRefusedWithoutCredentials(t *testing.T) {
	zkSrv := zktest.Shared(t)
	cfg := securedCluster(t, zkSrv.Servers())
	c := connect(t, cfg)
	if _, err := coord.EnsureMeta(t.Context(), c, meta); err != nil {
		t.Fatal(err)
	}
	p := coord.PathsOf(cfg)
	try := func(addauth, child string) []string {
		cmds := []string{"get " + p.Meta(), "set " + p.Epoch(0) + " 0", "create " + p.Base() + "/" + child + " x", "ls " + p.Base()}
		if addauth != "" {
			cmds = append([]string{"addauth digest " + addauth}, cmds...)
		}
		return []string{zkCli(t, zkSrv.Servers(), cmds...), p.Meta(), p.Epoch(0), p.Base() + "/" + child, p.Base()}
	}
	for _, tc := range []struct{ who, auth string }{{"no credentials", ""}, {"wrong password", "plugdb:wrong"}} {
		r := try(tc.auth, "intruder")
		out, paths := r[0], r[1:]
		for _, path := range paths {
			if !strings.Contains(out, "Insufficient permission : "+path+"\n") {
				t.Errorf("zkCli.sh with %s: no \"Insufficient permission : %s\" in its output", tc.who, path)
			}
		}
		if strings.Contains(out, `"partitions"`) || strings.Contains(out, "Created") {
			t.Errorf("zkCli.sh with %s read or created a znode", tc.who)
		}
	}
	r := try("plugdb:"+cfg.Auth.Password, "visitor")
	out := r[0]
	for _, want := range []string{`{"partitions":2,`, "Created " + p.Base() + "/visitor\n", "[meta, partitions, visitor]\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("zkCli.sh with the credentials: no %q in its output", want)
		}
	}
	if strings.Contains(out, "Insufficient permission") {
		t.Error("zkCli.sh with the credentials was refused")
	}
}
