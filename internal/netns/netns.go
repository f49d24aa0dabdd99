// Package netns builds a small network of Linux network namespaces for
// tests: hosts, each a namespace with one address, joined by veth pairs to a
// bridge in a namespace of its own. Nothing is added to the machine's own
// namespace (no interface, address or route), so runs side by side do not
// meet and the machine's network is left alone. It needs root and `ip` from
// iproute2.
//
// A process runs on a host through `ip netns exec` (Host.Command); the test
// process itself reaches a host's addresses with Host.Dial. Close ends every
// process left in the namespaces, by PID, and deletes them.
package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"time"
)

// Subnet is the hosts' network: host i (0-based) has address 10.213.0.<i+1>/24.
const Subnet = "10.213.0.0/24"

// Net is the namespaces of one test.
type Net struct {
	// Hosts are the hosts, in order.
	Hosts  []Host
	bridge string // the bridge's namespace
}

// Host is one namespace with one address on the bridge.
type Host struct {
	// Name is the namespace's name (`ip netns list`).
	Name string
	// IP is its address on the bridge, e.g. 10.213.0.1.
	IP string
}

// ip runs `ip args...`, bounded by ctx, and returns its output.
func ip(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Usable returns nil when namespaces can be made here: `ip` is installed
// and a namespace can be added and deleted (which needs root, or
// CAP_SYS_ADMIN and CAP_NET_ADMIN); else why not.
func Usable(ctx context.Context, probe string) error {
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("no `ip` command (Debian: apt-get install iproute2): %w", err)
	}
	if _, err := ip(ctx, "netns", "add", probe); err != nil {
		return err
	}
	_, err := ip(ctx, "netns", "del", probe)
	return err
}

// New makes hosts namespaces named prefix-h1..prefix-hN (prefix should hold
// the test process's PID) and a bridge namespace prefix-sw, each host's
// veth pair joined to the bridge, with loopback up. On error it deletes
// what it made.
func New(ctx context.Context, prefix string, hosts int) (n *Net, err error) {
	if hosts < 1 || hosts > 250 {
		return nil, fmt.Errorf("netns: %d hosts, want 1..250", hosts)
	}
	n = &Net{bridge: prefix + "-sw"}
	defer func() {
		if err != nil {
			err = errors.Join(err, n.Close())
			n = nil
		}
	}()
	if _, err := ip(ctx, "netns", "add", n.bridge); err != nil {
		return n, err
	}
	steps := [][]string{
		{"-n", n.bridge, "link", "add", "br0", "type", "bridge"},
		{"-n", n.bridge, "link", "set", "br0", "up"},
	}
	for _, s := range steps {
		if _, err := ip(ctx, s...); err != nil {
			return n, err
		}
	}
	for i := range hosts {
		h := Host{Name: fmt.Sprintf("%s-h%d", prefix, i+1), IP: fmt.Sprintf("10.213.0.%d", i+1)}
		if _, err := ip(ctx, "netns", "add", h.Name); err != nil {
			return n, err
		}
		n.Hosts = append(n.Hosts, h)
		port := fmt.Sprintf("h%d", i+1)
		// Both ends are made in their namespaces: the machine's own
		// namespace never holds them, even for a moment.
		steps := [][]string{
			{"link", "add", "eth0", "netns", h.Name, "type", "veth", "peer", "name", port, "netns", n.bridge},
			{"-n", n.bridge, "link", "set", port, "master", "br0"},
			{"-n", n.bridge, "link", "set", port, "up"},
			{"-n", h.Name, "addr", "add", h.IP + "/24", "dev", "eth0"},
			{"-n", h.Name, "link", "set", "eth0", "up"},
			{"-n", h.Name, "link", "set", "lo", "up"},
		}
		for _, s := range steps {
			if _, err := ip(ctx, s...); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// Command returns a command that runs name with args on h (`ip netns exec`,
// which execs it: the process started is name's). It is in its own process
// group and gets SIGKILL when the thread that started it ends.
func (h Host) Command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command("ip", append([]string{"netns", "exec", h.Name, name}, args...)...)
	cmd.SysProcAttr = sysProcAttr()
	return cmd
}

// Wrap returns argv run on h: `ip netns exec NAME argv...`.
func (h Host) Wrap(argv []string) []string {
	return append([]string{"ip", "netns", "exec", h.Name}, argv...)
}

// PIDs returns the processes in h's namespace.
func (h Host) PIDs(ctx context.Context) ([]int, error) {
	out, err := ip(ctx, "netns", "pids", h.Name)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(out) {
		var pid int
		if _, err := fmt.Sscan(f, &pid); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// Close kills every process left in the namespaces and deletes them, the
// hosts' first (their veth pairs go with them), then the bridge's.
func (n *Net) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var errs []error
	for _, h := range n.Hosts {
		if _, err := h.Kill(ctx); err != nil {
			errs = append(errs, err)
		}
		if _, err := ip(ctx, "netns", "del", h.Name); err != nil {
			errs = append(errs, err)
		}
	}
	n.Hosts = nil
	if n.bridge != "" {
		if _, err := ip(ctx, "netns", "del", n.bridge); err != nil && !strings.Contains(err.Error(), "No such file") {
			errs = append(errs, err)
		}
		n.bridge = ""
	}
	return errors.Join(errs...)
}

// Dial connects to addr from inside the namespace of the host that has
// addr's IP (the first host for any other address), so the test process
// reaches every host as one of them would.
func (n *Net) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if len(n.Hosts) == 0 {
		return nil, errors.New("netns: no hosts")
	}
	from := n.Hosts[0]
	if host, _, err := net.SplitHostPort(addr); err == nil {
		for _, h := range n.Hosts {
			if h.IP == host {
				from = h
			}
		}
	}
	return from.Dial(ctx, network, addr)
}
