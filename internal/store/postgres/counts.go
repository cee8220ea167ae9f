package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"mailroom/internal/store"
)

// countBucket is the granularity of shared counts.
const countBucket = 5 * time.Minute

// TakeCount counts an event of key unless a limit would pass, under a
// transaction-scoped advisory lock on the key: two nodes counting one
// user at once cannot both slip under the limit.
func (s *Store) TakeCount(ctx context.Context, key string, now time.Time, perHour, perDay int) (hour, day int, taken bool, err error) {
	b := now.Truncate(countBucket).Unix()
	hourStart := now.Add(-time.Hour).Truncate(countBucket).Unix() + int64(countBucket/time.Second)
	dayStart := now.Add(-24*time.Hour).Truncate(countBucket).Unix() + int64(countBucket/time.Second)
	err = s.run(ctx, pgx.ReadCommitted, func(tx pgx.Tx) error {
		taken = false
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, key); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM shared_counts WHERE key = $1 AND bucket < $2`, key, dayStart); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `SELECT coalesce(sum(count) FILTER (WHERE bucket >= $2), 0), coalesce(sum(count), 0)
			FROM shared_counts WHERE key = $1`, key, hourStart).Scan(&hour, &day); err != nil {
			return err
		}
		if perHour > 0 && hour+1 > perHour || perDay > 0 && day+1 > perDay {
			return nil
		}
		taken = true
		_, err := tx.Exec(ctx, `INSERT INTO shared_counts(key, bucket, count) VALUES ($1, $2, 1)
			ON CONFLICT (key, bucket) DO UPDATE SET count = shared_counts.count + 1`, key, b)
		return err
	})
	return hour, day, taken, err
}

// TakeLease takes or renews a lease for this node (its name, which
// outlives a restart): one statement, the row locked by PostgreSQL.
func (s *Store) TakeLease(ctx context.Context, name string, now time.Time, ttl time.Duration) (bool, error) {
	var owner string
	err := s.pool.QueryRow(ctx, `INSERT INTO leases(name, owner, until) VALUES ($1, $2, $3)
		ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until
			WHERE leases.owner = excluded.owner OR leases.until < $4
		RETURNING owner`, name, s.node, now.Add(ttl).Unix(), now.Unix()).Scan(&owner)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil // another node holds it
	}
	return err == nil && owner == s.node, err
}

var _ store.LoginFailures = (*Store)(nil)

// loginBuckets returns the bucket width for a window (a sixth of it, at
// least a second), the current bucket and the oldest counted, in unix
// seconds.
func loginBuckets(now time.Time, window time.Duration) (width, current, oldest int64) {
	width = max(int64(window/time.Second)/6, 1)
	current = now.Unix() / width * width
	return width, current, now.Add(-window).Unix()/width*width + width
}

// AddLoginFailures counts a failure of each key (store.LoginFailures): in
// one round trip, buckets a day older than the window swept (a node may be
// configured with a longer window), the counts raised, and the sums read
// back. Reads are not serialized with other nodes' counts: two guesses at
// the same moment on two nodes may both pass the last allowed one.
func (s *Store) AddLoginFailures(ctx context.Context, keys []string, now time.Time, window time.Duration) ([]int, error) {
	_, current, oldest := loginBuckets(now, window)
	b := &pgx.Batch{}
	b.Queue(`DELETE FROM login_failures WHERE bucket < $1`, oldest-int64(24*time.Hour/time.Second))
	b.Queue(`INSERT INTO login_failures(key, bucket, count) SELECT k, $2, 1 FROM unnest($1::text[]) k
		ON CONFLICT (key, bucket) DO UPDATE SET count = login_failures.count + 1`, keys, current)
	counts := make([]int, len(keys))
	b.Queue(loginCountsSQL, keys, oldest).QueryRow(func(row pgx.Row) error { return row.Scan(&counts) })
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("store: count a failed login: %w", err)
	}
	return counts, nil
}

// loginCountsSQL sums each key's buckets from the oldest counted, in the
// order of the keys.
const loginCountsSQL = `SELECT array_agg(coalesce((SELECT sum(count) FROM login_failures WHERE key = k AND bucket >= $2), 0)::int ORDER BY i)
	FROM unnest($1::text[]) WITH ORDINALITY AS u(k, i)`

// LoginFailureCounts reads the failures of each key (store.LoginFailures).
func (s *Store) LoginFailureCounts(ctx context.Context, keys []string, now time.Time, window time.Duration) ([]int, error) {
	_, _, oldest := loginBuckets(now, window)
	var counts []int
	if err := s.pool.QueryRow(ctx, loginCountsSQL, keys, oldest).Scan(&counts); err != nil {
		return nil, fmt.Errorf("store: read failed logins: %w", err)
	}
	return counts, nil
}

// ForgetLoginFailures forgets a key's failures (store.LoginFailures).
func (s *Store) ForgetLoginFailures(ctx context.Context, key string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM login_failures WHERE key = $1`, key); err != nil {
		return fmt.Errorf("store: forget failed logins: %w", err)
	}
	return nil
}
