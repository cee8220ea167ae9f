package store

import (
	"context"
	"time"
)

// DKIMKey is a domain's key for DKIM signatures (RFC 6376), published in
// DNS under its selector. A domain signs with its newest key of each
// algorithm whose SignFrom has passed; older ones stay published until
// RetireAt, so that mail signed with them still verifies.
type DKIMKey struct {
	Domain     string    `json:"domain"`
	Selector   string    `json:"selector"`
	Algorithm  string    `json:"algorithm"` // "ed25519" or "rsa"
	PrivateKey []byte    `json:"-"`         // PKCS #8, DER
	Created    time.Time `json:"created"`
	SignFrom   time.Time `json:"sign_from"`
	RetireAt   time.Time `json:"retire_at,omitzero"` // zero: not retired
}

// DKIM algorithms.
const (
	DKIMEd25519 = "ed25519"
	DKIMRSA     = "rsa"
)

// DKIMKeys keeps the domains' DKIM keys. They go with their domain.
type DKIMKeys interface {
	// AddDKIMKey keeps a new key (ErrExists: the domain has that selector
	// already; ErrNotFound: no such domain).
	AddDKIMKey(ctx context.Context, k DKIMKey) error
	// DKIMKeysOf returns a domain's keys, oldest first ("": every
	// domain's, by domain).
	DKIMKeysOf(ctx context.Context, domain string) ([]DKIMKey, error)
	// RetireDKIMKey sets when a key stops being published (ErrNotFound:
	// no such key).
	RetireDKIMKey(ctx context.Context, domain, selector string, at time.Time) error
	// DeleteDKIMKey forgets a key (ErrNotFound: no such key).
	DeleteDKIMKey(ctx context.Context, domain, selector string) error
}

// MTASTSPolicy is a receiving domain's MTA-STS policy as fetched (RFC
// 8461), kept so that a restart does not forget it: the protection it
// gives holds until it expires, whatever DNS or HTTPS say meanwhile.
type MTASTSPolicy struct {
	Domain  string
	ID      string // of the TXT record it was fetched for
	Text    string // the policy document
	Fetched time.Time
	Expires time.Time
}

// MTASTSPolicies keeps the policies fetched.
type MTASTSPolicies interface {
	// SaveMTASTSPolicy keeps a domain's policy in place of any before.
	SaveMTASTSPolicy(ctx context.Context, p MTASTSPolicy) error
	// MTASTSPolicy returns a domain's policy kept (ErrNotFound: none).
	MTASTSPolicy(ctx context.Context, domain string) (MTASTSPolicy, error)
}

// SharedSecrets are keys the server makes once and every node shares (the
// SRS key: a bounce to a forwarding address may come to any node).
type SharedSecrets interface {
	// Secret returns the secret of a name, made of size random octets the
	// first time it is asked for (every caller gets the same one).
	Secret(ctx context.Context, name string, size int) ([]byte, error)
}
