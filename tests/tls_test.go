package tests

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// writeCert makes a self-signed certificate for mx.example.test and
// 127.0.0.1 and returns the paths of the PEM files and the pool trusting it.
func writeCert(t *testing.T, dir, cn string) (string, string, *x509.CertPool) {
	t.Helper()
	return writeCertFor(t, dir, "mx.example.test", cn, "")
}

// writeCertFor makes a self-signed certificate for one DNS name (and
// 127.0.0.1), in files named with prefix.
func writeCertFor(t *testing.T, dir, name, cn, prefix string) (string, string, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn},
		DNSNames:              []string{name},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile := filepath.Join(dir, prefix+"cert.pem"), filepath.Join(dir, prefix+"key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func newTLSServer(t *testing.T) (*server, *x509.CertPool, string) {
	dir := t.TempDir()
	certFile, keyFile, pool := writeCert(t, dir, "first")
	s := newServer(t, "", fmt.Sprintf("[tls]\ncert_file = %q\nkey_file = %q\n", certFile, keyFile))
	s.start()
	return s, pool, dir
}

// startTLS upgrades a raw client after the 220 to STARTTLS.
func (c *client) startTLS(pool *x509.CertPool) *tls.ConnectionState {
	c.t.Helper()
	tc := tls.Client(c.conn, &tls.Config{ServerName: "mx.example.test", RootCAs: pool})
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS handshake: %v", err)
	}
	c.conn = tc
	c.r.Reset(tc)
	st := tc.ConnectionState()
	return &st
}

// TestStartTLS: a message over STARTTLS is recorded "with ESMTPS" and the
// TLS version; TLS below 1.2 is refused.
func TestStartTLS(t *testing.T) {
	s, pool, _ := newTLSServer(t)
	c := s.dial()
	if !strings.Contains(c.ehlo("client.example"), "STARTTLS") {
		t.Fatal("EHLO does not offer STARTTLS although a certificate is configured")
	}
	c.cmd("STARTTLS", "220 2.0.0")
	st := c.startTLS(pool)
	if st.Version < tls.VersionTLS12 {
		t.Errorf("negotiated TLS version %x", st.Version)
	}
	c.cmd("EHLO client.example", "250 ")
	c.cmd("STARTTLS", "503 5.5.1")
	if r := c.sendMail("a@remote.example", []string{"alice@example.test"}, "Subject: over tls\r\n\r\nhi\r\n"); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("DATA over TLS: %q", r)
	}
	msgs := s.mailbox("alice@example.test")
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	raw := s.message("alice@example.test", msgs[0].ID)
	if !strings.Contains(raw, "with ESMTPS") || !strings.Contains(raw, "TLS1.3") {
		t.Errorf("Received header does not record TLS:\n%s", raw)
	}

	old := s.dial()
	old.cmd("EHLO client.example", "250 ")
	old.cmd("STARTTLS", "220 ")
	tc := tls.Client(old.conn, &tls.Config{ServerName: "mx.example.test", RootCAs: pool, MaxVersion: tls.VersionTLS11})
	if err := tc.Handshake(); err == nil {
		t.Error("a TLS 1.1 handshake succeeded")
	}

	cbc := s.dial()
	cbc.cmd("EHLO client.example", "250 ")
	cbc.cmd("STARTTLS", "220 ")
	tc = tls.Client(cbc.conn, &tls.Config{ServerName: "mx.example.test", RootCAs: pool, MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA}})
	if err := tc.Handshake(); err == nil {
		t.Error("a TLS 1.2 handshake with only CBC suites succeeded")
	}
}

// TestStartTLSInjection: commands sent in plaintext right after STARTTLS,
// in the same packet, are discarded, not run inside the TLS session.
func TestStartTLSInjection(t *testing.T) {
	s, pool, _ := newTLSServer(t)
	c := s.dial()
	c.cmd("EHLO client.example", "250 ")
	c.send("STARTTLS\r\nHELP\r\nMAIL FROM:<injected@remote.example>\r\n")
	c.expect("220 ")
	c.startTLS(pool)
	// The first reply inside TLS must answer our EHLO, not the injected HELP.
	c.cmd("EHLO client.example", "250 ")
	// And no MAIL survived: RCPT needs MAIL first.
	c.cmd("RCPT TO:<alice@example.test>", "503 5.5.1")
}

// TestCertificateReloadOnSIGHUP: a certificate replaced on disk is served
// to new connections after SIGHUP; a connection already in TLS goes on.
func TestCertificateReloadOnSIGHUP(t *testing.T) {
	s, pool, dir := newTLSServer(t)
	old := s.dial()
	old.cmd("EHLO old.example", "250 ")
	old.cmd("STARTTLS", "220 ")
	if st := old.startTLS(pool); st.PeerCertificates[0].Subject.CommonName != "first" {
		t.Fatalf("first certificate: %q", st.PeerCertificates[0].Subject.CommonName)
	}
	_, _, pool2 := writeCert(t, dir, "second") // same paths, new content
	s.cmd.Process.Signal(syscall.SIGHUP)
	s.waitLog("configuration reloaded")
	c := s.dial()
	c.cmd("EHLO new.example", "250 ")
	c.cmd("STARTTLS", "220 ")
	if st := c.startTLS(pool2); st.PeerCertificates[0].Subject.CommonName != "second" {
		t.Errorf("after SIGHUP the server presents %q", st.PeerCertificates[0].Subject.CommonName)
	}
	old.cmd("EHLO old.example", "250 ")
}

// TestCertificatesBySNIAndFileChanges: with two certificates the one for
// the name the client asks for is presented; a certificate renewed on disk
// is presented to new connections without a restart or SIGHUP.
func TestCertificatesBySNIAndFileChanges(t *testing.T) {
	dir := t.TempDir()
	certA, keyA, _ := writeCertFor(t, dir, "mx.example.test", "a-first", "a-")
	certB, keyB, _ := writeCertFor(t, dir, "other.example.test", "b", "b-")
	s := newServer(t, "", fmt.Sprintf("[tls]\ncert_file = %q\nkey_file = %q\nreload_interval = \"1s\"\ncertificates = [{ cert_file = %q, key_file = %q }]\n",
		certA, keyA, certB, keyB))
	s.start()
	presented := func(serverName string) string {
		c := s.dial()
		c.t = t
		c.cmd("EHLO sni.example", "250 ")
		c.cmd("STARTTLS", "220 ")
		tc := tls.Client(c.conn, &tls.Config{ServerName: serverName, InsecureSkipVerify: true})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
		return tc.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if got := presented("other.example.test"); got != "b" {
		t.Errorf("for other.example.test: %q", got)
	}
	if got := presented("mx.example.test"); got != "a-first" {
		t.Errorf("for mx.example.test: %q", got)
	}
	if got := presented(""); got != "a-first" {
		t.Errorf("without SNI: %q", got)
	}
	time.Sleep(1100 * time.Millisecond) // a new modification time, whatever the file system's granularity
	writeCertFor(t, dir, "mx.example.test", "a-renewed", "a-")
	s.waitLog("certificate files changed: reloaded")
	if got := presented("mx.example.test"); got != "a-renewed" {
		t.Errorf("after renewal on disk: %q", got)
	}
}

// TestCertificateDatesAreWarnedAbout: a configured certificate about to
// expire (these test certificates last a day) is named with its date in the
// log at start and by "config check".
func TestCertificateDatesAreWarnedAbout(t *testing.T) {
	s, _, _ := newTLSServer(t) // started
	s.waitLog("level=WARN msg=\"the certificate in")
	_, errOut, err := s.run("", "config", "check", "--quiet")
	if err != nil || !strings.Contains(errOut, "warning: the certificate in") || !strings.Contains(errOut, "renew it") {
		t.Errorf("config check: %v %q", err, errOut)
	}
}
