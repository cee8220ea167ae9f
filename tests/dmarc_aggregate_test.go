package tests

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"testing"

	"mailroom/internal/dns/dnstest"
)

// TestDMARCAggregateReports: A evaluates DMARC on mail from outside and,
// after each period, sends the policy domain an aggregate report (RFC 7489
// 7.2) at the addresses its rua names: one in its own organization; one
// outside it that says it takes the domain's reports; none to one outside
// that does not. B, another Mailroom hosting the destinations, reads the
// report as one received (`mailroom dmarc reports`), and the XML says
// what A saw: one message passing aligned SPF, one failing and
// quarantined.
func TestDMARCAggregateReports(t *testing.T) {
	b, port := remoteServer(t, "127.0.0.112", "dmarc@sender.test")
	for _, u := range []string{"agg@thirdparty.test", "agg@unverified.test"} {
		_, d, _ := strings.Cut(u, "@")
		b.cli("domain", "add", d)
		b.cli("user", "add", u, "--generate")
	}
	b.start()
	zone := dnstest.Start(t, map[string][]string{
		"sender.test. TXT":                                {`"v=spf1 ip4:127.0.0.1 -all"`},
		"_dmarc.sender.test. TXT":                         {`"v=DMARC1; p=quarantine; adkim=s; rua=mailto:dmarc@sender.test,mailto:agg@thirdparty.test!10m,mailto:agg@unverified.test"`},
		"sender.test._report._dmarc.thirdparty.test. TXT": {`"v=DMARC1"`},
		"sender.test. MX":                                 {"10 mx.sender.test."},
		"thirdparty.test. MX":                             {"10 mx.sender.test."},
		"unverified.test. MX":                             {"10 mx.sender.test."},
		"mx.sender.test. A":                               {"127.0.0.112"},
	})
	a := newServer(t, "", fmt.Sprintf("[dns]\nresolver = %q\n[outbound]\nport = %d\n[queue]\nretry_intervals = [\"1s\"]\n[reports]\ninterval = \"2s\"\n", zone.Addr, port))
	a.start()
	send := func(mailFrom, from, subject string) {
		t.Helper()
		c := a.dial()
		c.cmd("EHLO client.test", "250")
		if r := c.sendMail(mailFrom, []string{"alice@example.test"}, "From: "+from+"\r\nTo: alice@example.test\r\nSubject: "+subject+"\r\n\r\nhello\r\n"); !strings.HasPrefix(r, "250 ") {
			t.Fatalf("%s: %q", subject, r)
		}
	}
	send("news@sender.test", "news@sender.test", "aligned")
	send("x@elsewhere.test", "ceo@sender.test", "forged")

	waitMailbox(t, b, "dmarc@sender.test", 1, "the aggregate report at the domain's own address")
	waitMailbox(t, b, "agg@thirdparty.test", 1, "the aggregate report at the verified destination")

	// B kept it as a report received about its domain.
	var reports []struct {
		Org    string `json:"org"`
		Domain string `json:"domain"`
		Policy string `json:"policy"`
		Rows   []struct {
			SourceIP    string `json:"source_ip"`
			Count       int    `json:"count"`
			Disposition string `json:"disposition"`
			DKIM        string `json:"dkim"`
			SPF         string `json:"spf"`
			HeaderFrom  string `json:"header_from"`
		} `json:"rows"`
	}
	until(t, b, "the report among B's DMARC reports", func() bool {
		json.Unmarshal([]byte(b.cli("dmarc", "reports", "--json")), &reports)
		return len(reports) > 0
	})
	r := reports[0]
	got := map[string]int{}
	for _, row := range r.Rows {
		got[fmt.Sprintf("%s %s %s dkim=%s spf=%s", row.SourceIP, row.HeaderFrom, row.Disposition, row.DKIM, row.SPF)] += row.Count
	}
	want := map[string]int{"127.0.0.1 sender.test none dkim=fail spf=pass": 1, "127.0.0.1 sender.test quarantine dkim=fail spf=fail": 1}
	if r.Org != "mx.example.test" || r.Domain != "sender.test" || r.Policy != "quarantine" || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("B's record of A's report = %+v (rows %v), want rows %v", r, got, want)
	}

	// The XML itself, read here apart from Mailroom's parser.
	m := b.mailbox("dmarc@sender.test")[0]
	raw := b.message("dmarc@sender.test", m.ID)
	if !strings.HasPrefix(m.Subject, "Report Domain: sender.test Submitter: mx.example.test Report-ID: <") {
		t.Errorf("the report's subject: %q", m.Subject)
	}
	msg, err := mail.ReadMessage(strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	_, params, _ := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	mr := multipart.NewReader(msg.Body, params["boundary"])
	var doc struct {
		Policy struct {
			Domain string `xml:"domain"`
			ADKIM  string `xml:"adkim"`
			P      string `xml:"p"`
		} `xml:"policy_published"`
		Records []struct {
			Ident struct {
				EnvelopeFrom string `xml:"envelope_from"`
			} `xml:"identifiers"`
			Auth struct {
				SPF []struct {
					Domain string `xml:"domain"`
					Scope  string `xml:"scope"`
					Result string `xml:"result"`
				} `xml:"spf"`
			} `xml:"auth_results"`
		} `xml:"record"`
	}
	found := false
	for p, err := mr.NextPart(); err == nil; p, err = mr.NextPart() {
		if p.Header.Get("Content-Type") != "application/gzip" || !strings.HasSuffix(p.FileName(), ".xml.gz") ||
			!strings.HasPrefix(p.FileName(), "mx.example.test!sender.test!") {
			continue
		}
		zr, err := gzip.NewReader(base64.NewDecoder(base64.StdEncoding, p))
		if err != nil {
			t.Fatal(err)
		}
		x, _ := io.ReadAll(zr)
		if !bytes.HasPrefix(x, []byte("<?xml")) {
			t.Errorf("the attachment is not an XML document:\n%s", x)
		}
		if err := xml.Unmarshal(x, &doc); err != nil {
			t.Fatalf("the report's XML: %v\n%s", err, x)
		}
		found = true
	}
	if !found {
		t.Fatalf("no gzipped XML attachment in the report:\n%s", raw)
	}
	spfs := map[string]bool{}
	for _, rec := range doc.Records {
		for _, s := range rec.Auth.SPF {
			spfs[rec.Ident.EnvelopeFrom+" "+s.Domain+" "+s.Scope+" "+s.Result] = true
		}
	}
	if doc.Policy.Domain != "sender.test" || doc.Policy.ADKIM != "s" || doc.Policy.P != "quarantine" ||
		!spfs["sender.test sender.test mfrom pass"] || !spfs["elsewhere.test elsewhere.test mfrom none"] {
		t.Errorf("the XML = %+v", doc)
	}
	if n := len(b.mailbox("agg@unverified.test")); n != 0 {
		t.Errorf("%d report(s) to a destination outside the domain's organization that did not say it takes them", n)
	}
	if !strings.Contains(a.logs(), "DMARC report not sent: the destination does not say it takes reports for the domain") {
		t.Errorf("A does not say why it sent no report to agg@unverified.test:\n%s", a.logs())
	}
}
