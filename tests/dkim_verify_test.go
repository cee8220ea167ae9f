package tests

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"mailroom/internal/dns/dnstest"
)

// dkimpySign signs a message with dkimpy (Debian's python3-dkim): the
// key file holds a PEM RSA key or a base64 ed25519 seed.
const dkimpySign = `
import dkim, sys
key, sel, dom, alg = sys.argv[1], sys.argv[2].encode(), sys.argv[3].encode(), sys.argv[4].encode()
msg = sys.stdin.buffer.read()
sig = dkim.sign(msg, sel, dom, open(key, 'rb').read(), signature_algorithm=alg,
                include_headers=[b'from', b'to', b'subject'])
sys.stdout.buffer.write(sig + msg)
`

// TestDKIMVerifiesDkimpy: mail signed by dkimpy (RSA-2048 and ed25519)
// verifies in Mailroom; a signature by an RSA key of 512 bits does not
// pass (RFC 8301), nor does one whose body changed after signing.
func TestDKIMVerifiesDkimpy(t *testing.T) {
	py := requireTool(t, "/usr/bin/python3")
	openssl := requireTool(t, "openssl")
	dir := t.TempDir()
	rsaKey := func(bits string) (file, record string) {
		file = filepath.Join(dir, "rsa"+bits+".pem")
		if out, err := exec.Command(openssl, "genrsa", "-out", file, bits).CombinedOutput(); err != nil {
			t.Fatalf("openssl genrsa: %v\n%s", err, out)
		}
		der, err := exec.Command(openssl, "rsa", "-in", file, "-pubout", "-outform", "DER").Output()
		if err != nil {
			t.Fatal(err)
		}
		return file, `"v=DKIM1; k=rsa; p=` + base64.StdEncoding.EncodeToString(der) + `"`
	}
	strong, strongRec := rsaKey("2048")
	weak, weakRec := rsaKey("512")
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	edKey := filepath.Join(dir, "ed25519.key")
	os.WriteFile(edKey, []byte(base64.StdEncoding.EncodeToString(priv.Seed())), 0o600)
	zone := dnstest.Start(t, map[string][]string{
		"rsa._domainkey.signer.test. TXT":  {strongRec},
		"ed._domainkey.signer.test. TXT":   {`"v=DKIM1; k=ed25519; p=` + base64.StdEncoding.EncodeToString(pub) + `"`},
		"weak._domainkey.signer.test. TXT": {weakRec},
	})
	a := newServer(t, "", "[dns]\nresolver = \""+zone.Addr+"\"\n")
	a.start()

	sign := func(msg, key, selector, alg string) string {
		t.Helper()
		cmd := exec.Command(py, "-c", dkimpySign, key, selector, "signer.test", alg)
		cmd.Stdin = strings.NewReader(msg)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("dkimpy sign: %v", err)
		}
		return strings.ReplaceAll(strings.ReplaceAll(string(out), "\r\n", "\n"), "\n", "\r\n")
	}
	deliver := func(subject, signed string) string {
		t.Helper()
		c := a.dial()
		c.cmd("EHLO client.test", "250")
		if r := c.sendMail("news@signer.test", []string{"alice@example.test"}, signed); !strings.HasPrefix(r, "250 ") {
			t.Fatalf("%s: %q", subject, r)
		}
		for _, m := range a.mailbox("alice@example.test") {
			if m.Subject == subject {
				return authResults(a.message("alice@example.test", m.ID))
			}
		}
		t.Fatalf("%s: not in the mailbox", subject)
		return ""
	}
	msg := func(subject string) string {
		return "From: news@signer.test\r\nTo: alice@example.test\r\nSubject: " + subject + "\r\n\r\nHello from dkimpy.\r\n"
	}

	both := sign(sign(msg("both"), strong, "rsa", "rsa-sha256"), edKey, "ed", "ed25519-sha256")
	if ar := deliver("both", both); strings.Count(ar, "dkim=pass header.d=signer.test") != 2 {
		t.Errorf("dkimpy's RSA and ed25519 signatures: %s, want two dkim=pass", ar)
	}
	if ar := deliver("weak", sign(msg("weak"), weak, "weak", "rsa-sha256")); !strings.Contains(ar, "dkim=permerror") || !strings.Contains(ar, "too short") {
		t.Errorf("a signature by a 512-bit key: %s, want permerror naming the short key", ar)
	}
	tampered := strings.Replace(sign(msg("tampered"), strong, "rsa", "rsa-sha256"), "Hello from dkimpy.", "Hello from someone else.", 1)
	if ar := deliver("tampered", tampered); !strings.Contains(ar, "dkim=fail") || strings.Contains(ar, "dkim=pass") {
		t.Errorf("a body changed after signing: %s, want dkim=fail", ar)
	}
}
