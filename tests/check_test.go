package tests

import (
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"

	"mailroom/internal/dns/dnstest"
)

// zoneFromRecords serves what 'mailroom domain records --json' prints,
// with the server's own address, reverse DNS included, and lets a test
// change any of it.
func zoneFromRecords(t *testing.T, s *server, domain string) (*dnstest.Server, []map[string]string) {
	t.Helper()
	var recs []map[string]string
	if err := json.Unmarshal([]byte(s.cli("domain", "records", domain, "--json")), &recs); err != nil {
		t.Fatal(err)
	}
	zone := dnstest.Start(t, map[string][]string{
		"mx.example.test. A":          {"127.0.0.1"},
		"1.0.0.127.in-addr.arpa. PTR": {"mx.example.test."},
	})
	byName := map[string][]string{}
	for _, r := range recs {
		if r["name"] == "" || r["type"] == "PTR" {
			continue
		}
		v := r["value"]
		if r["type"] == "TXT" {
			v = `"` + strings.Join(splitTXT(v), `" "`) + `"`
		}
		key := r["name"] + ". " + r["type"]
		byName[key] = append(byName[key], v)
	}
	for key, vs := range byName {
		name, typ, _ := strings.Cut(key, " ")
		if err := zone.Zone.Set(name, typ, vs...); err != nil {
			t.Fatal(err)
		}
	}
	return zone, recs
}

// TestCheckDomain: 'mailroom check' finds nothing wrong with a zone made
// of 'domain records', and finds every mistake planted in it, each with a
// fix, exiting 1.
func TestCheckDomain(t *testing.T) {
	s := newServer(t, "", "[dns]\nresolver = \"127.0.0.1:9\"\n")
	zone, recs := zoneFromRecords(t, s, "example.test")
	s.writeConfig("", fmt.Sprintf("[dns]\nresolver = %q\n", zone.Addr))

	out, errOut, err := s.run("", "check", "example.test")
	if err != nil || !strings.Contains(out, "example.test: no problems, 0 warnings") {
		t.Fatalf("check of a correct zone: %v\n%s%s", err, out, errOut)
	}

	var rsaName, edName string
	for _, r := range recs {
		if strings.Contains(r["value"], "k=rsa") {
			rsaName = r["name"] + "."
		}
		if strings.Contains(r["value"], "k=ed25519") {
			edName = r["name"] + "."
		}
	}
	z := zone.Zone
	z.Delete(edName, "TXT")
	z.Delete("_smtp._tls.example.test.", "TXT")
	for _, step := range []error{
		z.Set("example.test.", "MX", "10 mail.elsewhere.test."),
		z.Set("example.test.", "TXT", `"v=spf1 ip4:192.0.2.1 -all"`, `"google-site-verification=x"`),
		z.Set(rsaName, "TXT", `"v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAwrong"`),
		z.Set("_dmarc.example.test.", "TXT", `"v=DMARC1; p=none"`),
		z.Set("1.0.0.127.in-addr.arpa.", "PTR", "host.provider.test."),
	} {
		if step != nil {
			t.Fatal(step)
		}
	}
	out, errOut, err = s.run("", "check", "example.test")
	if err == nil || !strings.Contains(errOut, "example.test: 5 problems, 2 warnings") {
		t.Errorf("check of a broken zone: %v\n%s%s", err, out, errOut)
	}
	var findings []struct{ Level, Check, Name, Text, Fix string }
	jsonOut, _, _ := s.run("", "check", "example.test", "--json")
	if err := json.Unmarshal([]byte(jsonOut), &findings); err != nil {
		t.Fatalf("check --json: %v\n%s", err, jsonOut)
	}
	for _, want := range []struct{ level, check, text, fix string }{
		{"error", "MX", "goes to mail.elsewhere.test, not to this server", "MX 10 mx.example.test."},
		{"error", "SPF", "SPF says fail for 127.0.0.1", "v=spf1 mx -all"},
		{"error", "DKIM", "holds another key than Mailroom signs with", "k=rsa; p="},
		{"error", "DKIM", "ed25519 key", "k=ed25519; p="},
		{"warning", "DMARC", "p=none", "p=quarantine"},
		{"warning", "TLS-RPT", "no TLS-RPT record", "v=TLSRPTv1"},
		{"error", "PTR", "maps back to host.provider.test, which does not resolve to it", "mx.example.test"},
	} {
		found := false
		for _, f := range findings {
			if f.Level == want.level && f.Check == want.check && strings.Contains(f.Text, want.text) && strings.Contains(f.Fix, want.fix) {
				found = true
			}
		}
		if !found {
			t.Errorf("no %s %s finding %q with a fix naming %q in:\n%s", want.level, want.check, want.text, want.fix, jsonOut)
		}
	}
}

// TestMTASTSServed: our policy is served over HTTPS for our domains only
// (curl reads it as a sender would), 'domain records' announces it, and
// 'mailroom check' finds it announced and served.
func TestMTASTSServed(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := writeCertFor(t, dir, "mta-sts.example.test", "policy host", "")
	curl := requireTool(t, "curl")
	httpsAddr := freeAddr(t)
	_, httpsPort, _ := net.SplitHostPort(httpsAddr)
	tables := func(dnsAddr string) string {
		return fmt.Sprintf("[tls]\ncert_file = %q\nkey_file = %q\n[mta_sts]\nmode = \"enforce\"\n[dns]\nresolver = %q\n[outbound]\nmta_sts_port = %s\nca_file = %q\n",
			certFile, keyFile, dnsAddr, httpsPort, certFile)
	}
	s := newServer(t, "", tables("127.0.0.1:9"))
	s.extraListen = fmt.Sprintf("mta_sts = [%q]", httpsAddr)
	s.writeConfig("", tables("127.0.0.1:9"))
	zone, _ := zoneFromRecords(t, s, "example.test")
	zone.Zone.Delete("mta-sts.example.test.", "CNAME")
	zone.Zone.Set("mta-sts.example.test.", "A", "127.0.0.1")
	s.writeConfig("", tables(zone.Addr))
	s.start()

	fetch := func(host string) (string, error) {
		out, err := exec.Command(curl, "-sS", "-f", "--cacert", certFile, "--resolve", host+":"+httpsPort+":127.0.0.1",
			"https://"+host+":"+httpsPort+"/.well-known/mta-sts.txt").CombinedOutput()
		return string(out), err
	}
	policy, err := fetch("mta-sts.example.test")
	if err != nil || policy != "version: STSv1\r\nmode: enforce\r\nmx: mx.example.test\r\nmax_age: 604800\r\n" {
		t.Fatalf("the policy over HTTPS: %v %q", err, policy)
	}
	if out, err := fetch("mta-sts.elsewhere.test"); err == nil {
		t.Errorf("a policy served for a domain that is not ours: %q", out)
	}
	recs := s.cli("domain", "records", "example.test")
	if !strings.Contains(recs, "_mta-sts.example.test.") || !strings.Contains(recs, `"v=STSv1; id=`) {
		t.Errorf("domain records does not announce the policy:\n%s", recs)
	}
	out, errOut, err := s.run("", "check", "example.test", "--json")
	if err != nil {
		t.Fatalf("check: %v\n%s%s", err, out, errOut)
	}
	var findings []struct{ Level, Check, Name, Text string }
	json.Unmarshal([]byte(out), &findings)
	ok := 0
	for _, f := range findings {
		if f.Check == "MTA-STS" && f.Level == "ok" {
			ok++
		}
	}
	if ok != 2 {
		t.Errorf("check's MTA-STS findings: %s", out)
	}
}
