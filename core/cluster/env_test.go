package cluster

import (
	"slices"
	"testing"
)

func TestNodesShareTheCPUsUnlessGOMAXPROCSIsSet(t *testing.T) {
	for _, tc := range []struct {
		env         []string
		cpus, nodes int
		want        string
	}{
		{[]string{"A=1"}, 2, 6, "GOMAXPROCS=1"},
		{[]string{"A=1"}, 16, 6, "GOMAXPROCS=2"},
		{[]string{"A=1"}, 16, 4, "GOMAXPROCS=4"},
		{[]string{"A=1"}, 8, 0, "GOMAXPROCS=8"},
		{[]string{"GOMAXPROCS=3"}, 2, 6, "GOMAXPROCS=3"},
	} {
		got := withNodeProcs(tc.env, tc.cpus, tc.nodes)
		var procs []string
		for _, kv := range got {
			if len(kv) > 11 && kv[:11] == "GOMAXPROCS=" {
				procs = append(procs, kv)
			}
		}
		if !slices.Equal(procs, []string{tc.want}) {
			t.Errorf("%d cpus, %d nodes, env %v: GOMAXPROCS %v, want [%s]", tc.cpus, tc.nodes, tc.env, procs, tc.want)
		}
	}
	env := []string{"A=1"}
	_ = withNodeProcs(env[:1:1], 2, 6)
	if len(env) != 1 || env[0] != "A=1" {
		t.Fatalf("the caller's env changed: %v", env)
	}
}
