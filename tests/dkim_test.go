package tests

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"mailroom/internal/dns/dnstest"
)

// dkimpyVerify verifies every DKIM-Signature of a message with dkimpy
// (Debian's python3-dkim), the keys read from the records of `mailroom
// domain records --json`: a line per signature, "a=ALGORITHM d=DOMAIN ok"
// or "... fail".
const dkimpyVerify = `
import dkim, json, sys
records = {}
for r in json.load(open(sys.argv[1])):
    if r["type"] == "TXT":
        records[r["name"].lower() + "."] = r["value"].encode()
def dnsfunc(name, timeout=5):
    return records.get(name.decode().lower(), b"")
msg = sys.stdin.buffer.read()
d = dkim.DKIM(msg)
sigs = [v for k, v in dkim.rfc822_parse(msg)[0] if k.lower() == b"dkim-signature"]
for i, s in enumerate(sigs):
    tags = dkim.util.parse_tag_value(s)
    try:
        ok = d.verify(idx=i, dnsfunc=dnsfunc)
    except dkim.ValidationError:
        ok = False
    print("a=%s d=%s %s" % (tags[b"a"].decode(), tags[b"d"].decode(), "ok" if ok else "fail"))
`

// TestDKIMSigned: mail a user sends to another domain arrives signed with
// the domain's ed25519 and RSA keys, both verified by dkimpy against the
// records 'mailroom domain records' prints, fields the submission added
// included; a changed copy fails; mail that stays local is not signed.
func TestDKIMSigned(t *testing.T) {
	py := requireTool(t, "/usr/bin/python3")
	b, port := remoteServer(t, "127.0.0.72", "carol@remote.test")
	b.start()
	dnsAddr := dnstest.Start(t, map[string][]string{
		"remote.test. MX":   {"10 mx.remote.test."},
		"mx.remote.test. A": {"127.0.0.72"},
	}).Addr
	a := newServer(t, "", fmt.Sprintf("[dns]\nresolver = %q\n[outbound]\nport = %d\n", dnsAddr, port))
	a.start()

	c := loggedIn(t, a)
	// No Date or Message-ID: the submission adds them, and they are signed.
	body := "From: Alice <alice@example.test>\r\nTo: carol@remote.test\r\nSubject: signed\r\n\r\nHello Carol,  \r\n\r\nbye\r\n"
	if r := c.sendMail("alice@example.test", []string{"carol@remote.test", "bob@example.test"}, body); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("submission: %q", r)
	}
	waitMailbox(t, b, "carol@remote.test", 1, "delivery to carol")
	got := b.message("carol@remote.test", b.mailbox("carol@remote.test")[0].ID)

	recs := filepath.Join(t.TempDir(), "records.json")
	if err := os.WriteFile(recs, []byte(a.cli("domain", "records", "example.test", "--json")), 0o600); err != nil {
		t.Fatal(err)
	}
	var parsed []map[string]string
	if err := json.Unmarshal([]byte(a.cli("domain", "records", "example.test", "--json")), &parsed); err != nil {
		t.Fatalf("domain records --json: %v", err)
	}
	types := map[string]int{}
	for _, r := range parsed {
		types[r["type"]]++
	}
	if types["MX"] != 1 || types["TXT"] != 5 || types["SRV"] != 6 || types["PTR"] != 1 || types["CNAME"] != 2 {
		t.Errorf("domain records: %v (want MX; SPF, 2 DKIM, DMARC and TLS-RPT; an SRV per service; autoconfig and autodiscover; a PTR)", types)
	}
	verify := func(msg string) string {
		t.Helper()
		return dkimpyRun(t, py, recs, msg)
	}
	want := "a=ed25519-sha256 d=example.test ok\na=rsa-sha256 d=example.test ok"
	if v := verify(got); v != want {
		t.Fatalf("dkimpy on carol's copy:\n%s\nwant\n%s\nthe copy:\n%s", v, want, got)
	}
	for _, f := range []string{"Date: ", "Message-ID: <"} {
		if !strings.Contains(got, f) {
			t.Errorf("the submission did not add %q", f)
		}
	}
	if i, j := strings.Index(got, "DKIM-Signature:"), strings.Index(got, "Received: from"); i < 0 || j > i {
		t.Errorf("our Received field is not above the signatures:\n%s", got)
	}
	changed := strings.Replace(got, "Hello Carol", "Hello Carla", 1)
	if v := verify(changed); v != "a=ed25519-sha256 d=example.test fail\na=rsa-sha256 d=example.test fail" {
		t.Errorf("dkimpy on a changed copy: %s", v)
	}

	// Bob's copy went with the same message: signed too, harmlessly. Mail
	// only to local users is not signed.
	c = loggedIn(t, a)
	if r := c.sendMail("alice@example.test", []string{"bob@example.test"}, "From: alice@example.test\r\nSubject: local\r\n\r\nx\r\n"); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("submission: %q", r)
	}
	waitMailbox(t, a, "bob@example.test", 2, "two messages for bob")
	for _, m := range a.mailbox("bob@example.test") {
		if raw := a.message("bob@example.test", m.ID); m.Subject == "local" && strings.Contains(raw, "DKIM-Signature") {
			t.Errorf("mail to local users only was signed:\n%s", raw)
		}
	}
}

// TestDKIMRotate: 'dkim rotate' makes keys that sign after --wait while
// the old ones keep signing, then retire --keep later; 'domain records'
// publishes both meanwhile; 'dkim delete' refuses a key not retired.
func TestDKIMRotate(t *testing.T) {
	s := newServer(t, "", "")
	type key struct{ Selector, Algorithm, State string }
	keys := func() []key {
		t.Helper()
		var ks []key
		if err := json.Unmarshal([]byte(s.cli("dkim", "keys", "example.test", "--json")), &ks); err != nil {
			t.Fatal(err)
		}
		return ks
	}
	before := keys()
	if len(before) != 2 || before[0].State != "signing" || before[1].State != "signing" {
		t.Fatalf("the keys 'domain add' made: %+v", before)
	}
	out := s.cli("dkim", "rotate", "example.test", "--wait", "48h", "--keep", "24h")
	if !strings.Contains(out, "publish the new records before") {
		t.Errorf("dkim rotate says: %s", out)
	}
	after := keys()
	states := map[string]string{}
	for _, k := range after {
		states[k.Selector] = k.State
	}
	if len(after) != 4 || states[before[0].Selector] != "signing" || strings.Count(fmt.Sprint(states), "next") != 2 {
		t.Errorf("after a rotation: %+v", after)
	}
	recs := s.cli("domain", "records", "example.test")
	if n := strings.Count(recs, "._domainkey.example.test."); n != 4 {
		t.Errorf("records publish %d DKIM keys during the rotation, want 4:\n%s", n, recs)
	}
	if _, errOut, err := s.run("", "dkim", "delete", "example.test", before[0].Selector); err == nil || !strings.Contains(errOut, "not retired") {
		t.Errorf("deleting a signing key: %v %s", err, errOut)
	}
}

// TestUnsignedDomainWarned: a domain without DKIM keys (one added before
// Mailroom signed, or whose keys were deleted) is named in the log at start,
// with what to do.
func TestUnsignedDomainWarned(t *testing.T) {
	s := newServer(t, "", "")
	var ks []struct{ Selector string }
	json.Unmarshal([]byte(s.cli("dkim", "keys", "example.test", "--json")), &ks)
	for _, k := range ks {
		s.cli("dkim", "delete", "example.test", k.Selector, "--force")
	}
	s.start()
	if !strings.Contains(s.logs(), "a domain has no DKIM keys") || !strings.Contains(s.logs(), "domain=example.test") {
		t.Errorf("no warning for the domain without keys:\n%s", s.logs())
	}
}

// dkimpyRun runs dkimpyVerify on msg with the records in the JSON file
// recs.
func dkimpyRun(t *testing.T, py, recs, msg string) string {
	t.Helper()
	cmd := exec.Command(py, "-c", dkimpyVerify, recs)
	cmd.Stdin = strings.NewReader(msg)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("dkimpy: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// dkimpyCheck verifies msg's signatures with dkimpy against the records
// s's 'domain records' prints for domain.
func dkimpyCheck(t *testing.T, s *server, domain, msg string) string {
	t.Helper()
	recs := filepath.Join(t.TempDir(), "records.json")
	if err := os.WriteFile(recs, []byte(s.cli("domain", "records", domain, "--json")), 0o600); err != nil {
		t.Fatal(err)
	}
	return dkimpyRun(t, requireTool(t, "/usr/bin/python3"), recs, msg)
}
