package store

import (
	"context"
	"time"
)

// DMARCReport is an aggregate report a mailbox provider sent about mail
// from one of our domains (RFC 7489 7.2): what it received claiming the
// domain, from which addresses, and how SPF, DKIM and DMARC judged it.
type DMARCReport struct {
	ID       int64     `json:"id"`
	Received time.Time `json:"received"`
	Org      string    `json:"org"`   // who reports: google.com
	Email    string    `json:"email"` // their contact
	ReportID string    `json:"report_id"`
	Begin    time.Time `json:"begin"`
	End      time.Time `json:"end"`
	// The policy the reporter saw published.
	Domain string     `json:"domain"`
	Policy string     `json:"policy"` // p
	Rows   []DMARCRow `json:"rows"`
}

// DMARCRow is one line of a report: messages from one address with one
// outcome.
type DMARCRow struct {
	SourceIP    string `json:"source_ip"`
	Count       int    `json:"count"`
	Disposition string `json:"disposition"` // none, quarantine, reject
	DKIM        string `json:"dkim"`        // pass or fail, aligned
	SPF         string `json:"spf"`         // pass or fail, aligned
	HeaderFrom  string `json:"header_from"`
	DKIMDomain  string `json:"dkim_domain,omitempty"` // the first signature's d=
	SPFDomain   string `json:"spf_domain,omitempty"`
}

// Messages are the messages a report counts; Passed those that passed
// DMARC (aligned DKIM or SPF).
func (r DMARCReport) Messages() (total, passed int) {
	for _, row := range r.Rows {
		total += row.Count
		if row.DKIM == "pass" || row.SPF == "pass" {
			passed += row.Count
		}
	}
	return total, passed
}

// DMARCReports keeps the aggregate reports received.
type DMARCReports interface {
	// AddDMARCReport keeps a report (ErrExists: the reporter sent that
	// report ID already).
	AddDMARCReport(ctx context.Context, r DMARCReport) error
	// DMARCReportsOf returns the reports about domain ("": every domain)
	// whose period ends after since, the newest first.
	DMARCReportsOf(ctx context.Context, domain string, since time.Time) ([]DMARCReport, error)
}
