//go:build !linux

package zkserver

import (
	"os"
	"syscall"
)

// sysProcAttr: process groups and the parent-death signal are Linux-only here.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// lockDir only creates path; the folder lock is Linux-only.
func lockDir(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
}
