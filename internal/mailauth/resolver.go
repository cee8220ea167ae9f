package mailauth

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"time"

	"mailroom/internal/dns"
)

// Resolver is what the checks ask DNS (dns.Resolver).
type Resolver interface {
	LookupTXT(ctx context.Context, name string) ([]string, error)
	LookupMX(ctx context.Context, domain string) ([]dns.MX, error)
	LookupIP(ctx context.Context, host string) ([]netip.Addr, error)
	LookupPTR(ctx context.Context, ip netip.Addr) ([]string, error)
}

// netResolver puts a Resolver in the shape of net.Resolver that the SPF
// library asks (blitiri.com.ar/go/spf), with its errors: a *net.DNSError,
// IsNotFound for a name or record that does not exist (a void lookup, RFC
// 7208 4.6.4), IsTemporary for a failure.
type netResolver struct{ r Resolver }

func dnsError(name string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, dns.ErrNoDomain), errors.Is(err, dns.ErrNoAddress), errors.Is(err, dns.ErrNullMX):
		return &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
	}
	return &net.DNSError{Err: err.Error(), Name: name, IsTemporary: true}
}

func (n netResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	txt, err := n.r.LookupTXT(ctx, name)
	if err == nil && len(txt) == 0 {
		return nil, &net.DNSError{Err: "no TXT record", Name: name, IsNotFound: true}
	}
	return txt, dnsError(name, err)
}

// LookupMX returns the MX records only: SPF's "mx" has no implicit MX
// (RFC 7208 5.4).
func (n netResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	mxs, err := n.r.LookupMX(ctx, name)
	if err != nil {
		return nil, dnsError(name, err)
	}
	var out []*net.MX
	for _, mx := range mxs {
		if !mx.Implicit {
			out = append(out, &net.MX{Host: mx.Host + ".", Pref: mx.Preference})
		}
	}
	if len(out) == 0 {
		return nil, &net.DNSError{Err: "no MX record", Name: name, IsNotFound: true}
	}
	return out, nil
}

func (n netResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	ips, err := n.r.LookupIP(ctx, host)
	if err != nil {
		return nil, dnsError(host, err)
	}
	out := make([]net.IPAddr, len(ips))
	for i, ip := range ips {
		out[i] = net.IPAddr{IP: ip.AsSlice()}
	}
	return out, nil
}

func (n netResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return nil, &net.DNSError{Err: "not an address", Name: addr, IsNotFound: true}
	}
	names, err := n.r.LookupPTR(ctx, ip)
	if err != nil {
		return nil, dnsError(addr, err)
	}
	if len(names) == 0 {
		return nil, &net.DNSError{Err: "no PTR record", Name: addr, IsNotFound: true}
	}
	out := make([]string, len(names))
	for i, name := range names {
		out[i] = name + "."
	}
	return out, nil
}

// lookupTXT is LookupTXT for libraries that take no context (go-msgauth):
// bounded by ctx and by a time of its own.
func lookupTXT(ctx context.Context, r Resolver) func(name string) ([]string, error) {
	return func(name string) ([]string, error) {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		return netResolver{r}.LookupTXT(ctx, name)
	}
}
