package config

import "fmt"

// Metrics says where the nodes serve Prometheus metrics and /healthz (the
// router serves them on router.http); see docs/metrics.md.
type Metrics struct {
	// Addr is the host:port a node started by hand serves /metrics and
	// /healthz on (`plugdb node --metrics-addr`); empty: none.
	Addr string `koanf:"addr" json:"addr,omitempty"`
	// BasePort is where `plugdb cluster up` puts its nodes' metrics: replica
	// r of partition p on 127.0.0.1:BasePort+p*Replicas+r (as nodes.base_port
	// places the nodes); 0: the nodes it starts serve no metrics.
	BasePort int `koanf:"base_port" json:"base_port,omitempty"`
}

// allowedMetricsAddr and allowedMetricsBasePort describe the metrics keys.
const (
	allowedMetricsAddr     = "empty (no metrics), or host:port with a port 1..65535, e.g. 127.0.0.1:9101"
	allowedMetricsBasePort = "0 (no metrics for the nodes plugdb cluster up starts), or 1024..65535 with a port for every node up to 65535"
)

// MetricsAddr returns the metrics address `plugdb cluster up` gives replica
// r of partition p: 127.0.0.1:metrics.base_port+p*Replicas+r; "" when
// metrics.base_port is 0.
func (c Config) MetricsAddr(p, r int) string {
	if c.Metrics.BasePort == 0 {
		return ""
	}
	return fmt.Sprintf("127.0.0.1:%d", c.Metrics.BasePort+p*c.Nodes.Replicas+r)
}

func checkMetricsAddr(s string) *valueError {
	if s == "" {
		return nil
	}
	if e := checkHostPort(s, allowedMetricsAddr); e != nil {
		return bad(e.problem, allowedMetricsAddr)
	}
	return nil
}

func checkMetricsBasePort(n int) *valueError {
	if n != 0 && (n < 1024 || n > 65535) {
		return bad("out of range", allowedMetricsBasePort)
	}
	return nil
}

// validateMetrics checks the metrics keys of c, whose keyspaces have nodes
// partitions in all: every node's metrics port is a port, and the metrics
// ports do not overlap the nodes' own.
func (c Config) validateMetrics(nodes int) error {
	if e := checkMetricsAddr(c.Metrics.Addr); e != nil {
		return fmt.Errorf("metrics.addr %s: %s", show(c.Metrics.Addr), e)
	}
	base := c.Metrics.BasePort
	if e := checkMetricsBasePort(base); e != nil {
		return fmt.Errorf("metrics.base_port %d: %s", base, e)
	}
	if base == 0 {
		return nil
	}
	if e := checkNodePorts(base, nodes, c.Nodes.Replicas); e != nil {
		return fmt.Errorf("metrics.base_port %d: %s", base, e)
	}
	n := nodes * c.Nodes.Replicas
	if base < c.Nodes.BasePort+n && c.Nodes.BasePort < base+n {
		return fmt.Errorf("metrics.base_port %d: the nodes' metrics ports %d..%d overlap their own ports %d..%d (nodes.base_port) (allowed: a base_port whose %d ports are free, e.g. %d)",
			base, base, base+n-1, c.Nodes.BasePort, c.Nodes.BasePort+n-1, n, c.Nodes.BasePort+n)
	}
	return nil
}
