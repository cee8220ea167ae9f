package cli

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"mailroom/internal/certs"
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
				findings = dnscheck.Check(ctx, resolver, in)
				if in.MTASTS != nil {
					var roots *x509.CertPool
					if cfg.Outbound.CAFile != "" {
						var err error
						if roots, err = certs.Pool(cfg.Outbound.CAFile, "outbound.ca_file"); err != nil {
							return err
						}
					}
					f := mtasts.NewFetcher(resolver, roots, cfg.Outbound.MTASTSPort)
					findings = append(findings, dnscheck.CheckMTASTS(ctx, resolver, f, in)...)
				}
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

// count is "1 warning", "2 warnings".
func count(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
