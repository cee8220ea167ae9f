// Package dkim is Mailroom's DKIM (RFC 6376): the domains' keys (made,
// named, published as DNS records, rotated) and the signing of mail that
// leaves for other domains, ed25519-sha256 (RFC 8463) beside rsa-sha256.
// The signatures themselves are go-msgauth's (docs/design/0010).
package dkim

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"mailroom/internal/store"
)

// RSABits is the size of the RSA keys made: 2048, what receivers expect
// (RFC 8301 asks for at least 1024; some DNS hosts cannot take a TXT
// record of a 4096-bit key).
const RSABits = 2048

// Algorithms are the algorithms a domain signs with, each with its own
// key: ed25519 for receivers that verify it, RSA for every receiver.
var Algorithms = []string{store.DKIMEd25519, store.DKIMRSA}

// NewKey makes a key of alg for domain under selector, signing from
// signFrom.
func NewKey(domain, selector, alg string, now, signFrom time.Time) (store.DKIMKey, error) {
	var priv crypto.Signer
	var err error
	switch alg {
	case store.DKIMEd25519:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case store.DKIMRSA:
		priv, err = rsa.GenerateKey(rand.Reader, RSABits)
	default:
		return store.DKIMKey{}, fmt.Errorf("dkim: unknown algorithm %q (ed25519 or rsa)", alg)
	}
	if err != nil {
		return store.DKIMKey{}, fmt.Errorf("dkim: make a %s key: %w", alg, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return store.DKIMKey{}, fmt.Errorf("dkim: encode a %s key: %w", alg, err)
	}
	return store.DKIMKey{Domain: domain, Selector: selector, Algorithm: alg, PrivateKey: der,
		Created: now.Truncate(time.Second), SignFrom: signFrom.Truncate(time.Second)}, nil
}

// Selector names a new key of alg made at now: "mr" and the date, then
// "e" (ed25519) or "r" (RSA), with "-2", "-3"... when the domain has that
// name already (several rotations in a day).
func Selector(alg string, now time.Time, taken []store.DKIMKey) string {
	base := "mr" + now.UTC().Format("20060102") + alg[:1]
	name := base
	for i := 2; slices.ContainsFunc(taken, func(k store.DKIMKey) bool { return k.Selector == name }); i++ {
		name = fmt.Sprintf("%s-%d", base, i)
	}
	return name
}

// signer returns the key's private half.
func signer(k store.DKIMKey) (crypto.Signer, error) {
	key, err := x509.ParsePKCS8PrivateKey(k.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("dkim: the key of selector %s of %s does not decode: %w", k.Selector, k.Domain, err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("dkim: the key of selector %s of %s cannot sign", k.Selector, k.Domain)
	}
	switch s.(type) {
	case ed25519.PrivateKey:
		if k.Algorithm != store.DKIMEd25519 {
			return nil, fmt.Errorf("dkim: selector %s of %s holds an ed25519 key, not %s", k.Selector, k.Domain, k.Algorithm)
		}
	case *rsa.PrivateKey:
		if k.Algorithm != store.DKIMRSA {
			return nil, fmt.Errorf("dkim: selector %s of %s holds an RSA key, not %s", k.Selector, k.Domain, k.Algorithm)
		}
	default:
		return nil, fmt.Errorf("dkim: selector %s of %s holds a key of neither algorithm", k.Selector, k.Domain)
	}
	return s, nil
}

// Record is the TXT record that publishes a key (RFC 6376 3.6.1), at
// Name(k): "v=DKIM1; k=ed25519; p=..." with the raw public key (RFC 8463
// 4), or "k=rsa" with its SubjectPublicKeyInfo.
func Record(k store.DKIMKey) (string, error) {
	s, err := signer(k)
	if err != nil {
		return "", err
	}
	var pub []byte
	switch p := s.Public().(type) {
	case ed25519.PublicKey:
		pub = p
	default:
		if pub, err = x509.MarshalPKIXPublicKey(p); err != nil {
			return "", fmt.Errorf("dkim: encode the public key of selector %s of %s: %w", k.Selector, k.Domain, err)
		}
	}
	return "v=DKIM1; k=" + k.Algorithm + "; p=" + base64.StdEncoding.EncodeToString(pub), nil
}

// Name is the DNS name a key is published under.
func Name(k store.DKIMKey) string { return k.Selector + "._domainkey." + k.Domain }

// Split cuts a TXT record's text into strings of at most 255 octets, as
// a zone file needs them (RFC 1035 3.3.14; an RSA key's record is ~400).
func Split(txt string) []string {
	var out []string
	for len(txt) > 255 {
		out = append(out, txt[:255])
		txt = txt[255:]
	}
	return append(out, txt)
}

// ZoneText is a TXT record's text as a zone file writes it: quoted
// strings of at most 255 octets, in parentheses when there are several.
func ZoneText(txt string) string {
	parts := Split(txt)
	for i, p := range parts {
		parts[i] = `"` + strings.ReplaceAll(p, `"`, `\"`) + `"`
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return "( " + strings.Join(parts, " ") + " )"
}

// State is where a key is in its life at a time.
type State string

const (
	Next    State = "next"    // published, not signing yet
	Signing State = "signing" // the newest of its algorithm past SignFrom
	Old     State = "old"     // published still, a newer one signs
	Retired State = "retired" // past RetireAt: its record may go
)

// States tells the state of each of a domain's keys at now.
func States(keys []store.DKIMKey, now time.Time) []State {
	out := make([]State, len(keys))
	newest := map[string]int{} // algorithm -> index of the key that signs
	for i, k := range keys {
		switch {
		case !k.RetireAt.IsZero() && !now.Before(k.RetireAt):
			out[i] = Retired
		case now.Before(k.SignFrom):
			out[i] = Next
		default:
			out[i] = Old
			if j, ok := newest[k.Algorithm]; !ok || keys[j].SignFrom.Before(k.SignFrom) ||
				(keys[j].SignFrom.Equal(k.SignFrom) && keys[j].Created.Before(k.Created)) {
				newest[k.Algorithm] = i
			}
		}
	}
	for _, i := range newest {
		out[i] = Signing
	}
	return out
}

// ErrNoKeys is returned for a domain without keys to sign with.
var ErrNoKeys = errors.New("dkim: no keys")

// KeyStore is where keys are kept (store.DKIMKeys).
type KeyStore interface {
	DKIMKeysOf(ctx context.Context, domain string) ([]store.DKIMKey, error)
	AddDKIMKey(ctx context.Context, k store.DKIMKey) error
}

// AddKeys makes and keeps a domain's keys, one per algorithm, signing from
// signFrom, and returns them.
func AddKeys(ctx context.Context, st KeyStore, domain string, now, signFrom time.Time) ([]store.DKIMKey, error) {
	taken, err := st.DKIMKeysOf(ctx, domain)
	if err != nil {
		return nil, err
	}
	var made []store.DKIMKey
	for _, alg := range Algorithms {
		k, err := NewKey(domain, Selector(alg, now, append(taken, made...)), alg, now, signFrom)
		if err != nil {
			return nil, err
		}
		if err := st.AddDKIMKey(ctx, k); err != nil {
			return nil, fmt.Errorf("dkim: keep the key %s of %s: %w", k.Selector, domain, err)
		}
		made = append(made, k)
	}
	return made, nil
}
