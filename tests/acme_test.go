package tests

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// pebblePath finds Pebble, installed by scripts/test-deps.sh.
func pebblePath(t *testing.T) string {
	if p, err := exec.LookPath("pebble"); err == nil {
		return p
	}
	out, _ := exec.Command("go", "env", "GOPATH").Output()
	p := filepath.Join(strings.TrimSpace(string(out)), "bin", "pebble")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("pebble is not installed: run ./scripts/test-deps.sh (make test does)")
	}
	return p
}

// TestACME: with [tls.acme], Mailroom gets a certificate from an ACME CA
// (Pebble, on loopback, told to accept every challenge) and presents it,
// while presenting its self-signed one until then.
func TestACME(t *testing.T) {
	pebble := pebblePath(t)
	dir := t.TempDir()
	// Pebble's own HTTPS certificate, which Mailroom is told to trust.
	caCert, caKey, _ := writeCertFor(t, dir, "localhost", "pebble-https", "pebble-")
	pebbleAddr, mgmtAddr := freeAddr(t), freeAddr(t)
	conf := fmt.Sprintf(`{"pebble": {"listenAddress": %q, "managementListenAddress": %q, "certificate": %q, "privateKey": %q,
		"httpPort": 5002, "tlsPort": 5001, "ocspResponderURL": "", "externalAccountBindingRequired": false}}`, pebbleAddr, mgmtAddr, caCert, caKey)
	os.WriteFile(filepath.Join(dir, "pebble.json"), []byte(conf), 0o600)
	cmd := exec.Command(pebble, "-config", filepath.Join(dir, "pebble.json"))
	cmd.Env = append(os.Environ(), "PEBBLE_VA_ALWAYS_VALID=1", "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0")
	var pebbleLog syncBuffer
	cmd.Stdout, cmd.Stderr = &pebbleLog, &pebbleLog
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	_, httpPort, _ := strings.Cut(freeAddr(t), ":")
	s := newServer(t, "", fmt.Sprintf(`[tls.acme]
directory = "https://%s/dir"
email = "postmaster@example.test"
names = ["mx.example.test"]
ca_file = %q
http_port = %s
listen_host = "127.0.0.1"
`, pebbleAddr, caCert, httpPort))
	s.start()
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(s.logs(), "ACME certificate obtained") {
		if time.Now().After(deadline) {
			t.Fatalf("no certificate within 60s; pebble said:\n%s", pebbleLog.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	c := s.dial()
	c.cmd("EHLO acme.example", "250 ")
	c.cmd("STARTTLS", "220 ")
	tc := tls.Client(c.conn, &tls.Config{ServerName: "mx.example.test", InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	leaf := tc.ConnectionState().PeerCertificates[0]
	if !strings.Contains(leaf.Issuer.CommonName, "Pebble") || leaf.VerifyHostname("mx.example.test") != nil {
		t.Errorf("presented certificate: issuer %q, names %v", leaf.Issuer.CommonName, leaf.DNSNames)
	}
	if _, err := os.Stat(filepath.Join(s.dir, "data", "acme")); err != nil {
		t.Errorf("the certificate is not kept in the data directory: %v", err)
	}
}

// syncBuffer collects a child's output safely.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
