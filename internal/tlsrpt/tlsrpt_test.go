package tlsrpt

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"mailroom/internal/store"
	"mailroom/internal/tally"
)

func TestDestinations(t *testing.T) {
	tests := []struct {
		name          string
		txts          []string
		mailto, https []string
		err           string
	}{
		{"mailto and https", []string{"v=TLSRPTv1; rua=mailto:tls@example.com,https://r.example.com/v1"}, []string{"tls@example.com"}, []string{"https://r.example.com/v1"}, ""},
		{"other TXT records are ignored", []string{"v=spf1 -all", "v=TLSRPTv1;rua=mailto:a@example.com"}, []string{"a@example.com"}, nil, ""},
		{"no record", []string{"v=spf1 -all"}, nil, nil, "no TLS-RPT record"},
		{"two records", []string{"v=TLSRPTv1; rua=mailto:a@x.example", "v=TLSRPTv1; rua=mailto:b@x.example"}, nil, nil, "2 TLS-RPT records"},
		{"http is not a destination", []string{"v=TLSRPTv1; rua=http://r.example.com/"}, nil, nil, "no usable rua"},
		{"a bad address is skipped", []string{"v=TLSRPTv1; rua=mailto:not an address,mailto:ok@example.com"}, []string{"ok@example.com"}, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, h, err := Destinations(tt.txts)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || !slices.Equal(m, tt.mailto) || !slices.Equal(h, tt.https) {
				t.Fatalf("Destinations = %q %q %v, want %q %q", m, h, err, tt.mailto, tt.https)
			}
		})
	}
}

// TestBuild: counted rows become one policy each with its successes and
// failures, in the JSON of RFC 8460 4.4.
func TestBuild(t *testing.T) {
	begin := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	rows := []Row{
		{PolicyType: PolicyTLSA, PolicyString: []string{"3 1 1 AB"}},
		{PolicyType: PolicyTLSA, PolicyString: []string{"3 1 1 AB"}},
		{PolicyType: PolicyTLSA, PolicyString: []string{"3 1 1 AB"}, Result: TLSAInvalid, ReceivingMX: "mx.example.com", ReceivingIP: "192.0.2.1", Reason: "no match"},
		{PolicyType: PolicySTS, PolicyString: []string{"version: STSv1", "mode: enforce"}, MXHost: []string{"mx.example.com"}},
	}
	var rep tally.Report
	rep.Domain, rep.Begin, rep.End = "example.com", begin, begin.Add(24*time.Hour)
	counts := map[string]int64{}
	var order []string
	for _, r := range rows {
		b, _ := json.Marshal(r)
		if counts[string(b)] == 0 {
			order = append(order, string(b))
		}
		counts[string(b)]++
	}
	for _, k := range order {
		rep.Rows = append(rep.Rows, store.Tally{Kind: store.TallyTLSRPT, Period: begin, Domain: "example.com", Key: k, Count: counts[k]})
	}
	r, err := Build("Mailroom", "mailto:postmaster@example.net", "id-1", rep)
	if err != nil {
		t.Fatal(err)
	}
	gz, err := r.Gzip()
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.NewDecoder(zr).Decode(&got); err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(got)
	for _, want := range []string{
		`"date-range":{"end-datetime":"2026-12-06T00:00:00Z","start-datetime":"2026-12-05T00:00:00Z"}`,
		`"policy":{"policy-domain":"example.com","policy-string":["3 1 1 AB"],"policy-type":"tlsa"},"summary":{"total-failure-session-count":1,"total-successful-session-count":2}`,
		`"failure-details":[{"failed-session-count":1,"failure-reason-code":"no match","receiving-ip":"192.0.2.1","receiving-mx-hostname":"mx.example.com","result-type":"tlsa-invalid"}]`,
		`"mx-host":["mx.example.com"],"policy-domain":"example.com","policy-string":["version: STSv1","mode: enforce"],"policy-type":"sts"},"summary":{"total-failure-session-count":0,"total-successful-session-count":1}`,
		`"organization-name":"Mailroom"`, `"report-id":"id-1"`, `"contact-info":"mailto:postmaster@example.net"`,
	} {
		if !strings.Contains(string(js), want) {
			t.Errorf("report lacks %s:\n%s", want, js)
		}
	}
	msg := string(Message("postmaster@example.net", "tls@example.com", "mx.example.net", "example.com", r, gz, "id1", begin))
	for _, want := range []string{"Subject: Report Domain: example.com Submitter: mx.example.net Report-ID: <id-1>\r\n",
		"TLS-Report-Domain: example.com\r\n", "TLS-Report-Submitter: mx.example.net\r\n", `report-type="tlsrpt"`,
		"Content-Type: application/tlsrpt+gzip", `filename="mx.example.net!example.com!1796428800!1796515200!id1.json.gz"`, "TLS-Required: No\r\n"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the mail lacks %q:\n%s", want, msg)
		}
	}
}
