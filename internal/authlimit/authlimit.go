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
)

// Check tells whether a login attempt from ip for account may go ahead.
func (l *Limiter) Check(ip netip.Addr, account string) (Verdict, time.Duration) {
	if l.policy.MaxFailures <= 0 {
		return Allow, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if r := l.ips[ip]; r != nil && now.Before(r.banned) {
		return IPBanned, r.banned.Sub(now)
	}
	if r := l.accounts[account]; r != nil && now.Before(r.banned) {
		return AccountLocked, r.banned.Sub(now)
	}
	return Allow, 0
}

// Failed records a failed login and returns how long to wait before
// answering it.
func (l *Limiter) Failed(ip netip.Addr, account string) time.Duration {
	if l.policy.MaxFailures <= 0 {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.gc(now)
	n := max(bump(l, l.ips, ip, now), bump(l, l.accounts, account, now))
	d := l.policy.BaseDelay << min(n-1, 20)
	return min(d, l.policy.MaxDelay)
}

// Succeeded forgets the account's failures (not the IP's).
func (l *Limiter) Succeeded(account string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r := l.accounts[account]; r != nil && !l.now().Before(r.banned) {
		delete(l.accounts, account)
	}
}

// bump counts a failure for key and returns the failures in its window.
func bump[K comparable](l *Limiter, m map[K]*record, key K, now time.Time) int {
	r := m[key]
	if r == nil || now.Sub(r.first) > l.policy.Window {
		r = &record{first: now}
		m[key] = r
	}
	return l.count(r, now)
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
		if now.Sub(r.first) > l.policy.Window && !now.Before(r.banned) {
			delete(l.ips, k)
		}
	}
	for k, r := range l.accounts {
		if now.Sub(r.first) > l.policy.Window && !now.Before(r.banned) {
			delete(l.accounts, k)
		}
	}
}
