// Package dns answers the DNS questions of mail routing: the mail
// exchangers of a domain (RFC 5321 5.1, with Null MX from RFC 7505) and the
// addresses of a host, from the system's resolver or from a configured
// server ([dns] resolver, which tests point at a server they start).
// Answers say whether a failure is permanent (the domain does not exist,
// or accepts no mail) or temporary (try again later), and, for DANE
// (RFC 7672), whether a validating resolver vouched for them (DNSSEC).
package dns

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
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
	// trustAD: the servers' word that an answer is DNSSEC-validated (the
	// AD bit) is taken. Only a resolver on this machine (or one the admin
	// vouches for) is trusted: an AD bit from afar crossed a network any
	// router on the way could forge it on, as glibc's "trust-ad" reasons.
	trustAD bool
}

// DNSSEC modes ([dns] dnssec): whose AD bit to trust.
const (
	DNSSECAuto = "auto" // the resolver's, when it is on loopback or resolv.conf says "options trust-ad"
	DNSSECOn   = "on"   // the configured resolver's, wherever it is
	DNSSECOff  = "off"  // nobody's: no answer counts as validated, so no DANE
)

// New returns a resolver asking server ("host:port"), or the servers of
// /etc/resolv.conf when server is "", trusting their AD bit as mode
// (DNSSECAuto when "") says.
func New(server, mode string) (*Resolver, error) {
	r := &Resolver{timeout: 5 * time.Second}
	trustConf := false
	if server != "" {
		r.servers = []string{server}
	} else {
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
		trustConf = resolvConfTrustsAD("/etc/resolv.conf")
	}
	switch mode {
	case DNSSECOn:
		r.trustAD = true
	case DNSSECOff:
	case DNSSECAuto, "":
		r.trustAD = trustConf || allLoopback(r.servers)
	default:
		return nil, fmt.Errorf("dns: dnssec %q: want auto, on or off", mode)
	}
	return r, nil
}

// Validating reports whether answers can be DNSSEC-validated: the AD bit
// of the resolver is trusted (it still has to set it).
func (r *Resolver) Validating() bool { return r.trustAD }

// allLoopback reports whether every server is on 127.0.0.0/8 or ::1.
func allLoopback(servers []string) bool {
	for _, s := range servers {
		host, _, err := net.SplitHostPort(s)
		ip, perr := netip.ParseAddr(host)
		if err != nil || perr != nil || !ip.Unmap().IsLoopback() {
			return false
		}
	}
	return true
}

// resolvConfTrustsAD reports whether resolv.conf has "options trust-ad".
func resolvConfTrustsAD(path string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && f[0] == "options" && slices.Contains(f[1:], "trust-ad") {
			return true
		}
	}
	return false
}

// secure reports whether resp is DNSSEC-validated by a trusted resolver.
func (r *Resolver) secure(resp *mdns.Msg) bool { return r.trustAD && resp.AuthenticatedData }

// query asks for name/qtype, trying each server, over UDP with a retry
// over TCP when the answer is truncated.
func (r *Resolver) query(ctx context.Context, name string, qtype uint16) (*mdns.Msg, error) {
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(name), qtype)
	m.SetEdns0(1232, false)
	// AD in a query asks whether the answer validated, without the
	// signatures themselves (RFC 6840 5.7).
	m.AuthenticatedData = true
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
	mxs, _, err := r.LookupMXSecure(ctx, domain)
	return mxs, err
}

// LookupMXSecure is LookupMX that also says whether the answer (the MX
// records, or their absence) is DNSSEC-validated.
func (r *Resolver) LookupMXSecure(ctx context.Context, domain string) (mxs []MX, secure bool, err error) {
	domain = strings.TrimSuffix(strings.ToLower(domain), ".")
	resp, err := r.query(ctx, domain, mdns.TypeMX)
	if err != nil {
		return nil, false, err
	}
	if err := check(resp, domain); err != nil {
		return nil, false, err
	}
	secure = r.secure(resp)
	for _, rr := range resp.Answer {
		if mx, ok := rr.(*mdns.MX); ok {
			mxs = append(mxs, MX{Host: strings.TrimSuffix(strings.ToLower(mx.Mx), "."), Preference: mx.Preference})
		}
	}
	if len(mxs) == 0 {
		return []MX{{Host: domain, Implicit: true}}, secure, nil
	}
	for _, mx := range mxs {
		if mx.Host == "" { // RFC 7505 3: "." means no mail, whatever else is there
			return nil, secure, fmt.Errorf("dns: %s: %w", domain, ErrNullMX)
		}
	}
	rand.Shuffle(len(mxs), func(i, j int) { mxs[i], mxs[j] = mxs[j], mxs[i] })
	slices.SortStableFunc(mxs, func(a, b MX) int { return int(a.Preference) - int(b.Preference) })
	return mxs, secure, nil
}

// LookupIP returns the IPv6 and IPv4 addresses of host.
func (r *Resolver) LookupIP(ctx context.Context, host string) ([]netip.Addr, error) {
	addrs, _, err := r.LookupIPSecure(ctx, host)
	return addrs, err
}

// LookupIPSecure is LookupIP that also says whether both answers (AAAA
// and A) are DNSSEC-validated. An address literal is not.
func (r *Resolver) LookupIPSecure(ctx context.Context, host string) (addrs []netip.Addr, secure bool, err error) {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}, false, nil
	}
	var errs []error
	// Secure: every answer whose addresses are used validated. A family
	// whose lookup failed gives none, and must not make the other's
	// validated addresses count as unvalidated: that would let whoever can
	// break one lookup turn DANE off.
	secure = true
	for _, qtype := range []uint16{mdns.TypeAAAA, mdns.TypeA} {
		resp, err := r.query(ctx, host, qtype)
		if err == nil {
			err = check(resp, host)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		before := len(addrs)
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
		if len(addrs) > before && !r.secure(resp) {
			secure = false
		}
	}
	switch {
	case len(addrs) > 0:
		return addrs, secure, nil
	case len(errs) == 0:
		return nil, false, fmt.Errorf("dns: %s: %w", host, ErrNoAddress)
	}
	for _, err := range errs {
		if errors.Is(err, ErrTemporary) {
			return nil, false, err
		}
	}
	return nil, false, errs[0]
}

// TLSA is one TLSA record (RFC 6698 2.1).
type TLSA struct {
	Usage, Selector, MatchingType uint8
	Data                          []byte // the certificate association data
}

// LookupTLSA returns the TLSA records of a service ("_25._tcp.host"):
// none when the name has none or does not exist, and whether the answer
// is DNSSEC-validated (RFC 7672 2.2: only a validated answer counts, and
// a failed lookup, ErrTemporary, must not be taken for "none").
func (r *Resolver) LookupTLSA(ctx context.Context, name string) (recs []TLSA, secure bool, err error) {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	resp, err := r.query(ctx, name, mdns.TypeTLSA)
	if err != nil {
		return nil, false, err
	}
	if err := check(resp, name); err != nil && !errors.Is(err, ErrNoDomain) {
		return nil, false, err
	}
	for _, rr := range resp.Answer {
		if t, ok := rr.(*mdns.TLSA); ok {
			data, err := hex.DecodeString(t.Certificate)
			if err != nil {
				continue
			}
			recs = append(recs, TLSA{Usage: t.Usage, Selector: t.Selector, MatchingType: t.MatchingType, Data: data})
		}
	}
	return recs, r.secure(resp), nil
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

// AddrResolver looks up a host's addresses (Resolver does).
type AddrResolver interface {
	LookupIP(ctx context.Context, host string) ([]netip.Addr, error)
}

// DialVia returns a DialContext (for an http.Transport) that looks host
// names up with r, not the system's resolver, and connects to their
// addresses in turn, on port (0: the port in the address dialled).
func DialVia(r AddrResolver, port int) func(ctx context.Context, network, addr string) (net.Conn, error) {
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, p, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		to := port
		if to == 0 {
			n, err := strconv.ParseUint(p, 10, 16)
			if err != nil {
				return nil, fmt.Errorf("dial %s: bad port", addr)
			}
			to = int(n)
		}
		ips, err := r.LookupIP(ctx, host)
		if err != nil {
			return nil, err
		}
		var last error
		for _, ip := range ips {
			c, err := dialer.DialContext(ctx, "tcp", netip.AddrPortFrom(ip, uint16(to)).String())
			if err == nil {
				return c, nil
			}
			last = err
		}
		return nil, last
	}
}
