package zkserver

import (
	"os"
	"strings"
	"testing"
)

// TestEnsembleOnOtherHosts checks what an ensemble of servers on their own
// addresses (one per network namespace, say) is configured with: each binds
// its host, the server lines name every host, and the same ports may repeat
// on different hosts (with Wrap, they are not checked here).
func TestEnsembleOnOtherHosts(t *testing.T) {
	clients := []string{"10.213.0.1:2181", "10.213.0.2:2181", "10.213.0.3:2181"}
	peers := []PeerPorts{{2888, 3888}, {2888, 3888}, {2888, 3888}}
	e, err := newEnsemble(Install{Java: "/usr/bin/java"}, Options{Dir: t.TempDir(), Clients: clients, Peers: peers,
		Wrap: func(_ int, argv []string) []string { return argv }})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Stop()
	if got := e.ConnectString(); got != strings.Join(clients, ",") {
		t.Errorf("ConnectString() = %q, want %q", got, strings.Join(clients, ","))
	}
	for i, s := range e.servers {
		if err := e.writeConfig(s); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(s.configPath())
		if err != nil {
			t.Fatal(err)
		}
		cfg := string(b)
		for _, want := range []string{"clientPortAddress=10.213.0." + string(rune('1'+i)) + "\n", "clientPort=2181\n",
			"server.1=10.213.0.1:2888:3888\n", "server.2=10.213.0.2:2888:3888\n", "server.3=10.213.0.3:2888:3888\n"} {
			if !strings.Contains(cfg, want) {
				t.Errorf("server %d's zoo.cfg lacks %q:\n%s", i, want, cfg)
			}
		}
	}

	// The same address twice, an every-interface or a host name is refused.
	for _, bad := range [][]string{
		{"10.213.0.1:2181", "10.213.0.1:2181", "10.213.0.3:2181"},
		{"0.0.0.0:2181"},
		{"zoo1:2181"},
	} {
		if e, err := newEnsemble(Install{}, Options{Dir: t.TempDir(), Clients: bad}); err == nil {
			e.Stop()
			t.Errorf("clients %q accepted", bad)
		}
	}
}
