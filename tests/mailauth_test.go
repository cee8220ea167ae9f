package tests

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"mailroom/internal/dns/dnstest"
)

// authResults returns the Authentication-Results field of a stored
// message, unfolded, or "".
func authResults(raw string) string {
	var out []string
	in := false
	for _, l := range strings.Split(raw, "\r\n") {
		switch {
		case l == "":
			return strings.Join(out, " ")
		case strings.HasPrefix(l, "Authentication-Results:"):
			in = true
			out = append(out, l)
		case in && (l[0] == ' ' || l[0] == '\t'):
			out = append(out, strings.TrimSpace(l))
		default:
			in = false
		}
	}
	return strings.Join(out, " ")
}

// inFolder returns the raw messages of one of a user's folders.
func inFolder(s *server, addr, folder string) []string {
	s.t.Helper()
	var msgs []listedMessage
	if err := json.Unmarshal([]byte(s.cli("mailbox", "list", addr, "--folder", folder, "--json")), &msgs); err != nil {
		s.t.Fatal(err)
	}
	var out []string
	for _, m := range msgs {
		out = append(out, s.cli("mailbox", "cat", addr, fmt.Sprint(m.ID), "--folder", folder))
	}
	return out
}

// TestInboundAuthentication: mail from outside gets SPF, DKIM and DMARC
// checked and an Authentication-Results field: aligned SPF and another
// Mailroom's DKIM signatures pass; a forged From of a p=reject domain is
// refused with 550 5.7.1, or kept in Junk when a recipient domain says
// quarantine or monitor for it; p=quarantine goes to Junk; a field that
// claims our authserv-id is obscured.
func TestInboundAuthentication(t *testing.T) {
	zone := dnstest.Start(t, map[string][]string{
		"good.test. TXT":          {`"v=spf1 ip4:127.0.0.1 -all"`},
		"_dmarc.good.test. TXT":   {`"v=DMARC1; p=reject"`},
		"bad.test. TXT":           {`"v=spf1 ip4:192.0.2.1 -all"`},
		"_dmarc.bad.test. TXT":    {`"v=DMARC1; p=reject"`},
		"quar.test. TXT":          {`"v=spf1 -all"`},
		"_dmarc.quar.test. TXT":   {`"v=DMARC1; p=quarantine"`},
		"remote.test. TXT":        {`"v=spf1 ip4:127.0.0.0/8 -all"`},
		"_dmarc.remote.test. TXT": {`"v=DMARC1; p=reject"`},
		"other.test. MX":          {"10 mx.example.test."},
		"mx.example.test. A":      {"127.0.0.1"},
	})
	a := newServer(t, "", fmt.Sprintf("[dns]\nresolver = %q\n[smtp.dmarc_domains]\n\"other.test\" = \"monitor\"\n\"lists.test\" = \"quarantine\"\n", zone.Addr))
	for _, d := range []string{"other.test", "lists.test"} {
		a.cli("domain", "add", d)
	}
	a.cli("user", "add", "dave@other.test", "--generate")
	a.cli("user", "add", "lena@lists.test", "--generate")
	a.start()

	send := func(mailFrom, body string, to ...string) string {
		t.Helper()
		c := a.dial()
		c.cmd("EHLO client.test", "250")
		return c.sendMail(mailFrom, to, body)
	}
	msg := func(from, subject string) string {
		return "From: " + from + "\r\nTo: alice@example.test\r\nSubject: " + subject + "\r\n\r\nhello\r\n"
	}
	if r := send("news@good.test", msg("news@good.test", "aligned SPF"), "alice@example.test"); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("mail passing SPF: %q", r)
	}
	if r := send("x@bad.test", msg("ceo@bad.test", "forged"), "alice@example.test"); !strings.HasPrefix(r, "550 5.7.1 ") || !strings.Contains(r, "DMARC") {
		t.Errorf("a forged From of a p=reject domain: %q, want 550 5.7.1 naming DMARC", r)
	}
	// Recipients of domains that do not enforce: delivered, to Junk where
	// the domain quarantines, to INBOX where it monitors.
	if r := send("x@bad.test", msg("ceo@bad.test", "forged to others"), "dave@other.test", "lena@lists.test"); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("a forged From to domains that do not enforce: %q", r)
	}
	if r := send("x@quar.test", msg("a@quar.test", "quarantined"), "alice@example.test"); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("p=quarantine: %q", r)
	}
	// A header that hides its From behind padding, or names two: refused.
	padded := strings.Repeat("X-Padding: "+strings.Repeat("p", 990)+"\r\n", 270) + msg("ceo@bad.test", "padded")
	if r := send("x@bad.test", padded, "alice@example.test"); !strings.HasPrefix(r, "552 5.6.0 ") {
		t.Errorf("a header of 270 KiB from outside: %q", r)
	}
	if r := send("x@bad.test", "X-Folded: a\r\n"+strings.Repeat(" b\r\n", 1001)+msg("ceo@bad.test", "folded"), "alice@example.test"); !strings.HasPrefix(r, "552 5.6.0 ") {
		t.Errorf("a field folded over 1,001 lines from outside: %q", r)
	}
	if r := send("x@bad.test", "From: a@good.test\r\n"+msg("ceo@bad.test", "two froms"), "alice@example.test"); !strings.HasPrefix(r, "550 5.6.0 ") {
		t.Errorf("two From fields from outside: %q", r)
	}
	forged := "Authentication-Results: mx.example.test; dkim=pass header.d=bank.test\r\n" +
		"Authentication-Results: elsewhere.test; spf=pass\r\n" + msg("news@good.test", "claims")
	if r := send("news@good.test", forged, "alice@example.test"); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("a message with claimed results: %q", r)
	}

	// Another Mailroom sends as remote.test: its DKIM keys are published
	// (from its own 'domain records'), SPF names its address.
	b, _ := remoteServer(t, "127.0.0.73", "carol@remote.test")
	_, port, _ := strings.Cut(a.addr, ":")
	b.writeConfig("", fmt.Sprintf("[dns]\nresolver = %q\n[outbound]\nport = %s\n", zone.Addr, port))
	var recs []map[string]string
	if err := json.Unmarshal([]byte(b.cli("domain", "records", "remote.test", "--json")), &recs); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r["type"] == "TXT" && strings.Contains(r["name"], "._domainkey.") {
			if err := zone.Zone.Set(r["name"]+".", "TXT", `"`+strings.Join(splitTXT(r["value"]), `" "`)+`"`); err != nil {
				t.Fatal(err)
			}
		}
	}
	b.cliStdin("Carol-lantern-quartz-88\n", "user", "passwd", "carol@remote.test", "--password-stdin")
	b.start()
	bc := loggedInAs(t, b, "carol@remote.test", "Carol-lantern-quartz-88")
	// (B has an example.test of its own: it sends to dave@other.test.)
	if r := bc.sendMail("carol@remote.test", []string{"dave@other.test"}, strings.Replace(msg("Carol <carol@remote.test>", "signed elsewhere"), "alice@example.test", "dave@other.test", 1)); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("B's submission: %q", r)
	}
	waitMailbox(t, a, "dave@other.test", 2, "two messages in dave's INBOX")

	results := map[string]string{}
	raws := map[string]string{}
	for _, f := range []string{"INBOX", "Junk"} {
		for _, raw := range append(inFolder(a, "alice@example.test", f), append(inFolder(a, "dave@other.test", f), inFolder(a, "lena@lists.test", f)...)...) {
			subject := raw[strings.Index(raw, "Subject: ")+9:]
			subject = subject[:strings.Index(subject, "\r\n")]
			key := f + " " + subject
			if strings.Contains(raw, "dave@other.test") {
				key += " (dave)"
			} else if strings.Contains(raw, "lena@lists.test") {
				key += " (lena)"
			}
			results[key], raws[key] = authResults(raw), raw
		}
	}
	for key, want := range map[string][]string{
		"INBOX aligned SPF":             {"Authentication-Results: mx.example.test;", "spf=pass smtp.mailfrom=good.test", "dkim=none", "dmarc=pass header.from=good.test"},
		"INBOX forged to others (dave)": {"spf=fail smtp.mailfrom=bad.test", "dmarc=fail", "header.from=bad.test"},
		"Junk forged to others (lena)":  {"spf=fail", "dmarc=fail", "header.from=bad.test"},
		"Junk quarantined":              {"spf=fail smtp.mailfrom=quar.test", "dmarc=fail", "header.from=quar.test"},
		"INBOX claims":                  {"spf=pass", "dmarc=pass"},
		"INBOX signed elsewhere (dave)": {"spf=pass smtp.mailfrom=remote.test", "dkim=pass header.d=remote.test", "dmarc=pass header.from=remote.test"},
	} {
		got, ok := results[key]
		if !ok {
			t.Errorf("no message %q; found %q", key, keys(results))
			continue
		}
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: no %q in %q", key, w, got)
			}
		}
	}
	if n := strings.Count(results["INBOX signed elsewhere (dave)"], "dkim=pass"); n != 2 {
		t.Errorf("B's two signatures: %d pass in %q", n, results["INBOX signed elsewhere (dave)"])
	}
	claims := raws["INBOX claims"]
	if !strings.Contains(claims, "X-Claimed-Auth-Results: mx.example.test; dkim=pass header.d=bank.test\r\n") ||
		!strings.Contains(claims, "Authentication-Results: elsewhere.test; spf=pass\r\n") || strings.Count(claims, "Authentication-Results: mx.example.test") != 1 {
		t.Errorf("a claimed result is not obscured, or another host's is not kept:\n%s", claims)
	}
}

// splitTXT cuts a record's text into strings a zone file can hold.
func splitTXT(s string) []string {
	var out []string
	for len(s) > 255 {
		out = append(out, s[:255])
		s = s[255:]
	}
	return append(out, s)
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// spfCases are SPF records and senders, for TestSPFAgreesWithPyspf: each
// domain case<i>.test publishes the record; mail comes from 127.0.0.1.
var spfCases = []struct{ record, sender string }{
	{"v=spf1 ip4:127.0.0.1 -all", "a@case.test"},
	{"v=spf1 ip4:127.0.0.0/8 -all", "a@case.test"},
	{"v=spf1 ip4:192.0.2.0/24 -all", "a@case.test"},
	{"v=spf1 ip4:192.0.2.0/24 ~all", "a@case.test"},
	{"v=spf1 ?all", "a@case.test"},
	{"v=spf1 a -all", "a@case.test"},                        // the domain's A is 127.0.0.1
	{"v=spf1 mx -all", "a@case.test"},                       // its MX is mx.case.test, 127.0.0.1
	{"v=spf1 include:inc.test -all", "a@case.test"},         // inc.test passes 127.0.0.1
	{"v=spf1 include:nothere.test -all", "a@case.test"},     // an include without a record: permerror
	{"v=spf1 exists:%{i}.ok.test -all", "a@case.test"},      // macro: 127.0.0.1.ok.test exists
	{"v=spf1 exists:%{l}.users.test -all", "bob@case.test"}, // macro: bob.users.test exists
	{"v=spf1 exists:%{l}.users.test -all", "eve@case.test"},
	{"v=spf1 redirect=inc.test", "a@case.test"},
	{"v=spf1 a:v1.test a:v2.test a:v3.test -all", "a@case.test"}, // three void lookups: permerror
	{"v=spf1 include:l1.test include:l2.test include:l3.test include:l4.test include:l5.test include:l6.test " +
		"include:l7.test include:l8.test include:l9.test include:l10.test include:l11.test -all", "a@case.test"}, // over 10 lookups
	{"v=spf1 ip4:127.0.0.1 ip4:127.0.0.1 bogus -all", "a@case.test"}, // an unknown mechanism: permerror
	{"v=spf1 -ip4:127.0.0.1 +all", "a@case.test"},
	{"v=spf1 ptr -all", "a@case.test"}, // 127.0.0.1's PTR is host.case.test, whose A is 127.0.0.1
}

// TestSPFAgreesWithPyspf: the SPF result Mailroom writes in
// Authentication-Results agrees with pyspf's (Debian's python3-spf, asking
// the same test DNS server) on a table of records: macros, include,
// redirect, exists, ptr, the limits on lookups and void lookups.
func TestSPFAgreesWithPyspf(t *testing.T) {
	py := requireTool(t, "/usr/bin/python3")
	recs := map[string][]string{
		"inc.test. TXT":               {`"v=spf1 ip4:127.0.0.1 -all"`},
		"127.0.0.1.ok.test. A":        {"127.0.0.2"},
		"bob.users.test. A":           {"127.0.0.2"},
		"1.0.0.127.in-addr.arpa. PTR": {fmt.Sprintf("host.case%d.test.", len(spfCases)-1)}, // the ptr case's
	}
	for i := 1; i <= 11; i++ {
		recs[fmt.Sprintf("l%d.test. TXT", i)] = []string{`"v=spf1 a:x.l.test -all"`}
	}
	for i, c := range spfCases {
		d := fmt.Sprintf("case%d.test.", i)
		recs[d+" TXT"] = []string{`"` + c.record + `"`}
		recs[d+" A"] = []string{"127.0.0.1"}
		recs[d+" MX"] = []string{"10 mx." + d}
		recs["mx."+d+" A"] = []string{"127.0.0.1"}
	}
	recs[fmt.Sprintf("host.case%d.test. A", len(spfCases)-1)] = []string{"127.0.0.1"}
	zone := dnstest.Start(t, recs)
	a := newServer(t, "", fmt.Sprintf("[dns]\nresolver = %q\n", zone.Addr))
	a.start()
	_, dnsPort, _ := strings.Cut(zone.Addr, ":")
	for i, c := range spfCases {
		sender := strings.Replace(c.sender, "@case.test", fmt.Sprintf("@case%d.test", i), 1)
		cl := a.dial()
		cl.cmd("EHLO client.test", "250")
		if r := cl.sendMail(sender, []string{"alice@example.test"}, "From: "+sender+"\r\nSubject: case "+fmt.Sprint(i)+"\r\n\r\nx\r\n"); !strings.HasPrefix(r, "250 ") {
			t.Fatalf("case %d: %q", i, r)
		}
	}
	waitMailbox(t, a, "alice@example.test", len(spfCases), "every case delivered")
	ours := map[string]string{}
	for _, m := range a.mailbox("alice@example.test") {
		ar := authResults(a.message("alice@example.test", m.ID))
		i := strings.Index(ar, "spf=")
		if i < 0 {
			t.Fatalf("%s: no spf= in %q", m.Subject, ar)
		}
		ours[m.Subject] = strings.Fields(ar[i+4:])[0]
	}
	script := `import sys, spf, dns.resolver
r = dns.resolver.Resolver(configure=False)
r.nameservers = ["127.0.0.1"]
r.port = int(sys.argv[1])
dns.resolver.default_resolver = r
for line in sys.stdin:
    sender = line.strip()
    res, _ = spf.check2(i="127.0.0.1", s=sender, h="client.test")
    print(res)`
	cmd := exec.Command(py, "-c", script, dnsPort)
	var senders []string
	for i, c := range spfCases {
		senders = append(senders, strings.Replace(c.sender, "@case.test", fmt.Sprintf("@case%d.test", i), 1))
	}
	cmd.Stdin = strings.NewReader(strings.Join(senders, "\n") + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pyspf: %v\n%s", err, out)
	}
	theirs := strings.Fields(string(out))
	if len(theirs) != len(spfCases) {
		t.Fatalf("pyspf answered %d of %d: %s", len(theirs), len(spfCases), out)
	}
	for i, c := range spfCases {
		got := ours[fmt.Sprintf("case %d", i)]
		if got != theirs[i] {
			t.Errorf("case %d (%q, %s): Mailroom %q, pyspf %q", i, c.record, senders[i], got, theirs[i])
		}
	}
}

// TestAuthResultsOnSubmission: a logged-in user's message gets our
// auth=pass, and a field it carries claiming our name is obscured, so that
// nobody can hand a colleague's mail client a forged verdict.
func TestAuthResultsOnSubmission(t *testing.T) {
	s := newServer(t, "", "")
	s.start()
	c := loggedIn(t, s)
	if r := c.sendMail("alice@example.test", []string{"bob@example.test"}, "Authentication-Results: mx.example.test; dmarc=pass header.from=bank.test\r\nFrom: alice@example.test\r\nSubject: trust me\r\n\r\nx\r\n"); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("submission: %q", r)
	}
	waitMailbox(t, s, "bob@example.test", 1, "alice's message")
	got := s.message("bob@example.test", s.mailbox("bob@example.test")[0].ID)
	if ar := authResults(got); !strings.Contains(ar, "auth=pass") || strings.Contains(ar, "bank.test") {
		t.Errorf("Authentication-Results of a submitted message: %q", ar)
	}
	if !strings.Contains(got, "X-Claimed-Auth-Results: mx.example.test; dmarc=pass header.from=bank.test") {
		t.Errorf("the forged field was not obscured:\n%s", got)
	}
}
