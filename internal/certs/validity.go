package certs

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"time"
)

// soon is how far ahead an expiry is worth a warning: time for a renewal
// that failed to be noticed and done by hand.
const soon = 14 * 24 * time.Hour

// Warnings says, for each pair, what is wrong with its certificate's dates
// at now: expired, not yet valid, or expiring within two weeks. A pair that
// cannot be read is left to Load to report.
func Warnings(now time.Time, pairs ...Pair) []string {
	var out []string
	for _, p := range pairs {
		c, err := tls.LoadX509KeyPair(p.CertFile, p.KeyFile)
		if err != nil {
			continue
		}
		leaf := c.Leaf
		if leaf == nil {
			if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
				continue
			}
		}
		name := leaf.Subject.CommonName
		if len(leaf.DNSNames) > 0 {
			name = leaf.DNSNames[0]
		}
		switch {
		case now.After(leaf.NotAfter):
			out = append(out, fmt.Sprintf("the certificate in %s (%s) expired on %s: clients will refuse it; renew it", p.CertFile, name, leaf.NotAfter.UTC().Format(time.DateOnly)))
		case now.Before(leaf.NotBefore):
			out = append(out, fmt.Sprintf("the certificate in %s (%s) is not valid until %s: clients will refuse it until then (check the machine's clock)", p.CertFile, name, leaf.NotBefore.UTC().Format(time.RFC3339)))
		case leaf.NotAfter.Sub(now) < soon:
			out = append(out, fmt.Sprintf("the certificate in %s (%s) expires on %s, in %d days: renew it", p.CertFile, name, leaf.NotAfter.UTC().Format(time.DateOnly), int(leaf.NotAfter.Sub(now).Hours()/24)))
		}
	}
	return out
}
