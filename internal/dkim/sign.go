package dkim

import (
	"bytes"
	"cmp"
	"context"
	"crypto"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	msgdkim "github.com/emersion/go-msgauth/dkim"

	"mailroom/internal/store"
)

// signedFields are the header fields signed, in the order listed; those
// marked twice are oversigned (RFC 6376 8.15): named once more than the
// message has them, so that nobody can add one after signing and keep the
// signature valid. From first: RFC 6376 5.4 requires it.
var signedFields = []string{
	"From", "From",
	"Reply-To", "Reply-To",
	"Subject", "Subject",
	"Date", "Date",
	"To", "To",
	"Cc", "Cc",
	"Message-ID", "Message-ID",
	"In-Reply-To", "References",
	"MIME-Version", "MIME-Version",
	"Content-Type", "Content-Type",
	"Content-Transfer-Encoding", "Content-Transfer-Encoding",
	"List-Id", "List-Unsubscribe", "List-Unsubscribe", "List-Unsubscribe-Post", "List-Unsubscribe-Post",
	"Sender", "Feedback-ID",
}

// keyTTL is how long the signer trusts what it read of a domain's keys:
// `mailroom dkim rotate` in another process takes effect within it.
const keyTTL = 30 * time.Second

// Keys reads the domains' keys (store.DKIMKeys).
type Keys interface {
	DKIMKeysOf(ctx context.Context, domain string) ([]store.DKIMKey, error)
}

// Signer signs messages with their domain's keys, read from the store and
// kept a short while.
type Signer struct {
	keys Keys
	now  func() time.Time

	mu      sync.Mutex
	domains map[string]domainKeys
	parsed  map[string]crypto.Signer // by domain, selector and creation
}

type domainKeys struct {
	read time.Time
	keys []store.DKIMKey // those that sign now
}

// NewSigner returns a signer over the store's keys.
func NewSigner(keys Keys) *Signer {
	return &Signer{keys: keys, now: time.Now, domains: map[string]domainKeys{}, parsed: map[string]crypto.Signer{}}
}

// Domain returns the domain that signs for an author's domain: the domain
// itself or the nearest parent with keys (its signature aligns with the
// author's domain for DMARC all the same), or "" when none has.
func (s *Signer) Domain(ctx context.Context, author string) (string, error) {
	author = strings.ToLower(strings.TrimSuffix(author, "."))
	for d := author; strings.Contains(d, "."); {
		ks, err := s.signing(ctx, d)
		if err != nil {
			return "", err
		}
		if len(ks) > 0 {
			return d, nil
		}
		_, d, _ = strings.Cut(d, ".")
	}
	return "", nil
}

// Sign returns the DKIM-Signature fields of msg (header and body as sent)
// by domain's keys that sign now, one per algorithm, to be put in front of
// it; ErrNoKeys when the domain has none.
func (s *Signer) Sign(ctx context.Context, domain string, msg io.Reader) ([]byte, error) {
	ks, err := s.signing(ctx, domain)
	if err != nil {
		return nil, err
	}
	if len(ks) == 0 {
		return nil, fmt.Errorf("%w for %s", ErrNoKeys, domain)
	}
	signers := make([]*msgdkim.Signer, 0, len(ks))
	writers := make([]io.Writer, 0, len(ks))
	closed := 0 // signers[:closed] are closed: Close waits for a result only once
	defer func() {
		for _, sg := range signers[closed:] {
			sg.Close()
		}
	}()
	for _, k := range ks {
		key, err := s.parse(k)
		if err != nil {
			return nil, err
		}
		sg, err := msgdkim.NewSigner(&msgdkim.SignOptions{
			Domain: domain, Selector: k.Selector, Signer: key, Hash: crypto.SHA256,
			HeaderCanonicalization: msgdkim.CanonicalizationRelaxed, BodyCanonicalization: msgdkim.CanonicalizationRelaxed,
			HeaderKeys: signedFields,
		})
		if err != nil {
			return nil, fmt.Errorf("dkim: sign with selector %s of %s: %w", k.Selector, domain, err)
		}
		signers = append(signers, sg)
		writers = append(writers, sg)
	}
	if _, err := io.Copy(io.MultiWriter(writers...), msg); err != nil {
		return nil, fmt.Errorf("dkim: read the message to sign: %w", err)
	}
	var out bytes.Buffer
	for i, sg := range signers {
		closed++
		if err := sg.Close(); err != nil {
			return nil, fmt.Errorf("dkim: sign with selector %s of %s: %w", ks[i].Selector, domain, err)
		}
		out.WriteString(sg.Signature())
	}
	return out.Bytes(), nil
}

// RSAKey returns the RSA key a domain (or its nearest parent with keys)
// signs with now and its selector: what ARC seals with (RFC 8617 knows
// rsa-sha256 only). ErrNoKeys when there is none.
func (s *Signer) RSAKey(ctx context.Context, author string) (domain, selector string, key crypto.Signer, err error) {
	if domain, err = s.Domain(ctx, author); err != nil || domain == "" {
		return "", "", nil, cmp.Or(err, fmt.Errorf("%w for %s", ErrNoKeys, author))
	}
	ks, err := s.signing(ctx, domain)
	if err != nil {
		return "", "", nil, err
	}
	for _, k := range ks {
		if k.Algorithm == store.DKIMRSA {
			key, err := s.parse(k)
			return domain, k.Selector, key, err
		}
	}
	return "", "", nil, fmt.Errorf("%w: %s has no RSA key signing", ErrNoKeys, domain)
}

// signing returns the keys of domain that sign now, read again after
// keyTTL.
func (s *Signer) signing(ctx context.Context, domain string) ([]store.DKIMKey, error) {
	now := s.now()
	s.mu.Lock()
	dk, ok := s.domains[domain]
	s.mu.Unlock()
	if ok && now.Sub(dk.read) < keyTTL && now.After(dk.read) {
		return dk.keys, nil
	}
	all, err := s.keys.DKIMKeysOf(ctx, domain)
	if err != nil {
		return nil, fmt.Errorf("dkim: read the keys of %s: %w", domain, err)
	}
	var ks []store.DKIMKey
	for i, st := range States(all, now) {
		if st == Signing {
			ks = append(ks, all[i])
		}
	}
	s.mu.Lock()
	if len(s.domains) > 10000 {
		clear(s.domains) // a bound; they are read again
	}
	s.domains[domain] = domainKeys{read: now, keys: ks}
	s.mu.Unlock()
	return ks, nil
}

// parse returns a key's private half, decoded once.
func (s *Signer) parse(k store.DKIMKey) (crypto.Signer, error) {
	id := fmt.Sprintf("%s %s %d", k.Domain, k.Selector, k.Created.Unix())
	s.mu.Lock()
	key := s.parsed[id]
	s.mu.Unlock()
	if key != nil {
		return key, nil
	}
	key, err := signer(k)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if len(s.parsed) > 10000 {
		clear(s.parsed)
	}
	s.parsed[id] = key
	s.mu.Unlock()
	return key, nil
}
