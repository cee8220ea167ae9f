package dane

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"

	"mailroom/internal/dns"
)

// issue makes a certificate for names, signed by parent (self-signed when
// nil), valid from nb for a year.
func issue(t *testing.T, cn string, names []string, ca bool, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, nb time.Time) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn}, DNSNames: names,
		NotBefore: nb, NotAfter: nb.Add(365 * 24 * time.Hour), IsCA: ca, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

func TestVerify(t *testing.T) {
	now := time.Now()
	old := now.Add(-2 * 365 * 24 * time.Hour) // expired a year ago
	root, rootKey := issue(t, "Root", nil, true, nil, nil, now.Add(-time.Hour))
	inter, interKey := issue(t, "Intermediate", nil, true, root, rootKey, now.Add(-time.Hour))
	leaf, _ := issue(t, "mx.example.test", []string{"mx.example.test"}, false, inter, interKey, now.Add(-time.Hour))
	expired, _ := issue(t, "mx.example.test", []string{"mx.example.test"}, false, inter, interKey, old)
	self, _ := issue(t, "whatever", []string{"elsewhere.test"}, false, nil, nil, old)
	other, _ := issue(t, "other", nil, false, nil, nil, now)

	spki256 := func(c *x509.Certificate) []byte { h := sha256.Sum256(c.RawSubjectPublicKeyInfo); return h[:] }
	cert512 := func(c *x509.Certificate) []byte { h := sha512.Sum512(c.Raw); return h[:] }
	chain := func(cs ...*x509.Certificate) [][]byte {
		var out [][]byte
		for _, c := range cs {
			out = append(out, c.Raw)
		}
		return out
	}
	names := []string{"mx.example.test", "example.test"}
	tests := []struct {
		name  string
		chain [][]byte
		recs  []dns.TLSA
		want  string // "" for success, else a part of the error
	}{
		{"DANE-EE SPKI SHA-256 matches the leaf", chain(leaf, inter), []dns.TLSA{rec(3, 1, 1, spki256(leaf))}, ""},
		{"DANE-EE full certificate matches", chain(leaf), []dns.TLSA{rec(3, 0, 0, leaf.Raw)}, ""},
		{"DANE-EE certificate SHA-512 matches", chain(leaf), []dns.TLSA{rec(3, 0, 2, cert512(leaf))}, ""},
		{"DANE-EE ignores names and dates", chain(self), []dns.TLSA{rec(3, 1, 1, spki256(self))}, ""},
		{"DANE-EE of another key fails", chain(leaf, inter), []dns.TLSA{rec(3, 1, 1, spki256(other))}, "none of 1 TLSA record(s) matches"},
		{"a DANE-EE record does not match an intermediate", chain(leaf, inter), []dns.TLSA{rec(3, 1, 1, spki256(inter))}, "none of 1"},
		{"DANE-TA on the intermediate", chain(leaf, inter), []dns.TLSA{rec(2, 1, 1, spki256(inter))}, ""},
		{"DANE-TA on the root sent in the chain", chain(leaf, inter, root), []dns.TLSA{rec(2, 0, 2, cert512(root))}, ""},
		{"DANE-TA on a root the server did not send", chain(leaf, inter), []dns.TLSA{rec(2, 1, 1, spki256(root))}, "none of 1"},
		{"DANE-TA checks the name", chain(leaf, inter), []dns.TLSA{rec(2, 1, 1, spki256(inter))}, ""},
		{"DANE-TA checks the dates", chain(expired, inter), []dns.TLSA{rec(2, 1, 1, spki256(inter))}, "does not lead to the trust anchor"},
		{"one matching record of several is enough", chain(leaf, inter), []dns.TLSA{rec(3, 1, 1, spki256(other)), rec(3, 1, 1, spki256(leaf))}, ""},
		{"no certificate", nil, []dns.TLSA{rec(3, 1, 1, spki256(leaf))}, "sent no certificate"},
		{"a leaf that does not parse", [][]byte{[]byte("junk")}, []dns.TLSA{rec(3, 1, 1, spki256(leaf))}, "does not parse"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Verify(tt.chain, tt.recs, names, now)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Verify: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Verify: %v, want an error with %q", err, tt.want)
			}
		})
	}
	t.Run("DANE-TA with a name the certificate lacks", func(t *testing.T) {
		err := Verify(chain(leaf, inter), []dns.TLSA{rec(2, 1, 1, spki256(inter))}, []string{"mx.other.test", "other.test"}, now)
		if err == nil || !strings.Contains(err.Error(), "not valid for mx.other.test or other.test") {
			t.Fatalf("Verify: %v", err)
		}
	})
}

func TestUsable(t *testing.T) {
	h := make([]byte, 32)
	recs := []dns.TLSA{
		rec(3, 1, 1, h), rec(2, 0, 1, h), // usable
		rec(0, 1, 1, h), rec(1, 1, 1, h), // PKIX: not for SMTP
		rec(3, 2, 1, h), rec(3, 1, 3, h), // unknown selector, matching type
		rec(3, 1, 1, h[:20]), rec(3, 1, 2, h), rec(3, 1, 0, nil), // wrong lengths
	}
	got := Usable(recs)
	if len(got) != 2 || got[0].Usage != 3 || got[1].Usage != 2 {
		t.Fatalf("Usable = %+v", got)
	}
}

func rec(usage, selector, matching uint8, data []byte) dns.TLSA {
	return dns.TLSA{Usage: usage, Selector: selector, MatchingType: matching, Data: data}
}
