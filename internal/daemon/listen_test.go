package daemon

import (
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
)

// TestListenError: a port that cannot be bound is explained with what to do.
func TestListenError(t *testing.T) {
	wrap := func(errno syscall.Errno) error {
		return &net.OpError{Op: "listen", Net: "tcp", Err: os.NewSyscallError("bind", errno)}
	}
	cases := []struct {
		name string
		err  error
		want []string
	}{
		{"a low port without privileges says how to get them", wrap(syscall.EACCES), []string{"run mailroom as root", "setcap cap_net_bind_service=+ep", "a port above 1023 in [listen] smtp"}},
		{"a port in use names the cause and the key", wrap(syscall.EADDRINUSE), []string{"another server is using the port", "ss -ltnp", "[listen] smtp"}},
		{"an address the machine lacks says so", wrap(syscall.EADDRNOTAVAIL), []string{"this machine has no such address"}},
		{"anything else names the key", fmt.Errorf("odd"), []string{"listen for smtp on 192.0.2.1:25: odd", "[listen] smtp"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			msg := listenError("smtp", "192.0.2.1:25", c.err).Error()
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("%q lacks %q", msg, w)
				}
			}
			if c.err != nil && strings.Contains(msg, "permission denied") && !strings.Contains(msg, "root") {
				t.Errorf("%q repeats the system's words without saying what to do", msg)
			}
		})
	}
}
