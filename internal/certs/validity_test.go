package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pairValid writes a certificate valid from notBefore to notAfter.
func pairValid(t *testing.T, notBefore, notAfter time.Time) Pair {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mx.example.test"}, DNSNames: []string{"mx.example.test"},
		NotBefore: notBefore, NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	p := Pair{CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem")}
	os.WriteFile(p.CertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(p.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return p
}

func TestWarnings(t *testing.T) {
	now := time.Now()
	day := 24 * time.Hour
	cases := []struct {
		name     string
		from, to time.Time
		want     string
	}{
		{"a valid certificate is not warned about", now.Add(-day), now.Add(90 * day), ""},
		{"an expired one is", now.Add(-90 * day), now.Add(-day), "expired on"},
		{"one not yet valid is", now.Add(day), now.Add(90 * day), "is not valid until"},
		{"one expiring within two weeks is", now.Add(-80 * day), now.Add(5 * day), "in 4 days"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := Warnings(now, pairValid(t, c.from, c.to))
			switch {
			case c.want == "" && len(w) != 0:
				t.Errorf("warnings %q, want none", w)
			case c.want != "" && (len(w) != 1 || !strings.Contains(w[0], c.want) || !strings.Contains(w[0], "mx.example.test")):
				t.Errorf("warnings %q, want one saying %q", w, c.want)
			}
		})
	}
}
