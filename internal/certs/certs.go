// Package certs holds the TLS certificates that Mailroom's listeners
// present, chooses one by the name the client asks for (SNI), and swaps
// them on reload, or when their files change, without dropping
// connections.
package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Pair names the PEM files of one certificate chain and its key.
type Pair struct {
	CertFile, KeyFile string
}

// Store keeps the current certificates; handshakes read them through
// GetCertificate, so a reload takes effect for the next handshake.
type Store struct {
	set     atomic.Pointer[certSet]
	dynamic atomic.Pointer[GetCertificateFunc] // ACME, tried first

	mu     sync.Mutex // guards pairs and mtimes, for Load and Watch
	pairs  []Pair
	mtimes map[string]time.Time
}

type certSet struct {
	certs []*tls.Certificate // the first is the default
}

// GetCertificateFunc is the shape of tls.Config.GetCertificate.
type GetCertificateFunc func(*tls.ClientHelloInfo) (*tls.Certificate, error)

// SetDynamic installs a source of certificates (ACME) that is asked first;
// when it has none for a handshake, the loaded pairs serve.
func (s *Store) SetDynamic(f GetCertificateFunc) { s.dynamic.Store(&f) }

// Load reads the pairs and makes them current; on error nothing changes.
func (s *Store) Load(pairs ...Pair) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loadLocked(pairs)
}

// loadLocked is Load with mu held, so that a reload by SIGHUP and one by
// the file watcher cannot interleave and leave the older set current.
func (s *Store) loadLocked(pairs []Pair) error {
	set := &certSet{}
	mtimes := map[string]time.Time{}
	for _, p := range pairs {
		c, err := tls.LoadX509KeyPair(p.CertFile, p.KeyFile)
		if err != nil {
			return fmt.Errorf("tls: load %s and %s: %w", p.CertFile, p.KeyFile, err)
		}
		if c.Leaf == nil {
			c.Leaf, _ = x509.ParseCertificate(c.Certificate[0])
		}
		set.certs = append(set.certs, &c)
		for _, f := range []string{p.CertFile, p.KeyFile} {
			if fi, err := os.Stat(f); err == nil {
				mtimes[f] = fi.ModTime()
			}
		}
	}
	if len(set.certs) == 0 {
		return errors.New("tls: no certificate given")
	}
	s.pairs, s.mtimes = pairs, mtimes
	s.set.Store(set)
	return nil
}

// GetCertificate serves tls.Config.GetCertificate: the first certificate
// valid for the name the client asked for, else the first one.
func (s *Store) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if f := s.dynamic.Load(); f != nil {
		if c, err := (*f)(hello); err == nil && c != nil {
			return c, nil
		}
	}
	set := s.set.Load()
	if set == nil {
		return nil, errors.New("tls: no certificate loaded")
	}
	if hello.ServerName != "" {
		for _, c := range set.certs {
			if c.Leaf != nil && c.Leaf.VerifyHostname(hello.ServerName) == nil {
				return c, nil
			}
		}
	}
	return set.certs[0], nil
}

// ServerConfig returns a TLS configuration for servers: TLS 1.2 and 1.3
// only; with TLS 1.2, only forward-secret AEAD suites (no CBC, which
// testssl flags as obsolete). TLS 1.3 suites are all AEAD.
func (s *Store) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: s.GetCertificate,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
	}
}

// reloadIfChanged reloads the current pairs when a file's modification
// time differs from the one loaded, and reports whether it tried.
func (s *Store) reloadIfChanged() (bool, int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for f, t := range s.mtimes {
		if fi, err := os.Stat(f); err == nil && !fi.ModTime().Equal(t) {
			return true, len(s.pairs), s.loadLocked(s.pairs)
		}
	}
	return false, 0, nil
}

// Watch reloads the certificates every interval when their files have
// changed (a renewal by certbot or another ACME client), until stop is
// closed. A file caught half-written fails to load and is tried again.
func (s *Store) Watch(interval time.Duration, stop <-chan struct{}, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		tried, n, err := s.reloadIfChanged()
		switch {
		case !tried:
		case err != nil:
			log.Warn("certificate files changed but do not load yet", "err", err)
		default:
			log.Info("certificate files changed: reloaded", "certificates", n)
		}
	}
}

// Pool is the system's certificate authorities with those of a PEM file;
// key names the setting in errors.
func Pool(file, key string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: %s holds no PEM certificate", key, file)
	}
	return pool, nil
}
