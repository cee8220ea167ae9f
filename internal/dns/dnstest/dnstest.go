// Package dnstest serves fixed DNS records on loopback, for tests and the
// benchmark harness: code under test is pointed at the server's address
// (dns.New, [dns] resolver) and never asks a resolver outside the machine.
// One Zone answers over UDP and TCP on the same port, so answers too large
// for UDP (long TXT records) come whole through TCP as from a real server.
package dnstest

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	mdns "github.com/miekg/dns"
)

// Zone answers from the records it holds: a name's records of the asked
// type; an empty NOERROR answer (NODATA) for a name that has records of
// other types only; NXDOMAIN for a name without records; SERVFAIL for
// names at or under a domain set to fail. Names compare case-insensitively.
// A Zone may change while it is served.
type Zone struct {
	mu      sync.RWMutex
	records map[string][]mdns.RR // key: lower-case FQDN + " " + type
	failing []string             // lower-case FQDNs
}

// NewZone returns an empty zone.
func NewZone() *Zone {
	return &Zone{records: map[string][]mdns.RR{}}
}

// Add adds one record in zone-file syntax, e.g.
// "example.test. 60 IN MX 10 mx.example.test.".
func (z *Zone) Add(record string) error {
	rr, err := mdns.NewRR(record)
	if err != nil {
		return fmt.Errorf("dnstest: record %q: %w", record, err)
	}
	if rr == nil || !hasData(rr) {
		return fmt.Errorf("dnstest: record %q: no data after the type", record)
	}
	h := rr.Header()
	key := strings.ToLower(h.Name) + " " + mdns.TypeToString[h.Rrtype]
	z.mu.Lock()
	defer z.mu.Unlock()
	z.records[key] = append(z.records[key], rr)
	return nil
}

// Set replaces the records of name and type (e.g. "example.test.", "MX")
// with data in zone-file syntax ("10 mx.example.test."), with a TTL of
// 60 s. With no data the name still exists, without records of the type;
// Delete removes it.
func (z *Zone) Set(name, typ string, data ...string) error {
	name = mdns.Fqdn(strings.ToLower(name))
	typ = strings.ToUpper(typ)
	if _, ok := mdns.StringToType[typ]; !ok {
		return fmt.Errorf("dnstest: unknown record type %q", typ)
	}
	rrs := make([]mdns.RR, 0, len(data))
	for _, d := range data {
		rr, err := mdns.NewRR(name + " 60 IN " + typ + " " + d)
		if err == nil && (rr == nil || !hasData(rr)) {
			err = errors.New("no data")
		}
		if err != nil {
			return fmt.Errorf("dnstest: %s %s %q: %w", name, typ, d, err)
		}
		rrs = append(rrs, rr)
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	z.records[name+" "+typ] = rrs
	return nil
}

// hasData reports whether rr has data: miekg/dns takes a record without
// any (as in dynamic updates), which prints as an empty record of its type.
func hasData(rr mdns.RR) bool {
	newRR, ok := mdns.TypeToRR[rr.Header().Rrtype]
	if !ok {
		return true // a type without a struct: kept as generic data
	}
	empty := newRR()
	*empty.Header() = *rr.Header()
	return empty.String() != rr.String()
}

// Delete removes the records of name and type.
func (z *Zone) Delete(name, typ string) {
	key := mdns.Fqdn(strings.ToLower(name)) + " " + strings.ToUpper(typ)
	z.mu.Lock()
	defer z.mu.Unlock()
	delete(z.records, key)
}

// Fail makes the zone answer SERVFAIL for domain and every name under it.
func (z *Zone) Fail(domain string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.failing = append(z.failing, mdns.Fqdn(strings.ToLower(domain)))
}

// exists reports whether name has records of any type (or was Set
// without any); z.mu is held. Zones for tests are small: a scan will do.
func (z *Zone) exists(name string) bool {
	for key := range z.records {
		if strings.HasPrefix(key, name+" ") {
			return true
		}
	}
	return false
}

// ServeDNS answers one query (mdns.Handler).
func (z *Zone) ServeDNS(w mdns.ResponseWriter, req *mdns.Msg) {
	m := new(mdns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = mdns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	z.mu.RLock()
	switch {
	case z.fails(name):
		m.Rcode = mdns.RcodeServerFailure
	case !z.exists(name):
		m.Rcode = mdns.RcodeNameError
	default:
		for _, rr := range z.records[name+" "+mdns.TypeToString[q.Qtype]] {
			rr = mdns.Copy(rr)
			rr.Header().Name = q.Name // as asked, like a real server
			m.Answer = append(m.Answer, rr)
		}
	}
	z.mu.RUnlock()
	if req.IsEdns0() != nil {
		m.SetEdns0(uint16(udpSize(req)), false) // RFC 6891 7: answer in kind
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		m.Truncate(udpSize(req))
	}
	w.WriteMsg(m)
}

// fails reports whether name is at or under a failing domain; z.mu is held.
func (z *Zone) fails(name string) bool {
	for _, d := range z.failing {
		if mdns.IsSubDomain(d, name) {
			return true
		}
	}
	return false
}

// udpSize is the largest UDP answer the client takes (RFC 6891).
func udpSize(req *mdns.Msg) int {
	if opt := req.IsEdns0(); opt != nil && opt.UDPSize() > mdns.MinMsgSize {
		return int(opt.UDPSize())
	}
	return mdns.MinMsgSize
}

// Server serves a Zone over UDP and TCP on one loopback port.
type Server struct {
	Addr string // host:port, for dns.New and [dns] resolver
	Zone *Zone
	udp  *mdns.Server
	tcp  *mdns.Server
	done chan error // the first of the two to stop, and why
}

// Serve serves zone on addr ("127.0.0.1:0" picks a free port), UDP and TCP
// on the same port. It refuses addresses that are not loopback.
func Serve(zone *Zone, addr string) (*Server, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("dnstest: address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("dnstest: %q is not a loopback address", addr)
	}
	if port == "" {
		port = "0"
	}
	// With port 0 the kernel picks the UDP port, which TCP may find taken:
	// try a few times.
	for attempt := 0; ; attempt++ {
		pc, err := net.ListenPacket("udp", net.JoinHostPort(host, port))
		if err != nil {
			return nil, fmt.Errorf("dnstest: listen: %w", err)
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err != nil {
			pc.Close()
			if port == "0" && attempt < 10 {
				continue
			}
			return nil, fmt.Errorf("dnstest: listen: %w", err)
		}
		s := &Server{Addr: pc.LocalAddr().String(), Zone: zone,
			udp:  &mdns.Server{PacketConn: pc, Handler: zone},
			tcp:  &mdns.Server{Listener: l, Handler: zone},
			done: make(chan error, 2)}
		if err := s.start(); err != nil {
			pc.Close()
			l.Close()
			return nil, err
		}
		return s, nil
	}
}

// start runs both servers and waits until they serve or one fails.
func (s *Server) start() error {
	started := make(chan struct{}, 2)
	for _, srv := range []*mdns.Server{s.udp, s.tcp} {
		srv.NotifyStartedFunc = func() { started <- struct{}{} }
		go func() {
			err := srv.ActivateAndServe()
			if err == nil {
				err = errors.New("dnstest: server stopped")
			}
			s.done <- err
		}()
	}
	for range 2 {
		select {
		case <-started:
		case err := <-s.done:
			s.Close()
			return fmt.Errorf("dnstest: serve: %w", err)
		}
	}
	return nil
}

// Done delivers why the first of the two servers (UDP, TCP) stopped: after
// Close, or on a failure while serving.
func (s *Server) Done() <-chan error { return s.done }

// Close stops the server.
func (s *Server) Close() error {
	err := s.udp.Shutdown()
	if err2 := s.tcp.Shutdown(); err == nil {
		err = err2
	}
	return err
}

// Start serves records on 127.0.0.1 until the test ends: keys are a name
// and a type ("example.test. MX"), values the records' data
// ("10 mx.example.test."); a key without data makes the name exist.
// Names under servfail.test. answer SERVFAIL.
func Start(t testing.TB, records map[string][]string) *Server {
	t.Helper()
	z := NewZone()
	for key, data := range records {
		name, typ, ok := strings.Cut(key, " ")
		if !ok {
			t.Fatalf("dnstest: key %q: want \"NAME TYPE\"", key)
		}
		if err := z.Set(name, typ, data...); err != nil {
			t.Fatal(err)
		}
	}
	z.Fail("servfail.test.")
	s, err := Serve(z, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
