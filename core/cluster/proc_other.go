//go:build !linux

package cluster

import (
	"errors"
	"io"
	"os/exec"
	"syscall"
)

// identify is Linux-only (it reads /proc); elsewhere no recorded process can
// be told apart from a later one with the same PID, so none is signalled.
func identify(pid int) (procID, bool, error) {
	return procID{}, false, errors.New("telling processes apart needs /proc (Linux)")
}

// setChildAttrs puts a child in its own process group.
func setChildAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// lockFile does not lock outside Linux.
func lockFile(path string) (io.Closer, error) { return io.NopCloser(nil), nil }
