package sqlite

import (
	"context"
	"fmt"
	"time"

	"mailroom/internal/store"
)

// AddTallies adds counts, in one transaction without its own fsync.
func (s *Store) AddTallies(ctx context.Context, ts []store.Tally) error {
	if len(ts) == 0 {
		return nil
	}
	return s.writeLazy(ctx, false, func(tx *wtx) error {
		for _, t := range ts {
			if _, err := tx.Exec(`INSERT INTO report_tallies(kind, period, domain, key, count) VALUES (?, ?, ?, ?, ?)
				ON CONFLICT(kind, period, domain, key) DO UPDATE SET count = count + excluded.count`,
				t.Kind, t.Period.Unix(), t.Domain, t.Key, t.Count); err != nil {
				return err
			}
		}
		return nil
	})
}

// TalliesOf returns one kind's rows of periods that began before before.
func (s *Store) TalliesOf(ctx context.Context, kind string, before time.Time, limit int) ([]store.Tally, error) {
	if limit <= 0 {
		limit = -1
	}
	q, err := s.query(ctx, `SELECT period, domain, key, count FROM (
		SELECT period, domain, key, count, row_number() OVER (PARTITION BY period, domain ORDER BY count DESC, key) AS n
		FROM report_tallies WHERE kind = ?1 AND period < ?2)
		WHERE ?3 < 0 OR n <= ?3 ORDER BY period, domain, key`, kind, before.Unix(), limit)
	if err != nil {
		return nil, fmt.Errorf("store: read the %s tallies: %w", kind, err)
	}
	defer q.Close()
	var out []store.Tally
	for q.Next() {
		t := store.Tally{Kind: kind}
		var period int64
		if err := q.Scan(&period, &t.Domain, &t.Key, &t.Count); err != nil {
			return nil, fmt.Errorf("store: read the %s tallies: %w", kind, err)
		}
		t.Period = time.Unix(period, 0)
		out = append(out, t)
	}
	return out, q.Err()
}

// DeleteTallies removes one domain's (or every domain's) rows of a period.
func (s *Store) DeleteTallies(ctx context.Context, kind string, period time.Time, domain string) error {
	return s.writeLazy(ctx, false, func(tx *wtx) error {
		_, err := tx.Exec(`DELETE FROM report_tallies WHERE kind = ?1 AND period = ?2 AND (domain = ?3 OR ?3 = '')`, kind, period.Unix(), domain)
		return err
	})
}
