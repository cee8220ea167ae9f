package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"strings"

	"github.com/miekg/dns"
)

// rrList collects repeated -rr flags.
type rrList []string

func (l *rrList) String() string     { return strings.Join(*l, "; ") }
func (l *rrList) Set(s string) error { *l = append(*l, s); return nil }

// zone answers from fixed records: the records of a name and type, an
// empty NOERROR for a known name without that type, NXDOMAIN otherwise.
type zone struct {
	records map[string][]dns.RR // key: lower-case FQDN + " " + type
	names   map[string]bool
}

func newZone(texts []string) (*zone, error) {
	z := &zone{records: map[string][]dns.RR{}, names: map[string]bool{}}
	for _, s := range texts {
		rr, err := dns.NewRR(s)
		if err != nil {
			return nil, fmt.Errorf("record %q: %w", s, err)
		}
		name := strings.ToLower(rr.Header().Name)
		key := name + " " + dns.TypeToString[rr.Header().Rrtype]
		z.records[key] = append(z.records[key], rr)
		z.names[name] = true
	}
	return z, nil
}

func (z *zone) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	if !z.names[name] {
		m.Rcode = dns.RcodeNameError
	}
	for _, rr := range z.records[name+" "+dns.TypeToString[q.Qtype]] {
		m.Answer = append(m.Answer, dns.Copy(rr))
	}
	w.WriteMsg(m)
}

// runDNS serves the records given with -rr over UDP until it is signalled.
func runDNS(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("dns", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "UDP address to serve on (loopback only)")
	addrFile := fs.String("addr-file", "", "write the address served on to this file")
	var rrs rrList
	fs.Var(&rrs, "rr", `a record in zone-file syntax, e.g. "bench.test. 60 IN MX 10 mx.bench.test." (repeat)`)
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if err := checkLoopback(*listen); err != nil {
		return err
	}
	z, err := newZone(rrs)
	if err != nil {
		return err
	}
	pc, err := net.ListenPacket("udp", *listen)
	if err != nil {
		return err
	}
	srv := &dns.Server{PacketConn: pc, Handler: z}
	done := make(chan error, 1)
	go func() { done <- srv.ActivateAndServe() }()
	if err := writeAddrFile(*addrFile, pc.LocalAddr().String()); err != nil {
		srv.Shutdown()
		return err
	}
	select {
	case <-ctx.Done():
		return srv.Shutdown()
	case err := <-done:
		return err
	}
}
