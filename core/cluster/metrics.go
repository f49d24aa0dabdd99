package cluster

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
