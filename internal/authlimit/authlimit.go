// Package authlimit slows down and then stops password guessing: it counts
// failed logins per client IP and per account name within a window,
// answers each failure after a growing delay, and bans an IP (or locks an
// account name, whether or not it exists) once the failures reach a limit.
// The state is in memory, per process.
package authlimit

import (
	"net/netip"
	"sync"
	"time"
)

// Policy says how hard to push back.
type Policy struct {
	MaxFailures int           // failures in Window before a ban; 0 turns limiting off
	Window      time.Duration // how long failures are remembered, and how long a ban lasts
	BaseDelay   time.Duration // delay after the first failure; doubles with each one
	MaxDelay    time.Duration
}

// DefaultPolicy: 10 failures in 15 minutes, delays from 250 ms to 4 s.
var DefaultPolicy = Policy{MaxFailures: 10, Window: 15 * time.Minute, BaseDelay: 250 * time.Millisecond, MaxDelay: 4 * time.Second}

// Limiter keeps the counts. The zero value is not usable; call New.
type Limiter struct {
	policy Policy
	now    func() time.Time

	mu       sync.Mutex
	ips      map[netip.Addr]*record
	accounts map[string]*record
	lastGC   time.Time
}

type record struct {
	failures int
	inflight int       // attempts begun and not yet ended
	first    time.Time // start of the current window
	banned   time.Time // zero unless banned until then
}

// New returns a limiter; now is the clock (time.Now when nil).
func New(p Policy, now func() time.Time) *Limiter {
	if now == nil {
		now = time.Now
	}
	return &Limiter{policy: p, now: now, ips: map[netip.Addr]*record{}, accounts: map[string]*record{}}
}

// Verdict is what to do before checking a login.
type Verdict int

const (
	Allow         Verdict = iota
	IPBanned              // refuse and close: 421 4.7.0
	AccountLocked         // refuse for now: 454 4.7.0
	Busy                  // too many attempts under way at once: 454 4.7.0
)

// ipKey groups IPv6 clients by /64, the block one host usually gets, so
// that rotating addresses within it does not escape the limit.
func ipKey(ip netip.Addr) netip.Addr {
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

// Begin tells whether a login attempt from ip for account may go ahead
// and, if so, counts it as under way until Failed, Succeeded or Done.
// Attempts under way count like failures, so that guesses sent in
// parallel cannot slip past the limit before their failures are counted.
func (l *Limiter) Begin(ip netip.Addr, account string) (Verdict, time.Duration) {
	if l.policy.MaxFailures <= 0 {
		return Allow, 0
	}
	ip = ipKey(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	ri, ra := getRecord(l, l.ips, ip, now), getRecord(l, l.accounts, account, now)
	switch {
	case now.Before(ri.banned):
		return IPBanned, ri.banned.Sub(now)
	case now.Before(ra.banned):
		return AccountLocked, ra.banned.Sub(now)
	case ri.failures+ri.inflight >= l.policy.MaxFailures || ra.failures+ra.inflight >= l.policy.MaxFailures:
		return Busy, 0
	}
	ri.inflight++
	ra.inflight++
	return Allow, 0
}

// Failed ends an attempt as a failed login and returns how long to wait
// before answering it.
func (l *Limiter) Failed(ip netip.Addr, account string) time.Duration {
	if l.policy.MaxFailures <= 0 {
		return 0
	}
	ip = ipKey(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.gc(now)
	ri, ra := getRecord(l, l.ips, ip, now), getRecord(l, l.accounts, account, now)
	ri.inflight, ra.inflight = max(ri.inflight-1, 0), max(ra.inflight-1, 0)
	n := max(l.count(ri, now), l.count(ra, now))
	d := l.policy.BaseDelay << min(n-1, 20)
	return min(d, l.policy.MaxDelay)
}

// Succeeded ends an attempt as a login and forgets the account's failures
// (not the IP's).
func (l *Limiter) Succeeded(ip netip.Addr, account string) {
	l.Done(ip, account)
	l.mu.Lock()
	defer l.mu.Unlock()
	if r := l.accounts[account]; r != nil && !l.now().Before(r.banned) && r.inflight == 0 {
		delete(l.accounts, account)
	}
}

// Done ends an attempt that was neither a failed nor a successful login
// (a temporary error, a cancelled exchange).
func (l *Limiter) Done(ip netip.Addr, account string) {
	if l.policy.MaxFailures <= 0 {
		return
	}
	ip = ipKey(ip)
	l.mu.Lock()
	defer l.mu.Unlock()
	if r := l.ips[ip]; r != nil {
		r.inflight = max(r.inflight-1, 0)
	}
	if r := l.accounts[account]; r != nil {
		r.inflight = max(r.inflight-1, 0)
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

func (l *Limiter) count(r *record, now time.Time) int {
	r.failures++
	if r.failures >= l.policy.MaxFailures {
		r.banned = now.Add(l.policy.Window)
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
	for k, r := range l.ips {
		if now.Sub(r.first) > l.policy.Window && !now.Before(r.banned) && r.inflight == 0 {
			delete(l.ips, k)
		}
	}
	for k, r := range l.accounts {
		if now.Sub(r.first) > l.policy.Window && !now.Before(r.banned) && r.inflight == 0 {
			delete(l.accounts, k)
		}
	}
}
