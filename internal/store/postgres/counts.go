package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
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
