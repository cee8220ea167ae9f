// Package tlsrpt writes SMTP TLS reports (RFC 8460): what the sessions of
// a day to one policy domain's MX hosts found (which policy, how many
// sessions succeeded, why the others failed), as JSON, gzipped, for the
// addresses the domain publishes in its _smtp._tls TXT record. Sessions
// are counted as report rows (Row) by internal/tally.
package tlsrpt

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"slices"
	"strings"
	"time"

	"mailroom/internal/message"
	"mailroom/internal/tally"
)

// Policy types (RFC 8460 4.3).
const (
	PolicySTS  = "sts"
	PolicyTLSA = "tlsa"
	PolicyNone = "no-policy-found"
)

// Result types (RFC 8460 4.3); "" is a successful session.
const (
	StartTLSNotSupported = "starttls-not-supported"
	HostMismatch         = "certificate-host-mismatch"
	Expired              = "certificate-expired"
	NotTrusted           = "certificate-not-trusted"
	ValidationFailure    = "validation-failure"
	TLSAInvalid          = "tlsa-invalid"
	DNSSECInvalid        = "dnssec-invalid"
	STSFetchError        = "sts-policy-fetch-error"
	STSInvalid           = "sts-policy-invalid"
)

// Row is one session's outcome as counted: sessions with equal rows add
// up. Success rows carry the policy only.
type Row struct {
	PolicyType   string   `json:"t"`
	PolicyString []string `json:"p,omitempty"` // the STS policy's lines, or the TLSA records
	MXHost       []string `json:"m,omitempty"` // the STS policy's mx patterns
	Result       string   `json:"r,omitempty"`
	ReceivingMX  string   `json:"x,omitempty"`
	ReceivingIP  string   `json:"i,omitempty"`
	Reason       string   `json:"c,omitempty"` // failure-reason-code: our words, clipped
}

// Report is the JSON report (RFC 8460 4.4).
type Report struct {
	Organization string    `json:"organization-name"`
	DateRange    DateRange `json:"date-range"`
	Contact      string    `json:"contact-info"`
	ReportID     string    `json:"report-id"`
	Policies     []Policy  `json:"policies"`
}

// DateRange is the period a report covers.
type DateRange struct {
	Start time.Time `json:"start-datetime"`
	End   time.Time `json:"end-datetime"`
}

// Policy is one policy's sessions.
type Policy struct {
	Policy  PolicyDesc `json:"policy"`
	Summary struct {
		Success int64 `json:"total-successful-session-count"`
		Failure int64 `json:"total-failure-session-count"`
	} `json:"summary"`
	Failures []Failure `json:"failure-details,omitempty"`
}

// PolicyDesc says which policy applied.
type PolicyDesc struct {
	Type   string   `json:"policy-type"`
	String []string `json:"policy-string,omitempty"`
	Domain string   `json:"policy-domain"`
	MXHost []string `json:"mx-host,omitempty"`
}

// Failure is one kind of failed session, with how many.
type Failure struct {
	Result      string `json:"result-type"`
	ReceivingMX string `json:"receiving-mx-hostname,omitempty"`
	ReceivingIP string `json:"receiving-ip,omitempty"`
	Count       int64  `json:"failed-session-count"`
	Reason      string `json:"failure-reason-code,omitempty"`
}

// Build makes the report of one domain's period from its counted rows.
func Build(org, contact, reportID string, rep tally.Report) (Report, error) {
	r := Report{Organization: org, Contact: contact, ReportID: reportID, DateRange: DateRange{rep.Begin.UTC(), rep.End.UTC()}}
	index := map[string]int{}
	for _, t := range rep.Rows {
		var row Row
		if err := json.Unmarshal([]byte(t.Key), &row); err != nil {
			return r, fmt.Errorf("tlsrpt: a counted row of %s: %w", rep.Domain, err)
		}
		pk := row.PolicyType + "\x00" + strings.Join(row.PolicyString, "\x01") + "\x00" + strings.Join(row.MXHost, "\x01")
		i, ok := index[pk]
		if !ok {
			i = len(r.Policies)
			index[pk] = i
			r.Policies = append(r.Policies, Policy{Policy: PolicyDesc{Type: row.PolicyType, String: row.PolicyString, Domain: rep.Domain, MXHost: row.MXHost}})
		}
		p := &r.Policies[i]
		if row.Result == "" {
			p.Summary.Success += t.Count
			continue
		}
		p.Summary.Failure += t.Count
		p.Failures = append(p.Failures, Failure{Result: row.Result, ReceivingMX: row.ReceivingMX,
			ReceivingIP: row.ReceivingIP, Count: t.Count, Reason: row.Reason})
	}
	return r, nil
}

// Gzip returns the report as gzipped JSON (application/tlsrpt+gzip).
func (r Report) Gzip() ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if err := json.NewEncoder(zw).Encode(r); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Destinations reads a domain's TLS-RPT record (RFC 8460 3): among the
// TXT records at _smtp._tls.DOMAIN, exactly one that starts with
// "v=TLSRPTv1", whose rua lists mailto: and https: URIs. The mailto
// addresses and https URLs are returned apart.
func Destinations(txts []string) (mailto, https []string, err error) {
	var rec string
	n := 0
	for _, t := range txts {
		if strings.HasPrefix(strings.TrimSpace(t), "v=TLSRPTv1") {
			rec, n = t, n+1
		}
	}
	switch n {
	case 0:
		return nil, nil, errors.New("no TLS-RPT record")
	case 1:
	default:
		return nil, nil, fmt.Errorf("%d TLS-RPT records (there must be one)", n)
	}
	for _, f := range strings.Split(rec, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(f), "=")
		if !ok || strings.TrimSpace(k) != "rua" {
			continue
		}
		for _, u := range strings.Split(v, ",") {
			u = strings.TrimSpace(u)
			p, err := url.Parse(u)
			switch {
			case err != nil:
			case strings.EqualFold(p.Scheme, "mailto"):
				if a, err := mail.ParseAddress(p.Opaque); err == nil && !slices.Contains(mailto, a.Address) {
					mailto = append(mailto, a.Address)
				}
			case strings.EqualFold(p.Scheme, "https") && p.Host != "":
				https = append(https, u)
			}
		}
	}
	if len(mailto) == 0 && len(https) == 0 {
		return nil, nil, errors.New("the TLS-RPT record has no usable rua (mailto: or https:)")
	}
	return mailto, https, nil
}

// FileName is the report's file name (RFC 8460 5.1):
// submitter!policy-domain!begin!end!unique-id.json.gz, the unique ID of
// letters and digits.
func FileName(submitter, domain string, begin, end time.Time, unique string) string {
	return fmt.Sprintf("%s!%s!%d!%d!%s.json.gz", submitter, domain, begin.Unix(), end.Unix(), unique)
}

// Message writes the report as a mail (RFC 8460 5.3): multipart/report
// of type tlsrpt with a human-readable part and the gzipped report, the
// TLS-Report-Domain and TLS-Report-Submitter fields, and the subject the
// RFC gives. It is DKIM-signed on its way out, as 5.3 requires.
func Message(from, to, submitter, domain string, r Report, gz []byte, unique string, now time.Time) []byte {
	boundary := fmt.Sprintf("tlsrpt-%d", now.UnixNano())
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\nTo: <%s>\r\nSubject: Report Domain: %s Submitter: %s Report-ID: <%s>\r\n", from, to, domain, submitter, r.ReportID)
	fmt.Fprintf(&b, "Date: %s\r\nMessage-ID: <%s>\r\nTLS-Report-Domain: %s\r\nTLS-Report-Submitter: %s\r\n", now.Format(time.RFC1123Z), r.ReportID, domain, submitter)
	// RFC 8460 3: a report must get through whatever failure it reports.
	b.WriteString("TLS-Required: No\r\n")
	fmt.Fprintf(&b, "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=\"tlsrpt\";\r\n\tboundary=\"%s\"\r\n\r\n", boundary)
	fmt.Fprintf(&b, "--%s\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n", boundary)
	fmt.Fprintf(&b, "This is an SMTP TLS report (RFC 8460) for %s from %s,\r\ncovering %s to %s.\r\n",
		domain, submitter, r.DateRange.Start.Format(time.RFC3339), r.DateRange.End.Format(time.RFC3339))
	for _, p := range r.Policies {
		fmt.Fprintf(&b, "Policy %s: %d session(s) succeeded, %d failed.\r\n", p.Policy.Type, p.Summary.Success, p.Summary.Failure)
	}
	name := FileName(submitter, domain, r.DateRange.Start, r.DateRange.End, unique)
	fmt.Fprintf(&b, "\r\n--%s\r\nContent-Type: application/tlsrpt+gzip\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment;\r\n\tfilename=\"%s\"\r\n\r\n",
		boundary, name)
	message.WriteBase64(&b, gz)
	fmt.Fprintf(&b, "--%s--\r\n", boundary)
	return []byte(b.String())
}
