package cli

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"mailroom/internal/store"
)

func (a *app) dmarcCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "dmarc", Short: "DMARC aggregate reports received about our domains"}
	var asJSON bool
	var days int
	reports := &cobra.Command{Use: "reports [DOMAIN]", Short: "List the DMARC reports received: who saw mail as our domains, and what failed",
		Long: `Lists the aggregate reports mailbox providers sent to the domains' rua address (postmaster@DOMAIN in
'mailroom domain records'): per report, the messages they saw claiming the domain and how many failed
DMARC, with the addresses that sent the failing ones. Failing mail from an address of yours means a
sender to fix (SPF or DKIM); from elsewhere, it is forgery that the policy stops.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := optionalDomain(args)
			if err != nil {
				return err
			}
			if days < 1 {
				return fmt.Errorf("--days %d: give 1 or more", days)
			}
			return a.withStore(cmd, func(ctx context.Context, st store.Store) error {
				rs, err := st.DMARCReportsOf(ctx, d, time.Now().Add(-time.Duration(days)*24*time.Hour))
				if err != nil {
					return err
				}
				return printList(a, asJSON, rs, "PERIOD END\tREPORTER\tDOMAIN\tPOLICY\tMESSAGES\tFAILED\tFAILING SOURCES", func(r store.DMARCReport) []string {
					total, passed := r.Messages()
					return []string{r.End.UTC().Format("2006-01-02 15:04"), r.Org, r.Domain, r.Policy, strconv.Itoa(total), strconv.Itoa(total - passed), failingSources(r)}
				})
			})
		}}
	reports.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	reports.Flags().IntVar(&days, "days", 30, "reports whose period ended in the last N days")
	cmd.AddCommand(reports)
	return cmd
}

// failingSources names the addresses that sent failing mail, the most
// first: "203.0.113.9 (3), 198.51.100.1 (1)".
func failingSources(r store.DMARCReport) string {
	counts := map[string]int{}
	for _, row := range r.Rows {
		if row.DKIM != "pass" && row.SPF != "pass" {
			counts[row.SourceIP] += row.Count
		}
	}
	ips := make([]string, 0, len(counts))
	for ip := range counts {
		ips = append(ips, ip)
	}
	slices.SortFunc(ips, func(x, y string) int { return cmp.Or(counts[y]-counts[x], strings.Compare(x, y)) })
	var parts []string
	for i, ip := range ips {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("and %d more", len(ips)-3))
			break
		}
		parts = append(parts, fmt.Sprintf("%s (%d)", ip, counts[ip]))
	}
	return dash(strings.Join(parts, ", "))
}
