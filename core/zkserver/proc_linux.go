package zkserver

import (
	"fmt"
	"os"
	"syscall"
)

// sysProcAttr puts the server in its own process group, and has the kernel
// kill it when the Go process dies, so a crashed test leaves no JVM behind.
// (Pdeathsig follows the thread that started the server; Go keeps its threads
// unless a goroutine exits locked to one.)
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// lockDir takes an exclusive lock on path (created if needed) so two Starts
// never share a data folder; closing the file releases it.
func lockDir(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if err == syscall.EWOULDBLOCK {
			return nil, fmt.Errorf("%s is locked: another ZooKeeper started from this folder is running", path)
		}
		return nil, err
	}
	return f, nil
}
