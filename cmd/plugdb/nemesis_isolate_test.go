package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A replica's own outbound connections — its replicator shipping to the
// followers when it leads, a snapshot fetched from the leader — reach the
// other replicas' proxies from 127.0.0.1 like everyone else's. To black-hole
// them too, the proxies ask which process opened a connection: the socket
// whose local port is the connection's client port belongs, per Linux's
// /proc, to a process of the isolated node's process group (the node and
// its plugin processes).

// groupIsolation reports whether a client port is held by a process of one
// process group.
type groupIsolation struct {
	pgid int

	mu      sync.Mutex
	ports   map[int]bool
	scanned time.Time
}

// rescanEvery bounds how often owns scans /proc again.
const rescanEvery = 100 * time.Millisecond

// newGroupIsolation snapshots the TCP ports process group pgid holds.
func newGroupIsolation(pgid int) (*groupIsolation, error) {
	g := &groupIsolation{pgid: pgid}
	ports, err := groupPorts(pgid)
	if err != nil {
		return nil, err
	}
	g.ports, g.scanned = ports, time.Now()
	return g, nil
}

// owned reports whether port was held by the group when last scanned: for
// the connections open when the isolation starts.
func (g *groupIsolation) owned(port int) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.ports[port]
}

// owns reports whether port is held by the group, scanning again (at most
// every rescanEvery) when it is not among the ports known: for connections
// made during the isolation.
func (g *groupIsolation) owns(port int) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ports[port] {
		return true
	}
	if wait := rescanEvery - time.Since(g.scanned); wait > 0 {
		time.Sleep(wait) // not a synchronisation: rate-limits the rescans of the group's ports
	}
	if ports, err := groupPorts(g.pgid); err == nil {
		g.ports, g.scanned = ports, time.Now()
	}
	return g.ports[port]
}

// groupPorts returns the local ports of the TCP sockets that the processes
// of process group pgid hold.
func groupPorts(pgid int) (map[int]bool, error) {
	pids, err := groupPIDs(pgid)
	if err != nil {
		return nil, err
	}
	inodes := map[string]bool{}
	for _, pid := range pids {
		fds, err := os.ReadDir(filepath.Join("/proc", pid, "fd"))
		if err != nil {
			continue // exited meanwhile
		}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join("/proc", pid, "fd", fd.Name()))
			if err == nil && strings.HasPrefix(link, "socket:[") {
				inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
			}
		}
	}
	ports := map[int]bool{}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(table)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || !inodes[fields[9]] {
				continue
			}
			_, hexPort, ok := strings.Cut(fields[1], ":")
			if port, err := strconv.ParseUint(hexPort, 16, 16); ok && err == nil {
				ports[int(port)] = true
			}
		}
		f.Close()
	}
	return ports, nil
}

// groupPIDs are the processes of process group pgid, as /proc lists them.
func groupPIDs(pgid int) ([]string, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var pids []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
		i := strings.LastIndexByte(string(stat), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) > 2 && f[2] == strconv.Itoa(pgid) {
			pids = append(pids, e.Name())
		}
	}
	if len(pids) == 0 {
		return nil, fmt.Errorf("no process in group %d", pgid)
	}
	return pids, nil
}
