package tests

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
)

// dmarcReportMail is an aggregate report by mail, as a provider sends it
// to a domain's rua address, the XML attached in base64.
func dmarcReportMail(domain, reportID string) string {
	xml := `<?xml version="1.0"?><feedback><report_metadata><org_name>provider.test</org_name><email>dmarc@provider.test</email>` +
		`<report_id>` + reportID + `</report_id><date_range><begin>1800000000</begin><end>1800086399</end></date_range></report_metadata>` +
		`<policy_published><domain>` + domain + `</domain><p>reject</p></policy_published>` +
		`<record><row><source_ip>127.0.0.1</source_ip><count>40</count><policy_evaluated><disposition>none</disposition><dkim>pass</dkim><spf>pass</spf></policy_evaluated></row><identifiers><header_from>` + domain + `</header_from></identifiers></record>` +
		`<record><row><source_ip>203.0.113.66</source_ip><count>7</count><policy_evaluated><disposition>reject</disposition><dkim>fail</dkim><spf>fail</spf></policy_evaluated></row><identifiers><header_from>` + domain + `</header_from></identifiers></record>` +
		`</feedback>`
	return "From: dmarc@provider.test\r\nTo: postmaster@" + domain + "\r\nSubject: Report Domain: " + domain + " Submitter: provider.test Report-ID: " + reportID + "\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nreport\r\n--b\r\n" +
		"Content-Type: text/xml; name=report.xml\r\nContent-Transfer-Encoding: base64\r\n\r\n" + base64.StdEncoding.EncodeToString([]byte(xml)) + "\r\n--b--\r\n"
}

// TestDMARCReportsReceived: an aggregate report mailed to a local address
// is delivered as mail and kept, once however often it comes, and shown
// by 'mailroom dmarc reports' with the failing sources; one about another
// domain is only mail.
func TestDMARCReportsReceived(t *testing.T) {
	s := newServer(t, "", "")
	s.cli("alias", "add", "postmaster@example.test", "alice@example.test")
	s.start()
	for _, m := range []string{dmarcReportMail("example.test", "r-1"), dmarcReportMail("example.test", "r-1"), dmarcReportMail("elsewhere.test", "r-2")} {
		c := s.dial()
		c.cmd("EHLO provider.test", "250")
		if r := c.sendMail("dmarc@provider.test", []string{"postmaster@example.test"}, m); !strings.HasPrefix(r, "250 ") {
			t.Fatalf("the report: %q", r)
		}
	}
	waitMailbox(t, s, "alice@example.test", 3, "the reports as mail")
	var reps []struct {
		Org, Domain string
		ReportID    string `json:"report_id"`
		Rows        []struct {
			SourceIP string `json:"source_ip"`
		}
	}
	out := s.cli("dmarc", "reports", "--days", "100000", "--json")
	if err := json.Unmarshal([]byte(out), &reps); err != nil || len(reps) != 1 || reps[0].Domain != "example.test" || len(reps[0].Rows) != 2 {
		t.Fatalf("dmarc reports --json: %v\n%s", err, out)
	}
	table := s.cli("dmarc", "reports", "example.test", "--days", "100000")
	for _, want := range []string{"provider.test", "example.test", "reject", "47", "7", "203.0.113.66 (7)"} {
		if !strings.Contains(table, want) {
			t.Errorf("dmarc reports lacks %q:\n%s", want, table)
		}
	}
}
