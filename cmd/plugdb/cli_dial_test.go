package main

import (
	"errors"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
)

// The CLI reports a dial failure by the dial's typed error, not by grpc-go's
// text: the short reason, since its message already names the address.
func TestCLIDialReason(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, "connection refused"},
		{&net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "nosuch.invalid", IsNotFound: true}}, "no such host"},
		{&net.OpError{Op: "dial", Net: "tcp", Err: errors.New("i/o timeout")}, "i/o timeout"},
		{errors.New("something else"), "something else"},
	} {
		if got := dialReason(c.err); got != c.want {
			t.Errorf("dialReason(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}

// A host that does not resolve: the dialer resolves it (passthrough), so the
// CLI says it cannot reach it, with the lookup's reason.
func TestCLIUnknownHost(t *testing.T) {
	const addr = "nosuch.invalid:7070"
	r := runCLI(t, "get", "k", "--addr", addr, "--timeout", "20s")
	const prefix = "plugdb: cannot reach plugdb at " + addr + ": "
	if r.code != 2 || r.stdout != "" || !strings.HasPrefix(r.stderr, prefix) || strings.Contains(r.stderr, "rpc error") {
		t.Errorf("got %v; want exit 2 and stderr %q followed by the lookup's reason", r, prefix+"…")
	}
}
