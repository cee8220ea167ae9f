package dmarcreport

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

const sample = `<?xml version="1.0" encoding="UTF-8" ?>
<feedback>
  <report_metadata>
    <org_name>google.com</org_name>
    <email>noreply-dmarc-support@google.com</email>
    <report_id>1234567890</report_id>
    <date_range><begin>1800000000</begin><end>1800086399</end></date_range>
  </report_metadata>
  <policy_published><domain>Example.test</domain><adkim>r</adkim><aspf>r</aspf><p>quarantine</p><sp>quarantine</sp><pct>100</pct></policy_published>
  <record>
    <row><source_ip>192.0.2.25</source_ip><count>12</count>
      <policy_evaluated><disposition>none</disposition><dkim>pass</dkim><spf>pass</spf></policy_evaluated></row>
    <identifiers><header_from>example.test</header_from></identifiers>
    <auth_results><dkim><domain>example.test</domain><result>pass</result><selector>mr20261206r</selector></dkim>
      <spf><domain>example.test</domain><result>pass</result></spf></auth_results>
  </record>
  <record>
    <row><source_ip>203.0.113.9</source_ip><count>3</count>
      <policy_evaluated><disposition>quarantine</disposition><dkim>fail</dkim><spf>fail</spf></policy_evaluated></row>
    <identifiers><header_from>example.test</header_from></identifiers>
    <auth_results><spf><domain>spammer.test</domain><result>pass</result></spf></auth_results>
  </record>
</feedback>
`

func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func zipped(name string, b []byte) []byte {
	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	f, _ := w.Create(name)
	f.Write(b)
	w.Close()
	return buf.Bytes()
}

// reportMail is a report as Google and Microsoft send them: a text part
// and the report attached in base64.
func reportMail(contentType, name string, attachment []byte) []byte {
	enc := base64.StdEncoding.EncodeToString(attachment)
	var lines []string
	for len(enc) > 76 {
		lines, enc = append(lines, enc[:76]), enc[76:]
	}
	lines = append(lines, enc)
	return []byte("From: noreply-dmarc-support@google.com\r\nSubject: Report domain: example.test Submitter: google.com Report-ID: 1234567890\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nThis is an aggregate report.\r\n" +
		"--b1\r\nContent-Type: " + contentType + "; name=\"" + name + "\"\r\nContent-Disposition: attachment; filename=\"" + name + "\"\r\n" +
		"Content-Transfer-Encoding: base64\r\n\r\n" + strings.Join(lines, "\r\n") + "\r\n--b1--\r\n")
}

func TestFind(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  []byte
	}{
		{"gzip", reportMail("application/gzip", "google.com!example.test!1800000000!1800086399.xml.gz", gzipped([]byte(sample)))},
		{"zip", reportMail("application/zip", "google.com!example.test!1800000000!1800086399.zip", zipped("report.xml", []byte(sample)))},
		{"xml, named only", reportMail("application/octet-stream", "report.xml", []byte(sample))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reps, err := Find(tc.msg)
			if err != nil || len(reps) != 1 {
				t.Fatalf("Find = %d reports, %v", len(reps), err)
			}
			r := reps[0]
			total, passed := r.Messages()
			if r.Org != "google.com" || r.ReportID != "1234567890" || r.Domain != "example.test" || r.Policy != "quarantine" ||
				r.Begin.Unix() != 1800000000 || total != 15 || passed != 12 || len(r.Rows) != 2 ||
				r.Rows[1].SourceIP != "203.0.113.9" || r.Rows[1].Disposition != "quarantine" || r.Rows[1].SPFDomain != "spammer.test" || r.Rows[0].DKIMDomain != "example.test" {
				t.Errorf("report: %+v (%d messages, %d passed)", r, total, passed)
			}
		})
	}
	if !Looks("Report domain: example.test Submitter: google.com Report-ID: 1") || Looks("Weekly report") {
		t.Error("Looks")
	}
}

func TestFindRefuses(t *testing.T) {
	huge := "<feedback><report_metadata><org_name>x</org_name><report_id>1</report_id></report_metadata><policy_published><domain>d</domain></policy_published>" +
		strings.Repeat("<!-- padding -->", MaxXML/16) + "</feedback>"
	for name, msg := range map[string][]byte{
		"a gzip bomb":        reportMail("application/gzip", "r.xml.gz", gzipped([]byte(huge))),
		"not a report":       reportMail("text/xml", "r.xml", []byte("<html><body>hello</body></html>")),
		"no reporter":        reportMail("text/xml", "r.xml", []byte("<feedback></feedback>")),
		"a broken zip":       reportMail("application/zip", "r.zip", []byte("PK not really")),
		"a zip without xml":  reportMail("application/zip", "r.zip", zipped("readme.txt", []byte(sample))),
		"an XML entity bomb": reportMail("text/xml", "r.xml", []byte(`<?xml version="1.0"?><!DOCTYPE f [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><feedback>&b;</feedback>`)),
	} {
		reps, err := Find(msg)
		if err == nil || len(reps) != 0 {
			t.Errorf("%s: %d reports, %v; want an error", name, len(reps), err)
		}
		if name == "a gzip bomb" && !errors.Is(err, errTooLarge) {
			t.Errorf("a gzip bomb: %v, want errTooLarge", err)
		}
	}
	// A message with no attachment at all is not an error: there is none.
	if reps, err := Find([]byte("Subject: hi\r\n\r\nhello\r\n")); err != nil || len(reps) != 0 {
		t.Errorf("a plain message: %d, %v", len(reps), err)
	}
}

// FuzzFind: any message gives reports or an error, within the limits,
// never a panic.
func FuzzFind(f *testing.F) {
	f.Add(reportMail("application/gzip", "r.xml.gz", gzipped([]byte(sample))))
	f.Add(reportMail("text/xml", "r.xml", []byte(sample)))
	f.Fuzz(func(t *testing.T, msg []byte) {
		reps, _ := Find(msg)
		for _, r := range reps {
			if len(r.Rows) > MaxRows || r.Org == "" || r.Domain == "" {
				t.Errorf("a report beyond the limits or without a reporter: %+v", r)
			}
		}
	})
}

// TestFindPlainAttachment: an XML attachment sent as it is (no transfer
// encoding) is read too.
func TestFindPlainAttachment(t *testing.T) {
	msg := "Subject: Report Domain: example.test\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/xml\r\n\r\n" + sample + "\r\n--b--\r\n"
	if reps, err := Find([]byte(msg)); err != nil || len(reps) != 1 {
		t.Errorf("Find = %d, %v", len(reps), err)
	}
}

// TestFindBudget: the limits hold for a message's reports together, not
// for each: many small attachments that each expand big are cut off.
func TestFindBudget(t *testing.T) {
	big := strings.Replace(sample, "</feedback>", strings.Repeat("<!-- padding of a few octets -->", MaxXML/2/32)+"</feedback>", 1)
	one := gzipped([]byte(big))
	var parts []string
	for range 4 {
		parts = append(parts, "--b\r\nContent-Type: application/gzip; name=r.xml.gz\r\nContent-Transfer-Encoding: base64\r\n\r\n"+base64.StdEncoding.EncodeToString(one)+"\r\n")
	}
	msg := "Subject: Report Domain: example.test\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n" + strings.Join(parts, "") + "--b--\r\n"
	reps, _ := Find([]byte(msg))
	if len(reps) != 1 {
		t.Errorf("%d reports of %d octets of XML each read; the budget (%d) holds one", len(reps), len(big), MaxXML)
	}
}
