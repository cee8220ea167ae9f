package dmarcreport

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net/mail"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"mailroom/internal/message"
	"mailroom/internal/tally"
)

// feedback is the XML document of an aggregate report (RFC 7489 appendix
// C): what Parse reads and Write writes.
type feedback struct {
	XMLName  xml.Name  `xml:"feedback"`
	Version  string    `xml:"version,omitempty"`
	Metadata metadata  `xml:"report_metadata"`
	Policy   published `xml:"policy_published"`
	Records  []record  `xml:"record"`
}

type metadata struct {
	Org       string `xml:"org_name"`
	Email     string `xml:"email"`
	ReportID  string `xml:"report_id"`
	DateRange struct {
		Begin int64 `xml:"begin"`
		End   int64 `xml:"end"`
	} `xml:"date_range"`
}

type published struct {
	Domain string `xml:"domain"`
	ADKIM  string `xml:"adkim,omitempty"`
	ASPF   string `xml:"aspf,omitempty"`
	P      string `xml:"p"`
	SP     string `xml:"sp,omitempty"`
	Pct    string `xml:"pct,omitempty"`
}

type record struct {
	Row struct {
		SourceIP  string `xml:"source_ip"`
		Count     int    `xml:"count"`
		Evaluated struct {
			Disposition string   `xml:"disposition"`
			DKIM        string   `xml:"dkim"`
			SPF         string   `xml:"spf"`
			Reason      []reason `xml:"reason,omitempty"`
		} `xml:"policy_evaluated"`
	} `xml:"row"`
	Identifiers struct {
		EnvelopeFrom string `xml:"envelope_from,omitempty"`
		HeaderFrom   string `xml:"header_from"`
	} `xml:"identifiers"`
	Auth struct {
		DKIM []authDKIM `xml:"dkim"`
		SPF  []authSPF  `xml:"spf"`
	} `xml:"auth_results"`
}

type reason struct {
	Type    string `xml:"type"`
	Comment string `xml:"comment,omitempty"`
}

type authDKIM struct {
	Domain string `xml:"domain"`
	Result string `xml:"result"`
}

type authSPF struct {
	Domain string `xml:"domain"`
	Scope  string `xml:"scope,omitempty"`
	Result string `xml:"result"`
}

// Row is one inbound message's evaluation as counted for the aggregate
// report we send its policy domain: messages with equal rows add up.
type Row struct {
	SourceIP     string `json:"ip"`
	HeaderFrom   string `json:"hf"`
	EnvelopeFrom string `json:"ef,omitempty"`
	Disposition  string `json:"d"` // none, quarantine, reject: what we did
	DKIM         string `json:"k"` // pass or fail, aligned
	SPF          string `json:"s"`
	Reason       string `json:"r,omitempty"` // local_policy, sampled_out, trusted_forwarder
	DKIMAuth     []Auth `json:"ka,omitempty"`
	SPFAuth      Auth   `json:"sa"`
	// The policy as published, and where its reports go.
	P     string   `json:"p"`
	SP    string   `json:"sp,omitempty"`
	ADKIM string   `json:"ak,omitempty"`
	ASPF  string   `json:"as,omitempty"`
	Pct   int      `json:"pct"`
	RUA   []string `json:"rua"`
}

// Auth is one authentication result: a DKIM signature's d= or the SPF
// identity's domain (scope mfrom or helo), and its result.
type Auth struct {
	Domain string `json:"d"`
	Scope  string `json:"c,omitempty"`
	Result string `json:"r"`
}

// Aggregate is a report we send, ready to write.
type Aggregate struct {
	doc feedback
	RUA []string // the destinations the policy names, as published
	// ReportID is the report's ID, set before it is written.
	ReportID string
}

// policyOf is what of a row is the policy published: rows under different
// policies (the record changed during the period) go in different reports,
// each with its policy_published.
func policyOf(r Row) string {
	return fmt.Sprintf("%s\x00%s\x00%s\x00%s\x00%d\x00%s", r.P, r.SP, r.ADKIM, r.ASPF, r.Pct, strings.Join(r.RUA, ","))
}

// Build makes the aggregate reports of one policy domain's period from its
// counted rows: one per policy published during the period.
func Build(org, email string, rep tally.Report) ([]Aggregate, error) {
	var out []Aggregate
	index := map[string]int{}
	for _, t := range rep.Rows {
		var row Row
		if err := json.Unmarshal([]byte(t.Key), &row); err != nil {
			return nil, fmt.Errorf("dmarcreport: a counted row of %s: %w", rep.Domain, err)
		}
		i, ok := index[policyOf(row)]
		if !ok {
			i = len(out)
			index[policyOf(row)] = i
			var a Aggregate
			f := &a.doc
			f.Version = "1.0"
			f.Metadata.Org, f.Metadata.Email = org, email
			f.Metadata.DateRange.Begin, f.Metadata.DateRange.End = rep.Begin.Unix(), rep.End.Unix()
			f.Policy = published{Domain: rep.Domain, P: row.P, SP: row.SP, ADKIM: row.ADKIM, ASPF: row.ASPF, Pct: strconv.Itoa(row.Pct)}
			a.RUA = row.RUA
			out = append(out, a)
		}
		f := &out[i].doc
		var r record
		r.Row.SourceIP, r.Row.Count = row.SourceIP, int(t.Count)
		r.Row.Evaluated.Disposition, r.Row.Evaluated.DKIM, r.Row.Evaluated.SPF = row.Disposition, row.DKIM, row.SPF
		if row.Reason != "" {
			r.Row.Evaluated.Reason = append(r.Row.Evaluated.Reason, reason{Type: row.Reason})
		}
		r.Identifiers.EnvelopeFrom, r.Identifiers.HeaderFrom = row.EnvelopeFrom, row.HeaderFrom
		for _, d := range row.DKIMAuth {
			r.Auth.DKIM = append(r.Auth.DKIM, authDKIM{Domain: d.Domain, Result: d.Result})
		}
		r.Auth.SPF = []authSPF{{Domain: row.SPFAuth.Domain, Scope: row.SPFAuth.Scope, Result: row.SPFAuth.Result}}
		f.Records = append(f.Records, r)
	}
	return out, nil
}

// Gzip returns the report's XML, gzipped.
func (a Aggregate) Gzip() ([]byte, error) {
	a.doc.Metadata.ReportID = a.ReportID
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write([]byte(xml.Header))
	enc := xml.NewEncoder(zw)
	enc.Indent("", " ")
	if err := enc.Encode(a.doc); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Destination is one mailto: address of a rua, with the size limit it
// may carry ("!10m"; 0: none).
type Destination struct {
	Address string
	Limit   int64
}

// Destinations reads a rua list (RFC 7489 6.2, 6.3): mailto: URIs, each
// with an optional size limit; other schemes are skipped, as are
// addresses that do not parse.
func Destinations(rua []string) []Destination {
	var out []Destination
	for _, u := range rua {
		u = strings.TrimSpace(u)
		uri, limit, _ := strings.Cut(u, "!")
		p, err := url.Parse(uri)
		if err != nil || !strings.EqualFold(p.Scheme, "mailto") {
			continue
		}
		a, err := mail.ParseAddress(p.Opaque)
		if err != nil {
			continue
		}
		d := Destination{Address: a.Address}
		if limit != "" {
			unit := int64(1)
			switch strings.ToLower(limit[len(limit)-1:]) {
			case "k":
				unit = 1 << 10
			case "m":
				unit = 1 << 20
			case "g":
				unit = 1 << 30
			case "t":
				unit = 1 << 40
			}
			n, err := strconv.ParseInt(strings.TrimRight(limit, "kKmMgGtT"), 10, 64)
			if err != nil || n <= 0 {
				continue
			}
			d.Limit = n * unit
		}
		if !slices.ContainsFunc(out, func(x Destination) bool { return x.Address == d.Address }) {
			out = append(out, d)
		}
	}
	return out
}

// VerificationName is the TXT name whose "v=DMARC1" record lets an
// address outside the policy domain's organization take its reports
// (RFC 7489 7.1): policy-domain._report._dmarc.destination-domain.
func VerificationName(policyDomain, destDomain string) string {
	return policyDomain + "._report._dmarc." + destDomain
}

// FileName is the report's file name (RFC 7489 7.2.1.1), the unique ID
// of letters and digits.
func FileName(receiver, domain string, begin, end time.Time, unique string) string {
	return fmt.Sprintf("%s!%s!%d!%d!%s.xml.gz", receiver, domain, begin.Unix(), end.Unix(), unique)
}

// Message writes the report as a mail (RFC 7489 7.2.1.1): the subject
// the RFC gives (the submitter is the receiver's domain), a short text,
// and the gzipped XML as an attachment.
func Message(from, to, receiver string, a Aggregate, gz []byte, unique string, now time.Time) []byte {
	m := a.doc.Metadata
	m.ReportID = a.ReportID
	domain := a.doc.Policy.Domain
	begin, end := time.Unix(m.DateRange.Begin, 0).UTC(), time.Unix(m.DateRange.End, 0).UTC()
	boundary := fmt.Sprintf("dmarc-%d", now.UnixNano())
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\nTo: <%s>\r\nSubject: Report Domain: %s Submitter: %s Report-ID: <%s>\r\n", from, to, domain, receiver, m.ReportID)
	fmt.Fprintf(&b, "Date: %s\r\nMessage-ID: <%s>\r\nMIME-Version: 1.0\r\n", now.Format(time.RFC1123Z), m.ReportID)
	fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n", boundary)
	fmt.Fprintf(&b, "--%s\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n", boundary)
	total := 0
	for _, r := range a.doc.Records {
		total += r.Row.Count
	}
	fmt.Fprintf(&b, "This is a DMARC aggregate report (RFC 7489) from %s for %s,\r\ncovering %d message(s) from %s to %s.\r\n",
		m.Org, domain, total, begin.Format(time.RFC3339), end.Format(time.RFC3339))
	fmt.Fprintf(&b, "\r\n--%s\r\nContent-Type: application/gzip\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment;\r\n\tfilename=\"%s\"\r\n\r\n",
		boundary, FileName(receiver, domain, begin, end, unique))
	message.WriteBase64(&b, gz)
	fmt.Fprintf(&b, "--%s--\r\n", boundary)
	return []byte(b.String())
}
