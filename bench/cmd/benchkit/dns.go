package main

import (
	"context"
	"flag"
	"strings"

	"mailroom/internal/dns/dnstest"
)

// rrList collects repeated -rr flags.
type rrList []string

func (l *rrList) String() string     { return strings.Join(*l, "; ") }
func (l *rrList) Set(s string) error { *l = append(*l, s); return nil }

// runDNS serves the records given with -rr over UDP and TCP until it is
// signalled.
func runDNS(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("dns", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to serve on, UDP and TCP (loopback only)")
	addrFile := fs.String("addr-file", "", "write the address served on to this file")
	var rrs rrList
	fs.Var(&rrs, "rr", `a record in zone-file syntax, e.g. "bench.test. 60 IN MX 10 mx.bench.test." (repeat)`)
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if err := checkLoopback(*listen); err != nil {
		return err
	}
	z := dnstest.NewZone()
	for _, rr := range rrs {
		if err := z.Add(rr); err != nil {
			return err
		}
	}
	srv, err := dnstest.Serve(z, *listen)
	if err != nil {
		return err
	}
	if err := writeAddrFile(*addrFile, srv.Addr); err != nil {
		srv.Close()
		return err
	}
	select {
	case <-ctx.Done():
		return srv.Close()
	case err := <-srv.Done():
		srv.Close()
		return err
	}
}
