package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"net/netip"
	"sync"
	"time"
)

// loginCache remembers, for a short while, the main-password logins that an
// argon2id check proved right, so that a client logging in again and again
// (an IMAP client's many connections, a phone reconnecting) costs a hash
// lookup instead of 64 MiB and a tenth of a second. It keeps no password:
// an entry is an HMAC (with a key made at start) of the account and the
// password, and the password hash it was checked against. An entry serves
// only while that hash is still the account's, so a changed password (or a
// deleted account) is never let in from the cache. Wrong passwords and
// unknown accounts are never cached: they always cost a full check.
type loginCache struct {
	key []byte
	ttl time.Duration
	max int

	mu      sync.Mutex
	entries map[[32]byte]cacheEntry
}

type cacheEntry struct {
	hash    string // the password hash the login was proved against
	expires time.Time
}

// maxCachedLogins bounds the cache: beyond it, expired entries go, then an
// arbitrary half.
const maxCachedLogins = 10000

func newLoginCache(ttl time.Duration) *loginCache {
	key := make([]byte, 32)
	rand.Read(key)
	return &loginCache{key: key, ttl: ttl, max: maxCachedLogins, entries: map[[32]byte]cacheEntry{}}
}

func (c *loginCache) sum(account, pw string) [32]byte {
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte(account))
	m.Write([]byte{0})
	m.Write([]byte(pw))
	var k [32]byte
	copy(k[:], m.Sum(nil))
	return k
}

// proven reports whether account logged in with pw, checked against hash
// (still the account's), within the cache time.
func (c *loginCache) proven(account, pw, hash string, now time.Time) bool {
	if c == nil || c.ttl <= 0 {
		return false
	}
	k := c.sum(account, pw)
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if ok && (e.hash != hash || !now.Before(e.expires)) {
		delete(c.entries, k)
		return false
	}
	return ok
}

// remember records a login proved by a full check against hash.
func (c *loginCache) remember(account, pw, hash string, now time.Time) {
	if c == nil || c.ttl <= 0 {
		return
	}
	k := c.sum(account, pw)
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		for key, e := range c.entries {
			if !now.Before(e.expires) {
				delete(c.entries, key)
			}
		}
		for key := range c.entries { // map order is random enough
			if len(c.entries) < c.max/2 {
				break
			}
			delete(c.entries, key)
		}
	}
	c.entries[k] = cacheEntry{hash: hash, expires: now.Add(c.ttl)}
}

// hashGate bounds the argon2id checks running at once, in all and per
// client prefix, so that one client (a guesser, a flood of logins) cannot
// hold every slot and keep everyone else's login waiting.
type hashGate struct {
	slots     chan struct{}
	perClient int

	mu      sync.Mutex
	by      map[netip.Prefix]int
	changed chan struct{} // closed and replaced when a client's count drops
}

func newHashGate(slots int) *hashGate {
	return &hashGate{slots: make(chan struct{}, slots), perClient: max(1, slots/2), by: map[netip.Prefix]int{}, changed: make(chan struct{})}
}

// acquire takes a slot for client, waiting for its turn; release gives it
// back.
func (g *hashGate) acquire(ctx context.Context, client netip.Prefix) (release func(), err error) {
	for {
		g.mu.Lock()
		if g.by[client] < g.perClient {
			g.by[client]++
			g.mu.Unlock()
			break
		}
		changed := g.changed
		g.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	select {
	case g.slots <- struct{}{}:
	case <-ctx.Done():
		g.leave(client)
		return nil, ctx.Err()
	}
	return func() { <-g.slots; g.leave(client) }, nil
}

func (g *hashGate) leave(client netip.Prefix) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.by[client]--; g.by[client] <= 0 {
		delete(g.by, client)
	}
	close(g.changed)
	g.changed = make(chan struct{})
}
