package tests

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"testing"
)

// tlsReport is a TLS report (RFC 8460 4.4) as the tests read it.
type tlsReport struct {
	Org      string `json:"organization-name"`
	ID       string `json:"report-id"`
	Policies []struct {
		Policy struct {
			Type   string   `json:"policy-type"`
			String []string `json:"policy-string"`
			Domain string   `json:"policy-domain"`
			MXHost []string `json:"mx-host"`
		} `json:"policy"`
		Summary struct {
			Success int `json:"total-successful-session-count"`
			Failure int `json:"total-failure-session-count"`
		} `json:"summary"`
		Failures []tlsFailure `json:"failure-details"`
	} `json:"policies"`
}

type tlsFailure struct {
	Result string `json:"result-type"`
	MX     string `json:"receiving-mx-hostname"`
	Count  int    `json:"failed-session-count"`
	Reason string `json:"failure-reason-code"`
}

// decodeTLSReport reads a gzipped JSON report.
func decodeTLSReport(t *testing.T, gz []byte) tlsReport {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatalf("a report that is not gzip: %v", err)
	}
	var r tlsReport
	if err := json.NewDecoder(zr).Decode(&r); err != nil {
		t.Fatalf("a report that is not JSON: %v", err)
	}
	return r
}

// tlsReports returns the TLS reports about domain in user's mailbox on s,
// checking that each mail says its domain and is DKIM-signed by the
// sending Mailroom's domain.
func tlsReports(t *testing.T, s *server, user, domain string) []tlsReport {
	t.Helper()
	var out []tlsReport
	for _, m := range s.mailbox(user) {
		if !strings.HasPrefix(m.Subject, "Report Domain: "+domain+" Submitter: ") {
			continue
		}
		raw := s.message(user, m.ID)
		msg, err := mail.ReadMessage(strings.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		if msg.Header.Get("TLS-Report-Domain") != domain || !strings.Contains(raw, "DKIM-Signature: a=ed25519-sha256;") || !strings.Contains(raw, "d=example.test;") {
			t.Errorf("a report mail without TLS-Report-Domain or a DKIM signature of example.test:\n%s", raw)
		}
		_, params, _ := mime.ParseMediaType(msg.Header.Get("Content-Type"))
		mr := multipart.NewReader(msg.Body, params["boundary"])
		for p, err := mr.NextPart(); err == nil; p, err = mr.NextPart() {
			if p.Header.Get("Content-Type") == "application/tlsrpt+gzip" {
				gz, _ := io.ReadAll(base64.NewDecoder(base64.StdEncoding, p))
				out = append(out, decodeTLSReport(t, gz))
			}
		}
	}
	return out
}
