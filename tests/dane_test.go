package tests

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// validatingResolver runs Debian's unbound on loopback as a validating
// resolver for test zones: each signed zone is signed with ldns-signzone
// under fresh keys and its DS is unbound's trust anchor; unsigned zones
// have no anchor, so their answers are insecure. Nothing else resolves
// (every other name is refused: no query leaves the machine). tamper, if
// set, edits a signed zone file after signing, to make an RRset bogus.
func validatingResolver(t *testing.T, signed, unsigned map[string][]string, tamper func(zone, text string) string) string {
	t.Helper()
	unbound := requireTool(t, "unbound")
	requireTool(t, "ldns-signzone")
	dir := t.TempDir()
	conf := []string{"server:", "  do-daemonize: no", `  username: ""`, `  chroot: ""`, `  pidfile: ""`, "  use-syslog: no",
		"  directory: " + dir, "  verbosity: 1", "  do-ip6: no", "  do-not-query-localhost: no",
		`  module-config: "validator iterator"`, `  local-zone: "." refuse`}
	var auth []string
	write := func(zone string, records []string, sign bool) {
		text := fmt.Sprintf("$ORIGIN %s.\n$TTL 300\n@ IN SOA ns.%s. admin.%s. 1 3600 600 86400 300\n@ IN NS ns.%s.\nns IN A 127.0.0.1\n",
			zone, zone, zone, zone) + strings.Join(records, "\n") + "\n"
		file := filepath.Join(dir, zone+".zone")
		if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if sign {
			run := func(name string, args ...string) string {
				cmd := exec.Command(name, args...)
				cmd.Dir = dir
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Fatalf("%s %v: %v\n%s", name, args, err, out)
				}
				return strings.TrimSpace(string(out))
			}
			ksk := run("ldns-keygen", "-a", "ED25519", "-k", zone)
			zsk := run("ldns-keygen", "-a", "ED25519", zone)
			run("ldns-signzone", "-n", file, ksk, zsk)
			file += ".signed"
			if tamper != nil {
				b, _ := os.ReadFile(file)
				os.WriteFile(file, []byte(tamper(zone, string(b))), 0o600)
			}
			conf = append(conf, fmt.Sprintf("  trust-anchor-file: %q", filepath.Join(dir, ksk+".ds")))
		}
		conf = append(conf, fmt.Sprintf("  local-zone: %q transparent", zone+"."))
		auth = append(auth, "auth-zone:", fmt.Sprintf("  name: %q", zone+"."), fmt.Sprintf("  zonefile: %q", file),
			"  for-upstream: yes", "  for-downstream: no", "  fallback-enabled: no")
	}
	for zone, recs := range signed {
		write(zone, recs, true)
	}
	for zone, recs := range unsigned {
		write(zone, recs, false)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, port, _ := net.SplitHostPort(addr)
	conf = append(conf, "  interface: 127.0.0.1@"+port, "  port: "+port)
	confFile := filepath.Join(dir, "unbound.conf")
	os.WriteFile(confFile, []byte(strings.Join(append(conf, auth...), "\n")+"\n"), 0o600)
	cmd := exec.Command(unbound, "-d", "-c", confFile)
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	m := new(mdns.Msg)
	m.SetQuestion("ns."+firstKey(signed, unsigned)+".", mdns.TypeA)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if r, err := mdns.Exchange(m, addr); err == nil && r.Rcode == mdns.RcodeSuccess {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("unbound did not answer within 10s:\n%s", log.String())
		}
	}
	return addr
}

// probeSays runs 'mailroom probe' with args and wants want in what it says.
func probeSays(t *testing.T, s *server, want string, args ...string) {
	t.Helper()
	out, errOut, err := s.run("", append([]string{"probe"}, args...)...)
	if err != nil || !strings.Contains(out, want) {
		t.Errorf("probe %v: %v, want %q in:\n%s%s", args, err, want, out, errOut)
	}
}

func firstKey(maps ...map[string][]string) string {
	for _, m := range maps {
		for k := range m {
			return k
		}
	}
	return ""
}

// TestDANE: mail to a domain whose MX host publishes TLSA records in a
// signed zone (validated by unbound on loopback) goes only over TLS that
// the records authenticate: delivered when they match the next hop's key;
// held with a reason, never sent in plaintext, when they do not, or when
// they cannot be looked up (a bogus signature). TLSA records in an
// unsigned zone count for nothing; records none of which SMTP can use make
// TLS mandatory without authentication (RFC 7672 2.2).
func TestDANE(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := writeCertFor(t, dir, "mx.dane.test", "dane mx", "mx-")
	b, port := remoteServer(t, "127.0.0.111", "carol@dane.test")
	b.writeConfig("", fmt.Sprintf("[tls]\ncert_file = %q\nkey_file = %q\n", certFile, keyFile))
	for _, user := range []string{"dave@wrong.dane.test", "erin@bogus.dane.test", "frank@plain.test", "gina@unusable.dane.test"} {
		_, domain, _ := strings.Cut(user, "@")
		b.cli("domain", "add", domain)
		b.cli("user", "add", user, "--generate")
	}
	b.start()

	pemBytes, _ := os.ReadFile(certFile)
	block, _ := pem.Decode(pemBytes)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	spki := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	good, wrong := fmt.Sprintf("3 1 1 %x", spki), "3 1 1 "+strings.Repeat("ab", 32)
	tlsa := func(host, data string) string { return fmt.Sprintf("_%d._tcp.%s IN TLSA %s", port, host, data) }
	// TLS-RPT (RFC 8460): dane.test and bogus.dane.test take reports by
	// mail (to carol), wrong.dane.test over HTTPS as well.
	repCert, repKey, _ := writeCertFor(t, dir, "reports.dane.test", "reports CA", "rep-")
	posted := make(chan []byte, 100)
	pair, err := tls.LoadX509KeyPair(repCert, repKey)
	if err != nil {
		t.Fatal(err)
	}
	rl, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}})
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/tlsrpt+gzip" {
			http.Error(w, "want a POST of application/tlsrpt+gzip", http.StatusBadRequest)
			return
		}
		posted <- body
	})}
	go hs.Serve(rl)
	t.Cleanup(func() { hs.Close() })
	repURL := fmt.Sprintf("https://reports.dane.test:%d/tlsrpt", rl.Addr().(*net.TCPAddr).Port)
	rua := func(extra string) string {
		return `_smtp._tls IN TXT "v=TLSRPTv1; rua=mailto:carol@dane.test` + extra + `"`
	}

	resolver := validatingResolver(t, map[string][]string{
		"dane.test": {
			rua(""), "reports IN A 127.0.0.1",
			strings.Replace(rua(","+repURL), "_smtp._tls", "_smtp._tls.wrong", 1),
			// bogus.dane.test's reports go to wrong.dane.test as well, whose
			// MX fails DANE: a TLS report goes all the same (RFC 8460 3).
			strings.Replace(rua(",mailto:dave@wrong.dane.test"), "_smtp._tls", "_smtp._tls.bogus", 1),
			"@ IN MX 10 mx", "mx IN A 127.0.0.111", tlsa("mx", good),
			"wrong IN MX 10 mx.wrong", "mx.wrong IN A 127.0.0.111", tlsa("mx.wrong", wrong),
			"bogus IN MX 10 mx.bogus", "mx.bogus IN A 127.0.0.111", tlsa("mx.bogus", good),
			"unusable IN MX 10 mx.unusable", "mx.unusable IN A 127.0.0.111", tlsa("mx.unusable", "1 1 1 "+strings.Repeat("cd", 32)),
		},
		// B's own name, with a TLSA record that does not match its key:
		// what 'mailroom check' is to find.
		"example.test": {"mx IN A 127.0.0.111", tlsa("mx", wrong)},
	}, map[string][]string{
		"plain.test": {"@ IN MX 10 mx", "mx IN A 127.0.0.111", tlsa("mx", wrong)},
	}, func(zone, text string) string {
		// The TLSA record of mx.bogus altered after signing: its signature
		// no longer holds, so the validating resolver answers SERVFAIL.
		lines := strings.Split(text, "\n")
		for i, l := range lines {
			if strings.HasPrefix(l, fmt.Sprintf("_%d._tcp.mx.bogus.", port)) && strings.Contains(l, "\tTLSA\t") {
				lines[i] = l[:len(l)-4] + "0000"
			}
		}
		return strings.Join(lines, "\n")
	})

	a := newServer(t, "", fmt.Sprintf("[dns]\nresolver = %q\n[outbound]\nport = %d\nca_file = %q\n[queue]\nretry_intervals = [\"1s\"]\n[reports]\ninterval = \"2s\"\n",
		resolver, port, repCert))
	a.start()
	send := func(to, subject string) { t.Helper(); submitSubject(t, a, to, subject) }

	send("carol@dane.test", "authenticated")
	waitMailbox(t, b, "carol@dane.test", 1, "delivery authenticated by DANE")
	if !strings.Contains(a.logs(), "certificate verified (DANE)") {
		t.Errorf("the delivery does not say DANE verified the certificate:\n%s", a.logs())
	}

	// 'mailroom probe' says whether a host's certificate matches its TLSA
	// records, resolving the host through the configured resolver.
	for host, want := range map[string]string{
		"mx.dane.test":       "DANE: the certificate matches mx.dane.test's TLSA records (DNSSEC-validated)",
		"mx.wrong.dane.test": "DANE: senders that use DANE will not deliver: none of 1 TLSA record(s) matches",
		"mx.plain.test":      "but the answer is not DNSSEC-validated: senders ignore them",
	} {
		probeSays(t, a, want, fmt.Sprintf("%s:%d", host, port))
	}

	// 'mailroom check' on B finds that its name's TLSA record does not
	// match the certificate it presents, and says which record to publish.
	b.writeConfig("", fmt.Sprintf("[tls]\ncert_file = %q\nkey_file = %q\n[dns]\nresolver = %q\n", certFile, keyFile, resolver))
	out, _, _ := b.run("", "check", "dane.test", "--json")
	var findings []struct{ Level, Check, Name, Text, Fix string }
	json.Unmarshal([]byte(out), &findings)
	seen := false
	for _, f := range findings {
		if f.Check == "DANE" {
			seen = true
			if f.Level != "error" || f.Name != fmt.Sprintf("_%d._tcp.mx.example.test", port) || !strings.Contains(f.Text, "none of 1 TLSA record(s) matches") ||
				!strings.Contains(f.Fix, strings.ToUpper(good)) {
				t.Errorf("check's DANE finding = %+v, want an error whose fix is the record %s", f, good)
			}
		}
	}
	if !seen {
		t.Errorf("check made no DANE finding:\n%s", out)
	}

	// REQUIRETLS is honoured by a next hop DANE authenticates.
	c := loggedIn(t, a)
	c.cmd("MAIL FROM:<alice@example.test> REQUIRETLS", "250 ")
	c.cmd("RCPT TO:<carol@dane.test>", "250 ")
	c.data("From: alice@example.test\r\nSubject: requiretls\r\n\r\nsecret\r\n")
	waitMailbox(t, b, "carol@dane.test", 2, "the REQUIRETLS message")

	// TLSA records in an unsigned zone are not to be trusted: opportunistic
	// TLS, delivered although they name another key.
	send("frank@plain.test", "insecure zone")
	waitMailbox(t, b, "frank@plain.test", 1, "delivery to a domain in an unsigned zone")

	// Records none of which SMTP uses (PKIX-EE): TLS, not authenticated.
	send("gina@unusable.dane.test", "unusable")
	waitMailbox(t, b, "gina@unusable.dane.test", 1, "delivery with unusable TLSA records")
	if !strings.Contains(a.logs(), "certificate not verified (DANE: no usable TLSA record)") {
		t.Errorf("the delivery does not say the TLSA records were unusable:\n%s", a.logs())
	}
	// That connection, kept for the next message, did not authenticate the
	// host: a REQUIRETLS message must not take it, and bounces.
	c = loggedIn(t, a)
	c.cmd("MAIL FROM:<alice@example.test> REQUIRETLS", "250 ")
	c.cmd("RCPT TO:<gina@unusable.dane.test>", "250 ")
	c.data("From: alice@example.test\r\nSubject: requiretls unusable\r\n\r\nsecret\r\n")
	waitMailbox(t, a, "alice@example.test", 1, "the bounce of REQUIRETLS mail to a host DANE does not authenticate")
	if bounce := a.message("alice@example.test", a.mailbox("alice@example.test")[0].ID); !strings.Contains(bounce, "5.7.30") {
		t.Errorf("the bounce of REQUIRETLS mail to unusable.dane.test:\n%s", bounce)
	}
	if n := len(b.mailbox("gina@unusable.dane.test")); n != 1 {
		t.Errorf("gina has %d messages: the REQUIRETLS one went over a connection DANE did not authenticate", n)
	}

	// Records that name another key: the mail waits, with the reason.
	send("dave@wrong.dane.test", "mismatch")
	until(t, a, "the reason in the queue", func() bool {
		e := a.cli("queue", "list", "--json")
		return strings.Contains(e, "4.7.5 DANE: mx.wrong.dane.test publishes TLSA records, so it is reached only over TLS they authenticate") &&
			strings.Contains(e, "none of 1 TLSA record(s) matches")
	})

	// A TLSA answer that fails validation is no "none": the mail waits.
	send("erin@bogus.dane.test", "bogus")
	until(t, a, "the reason in the queue", func() bool {
		return strings.Contains(a.cli("queue", "list", "--json"), "4.7.5 DANE: the TLSA records of mx.bogus.dane.test could not be looked up")
	})
	time.Sleep(1500 * time.Millisecond) // a retry or two
	for _, user := range []string{"dave@wrong.dane.test", "erin@bogus.dane.test"} {
		for _, m := range b.mailbox(user) {
			if !strings.HasPrefix(m.Subject, "Report Domain: ") {
				t.Errorf("%s got %q: DANE must hold the mail back, never fall back to plaintext", user, m.Subject)
			}
		}
	}

	// The TLS reports: by mail to carol (DKIM-signed by A's domain), and
	// posted over HTTPS, each saying what the sessions found.
	var successes int
	until(t, b, "a TLS report for dane.test with the DANE sessions that succeeded", func() bool {
		successes = 0
		for _, r := range tlsReports(t, b, "carol@dane.test", "dane.test") {
			for _, p := range r.Policies {
				if p.Policy.Type == "tlsa" && p.Policy.Domain == "dane.test" && slices.Contains(p.Policy.String, strings.ToUpper(good)) {
					successes += p.Summary.Success
				}
			}
		}
		return successes > 0
	})
	var bogus []tlsFailure
	until(t, b, "a TLS report for bogus.dane.test", func() bool {
		for _, r := range tlsReports(t, b, "carol@dane.test", "bogus.dane.test") {
			for _, p := range r.Policies {
				bogus = append(bogus, p.Failures...)
			}
		}
		return len(bogus) > 0
	})
	if f := bogus[0]; f.Result != "dnssec-invalid" || f.MX != "mx.bogus.dane.test" || f.Count < 1 {
		t.Errorf("bogus.dane.test's failure = %+v, want dnssec-invalid at mx.bogus.dane.test", f)
	}
	until(t, b, "bogus.dane.test's TLS report at wrong.dane.test, whose MX fails DANE", func() bool {
		return len(tlsReports(t, b, "dave@wrong.dane.test", "bogus.dane.test")) > 0
	})
	select {
	case gz := <-posted:
		r := decodeTLSReport(t, gz)
		if len(r.Policies) == 0 || len(r.Policies[0].Failures) == 0 {
			t.Fatalf("the posted report has no failure: %+v", r)
		}
		p := r.Policies[0]
		if f := p.Failures[0]; p.Policy.Type != "tlsa" || p.Policy.Domain != "wrong.dane.test" || f.Result != "tlsa-invalid" ||
			f.MX != "mx.wrong.dane.test" || p.Summary.Failure < 1 || p.Summary.Success != 0 || !strings.Contains(f.Reason, "none of 1 TLSA record(s) matches") {
			t.Errorf("the posted report of wrong.dane.test = %+v", r)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no TLS report posted for wrong.dane.test\n%s", a.logs())
	}
}
