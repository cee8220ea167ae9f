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
