package arc

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

type keys map[string]string // name -> TXT

func (k keys) lookup(_ context.Context, name string) ([]string, error) {
	if v, ok := k[strings.TrimSuffix(name, ".")]; ok {
		return []string{v}, nil
	}
	return nil, errors.New("no such record")
}

func newSealer(t *testing.T, domain string, ks keys) *Sealer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	ks["s1._domainkey."+domain] = "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)
	return &Sealer{Domain: domain, Selector: "s1", Key: key}
}

const sampleMsg = "From: Alice <alice@example.test>\r\nTo: list@lists.test\r\nSubject: hello  there\r\nDate: Sun, 06 Dec 2026 12:00:00 +0000\r\n" +
	"Message-ID: <1@example.test>\r\n\r\nHello,   world \r\n\r\n\r\n"

// TestSealAndVerify: a chain of two seals verifies; a changed body, a
// changed seal, a missing field or a wrong cv fail it.
func TestSealAndVerify(t *testing.T) {
	ks := keys{}
	ctx := context.Background()
	first, second := newSealer(t, "lists.test", ks), newSealer(t, "forwarder.test", ks)
	if r := Verify(ctx, ks.lookup, []byte(sampleMsg)); r.Value != "none" {
		t.Fatalf("no chain: %+v", r)
	}
	set1, err := first.Seal([]byte(sampleMsg), "lists.test; dkim=pass header.d=example.test; dmarc=pass", Result{Value: "none"})
	if err != nil {
		t.Fatal(err)
	}
	once := string(set1) + sampleMsg
	r := Verify(ctx, ks.lookup, []byte(once))
	if r.Value != "pass" || r.Sealer != "lists.test" || r.Instances != 1 {
		t.Fatalf("one seal: %+v", r)
	}
	set2, err := second.Seal([]byte(once), "forwarder.test; arc=pass", r)
	if err != nil {
		t.Fatal(err)
	}
	twice := string(set2) + once
	if r := Verify(ctx, ks.lookup, []byte(twice)); r.Value != "pass" || r.Sealer != "forwarder.test" || r.Instances != 2 || !strings.Contains(r.AAR, "arc=pass") {
		t.Fatalf("two seals: %+v", r)
	}
	// Relaxed: whitespace changed in transit does not matter.
	if r := Verify(ctx, ks.lookup, []byte(strings.Replace(twice, "Subject: hello  there", "Subject:  hello there ", 1))); r.Value != "pass" {
		t.Errorf("whitespace changed: %+v", r)
	}
	for name, broken := range map[string]string{
		"a changed body":    strings.Replace(twice, "world", "wor1d", 1),
		"a changed seal":    strings.Replace(twice, "cv=pass", "cv=none", 1),
		"a missing field":   strings.Replace(twice, "ARC-Authentication-Results: i=1", "X-Gone: i=1", 1),
		"an instance twice": string(set2) + string(set2) + once,
	} {
		if r := Verify(ctx, ks.lookup, []byte(broken)); r.Value != "fail" {
			t.Errorf("%s: %+v, want fail", name, r)
		}
	}
}

// TestDkimpyVerifies: dkimpy's ARC verifier (Debian's python3-dkim)
// accepts our seals.
func TestDkimpyVerifies(t *testing.T) {
	py, err := exec.LookPath("/usr/bin/python3")
	if err != nil {
		t.Fatal("/usr/bin/python3 is missing: run scripts/test-deps.sh")
	}
	ks := keys{}
	first, second := newSealer(t, "lists.test", ks), newSealer(t, "forwarder.test", ks)
	set1, err := first.Seal([]byte(sampleMsg), "lists.test; spf=pass smtp.mailfrom=example.test", Result{Value: "none"})
	if err != nil {
		t.Fatal(err)
	}
	set2, err := second.Seal(append(set1, sampleMsg...), "forwarder.test; arc=pass", Result{Value: "pass"})
	if err != nil {
		t.Fatal(err)
	}
	script := `import dkim, sys, json
keys = json.loads(sys.argv[1])
def dnsfunc(name, timeout=5):
    return keys.get(name.decode().rstrip("."), "").encode()
cv, results, reason = dkim.arc_verify(sys.stdin.buffer.read(), dnsfunc=dnsfunc)
print(cv.decode(), reason)`
	js := "{"
	n := 0
	for k, v := range ks {
		if n > 0 {
			js += ","
		}
		js += `"` + k + `":"` + v + `"`
		n++
	}
	js += "}"
	cmd := exec.Command(py, "-c", script, js)
	cmd.Stdin = strings.NewReader(string(set2) + string(set1) + sampleMsg)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "pass") {
		t.Errorf("dkimpy's arc_verify: %v\n%s", err, out)
	}
}

func TestRelaxedBody(t *testing.T) {
	for in, want := range map[string]string{
		"":                         "",
		"\r\n\r\n":                 "",
		"a  b \t\r\n\r\n":          "a b\r\n",
		" lead\r\nx":               " lead\r\nx\r\n",
		"line\r\n\r\nnext\r\n\r\n": "line\r\n\r\nnext\r\n",
	} {
		if got := string(relaxedBody([]byte(in))); got != want {
			t.Errorf("relaxedBody(%q) = %q, want %q", in, got, want)
		}
	}
	_ = time.Now
}

// FuzzVerify: any message gives none, pass or fail, never a panic; with
// no key anywhere, never pass.
func FuzzVerify(f *testing.F) {
	f.Add([]byte("ARC-Seal: i=1; a=rsa-sha256; cv=none; d=x.test; s=s; b=AAAA\r\nARC-Message-Signature: i=1; a=rsa-sha256; d=x.test; s=s; h=from; bh=; b=\r\nARC-Authentication-Results: i=1; x.test; none\r\nFrom: a@b\r\n\r\nbody\r\n"))
	f.Add([]byte(sampleMsg))
	none := keys{}
	f.Fuzz(func(t *testing.T, msg []byte) {
		r := Verify(context.Background(), none.lookup, msg)
		if r.Value != "none" && r.Value != "fail" {
			t.Errorf("Verify = %+v without keys", r)
		}
	})
}
