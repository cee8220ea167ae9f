package config

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written as a string like "30s" or "5m".
type Duration time.Duration

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil || v < 0 {
		return fmt.Errorf("%q is not a duration: write it like \"30s\", \"5m\" or \"2h\"", b)
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration as a Go duration string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Size is a number of octets, written as an integer or a string with a unit:
// "512KiB", "25MiB", "1GiB", or "10MB" (powers of 1000).
type Size int64

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
}

// UnmarshalText parses a size with an optional unit.
func (s *Size) UnmarshalText(b []byte) error {
	str := strings.TrimSpace(string(b))
	mult := int64(1)
	for _, u := range sizeUnits {
		if n, ok := strings.CutSuffix(str, u.suffix); ok {
			str, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(str, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return fmt.Errorf("%q is not a size: write it like \"25MiB\", \"512KiB\" or a number of bytes", b)
	}
	*s = Size(n * mult)
	return nil
}

// MarshalText writes the size in the largest exact binary unit.
func (s Size) MarshalText() ([]byte, error) {
	for i := 3; i >= 0; i-- {
		u := sizeUnits[i]
		if s != 0 && int64(s)%u.mult == 0 {
			return []byte(strconv.FormatInt(int64(s)/u.mult, 10) + u.suffix), nil
		}
	}
	return []byte(strconv.FormatInt(int64(s), 10)), nil
}

// HostPort is a listening or server address "host:port"; an IPv6 host is
// written in brackets ("[::1]:2525"). (A struct, so that the TOML decoder
// always validates it through UnmarshalText.)
type HostPort struct{ addr string }

// NewHostPort returns a HostPort for a known-good address.
func NewHostPort(addr string) HostPort { return HostPort{addr} }

// String returns "host:port".
func (h HostPort) String() string { return h.addr }

// MarshalText writes "host:port".
func (h HostPort) MarshalText() ([]byte, error) { return []byte(h.addr), nil }

// UnmarshalText checks the address; "" is no address (as printed for an
// unset [dns] resolver).
func (h *HostPort) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		h.addr = ""
		return nil
	}
	host, port, err := net.SplitHostPort(string(b))
	if err != nil {
		return fmt.Errorf("%q is not host:port (write IPv6 as \"[::1]:2525\")", b)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 || strings.Trim(port, "0123456789") != "" {
		return fmt.Errorf("%q has a bad port: it must be a number from 0 to 65535", b)
	}
	if host != "" && strings.ContainsAny(host, " /") {
		return fmt.Errorf("%q has a bad host", b)
	}
	h.addr = string(b)
	return nil
}

// Prefix is an IP network in CIDR form; a bare address means that address only.
type Prefix netip.Prefix

// UnmarshalText parses "192.0.2.0/24", "2001:db8::/32" or "192.0.2.7".
func (p *Prefix) UnmarshalText(b []byte) error {
	s := string(b)
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("%q is not an IP network: write it like \"192.0.2.0/24\" or \"::1\"", b)
		}
		*p = Prefix(netip.PrefixFrom(a, a.BitLen()))
		return nil
	}
	v, err := netip.ParsePrefix(s)
	if err != nil {
		return fmt.Errorf("%q is not an IP network: write it like \"192.0.2.0/24\" or \"::1\"", b)
	}
	*p = Prefix(v.Masked())
	return nil
}

// MarshalText writes the network in CIDR form.
func (p Prefix) MarshalText() ([]byte, error) { return []byte(netip.Prefix(p).String()), nil }

// Contains reports whether the network contains ip.
func (p Prefix) Contains(ip netip.Addr) bool { return netip.Prefix(p).Contains(ip.Unmap()) }

// IP is an IPv4 or IPv6 address.
type IP netip.Addr

// UnmarshalText parses "192.0.2.25" or "2001:db8::25".
func (a *IP) UnmarshalText(b []byte) error {
	v, err := netip.ParseAddr(string(b))
	if err != nil || v.Zone() != "" {
		return fmt.Errorf("%q is not an IP address: write it like \"192.0.2.25\" or \"2001:db8::25\"", b)
	}
	*a = IP(v.Unmap())
	return nil
}

// MarshalText writes the address.
func (a IP) MarshalText() ([]byte, error) { return []byte(netip.Addr(a).String()), nil }
