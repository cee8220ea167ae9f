// Package certs holds the TLS certificates that Mailroom's listeners
// present, and swaps them on reload without dropping connections.
package certs

import (
	"crypto/tls"
	"errors"
	"fmt"
	"sync/atomic"
)

// Store keeps the current certificate; handshakes read it through
// GetCertificate, so a reload takes effect for the next handshake.
type Store struct {
	cert atomic.Pointer[tls.Certificate]
}

// Load reads a PEM certificate chain and key and makes them current.
func (s *Store) Load(certFile, keyFile string) error {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return fmt.Errorf("tls: load %s and %s: %w", certFile, keyFile, err)
	}
	s.cert.Store(&c)
	return nil
}

// GetCertificate serves tls.Config.GetCertificate.
func (s *Store) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c := s.cert.Load()
	if c == nil {
		return nil, errors.New("tls: no certificate loaded")
	}
	return c, nil
}

// ServerConfig returns a TLS configuration for servers: TLS 1.2 and 1.3
// only, Go's modern cipher suites.
func (s *Store) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: s.GetCertificate,
	}
}
