// Package authlimit slows down and then stops password guessing without
// letting anyone lock a user out. It counts failed logins within a window
// for three keys: the client prefix (an IPv4 address, an IPv6 /64), the pair
// (account, client prefix), and the account from anywhere. A prefix with too
// many failures is banned; a pair with too many is refused, while the same
// account from any other prefix goes on working; the account's count from
// anywhere only lengthens the delay before each failure is answered, so
// password spraying from many addresses is throttled, but a right password
// is never refused because someone else guessed wrong. The state is in
// memory, per process; with a Shared store (several nodes) failures are
// also counted there, so that the limits hold across nodes.
package authlimit

import (
	"context"
	"net/netip"
	"sync"
	"time"
)

// Policy says how hard to push back.
type Policy struct {
	// MaxFailures from one client prefix in Window ban the prefix for
	// Window; 0 turns limiting off.
	MaxFailures int
	// MaxPairFailures for one account from one prefix in Window refuse
	// that pair for Window; 0 leaves pairs to MaxFailures.
	MaxPairFailures int
	Window          time.Duration // how long failures are remembered, and how long a ban lasts
	BaseDelay       time.Duration // delay after the first failure; doubles with each one
	MaxDelay        time.Duration
}

// Shared counts failures across the nodes of a shared store
// (store.LoginFailures).
type Shared interface {
	AddLoginFailures(ctx context.Context, keys []string, now time.Time, window time.Duration) ([]int, error)
	LoginFailureCounts(ctx context.Context, keys []string, now time.Time, window time.Duration) ([]int, error)
	ForgetLoginFailures(ctx context.Context, key string) error
}

// Limiter keeps the counts. The zero value is not usable; call New.
type Limiter struct {
	policy Policy
	now    func() time.Time
	shared Shared // nil: this node's counts only

	mu       sync.Mutex
	clients  map[netip.Prefix]*record
	pairs    map[pair]*record
	accounts map[string]*record
	lastGC   time.Time
}

type pair struct {
	client  netip.Prefix
	account string
}

type record struct {
	failures int
	shared   bool      // failures were counted in the shared store (a pair's)
	inflight int       // attempts begun and not yet ended
	first    time.Time // start of the current window
	banned   time.Time // zero unless banned until then
}

// New returns a limiter; now is the clock (time.Now when nil).
func New(p Policy, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	return &Limiter{policy: p, now: now, clients: map[netip.Prefix]*record{}, pairs: map[pair]*record{}, accounts: map[string]*record{}}
}

// SetShared makes the limiter count failures in sh too, shared by every
// node: a prefix or pair is refused when the failures every node counted
// reach the limits, and delays grow with them. Attempts under way are
// counted per node (Busy). Set it before the first attempt.
func (l *Limiter) SetShared(sh Shared) { l.shared = sh }

// keys name a client prefix, its pair with an account, and the account, in
// the shared store.
func keys(client netip.Prefix, account string) []string {
	return []string{"c " + client.String(), "p " + client.String() + " " + account, "a " + account}
}

// SetPolicy replaces the policy (SIGHUP); the counts are kept.
func (l *Limiter) SetPolicy(p Policy) {
	l.mu.Lock()
	l.policy = p
	l.mu.Unlock()
}

// UnderWay returns how many attempts have begun and not ended (a gauge for
// metrics; 0 when idle, or an attempt was not ended).
func (l *Limiter) UnderWay() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.clients {
		n += r.inflight
	}
	return n
}

// Verdict is what to do before checking a login.
type Verdict int

const (
	Allow        Verdict = iota
	ClientBanned         // the prefix is banned: refuse and close
	PairLocked           // too many failures for this account from this prefix: refuse for now
	Busy                 // too many attempts under way at once from this prefix: refuse for now
)

// Begin tells whether a login attempt from client for account may go ahead
// and, if so, counts it as under way until Failed, Succeeded or Done.
// Attempts under way count like failures (Busy), so that guesses sent in
// parallel cannot slip past the limits. Nothing about the account alone
// ever refuses an attempt. With a shared store, an attempt this node allows
// is refused still when the failures every node counted reach a limit (a
// store that cannot be read leaves the decision to this node's counts).
func (l *Limiter) Begin(ctx context.Context, client netip.Prefix, account string) (Verdict, time.Duration) {
	v, d := l.begin(client, account)
	if v != Allow || l.shared == nil {
		return v, d
	}
	l.mu.Lock()
	p, pairMax := l.policy, l.pairMax()
	l.mu.Unlock()
	if p.MaxFailures <= 0 {
		return Allow, 0 // limiting is off
	}
	counts, err := l.shared.LoginFailureCounts(ctx, keys(client, account)[:2], l.now(), p.Window)
	if err != nil || len(counts) != 2 {
		return Allow, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	rc, rp := getRecord(l, l.clients, client, now), getRecord(l, l.pairs, pair{client, account}, now)
	switch {
	case counts[0] >= p.MaxFailures:
		// Kept here too, so that the next attempts are refused without
		// asking the store.
		rc.banned = now.Add(p.Window)
		l.end(client, account)
		return ClientBanned, p.Window
	case counts[1] >= pairMax:
		rp.banned = now.Add(p.Window)
		l.end(client, account)
		return PairLocked, p.Window
	case counts[0]+rc.inflight-1 >= p.MaxFailures || counts[1]+rp.inflight-1 >= pairMax:
		// As many attempts under way here as the failures every node
		// counted leave: parallel guesses wait their turn (Busy).
		l.end(client, account)
		return Busy, 0
	}
	rp.shared = rp.shared || counts[1] > 0
	return Allow, 0
}

func (l *Limiter) begin(client netip.Prefix, account string) (Verdict, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.policy.MaxFailures <= 0 {
		return Allow, 0
	}
	now := l.now()
	l.gc(now)
	// Records are made only for an attempt that goes ahead: refused ones,
	// however many and under whatever names, cost no memory.
	k := pair{client, account}
	rc, rp := current(l, l.clients[client], now), current(l, l.pairs[k], now)
	switch {
	case now.Before(rc.banned):
		return ClientBanned, rc.banned.Sub(now)
	case now.Before(rp.banned):
		return PairLocked, rp.banned.Sub(now)
	case busy(rc, l.policy.MaxFailures) || busy(rp, l.pairMax()):
		return Busy, 0
	}
	getRecord(l, l.clients, client, now).inflight++
	getRecord(l, l.pairs, k, now).inflight++
	return Allow, 0
}

// busy reports whether a record has as many attempts under way as it has
// failures left: guesses sent in parallel cannot slip past the limit
// before their failures are counted. (The login layer makes such an attempt
// wait for one under way to end rather than refuse it, so many right
// logins at once still go through, in turn.)
func busy(r record, limit int) bool {
	return r.failures+r.inflight >= limit
}

// current returns r as it stands now (a zero record for none, or for one
// whose window has passed), without changing it.
func current(l *Limiter, r *record, now time.Time) record {
	if r == nil || now.Sub(r.first) > l.policy.Window && !now.Before(r.banned) {
		if r != nil {
			return record{inflight: r.inflight}
		}
		return record{}
	}
	return *r
}

func (l *Limiter) pairMax() int {
	if l.policy.MaxPairFailures > 0 {
		return l.policy.MaxPairFailures
	}
	return l.policy.MaxFailures
}

// Failed ends an attempt as a failed login and returns how long to wait
// before answering it: the delay grows with the most failures counted for
// the prefix, the pair or the account from anywhere (on every node, with a
// shared store).
func (l *Limiter) Failed(ctx context.Context, client netip.Prefix, account string) time.Duration {
	d := l.failed(client, account)
	if l.shared == nil {
		return d
	}
	l.mu.Lock()
	p := l.policy
	l.mu.Unlock()
	if p.MaxFailures <= 0 {
		return d
	}
	if counts, err := l.shared.AddLoginFailures(ctx, keys(client, account), l.now(), p.Window); err == nil {
		n := 0
		for _, c := range counts {
			n = max(n, c)
		}
		d = max(d, p.delay(n))
	}
	return d
}

// delay is the wait before answering the nth failure.
func (p Policy) delay(n int) time.Duration {
	if n < 1 {
		return 0
	}
	return min(p.BaseDelay<<min(n-1, 20), p.MaxDelay)
}

func (l *Limiter) failed(client netip.Prefix, account string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.policy.MaxFailures <= 0 {
		l.end(client, account) // begun before limiting was turned off
		return 0
	}
	now := l.now()
	l.gc(now)
	rc, rp := getRecord(l, l.clients, client, now), getRecord(l, l.pairs, pair{client, account}, now)
	ra := getRecord(l, l.accounts, account, now)
	rc.inflight, rp.inflight = max(rc.inflight-1, 0), max(rp.inflight-1, 0)
	n := max(count(rc, l.policy.MaxFailures, now, l.policy.Window), count(rp, l.pairMax(), now, l.policy.Window))
	ra.failures++ // never bans: it only slows the answers down
	return l.policy.delay(max(n, ra.failures))
}

// Succeeded ends an attempt as a login and forgets the pair's failures
// (not the prefix's, nor the account's from elsewhere), on every node.
func (l *Limiter) Succeeded(ctx context.Context, client netip.Prefix, account string) {
	l.Done(client, account)
	l.mu.Lock()
	k := pair{client, account}
	r := l.pairs[k]
	shared := r != nil && r.shared
	if r != nil && !l.now().Before(r.banned) && r.inflight == 0 {
		delete(l.pairs, k)
	}
	l.mu.Unlock()
	if shared && l.shared != nil {
		l.shared.ForgetLoginFailures(ctx, keys(client, account)[1])
	}
}

// Done ends an attempt that was neither a failed nor a successful login
// (a temporary error, a cancelled exchange).
func (l *Limiter) Done(client netip.Prefix, account string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.end(client, account)
}

// end takes an attempt off the records of client and the pair, and drops
// records left with nothing to remember; l.mu is held.
func (l *Limiter) end(client netip.Prefix, account string) {
	if r := l.clients[client]; r != nil {
		r.inflight = max(r.inflight-1, 0)
		if r.inflight == 0 && r.failures == 0 && r.banned.IsZero() {
			delete(l.clients, client)
		}
	}
	k := pair{client, account}
	if r := l.pairs[k]; r != nil {
		r.inflight = max(r.inflight-1, 0)
		if r.inflight == 0 && r.failures == 0 && r.banned.IsZero() {
			delete(l.pairs, k)
		}
	}
}

// getRecord returns key's record, starting a new window when the old one
// has passed.
func getRecord[K comparable](l *Limiter, m map[K]*record, key K, now time.Time) *record {
	r := m[key]
	if r == nil {
		r = &record{first: now}
		m[key] = r
	} else if now.Sub(r.first) > l.policy.Window && !now.Before(r.banned) {
		r.failures, r.first, r.banned = 0, now, time.Time{}
	}
	return r
}

// count adds a failure to r, banning it for window at limit.
func count(r *record, limit int, now time.Time, window time.Duration) int {
	r.failures++
	if r.failures >= limit {
		r.banned = now.Add(window)
	}
	return r.failures
}

// gc drops expired records once a minute, bounding memory under attack
// from many addresses.
func (l *Limiter) gc(now time.Time) {
	if now.Sub(l.lastGC) < time.Minute {
		return
	}
	l.lastGC = now
	sweep(l, l.clients, now)
	sweep(l, l.pairs, now)
	sweep(l, l.accounts, now)
}

func sweep[K comparable](l *Limiter, m map[K]*record, now time.Time) {
	for k, r := range m {
		if now.Sub(r.first) > l.policy.Window && !now.Before(r.banned) && r.inflight == 0 {
			delete(m, k)
		}
	}
}
