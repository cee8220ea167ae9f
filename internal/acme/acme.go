// Package acme gets and renews certificates from an ACME CA (Let's
// Encrypt, or any RFC 8555 server) with caddyserver/certmagic, keeping them
// in the data directory. Certificates are obtained in the background: until
// the first one arrives, the listeners go on presenting their static or
// self-signed certificate.
package acme

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// Config says where to get certificates and for which names.
type Config struct {
	Directory  string   // the CA's directory URL
	Email      string   // contact for the CA
	Names      []string // DNS names to get certificates for
	CAFile     string   // extra roots to trust for the CA's own HTTPS (test CAs)
	HTTPPort   int      // port for HTTP-01 challenges (80 in production); 0: off
	ALPNPort   int      // port for TLS-ALPN-01 challenges (443); 0: off
	ListenHost string   // address the challenge listeners bind to; "" for all
	StorageDir string   // where accounts, keys and certificates are kept
}

// Manager serves the managed certificates to TLS handshakes.
type Manager struct {
	cm    *certmagic.Config
	cache *certmagic.Cache
	names map[string]bool
}

// Stop ends the background renewals.
func (m *Manager) Stop() { m.cache.Stop() }

// Start begins managing c.Names and returns at once; obtaining and
// renewing happen in the background, logged on log.
func Start(ctx context.Context, c Config, log *slog.Logger) (*Manager, error) {
	if len(c.Names) == 0 {
		return nil, fmt.Errorf("acme: no names to get certificates for")
	}
	if c.HTTPPort == 0 && c.ALPNPort == 0 {
		return nil, fmt.Errorf("acme: no challenge port: set http_port (80) or tls_alpn_port (443)")
	}
	var roots *x509.CertPool
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("acme: ca_file: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("acme: ca_file %s holds no PEM certificate", c.CAFile)
		}
	}
	var cm *certmagic.Config
	cache := certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return cm, nil },
		Logger:           zap.NewNop(),
	})
	cm = certmagic.New(cache, certmagic.Config{
		Storage:           &certmagic.FileStorage{Path: c.StorageDir},
		DefaultServerName: c.Names[0],
		Logger:            zap.NewNop(),
		OnEvent: func(_ context.Context, event string, data map[string]any) error {
			switch event {
			case "cert_obtained":
				log.Info("ACME certificate obtained", "names", fmt.Sprint(data["identifier"]), "renewal", data["renewal"])
			case "cert_failed":
				log.Warn("ACME certificate not obtained, will retry", "names", fmt.Sprint(data["identifier"]), "err", fmt.Sprint(data["error"]))
			}
			return nil
		},
	})
	issuer := certmagic.NewACMEIssuer(cm, certmagic.ACMEIssuer{
		CA:                      c.Directory,
		Email:                   c.Email,
		Agreed:                  true,
		TrustedRoots:            roots,
		ListenHost:              c.ListenHost,
		AltHTTPPort:             c.HTTPPort,
		AltTLSALPNPort:          c.ALPNPort,
		DisableHTTPChallenge:    c.HTTPPort == 0,
		DisableTLSALPNChallenge: c.ALPNPort == 0,
		Logger:                  zap.NewNop(),
	})
	cm.Issuers = []certmagic.Issuer{issuer}
	if err := cm.ManageAsync(ctx, c.Names); err != nil {
		cache.Stop()
		return nil, fmt.Errorf("acme: %w", err)
	}
	m := &Manager{cm: cm, cache: cache, names: map[string]bool{}}
	for _, n := range c.Names {
		m.names[strings.ToLower(n)] = true
	}
	return m, nil
}

// GetCertificate returns the managed certificate for the name the client
// asked for (or the first name without SNI); an error when there is none
// yet, so that the caller can fall back to another certificate.
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if hello.ServerName != "" && !m.names[strings.ToLower(hello.ServerName)] {
		return nil, fmt.Errorf("acme: %s is not a managed name", hello.ServerName)
	}
	return m.cm.GetCertificate(hello)
}
