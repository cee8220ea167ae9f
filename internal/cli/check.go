package cli

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"mailroom/internal/certs"
	"mailroom/internal/dane"
	"mailroom/internal/dns"
	"mailroom/internal/dnscheck"
	"mailroom/internal/mtasts"
	"mailroom/internal/records"
	"mailroom/internal/store"
)

// checkCommand is "check DOMAIN": the domain's DNS against what Mailroom
// expects of it.
func (a *app) checkCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{Use: "check DOMAIN", Short: "Check a domain's DNS records (MX, SPF, DKIM, DMARC, TLS-RPT, reverse DNS)",
		Long: `Compares what DNS says of the domain with what Mailroom expects ('mailroom domain records DOMAIN'),
through the configured resolver ([dns] resolver, else the system's). Each finding says how to fix it.
Exits with 1 when something is wrong; warnings alone exit 0.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := a.config()
			if err != nil {
				return err
			}
			resolver, err := dns.New(cfg.DNS.Resolver.String(), cfg.DNS.DNSSEC)
			if err != nil {
				return err
			}
			var findings []dnscheck.Finding
			d := ""
			err = a.withDomainKeys(cmd, args[0], "check", func(ctx context.Context, _ store.Store, domain string, keys []store.DKIMKey) error {
				d = domain
				ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
				defer cancel()
				in := records.FromConfig(cfg, d, keys, time.Now())
				var roots *x509.CertPool
				if cfg.Outbound.CAFile != "" {
					var err error
					if roots, err = certs.Pool(cfg.Outbound.CAFile, "outbound.ca_file"); err != nil {
						return err
					}
				}
				findings = dnscheck.Domain(ctx, resolver, in, mtasts.NewFetcher(resolver, roots, cfg.Outbound.MTASTSPort))
				findings = append(findings, a.checkDANE(ctx, resolver, cfg.Hostname, in)...)
				return nil
			})
			if err != nil {
				return err
			}
			errors, warnings := 0, 0
			for _, f := range findings {
				switch f.Level {
				case dnscheck.Error:
					errors++
				case dnscheck.Warn:
					warnings++
				}
			}
			if asJSON {
				if err := a.printJSON(findings); err != nil {
					return err
				}
			} else {
				rows := make([][]string, 0, len(findings))
				for _, f := range findings {
					rows = append(rows, []string{string(f.Level), f.Check, f.Name, f.Text})
					if f.Fix != "" {
						rows = append(rows, []string{"", "", "", "fix: " + f.Fix})
					}
				}
				a.table("LEVEL\tCHECK\tNAME\tFINDING", rows)
			}
			if errors > 0 {
				return fmt.Errorf("%s: %s, %s: fix the problems as each finding says, then run 'mailroom check %s' again (DNS changes may take the records' TTL to show)", d, count(errors, "problem"), count(warnings, "warning"), d)
			}
			if !asJSON {
				fmt.Fprintf(a.stdout, "%s: no problems, %s\n", d, count(warnings, "warning"))
			}
			return nil
		}}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// checkDANE looks at the TLSA records of our MX host (RFC 7672): none is
// fine (DANE is optional); published ones must be validated (DNSSEC) and
// match the certificate our SMTP listener presents, or senders that use
// DANE hold our mail. The listener is reached as they reach it.
func (a *app) checkDANE(ctx context.Context, r *dns.Resolver, host string, in records.Inputs) []dnscheck.Finding {
	port := "25"
	if len(in.Listen.SMTP) > 0 {
		if _, p, err := net.SplitHostPort(in.Listen.SMTP[0].String()); err == nil {
			port = p
		}
	}
	name := "_" + port + "._tcp." + host
	f := func(l dnscheck.Level, text, fix string) []dnscheck.Finding {
		return []dnscheck.Finding{{Level: l, Check: "DANE", Name: name, Text: text, Fix: fix}}
	}
	recs, secure, err := r.LookupTLSA(ctx, name)
	switch {
	case err != nil:
		return f(dnscheck.Error, "the TLSA records could not be looked up ("+err.Error()+"): senders that use DANE hold mail for "+host,
			"check the zone's DNSSEC signatures (a validating resolver answers SERVFAIL when they are broken)")
	case len(recs) == 0:
		return f(dnscheck.OK, "no TLSA records: DANE is not published (optional; it needs a DNSSEC-signed zone)", "")
	case !r.Validating():
		return f(dnscheck.Warn, fmt.Sprintf("%d TLSA record(s), not checked: the resolver is not trusted to validate DNSSEC", len(recs)),
			"run the check with a validating resolver on this machine ([dns] resolver, [dns] dnssec)")
	case !secure:
		return f(dnscheck.Warn, fmt.Sprintf("%d TLSA record(s), but the zone is not DNSSEC-signed: senders ignore them", len(recs)),
			"sign the zone with DNSSEC (and publish its DS at the parent), or remove the TLSA records")
	}
	addr := net.JoinHostPort(host, port)
	if ips, err := r.LookupIP(ctx, host); err == nil {
		addr = net.JoinHostPort(ips[0].String(), port)
	}
	rep := a.probe(ctx, addr, host, "starttls", host, "", "", "", "", nil, 30*time.Second)
	if rep.TLS == nil {
		return f(dnscheck.Error, "TLSA records are published but STARTTLS could not be had at "+addr+": "+rep.Error, "make sure the SMTP listener offers STARTTLS")
	}
	if err := dane.Verify(rep.TLS.raw, dane.Usable(recs), []string{host}, time.Now()); err != nil {
		leaf, perr := x509.ParseCertificate(rep.TLS.raw[0])
		fix := "publish a TLSA record for the certificate the server presents"
		if perr == nil {
			t := dane.Record(leaf)
			fix = fmt.Sprintf("publish %s. IN TLSA %d %d %d %X (the key of the certificate presented now), before retiring the old record", name, t.Usage, t.Selector, t.MatchingType, t.Data)
		}
		return f(dnscheck.Error, strings.TrimPrefix(err.Error(), "DANE: ")+": senders that use DANE hold mail for "+host, fix)
	}
	return f(dnscheck.OK, "the TLSA records are DNSSEC-validated and match the certificate presented at "+addr, "")
}

// count is "1 warning", "2 warnings".
func count(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
