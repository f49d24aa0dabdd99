package main

import (
	"fmt"
	"net"
	"os"
	"strconv"
)

// A process binds one address and advertises another (docs/cluster.md, "Run
// on several machines"): a node listens on --addr and is published in
// ZooKeeper, where the router, its peers and `plugdb reshard` find it, under
// --advertise. Binding every interface (0.0.0.0, ::) is done only when the
// user writes it, and such an address is never published.

// unspecifiedHost reports whether host names every interface: "", 0.0.0.0
// or :: (and their other spellings).
func unspecifiedHost(host string) bool {
	if host == "" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}

// nodeAdvertise returns the address a node listening on addr publishes in
// ZooKeeper: advertise when given, else addr. Neither may be an address of
// every interface (0.0.0.0, ::) nor have port 0: others could not dial it.
func nodeAdvertise(addr, advertise string) (string, error) {
	if advertise != "" {
		host, port, err := net.SplitHostPort(advertise)
		if err != nil || port == "0" || port == "" {
			return "", fmt.Errorf("--advertise %q: give the host:port the router and other nodes reach this node at, e.g. 10.0.0.5:7101", advertise)
		}
		if unspecifiedHost(host) {
			return "", fmt.Errorf("--advertise %q: %s is every interface, not an address others can dial: give this machine's address or name, e.g. 10.0.0.5:%s", advertise, hostText(host), port)
		}
		return advertise, nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("--addr %q: give the host:port this node listens on, e.g. 127.0.0.1:7101", addr)
	}
	if unspecifiedHost(host) {
		return "", fmt.Errorf("--addr %q listens on every interface, which is no address the router and other nodes can dial: "+
			"give --advertise HOST:PORT too, the address they reach this node at (e.g. --advertise 10.0.0.5:%s), or listen on that address alone", addr, port)
	}
	if port == "0" {
		return "", fmt.Errorf("--addr %q: port 0 is not an address others can dial; give a port, or --advertise HOST:PORT", addr)
	}
	return addr, nil
}

// replAdvertise returns the replicator address a node publishes: flag
// (--repl-advertise) when given; else listening, the address the replicator
// listens on, with the host of advertise (the node's published address) in
// place of an every-interface host such as 0.0.0.0. "" (a replicator that
// makes no copies) stays "".
func replAdvertise(listening, flag, advertise string) string {
	if flag != "" || listening == "" {
		return flag
	}
	host, port, err := net.SplitHostPort(listening)
	if err != nil || !unspecifiedHost(host) {
		return listening
	}
	advHost, _, err := net.SplitHostPort(advertise)
	if err != nil {
		return listening
	}
	return net.JoinHostPort(advHost, port)
}

// reachableAddr returns addr as a client could dial it from another
// machine: an every-interface host (0.0.0.0, ::) becomes this machine's
// host name, so that what the router prints can be copied.
func reachableAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || !unspecifiedHost(host) {
		return addr
	}
	name, err := os.Hostname()
	if err != nil || name == "" {
		name = "localhost"
	}
	if _, err := strconv.Atoi(port); err != nil {
		return addr
	}
	return net.JoinHostPort(name, port)
}

// hostText names host in a message: "" is shown as the empty host.
func hostText(host string) string {
	if host == "" {
		return "an empty host"
	}
	return host
}
