// Package apikey makes and checks the tokens of the HTTP API: "mr_", a
// public ID of 8 characters, "_", and a secret of 32 random bytes, all in
// lower-case base32. Only the SHA-256 of a token is stored: a long random
// secret needs no slow hash (unlike a password), and a lookup by hash
// costs one indexed read.
package apikey

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"mailroom/internal/store"
)

const prefix = "mr_"

var enc = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// New returns a new token, its ID and the hash to store.
func New() (token, id, hash string) {
	idBytes := make([]byte, 5) // 8 characters
	secret := make([]byte, 32) // 52 characters
	rand.Read(idBytes)
	rand.Read(secret)
	id = enc.EncodeToString(idBytes)
	token = prefix + id + "_" + enc.EncodeToString(secret)
	return token, id, Hash(token)
}

// Hash is what the store keeps of a token.
func Hash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// ErrMalformed is the error of a string that is not a token at all.
var ErrMalformed = errors.New("not a Mailroom API key: a key looks like mr_xxxxxxxx_ followed by 52 letters and digits")

// Check says whether s has a token's form (before it is looked up).
func Check(s string) error {
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok || len(rest) != 8+1+52 || rest[8] != '_' {
		return ErrMalformed
	}
	for _, c := range rest[:8] + rest[9:] {
		if !('a' <= c && c <= 'z' || '2' <= c && c <= '7') {
			return ErrMalformed
		}
	}
	return nil
}

// Scopes are the scopes a key can have.
var Scopes = []string{store.ScopeSend, store.ScopeRead, store.ScopeAdmin, store.ScopeWebhooks}

// CheckKey checks a key about to be made: its owner's form, and its
// scopes (admin only for the server's keys).
func CheckKey(k store.APIKey) error {
	switch {
	case k.Owner == "":
		return errors.New("a key needs an owner: a user (--user), a domain (--domain) or the server (--server)")
	case len(k.Scopes) == 0:
		return fmt.Errorf("a key needs at least one scope: %s", strings.Join(Scopes, ", "))
	case k.RatePerMinute < 0:
		return errors.New("the rate is requests per minute: 0 (the server's default) or more")
	}
	for _, s := range k.Scopes {
		if !slices.Contains(Scopes, s) {
			return fmt.Errorf("unknown scope %q: use %s", s, strings.Join(Scopes, ", "))
		}
		if s == store.ScopeAdmin && k.Owner != "*" {
			return errors.New("the admin scope (the queue and the suppression list of every domain) is for the server's keys only: use --server")
		}
		if s == store.ScopeWebhooks && k.Owner != "*" && !strings.HasPrefix(k.Owner, "@") {
			return errors.New("the webhooks scope (a domain's events and inbound mail posted away) is for keys of a domain (--domain) or of the server")
		}
	}
	return nil
}

// Has reports whether k has scope.
func Has(k store.APIKey, scope string) bool { return slices.Contains(k.Scopes, scope) }
