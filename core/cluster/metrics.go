package cluster

import (
	"net"
	"strconv"

	"github.com/plugdb/plugdb/core/config"
)

// metricsFlag is the node flag that gives its metrics address.
const metricsFlag = "--metrics-addr"

// metricsArgs are the arguments that give a node its metrics address
// (metrics.base_port); none when addr is empty.
func metricsArgs(addr string) []string {
	if addr == "" {
		return nil
	}
	return []string{metricsFlag, addr}
}

// metricsAddr is the metrics address c was started with, "" if none.
func (c *child) metricsAddr() string {
	if c.cmd == nil {
		return ""
	}
	args := c.cmd.Args
	for i := 0; i+1 < len(args); i++ {
		if args[i] == metricsFlag {
			return args[i+1]
		}
	}
	return ""
}

// metricsPorts gives the nodes of the partitions a move added (which the
// metrics.base_port scheme does not place) metrics ports after the highest
// recorded one, as startNodes gives them their own ports.
type metricsPorts struct {
	on   bool
	port int // the last one given
	used map[int]bool
}

// newMetricsPorts notes the recorded metrics ports in used (shared with the
// nodes' own ports, so that neither takes the other's).
func newMetricsPorts(k config.Config, children []Process, used map[int]bool) *metricsPorts {
	m := &metricsPorts{on: k.Metrics.BasePort != 0, port: k.Metrics.BasePort - 1, used: used}
	for _, p := range children {
		if p.Metrics != "" {
			used[port(p.Metrics)] = true
			m.port = max(m.port, port(p.Metrics))
		}
	}
	return m
}

// next returns the arguments that give the next node its metrics address;
// none when metrics.base_port is 0.
func (m *metricsPorts) next() ([]string, error) {
	if !m.on {
		return nil, nil
	}
	p, err := freePort(m.port+1, m.used)
	if err != nil {
		return nil, err
	}
	m.port, m.used[p] = p, true
	return metricsArgs(net.JoinHostPort("127.0.0.1", strconv.Itoa(p))), nil
}
