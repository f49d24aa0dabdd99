package config

import (
	"slices"
	"strings"
	"testing"
)

func TestMetricsKeys(t *testing.T) {
	known := Known{Engines: []string{"rowfile"}, Partitioners: []string{"hash"}, Replicators: []string{"none", "statement"}}
	c := mustLoad(t, Source{File: "../../configs/cluster.yaml"})
	if err := c.Validate(known); err != nil {
		t.Fatal(err)
	}
	got := []string{c.MetricsAddr(0, 0), c.MetricsAddr(0, 2), c.MetricsAddr(1, 0), c.MetricsAddr(1, 2)}
	if want := []string{"127.0.0.1:9101", "127.0.0.1:9103", "127.0.0.1:9104", "127.0.0.1:9106"}; !slices.Equal(got, want) {
		t.Errorf("MetricsAddr = %v, want %v", got, want)
	}
	if a := Default().MetricsAddr(0, 0); a != "" {
		t.Errorf("Default().MetricsAddr(0, 0) = %q, want none", a)
	}
	// Another keyspace's nodes follow the default keyspace's, as their own ports do.
	ks := mustLoad(t, Source{File: writeFile(t, "partitions: 2\nnodes: {replicas: 3, base_port: 7101}\nmetrics: {base_port: 9101}\nkeyspaces: {events: {partitions: 1}}\n")})
	ev, err := ks.ForKeyspace("events")
	if err != nil {
		t.Fatal(err)
	}
	if a := ev.MetricsAddr(0, 0); a != "127.0.0.1:9107" {
		t.Errorf("keyspace events: MetricsAddr(0, 0) = %s, want 127.0.0.1:9107", a)
	}
	if c := mustLoad(t, Source{Env: []string{"PLUGDB_METRICS_ADDR=127.0.0.1:9200"}}); c.Metrics.Addr != "127.0.0.1:9200" {
		t.Errorf("PLUGDB_METRICS_ADDR: metrics.addr = %q", c.Metrics.Addr)
	}
	if c := mustLoad(t, Source{Flags: map[string]string{"metrics.addr": "127.0.0.1:9201"}}); c.Metrics.Addr != "127.0.0.1:9201" {
		t.Errorf("flag: metrics.addr = %q", c.Metrics.Addr)
	}
}

func TestMetricsErrors(t *testing.T) {
	known := Known{Engines: []string{"rowfile"}, Partitioners: []string{"hash"}, Replicators: []string{"none"}}
	for _, tc := range []struct{ file, want string }{
		{"metrics: {addr: nowhere}", `metrics.addr "nowhere"`},
		{"metrics: {addr: nowhere}", "allowed: empty (no metrics), or host:port"},
		{"metrics: {base_port: 80}", `metrics.base_port 80: out of range (allowed: 0 (no metrics`},
		{"metrics: {port: 1}", `unknown key "metrics.port" (allowed under metrics: addr, base_port)`},
	} {
		_, err := Load(Source{File: writeFile(t, tc.file)})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want it to contain %q", tc.file, err, tc.want)
		}
	}
	for _, tc := range []struct {
		change func(*Config)
		want   string
	}{
		{func(c *Config) { c.Metrics.BasePort = 7102 }, "metrics.base_port 7102: the nodes' metrics ports 7102..7103 overlap their own ports 7101..7102"},
		{func(c *Config) { c.Metrics.BasePort = 65535 }, "metrics.base_port 65535: 2 partitions × 1 replicas need ports 65535..65536"},
		{func(c *Config) { c.Metrics.Addr = "127.0.0.1:0x" }, "metrics.addr"},
		{func(c *Config) { c.Metrics.BasePort = 9101 }, ""},
	} {
		c := Default()
		tc.change(&c)
		err := c.Validate(known)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%+v: %v", c.Metrics, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want it to contain %q", c.Metrics, err, tc.want)
		}
	}
}
