package cluster

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// identify returns what tells process pid apart from a later process that
// reuses its PID: its start time (in clock ticks since boot, field 22 of
// /proc/PID/stat) and its command line; running is false for a zombie.
func identify(pid int) (id procID, running bool, err error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procID{}, false, err
	}
	// The command name (field 2) is in parentheses and may hold spaces: the
	// fields after it start after the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return procID{}, false, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 20 {
		return procID{}, false, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	start, err := strconv.ParseUint(fields[19], 10, 64) // field 22 overall
	if err != nil {
		return procID{}, false, fmt.Errorf("/proc/%d/stat: start time: %v", pid, err)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return procID{}, false, err
	}
	args := strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00")
	return procID{PID: pid, Start: start, Cmdline: args}, fields[0] != "Z" && fields[0] != "X", nil
}

// setChildAttrs puts a child in its own process group (so a Ctrl-C in the
// terminal reaches the supervisor only, which then stops the children in
// order) and has the kernel send it SIGTERM when the supervisor dies.
func setChildAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}

// lockFile takes an exclusive lock on path (created if needed), held until
// the returned file is closed or the process ends.
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock the cluster folder: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if err == syscall.EWOULDBLOCK {
			dir := filepath.Dir(path)
			return nil, fmt.Errorf("a cluster is already running from %s: stop it with `plugdb cluster down --dir %s` or use another --dir", dir, dir)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}
