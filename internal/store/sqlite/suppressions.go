package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

	"mailroom/internal/store"
)

// Suppress adds or replaces a suppression.
func (s *Store) Suppress(ctx context.Context, sup store.Suppression) error {
	return s.writeStamped(ctx, s.supcache, func(tx *wtx) error {
		_, err := tx.Exec(`INSERT INTO suppressions(address, reason, created, until) VALUES (?, ?, ?, ?)
			ON CONFLICT(address) DO UPDATE SET reason = excluded.reason, created = excluded.created, until = excluded.until`,
			strings.ToLower(sup.Address), sup.Reason, sup.Created.Unix(), sup.Until.Unix())
		return err
	})
}

// Suppressed reports whether address is suppressed at now. Every relayed
// recipient asks, so the answer comes from the suppressions' cache, which
// keeps the entry whatever its expiry (suppressions change through
// writeStamped).
func (s *Store) Suppressed(ctx context.Context, address string, now time.Time) (store.Suppression, bool, error) {
	addr := strings.ToLower(address)
	sup, err := lookup(s.supcache, func() map[string]cached[store.Suppression] { return s.supcache.suppressions }, addr,
		func() (store.Suppression, error) { return s.readSuppression(ctx, addr) },
		func() error { return store.ErrNotFound })
	if errors.Is(err, store.ErrNotFound) {
		return store.Suppression{Address: addr}, false, nil
	}
	if err != nil {
		return sup, false, err
	}
	return sup, sup.Until.After(now), nil
}

// readSuppression reads one entry, expired or not.
func (s *Store) readSuppression(ctx context.Context, addr string) (store.Suppression, error) {
	sup := store.Suppression{Address: addr}
	var created, until int64
	err := s.queryRow(ctx, `SELECT reason, created, until FROM suppressions WHERE address = ?`, addr).
		Scan(&sup.Reason, &created, &until)
	if errors.Is(err, sql.ErrNoRows) {
		return sup, store.ErrNotFound
	}
	sup.Created, sup.Until = time.Unix(created, 0), time.Unix(until, 0)
	return sup, err
}

// SuppressionList lists suppressions by address.
func (s *Store) SuppressionList(ctx context.Context) ([]store.Suppression, error) {
	rows, err := s.query(ctx, `SELECT address, reason, created, until FROM suppressions ORDER BY address`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Suppression
	for rows.Next() {
		var sup store.Suppression
		var created, until int64
		if err := rows.Scan(&sup.Address, &sup.Reason, &created, &until); err != nil {
			return nil, err
		}
		sup.Created, sup.Until = time.Unix(created, 0), time.Unix(until, 0)
		out = append(out, sup)
	}
	return out, rows.Err()
}

// Unsuppress removes a suppression.
func (s *Store) Unsuppress(ctx context.Context, address string) error {
	return s.writeStamped(ctx, s.supcache, func(tx *wtx) error {
		return expectOne(tx.Exec(`DELETE FROM suppressions WHERE address = ?`, strings.ToLower(address)))("suppression of " + address)
	})
}
