//go:build !linux

package netns

import (
	"context"
	"errors"
	"net"
	"syscall"
)

var errNotLinux = errors.New("network namespaces are Linux only")

func sysProcAttr() *syscall.SysProcAttr { return nil }

// Kill is Linux only.
func (h Host) Kill(context.Context) ([]int, error) { return nil, errNotLinux }

// Dial is Linux only.
func (h Host) Dial(context.Context, string, string) (net.Conn, error) { return nil, errNotLinux }
