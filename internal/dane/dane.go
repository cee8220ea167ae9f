// Package dane authenticates an SMTP server's TLS certificate by the TLSA
// records of its name (RFC 6698, with the rules of RFC 7671 and RFC 7672
// for SMTP): DANE-EE(3) records name the server's own certificate or key,
// whatever its names and dates; DANE-TA(2) records name a trust anchor the
// server's chain leads to, and the certificate must then be valid for one
// of the names the client looked for. PKIX-TA(0) and PKIX-EE(1) records
// are unusable for SMTP (RFC 7672 3.1.3), as are unknown parameters.
package dane

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"mailroom/internal/dns"
)

// Usages, selectors and matching types used by SMTP (RFC 7218 names).
const (
	DANETA = 2
	DANEEE = 3

	SelectorCert = 0
	SelectorSPKI = 1

	MatchFull   = 0
	MatchSHA256 = 1
	MatchSHA512 = 2
)

// Errors of Verify, matched with errors.Is (TLS-RPT tells them apart).
var (
	ErrNoMatch      = errors.New("DANE: no TLSA record matches")
	ErrHostMismatch = errors.New("DANE: the certificate is not valid for the host")
)

// verifyError says what failed in its own words and is one of the errors
// above to errors.Is.
type verifyError struct {
	kind error
	msg  string
}

func (e *verifyError) Error() string { return e.msg }
func (e *verifyError) Unwrap() error { return e.kind }

// Usable returns the records an SMTP client can use (RFC 7672 3.1):
// DANE-TA or DANE-EE, with a known selector and matching type, and data of
// the length the matching type implies.
func Usable(recs []dns.TLSA) []dns.TLSA {
	var out []dns.TLSA
	for _, r := range recs {
		if r.Usage != DANETA && r.Usage != DANEEE || r.Selector > SelectorSPKI {
			continue
		}
		switch {
		case r.MatchingType == MatchFull && len(r.Data) > 0,
			r.MatchingType == MatchSHA256 && len(r.Data) == sha256.Size,
			r.MatchingType == MatchSHA512 && len(r.Data) == sha512.Size:
			out = append(out, r)
		}
	}
	return out
}

// Verify authenticates a server's chain (as sent, leaf first) by usable
// records. names are the names the certificate may be valid for under a
// DANE-TA record: the TLSA base domain (the MX host), then others (the
// next-hop domain), per RFC 7672 3.2.2. The error says why nothing matched.
func Verify(chain [][]byte, recs []dns.TLSA, names []string, now time.Time) error {
	if len(chain) == 0 {
		return errors.New("DANE: the server sent no certificate")
	}
	certs := make([]*x509.Certificate, 0, len(chain))
	for i, der := range chain {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			if i == 0 {
				return fmt.Errorf("DANE: the server's certificate does not parse: %w", err)
			}
			break // the leaf may still match a DANE-EE record
		}
		certs = append(certs, c)
	}
	var taErr error
	for _, r := range recs {
		if r.Usage == DANEEE && matches(r, certs[0]) {
			return nil // RFC 7672 3.1.1: no name, no dates
		}
	}
	for _, r := range recs {
		if r.Usage != DANETA {
			continue
		}
		for _, ta := range certs[1:] {
			if !matches(r, ta) {
				continue
			}
			if taErr = verifyTA(certs, ta, names, now); taErr == nil {
				return nil
			}
		}
	}
	if taErr != nil {
		return taErr
	}
	return &verifyError{ErrNoMatch, fmt.Sprintf("DANE: none of %d TLSA record(s) matches the server's certificate (its key's SHA-256: %x)",
		len(recs), sha256.Sum256(certs[0].RawSubjectPublicKeyInfo))}
}

// verifyTA checks the chain from the leaf to the trust anchor ta, and the
// leaf's dates and names (RFC 7672 3.1.2, 3.2.2).
func verifyTA(certs []*x509.Certificate, ta *x509.Certificate, names []string, now time.Time) error {
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(ta)
	for _, c := range certs[1:] {
		if c != ta {
			inter.AddCert(c)
		}
	}
	opts := x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
	if _, err := certs[0].Verify(opts); err != nil {
		return fmt.Errorf("DANE: the chain does not lead to the trust anchor the TLSA record names: %w", err)
	}
	for _, n := range names {
		if certs[0].VerifyHostname(n) == nil {
			return nil
		}
	}
	return &verifyError{ErrHostMismatch, fmt.Sprintf("DANE: the certificate (issued under the trust anchor the TLSA record names) is not valid for %s",
		strings.Join(names, " or "))}
}

// matches reports whether a record names the certificate c.
func matches(r dns.TLSA, c *x509.Certificate) bool {
	data := c.Raw
	if r.Selector == SelectorSPKI {
		data = c.RawSubjectPublicKeyInfo
	}
	switch r.MatchingType {
	case MatchSHA256:
		h := sha256.Sum256(data)
		return bytes.Equal(h[:], r.Data)
	case MatchSHA512:
		h := sha512.Sum512(data)
		return bytes.Equal(h[:], r.Data)
	}
	return bytes.Equal(data, r.Data)
}

// Record returns the DANE-EE SPKI SHA-256 record ("3 1 1") of a
// certificate, the one RFC 7671 8.1 recommends publishing (it survives a
// renewal that keeps the key).
func Record(c *x509.Certificate) dns.TLSA {
	h := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return dns.TLSA{Usage: DANEEE, Selector: SelectorSPKI, MatchingType: MatchSHA256, Data: h[:]}
}
