package store

import (
	"context"
	"time"
)

// Tally kinds: what a count is kept for.
const (
	TallyTLSRPT = "tlsrpt" // outbound TLS sessions, for TLS-RPT reports (RFC 8460)
	TallyDMARC  = "dmarc"  // inbound DMARC results, for aggregate reports (RFC 7489 7.2)
)

// Tally counts events toward a report this server sends: one row of one
// domain's report for one period. Key is the row as its reporter writes
// it (JSON): rows with equal keys add up.
type Tally struct {
	Kind   string
	Period time.Time // the start of the period counted
	Domain string    // whom the report is for: the policy domain
	Key    string
	Count  int64
}

// Tallies keeps counts until their reports are sent.
type Tallies interface {
	// AddTallies adds each count to its row's (kind, period, domain, key),
	// made at zero when new. Written without an fsync of its own: a crash
	// may lose the last counts, never a message.
	AddTallies(ctx context.Context, ts []Tally) error
	// TalliesOf returns the rows of one kind whose period began before
	// before, by period, domain and key: of each domain's period, the
	// limit rows with the largest counts (0: all).
	TalliesOf(ctx context.Context, kind string, before time.Time, limit int) ([]Tally, error)
	// DeleteTallies removes one domain's rows of one period ("" domain:
	// every domain's), once its report is sent or given up.
	DeleteTallies(ctx context.Context, kind string, period time.Time, domain string) error
}

// SharedCounters counts events across every node sharing a store, for
// limits that must hold whichever node a client reaches (sending limits).
// A store of one node (the embedded one) need not implement it: its
// callers count in memory.
type SharedCounters interface {
	// TakeCount counts one event of key at now, unless the events of the
	// past hour or day would then pass perHour or perDay (0: no limit);
	// it returns the counts before, and whether it counted. Concurrent
	// calls for one key are serialized, so a limit holds exactly.
	TakeCount(ctx context.Context, key string, now time.Time, perHour, perDay int) (hour, day int, taken bool, err error)
}

// LoginFailures counts failed logins across every node sharing a store,
// so that the login limits hold whichever node a guesser reaches. A store
// of one node need not implement it: the limiter counts in memory.
type LoginFailures interface {
	// AddLoginFailures counts a failure for each key at now and returns,
	// for each, the failures of the past window, this one included.
	AddLoginFailures(ctx context.Context, keys []string, now time.Time, window time.Duration) ([]int, error)
	// LoginFailureCounts returns the failures of each key in the past window.
	LoginFailureCounts(ctx context.Context, keys []string, now time.Time, window time.Duration) ([]int, error)
	// ForgetLoginFailures forgets a key's failures (a right password).
	ForgetLoginFailures(ctx context.Context, key string) error
}

// Leases let one node at a time do some work when several share a store
// (sending the reports). A store of one node need not implement it.
type Leases interface {
	// TakeLease takes or renews the lease of name for this node until
	// now+ttl, unless another node holds it unexpired; it reports whether
	// this node holds it.
	TakeLease(ctx context.Context, name string, now time.Time, ttl time.Duration) (bool, error)
}
