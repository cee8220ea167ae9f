package store

import (
	"context"
	"strings"
	"time"
)

// API key scopes.
const (
	ScopeSend  = "send"  // send mail
	ScopeRead  = "read"  // read the message log, events and statistics
	ScopeAdmin = "admin" // manage the queue and the suppression list
	// ScopeWebhooks manages the domain's webhooks, which receive its events
	// and, with inbound, its mail: keys of a domain or of the server only.
	ScopeWebhooks = "webhooks"
)

// APIKey is a key of the HTTP API (its secret's hash is kept apart).
type APIKey struct {
	ID   string `json:"id"` // public, part of the token
	Name string `json:"name"`
	// Owner is whose the key is: a user's address (it sends as that
	// user), "@domain" (it sends as any address of the domain), or "*"
	// (the server's: admin keys that see every domain).
	Owner  string   `json:"owner"`
	Scopes []string `json:"scopes"`
	// RatePerMinute bounds its requests; 0 is the server's default.
	RatePerMinute int       `json:"rate_per_minute,omitempty"`
	Created       time.Time `json:"created"`
	LastUsed      time.Time `json:"last_used,omitzero"`
}

// IdempotencyTTL is how long a request's answer is kept for one made
// again with its Idempotency-Key (then swept).
const IdempotencyTTL = 24 * time.Hour

// Idempotent is what the store holds of a request made with an
// Idempotency-Key.
type Idempotent struct {
	// Began: no earlier request holds the key (or one that began and never
	// finished ran out of its lease): the caller is to do the work and
	// FinishIdempotent. Otherwise the fields say what the earlier one was.
	Began    bool
	Request  string // a hash of the earlier request
	Status   int    // its HTTP status; 0 while it is under way
	Response []byte
}

// APIKeys keeps the HTTP API's keys and its idempotency keys.
type APIKeys interface {
	// AddAPIKey stores a new key with the SHA-256 hash of its token;
	// ErrExists when its ID is taken.
	AddAPIKey(ctx context.Context, k APIKey, hash string) error
	// APIKeys lists the keys of owner ("" for all), by owner and name.
	APIKeys(ctx context.Context, owner string) ([]APIKey, error)
	// DeleteAPIKey revokes a key; ErrNotFound when there is none.
	DeleteAPIKey(ctx context.Context, id string) error
	// APIKeyByHash finds the key of a token's hash and records its use
	// (at most once a minute); ErrNotFound when none matches.
	APIKeyByHash(ctx context.Context, hash string, now time.Time) (APIKey, error)

	// BeginIdempotent claims (keyID, key) for a request whose hash is
	// request, unless a request holds it: one that finished, or one
	// begun less than lease ago. Concurrent calls: one begins.
	BeginIdempotent(ctx context.Context, keyID, key, request string, now time.Time, lease time.Duration) (Idempotent, error)
	// FinishIdempotent records the response of a request begun; status 0
	// releases the key instead (the request failed for now and may be
	// made again at once).
	FinishIdempotent(ctx context.Context, keyID, key string, status int, response []byte) error
	// DeleteIdempotent forgets keys claimed before before; returns how
	// many.
	DeleteIdempotent(ctx context.Context, before time.Time) (int, error)
}

// ScanAPIKey reads a key from the columns id, name, owner, scopes (comma
// separated), rate, created and last_used (unix seconds, 0 for never).
func ScanAPIKey(row Scanner) (APIKey, error) {
	var k APIKey
	var scopes string
	var created, used int64
	if err := row.Scan(&k.ID, &k.Name, &k.Owner, &scopes, &k.RatePerMinute, &created, &used); err != nil {
		return k, err
	}
	k.Scopes = strings.Split(scopes, ",")
	k.Created = time.Unix(created, 0)
	if used > 0 {
		k.LastUsed = time.Unix(used, 0)
	}
	return k, nil
}
