// Package dns answers the DNS questions of mail routing: the mail
// exchangers of a domain (RFC 5321 5.1, with Null MX from RFC 7505) and the
// addresses of a host, from the system's resolver or from a configured
// server ([dns] resolver, which tests point at a server they start).
// Answers say whether a failure is permanent (the domain does not exist,
// or accepts no mail) or temporary (try again later).
package dns

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
)

// Errors, matched with errors.Is.
var (
	// ErrNoDomain: the domain does not exist (NXDOMAIN). Permanent.
	ErrNoDomain = errors.New("domain does not exist")
	// ErrNullMX: the domain says it accepts no mail (RFC 7505). Permanent.
	ErrNullMX = errors.New("domain accepts no mail (null MX)")
	// ErrNoAddress: the host has no A or AAAA record. Permanent.
	ErrNoAddress = errors.New("host has no address")
	// ErrTemporary: the answer could not be had now (SERVFAIL, timeout).
	ErrTemporary = errors.New("temporary DNS failure")
)

// Resolver asks one DNS server (or the system's) with a timeout per query.
type Resolver struct {
	servers []string
	timeout time.Duration
}

// New returns a resolver asking server ("host:port"), or the servers of
// /etc/resolv.conf when server is "".
func New(server string) (*Resolver, error) {
	r := &Resolver{timeout: 5 * time.Second}
	if server != "" {
		r.servers = []string{server}
		return r, nil
	}
	cc, err := mdns.ClientConfigFromFile("/etc/resolv.conf")
	if err != nil {
		return nil, fmt.Errorf("dns: read /etc/resolv.conf: %w (or set [dns] resolver)", err)
	}
	for _, s := range cc.Servers {
		r.servers = append(r.servers, net.JoinHostPort(s, cc.Port))
	}
	if len(r.servers) == 0 {
		return nil, errors.New("dns: no server in /etc/resolv.conf: set [dns] resolver")
	}
	return r, nil
}

// query asks for name/qtype, trying each server, over UDP with a retry
// over TCP when the answer is truncated.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) (*mdns.Msg, error) {
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(name), qtype)
	m.SetEdns0(1232, false)
	var lastErr error
	for _, server := range r.servers {
		for _, network := range []string{"udp", "tcp"} {
			c := &mdns.Client{Net: network, Timeout: r.timeout}
			resp, _, err := c.ExchangeContext(ctx, m, server)
			if err != nil {
				lastErr = err
				break // next server
			}
			if resp.Truncated && network == "udp" {
				continue
			}
			return resp, nil
		}
	}
	return nil, fmt.Errorf("dns: %s %s: %w: %v", mdns.TypeToString[qtype], name, ErrTemporary, lastErr)
}

// check turns the response code into an error.
func check(resp *mdns.Msg, name string) error {
	switch resp.Rcode {
	case mdns.RcodeSuccess:
		return nil
	case mdns.RcodeNameError:
		return fmt.Errorf("dns: %s: %w", name, ErrNoDomain)
	}
	return fmt.Errorf("dns: %s: %w: %s", name, ErrTemporary, mdns.RcodeToString[resp.Rcode])
}

// MX is one mail exchanger.
type MX struct {
	Host       string // without the final dot
	Preference uint16
	Implicit   bool // no MX record: the domain itself (RFC 5321 5.1)
}

// LookupMX returns the mail exchangers of domain in the order to try them:
// by preference, equal preferences in random order (RFC 5321 5.1). A
// domain without MX records is its own exchanger. A Null MX ("MX 0 .")
// is ErrNullMX.
func (r *Resolver) LookupMX(ctx context.Context, domain string) ([]MX, error) {
	domain = strings.TrimSuffix(strings.ToLower(domain), ".")
	resp, err := r.query(ctx, domain, mdns.TypeMX)
	if err != nil {
		return nil, err
	}
	if err := check(resp, domain); err != nil {
		return nil, err
	}
	var mxs []MX
	for _, rr := range resp.Answer {
		if mx, ok := rr.(*mdns.MX); ok {
			mxs = append(mxs, MX{Host: strings.TrimSuffix(strings.ToLower(mx.Mx), "."), Preference: mx.Preference})
		}
	}
	if len(mxs) == 0 {
		return []MX{{Host: domain, Implicit: true}}, nil
	}
	for _, mx := range mxs {
		if mx.Host == "" { // RFC 7505 3: "." means no mail, whatever else is there
			return nil, fmt.Errorf("dns: %s: %w", domain, ErrNullMX)
		}
	}
	rand.Shuffle(len(mxs), func(i, j int) { mxs[i], mxs[j] = mxs[j], mxs[i] })
	slices.SortStableFunc(mxs, func(a, b MX) int { return int(a.Preference) - int(b.Preference) })
	return mxs, nil
}

// LookupIP returns the IPv6 and IPv4 addresses of host.
func (r *Resolver) LookupIP(ctx context.Context, host string) ([]netip.Addr, error) {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}, nil
	}
	var addrs []netip.Addr
	var errs []error
	for _, qtype := range []uint16{mdns.TypeAAAA, mdns.TypeA} {
		resp, err := r.query(ctx, host, qtype)
		if err == nil {
			err = check(resp, host)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, rr := range resp.Answer {
			switch a := rr.(type) {
			case *mdns.AAAA:
				if ip, ok := netip.AddrFromSlice(a.AAAA); ok {
					addrs = append(addrs, ip)
				}
			case *mdns.A:
				if ip, ok := netip.AddrFromSlice(a.A.To4()); ok {
					addrs = append(addrs, ip)
				}
			}
		}
	}
	switch {
	case len(addrs) > 0:
		return addrs, nil
	case len(errs) == 0:
		return nil, fmt.Errorf("dns: %s: %w", host, ErrNoAddress)
	}
	for _, err := range errs {
		if errors.Is(err, ErrTemporary) {
			return nil, err
		}
	}
	return nil, errs[0]
}

// LookupTXT returns the TXT records of name, each record's strings joined
// (RFC 7208 3.3, RFC 6376 3.6.2.2): none (and no error) when the name
// exists without TXT records, ErrNoDomain when it does not exist.
func (r *Resolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	resp, err := r.query(ctx, name, mdns.TypeTXT)
	if err != nil {
		return nil, err
	}
	if err := check(resp, name); err != nil {
		return nil, err
	}
	var out []string
	for _, rr := range resp.Answer {
		if t, ok := rr.(*mdns.TXT); ok {
			out = append(out, strings.Join(t.Txt, ""))
		}
	}
	return out, nil
}

// LookupPTR returns the names an address maps back to (RFC 1035 3.5),
// without their final dots: none when it has no PTR record.
func (r *Resolver) LookupPTR(ctx context.Context, ip netip.Addr) ([]string, error) {
	name, err := mdns.ReverseAddr(ip.Unmap().String())
	if err != nil {
		return nil, fmt.Errorf("dns: PTR of %s: %w", ip, err)
	}
	resp, err := r.query(ctx, name, mdns.TypePTR)
	if err != nil {
		return nil, err
	}
	if err := check(resp, name); err != nil {
		if errors.Is(err, ErrNoDomain) {
			return nil, nil
		}
		return nil, err
	}
	var out []string
	for _, rr := range resp.Answer {
		if p, ok := rr.(*mdns.PTR); ok {
			out = append(out, strings.TrimSuffix(strings.ToLower(p.Ptr), "."))
		}
	}
	return out, nil
}
