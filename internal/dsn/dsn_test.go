package dsn

import (
	"bytes"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestReport(t *testing.T) {
	original := "From: a@example.test\r\nSubject: hello\r\n\r\nsecret body\r\n"
	for _, full := range []bool{false, true} {
		r := &Report{ReportingMTA: "mx.example.test", To: "a@example.test", EnvID: "env-1", Arrival: time.Unix(0, 0), Full: full,
			Recipients: []Recipient{
				{Address: "x@remote.test", ORcpt: "rfc822;X@remote.test", Detail: "550 5.1.1 No such user", RemoteMTA: "mx.remote.test"},
				{Address: "y@remote.test", Detail: "4.4.7 expired after 120h0m0s in the queue; last error: 451 4.3.0 later"},
			}}
		var out bytes.Buffer
		if err := r.Write(&out, strings.NewReader(original), time.Unix(100, 0)); err != nil {
			t.Fatal(err)
		}
		msg, err := mail.ReadMessage(&out)
		if err != nil {
			t.Fatal(err)
		}
		if msg.Header.Get("Auto-Submitted") != "auto-replied" || !strings.Contains(msg.Header.Get("From"), "MAILER-DAEMON@mx.example.test") {
			t.Errorf("header: %v", msg.Header)
		}
		mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
		if err != nil || mt != "multipart/report" || params["report-type"] != "delivery-status" {
			t.Fatalf("Content-Type %q: %v", msg.Header.Get("Content-Type"), err)
		}
		mr := multipart.NewReader(msg.Body, params["boundary"])
		var types, bodies []string
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(p)
			types = append(types, p.Header.Get("Content-Type"))
			bodies = append(bodies, string(b))
		}
		wantLast := "text/rfc822-headers"
		if full {
			wantLast = "message/rfc822"
		}
		if len(types) != 3 || types[1] != "message/delivery-status" || types[2] != wantLast {
			t.Fatalf("parts: %v", types)
		}
		status := bodies[1]
		for _, want := range []string{"Reporting-MTA: dns; mx.example.test", "Original-Envelope-Id: env-1", "Final-Recipient: rfc822; x@remote.test",
			"Original-Recipient: rfc822; X@remote.test", "Status: 5.1.1", "Remote-MTA: dns; mx.remote.test", "Diagnostic-Code: smtp; 550 5.1.1 No such user",
			"Final-Recipient: rfc822; y@remote.test", "Status: 5.4.7", "Action: failed"} {
			if !strings.Contains(status, want) {
				t.Errorf("delivery-status lacks %q:\n%s", want, status)
			}
		}
		if strings.Contains(bodies[2], "secret body") != full || !strings.Contains(bodies[2], "Subject: hello") {
			t.Errorf("returned content (full=%v):\n%s", full, bodies[2])
		}
	}
}

func TestDelayReport(t *testing.T) {
	r := &Report{ReportingMTA: "mx.example.test", To: "a@example.test", Arrival: time.Unix(0, 0), Action: Delayed, RetryUntil: time.Unix(3600, 0),
		Recipients: []Recipient{{Address: "x@remote.test", Detail: "451 4.3.0 try later", RemoteMTA: "mx.remote.test"}}}
	var out bytes.Buffer
	if err := r.Write(&out, strings.NewReader("Subject: s\r\n\r\nb\r\n"), time.Unix(100, 0)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Subject: Delayed Mail", "Action: delayed", "Status: 4.3.0", "Will-Retry-Until: ", "you need not send it again"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the delay warning lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "Action: failed") {
		t.Error("a delay warning says failed")
	}
}

// TestSuccessReports: NOTIFY=SUCCESS reports say delivered or relayed
// with a 2.x.x status and return the header only, whatever RET says.
func TestSuccessReports(t *testing.T) {
	for _, tc := range []struct{ action, detail, status, says string }{
		{Delivered, "", "Status: 2.0.0", "delivered to the mailboxes"},
		{Relayed, "250 2.0.0 Ok: queued as 42", "Status: 2.0.0", "do not report on delivery"},
		{Relayed, "250 2.6.0 accepted", "Status: 2.6.0", "Diagnostic-Code: smtp; 250 2.6.0 accepted"},
	} {
		r := &Report{ReportingMTA: "mx.example.test", To: "a@example.test", Arrival: time.Unix(0, 0), Action: tc.action, Full: true,
			Recipients: []Recipient{{Address: "x@remote.test", Detail: tc.detail}}}
		var out bytes.Buffer
		if err := r.Write(&out, strings.NewReader("Subject: s\r\n\r\nsecret body\r\n"), time.Unix(100, 0)); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"Subject: Successful Mail Delivery Report", "Action: " + tc.action, tc.status, tc.says, "text/rfc822-headers"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("%s report lacks %q:\n%s", tc.action, want, out.String())
			}
		}
		if strings.Contains(out.String(), "secret body") {
			t.Errorf("a %s report returns the body", tc.action)
		}
	}
}

func TestOneLine(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"line ends become spaces", "550 no\r\n550 really", "550 no  550 really"},
		{"an escape sequence is defused", "550 \x1b]0;owned\x07", "550  ]0;owned "},
		{"a C1 control goes too", "a\u009bb", "a b"},
		{"UTF-8 text stays", "550 Grüße", "550 Grüße"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := oneLine(c.in); got != c.want {
				t.Errorf("oneLine(%q) = %q, want %q", c.in, got, c.want)
			}
		})
	}
}

func TestFold(t *testing.T) {
	long := "550-5.1.1 " + strings.Repeat("the user does not exist here ", 80)
	word := strings.Repeat("w", 2500)
	for _, c := range []struct{ name, in string }{
		{"a long reply joined from many lines", "Diagnostic-Code: smtp; " + long},
		{"one word longer than any line may be", "Diagnostic-Code: smtp; " + word},
		{"a short line", "Diagnostic-Code: smtp; 250 ok"},
		{"trailing spaces after a cut", "Diagnostic-Code: smtp; 550 " + strings.Repeat("x", 70) + strings.Repeat(" ", 40)},
		{"a long UTF-8 word", "Diagnostic-Code: smtp; " + strings.Repeat("ü", 1200)},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := fold(c.in, " ")
			for i, l := range strings.Split(out, "\r\n") {
				if len(l) > 998 {
					t.Errorf("line %d has %d octets", i, len(l))
				}
				if i > 0 && !strings.HasPrefix(l, " ") {
					t.Errorf("continuation line %d does not start with a space: %q", i, l[:min(len(l), 20)])
				}
				if strings.TrimSpace(l) == "" {
					t.Errorf("line %d is only whitespace", i)
				}
				if !utf8.ValidString(l) {
					t.Errorf("line %d cuts a UTF-8 character", i)
				}
			}
			if unfolded := strings.ReplaceAll(strings.ReplaceAll(out, "\r\n ", " "), "  ", " "); strings.ReplaceAll(unfolded, " ", "") != strings.ReplaceAll(c.in, " ", "") {
				t.Errorf("folding changed the text")
			}
		})
	}
}
