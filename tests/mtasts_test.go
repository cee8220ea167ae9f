package tests

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailroom/internal/dns/dnstest"
)

// queuedError returns the last error recorded for a queued recipient, or
// "" once the queue is empty.
func queuedError(t *testing.T, s *server) string {
	t.Helper()
	var entries []map[string]any
	if err := json.Unmarshal([]byte(s.cli("queue", "list", "--json")), &entries); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if v, ok := e["last_error"].(string); ok && v != "" {
			return v
		}
	}
	return ""
}

// until polls cond for up to 20 seconds.
func until(t *testing.T, s *server, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20s\nserver log:\n%s", what, s.logs())
		}
	}
}

// TestMTASTS: mail to a domain with an MTA-STS policy in enforce mode goes
// to the MX host the policy names over TLS with its certificate verified;
// when the policy names another host, or the certificate is not trusted,
// the mail waits in the queue with a reason saying so.
func TestMTASTS(t *testing.T) {
	dir := t.TempDir()
	// B, the receiving server, presents a certificate for mx.remote.test.
	mxCert, mxKey, _ := writeCertFor(t, dir, "mx.remote.test", "mx CA", "mx-")
	b, port := remoteServer(t, "127.0.0.74", "carol@remote.test")
	b.writeConfig("", fmt.Sprintf("[tls]\ncert_file = %q\nkey_file = %q\n", mxCert, mxKey))
	b.start()

	// The policy hosts of remote.test and other.test, on loopback, each with
	// a certificate of its own CA; other.test's policy names another host
	// than its MX.
	remoteCert, remoteKey, _ := writeCertFor(t, dir, "mta-sts.remote.test", "policy CA 1", "sts1-")
	otherCert, otherKey, _ := writeCertFor(t, dir, "mta-sts.other.test", "policy CA 2", "sts2-")
	var pairs []tls.Certificate
	for _, f := range [][2]string{{remoteCert, remoteKey}, {otherCert, otherKey}} {
		pair, err := tls.LoadX509KeyPair(f[0], f[1])
		if err != nil {
			t.Fatal(err)
		}
		pairs = append(pairs, pair)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: pairs})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		mx := "mx.remote.test"
		if strings.HasPrefix(r.Host, "mta-sts.other.test") {
			mx = "mail.other.test"
		}
		w.Write([]byte("version: STSv1\nmode: enforce\nmx: " + mx + "\nmax_age: 86400\n"))
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	stsPort := l.Addr().(*net.TCPAddr).Port

	zone := dnstest.Start(t, map[string][]string{
		"remote.test. MX":           {"10 mx.remote.test."},
		"other.test. MX":            {"10 mx.remote.test."},
		"mx.remote.test. A":         {"127.0.0.74"},
		"_mta-sts.remote.test. TXT": {`"v=STSv1; id=1"`},
		"_mta-sts.other.test. TXT":  {`"v=STSv1; id=1"`},
		"nopolicy.test. MX":         {"10 mx.remote.test."},
		"mta-sts.remote.test. A":    {"127.0.0.1"},
		"mta-sts.other.test. A":     {"127.0.0.1"},
		// TLS-RPT: reports on the sessions to these domains go to
		// tls@nopolicy.test (a domain A2 can deliver to).
		"_smtp._tls.remote.test. TXT": {`"v=TLSRPTv1; rua=mailto:tls@nopolicy.test"`},
		"_smtp._tls.other.test. TXT":  {`"v=TLSRPTv1; rua=mailto:tls@nopolicy.test"`},
		"_smtp._tls.broken.test. TXT": {`"v=TLSRPTv1; rua=mailto:tls@nopolicy.test"`},
		// broken.test announces a policy its host cannot serve (no
		// certificate for its name).
		"broken.test. MX":           {"10 mx.remote.test."},
		"_mta-sts.broken.test. TXT": {`"v=STSv1; id=1"`},
		"mta-sts.broken.test. A":    {"127.0.0.1"},
	})
	b.cli("domain", "add", "nopolicy.test")
	b.cli("user", "add", "tls@nopolicy.test", "--generate")
	// A trusts every CA; A2 only the policy hosts'.
	pems := func(files ...string) string {
		var all []byte
		for _, f := range files {
			b, _ := os.ReadFile(f)
			all = append(all, b...)
		}
		path := filepath.Join(dir, fmt.Sprintf("ca-%d.pem", len(files)))
		os.WriteFile(path, all, 0o600)
		return path
	}
	outbound := func(ca string) string {
		return fmt.Sprintf("[dns]\nresolver = %q\n[outbound]\nport = %d\nmta_sts_port = %d\nca_file = %q\n[queue]\nretry_intervals = [\"1s\"]\n[reports]\ninterval = \"2s\"\n", zone.Addr, port, stsPort, ca)
	}
	both := pems(mxCert, remoteCert, otherCert)
	a := newServer(t, "", outbound(both))
	a.start()
	send := func(s *server, to, subject string) { t.Helper(); submitSubject(t, s, to, subject) }
	send(a, "carol@remote.test", "enforced")
	waitMailbox(t, b, "carol@remote.test", 1, "delivery under the policy")
	if !strings.Contains(a.logs(), "certificate verified (MTA-STS)") {
		t.Errorf("the delivery does not say the certificate was verified:\n%s", a.logs())
	}

	// 'mailroom probe --domain' says what a domain's policy makes of a host.
	for domain, want := range map[string]string{
		"remote.test": "MTA-STS: the policy of remote.test (mode enforce) names mx.remote.test and its certificate is valid",
		"other.test":  "MTA-STS: the policy of other.test (mode enforce) does not name mx.remote.test (it names mail.other.test)",
	} {
		probeSays(t, a, want, fmt.Sprintf("mx.remote.test:%d", port), "--domain", domain, "--ca-file", both)
	}

	// A policy that names another host than the domain's MX: the mail waits.
	send(a, "dave@other.test", "wrong host")
	until(t, a, "the reason in the queue", func() bool {
		return strings.Contains(queuedError(t, a), "MTA-STS: the policy of other.test does not name the MX host mx.remote.test (it names mail.other.test)")
	})

	// A sender that does not trust the MX host's certificate: the mail
	// waits, never in plaintext nor unverified.
	a2 := newServer(t, "", outbound(pems(remoteCert, otherCert)))
	a2.start()
	send(a2, "carol@remote.test", "untrusted")
	until(t, a2, "the reason in A2's queue", func() bool {
		e := queuedError(t, a2)
		return strings.Contains(e, "MTA-STS: the policy of remote.test requires TLS with a valid certificate for mx.remote.test") &&
			strings.Contains(e, "certificate signed by unknown authority")
	})
	if n := len(b.mailbox("carol@remote.test")); n != 1 {
		t.Errorf("carol has %d messages; only the first may have gone", n)
	}

	// REQUIRETLS (RFC 8689): offered and taken only over TLS; it travels
	// with the message to a next hop authenticated by MTA-STS, and bounces
	// (5.7.30) for a domain without a policy. "TLS-Required: No" lets a
	// message past a policy that names another host.
	plain := a.dial()
	if ehlo := plain.ehlo("client.test"); strings.Contains(ehlo, "REQUIRETLS") {
		t.Errorf("REQUIRETLS offered before TLS: %s", ehlo)
	}
	plain.cmd("MAIL FROM:<x@client.test> REQUIRETLS", "530 5.7.10 ")
	c := loggedIn(t, a)
	c.cmd("MAIL FROM:<alice@example.test> REQUIRETLS", "250 ")
	c.cmd("RCPT TO:<carol@remote.test>", "250 ")
	c.cmd("RCPT TO:<someone@nopolicy.test>", "250 ")
	c.data("From: alice@example.test\r\nSubject: confidential\r\n\r\nsecret\r\n")
	waitMailbox(t, b, "carol@remote.test", 2, "the REQUIRETLS message")
	waitMailbox(t, a, "alice@example.test", 1, "the bounce for the domain without a policy")
	bounce := a.message("alice@example.test", a.mailbox("alice@example.test")[0].ID)
	if !strings.Contains(bounce, "5.7.30") || !strings.Contains(bounce, "REQUIRETLS support required: nopolicy.test") || strings.Contains(bounce, "secret") {
		t.Errorf("the bounce of a REQUIRETLS message (no body returned):\n%s", bounce)
	}
	b.cli("domain", "add", "other.test")
	b.cli("user", "add", "dave@other.test", "--generate")
	send(a, "dave@other.test", "first")
	c = loggedIn(t, a)
	if r := c.sendMail("alice@example.test", []string{"dave@other.test"}, "From: alice@example.test\r\nTLS-Required: No\r\nSubject: optional\r\n\r\nx\r\n"); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("submission: %q", r)
	}
	waitMailbox(t, b, "dave@other.test", 1, "the TLS-Required: No message")
	if m := b.mailbox("dave@other.test"); m[0].Subject != "optional" {
		t.Errorf("dave got %q; only the TLS-Required: No message may pass the policy", m[0].Subject)
	}

	// TLS-RPT (RFC 8460): the reports say what each sender's sessions
	// found under each domain's policy: A's enforced successes and the
	// host other.test's policy does not name; A2's untrusted certificate;
	// broken.test's policy that could not be fetched.
	send(a, "x@broken.test", "policy not fetched")
	type seen struct{ domain, typ, result, mx string }
	want := []seen{
		{"remote.test", "sts", "", ""},
		{"remote.test", "sts", "certificate-not-trusted", "mx.remote.test"},
		{"other.test", "sts", "validation-failure", "mx.remote.test"},
		{"broken.test", "sts", "sts-policy-fetch-error", ""},
	}
	var got map[seen]bool
	until(t, b, "the TLS reports", func() bool {
		got = map[seen]bool{}
		for _, d := range []string{"remote.test", "other.test", "broken.test"} {
			for _, r := range tlsReports(t, b, "tls@nopolicy.test", d) {
				for _, p := range r.Policies {
					if p.Policy.Type == "sts" && d != "broken.test" && (len(p.Policy.String) == 0 || p.Policy.String[1] != "mode: enforce") {
						t.Errorf("a report's sts policy-string: %q", p.Policy.String)
					}
					if p.Summary.Success > 0 {
						got[seen{d, p.Policy.Type, "", ""}] = true
					}
					for _, f := range p.Failures {
						got[seen{d, p.Policy.Type, f.Result, f.MX}] = true
					}
				}
			}
		}
		for _, w := range want {
			if !got[w] {
				return false
			}
		}
		return true
	})
}
