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
	return s.write(ctx, func(tx *wtx) error {
		_, err := tx.Exec(`INSERT INTO suppressions(address, reason, created, until) VALUES (?, ?, ?, ?)
			ON CONFLICT(address) DO UPDATE SET reason = excluded.reason, created = excluded.created, until = excluded.until`,
			strings.ToLower(sup.Address), sup.Reason, sup.Created.Unix(), sup.Until.Unix())
		return err
	})
}

// Suppressed reports whether address is suppressed at now.
func (s *Store) Suppressed(ctx context.Context, address string, now time.Time) (store.Suppression, bool, error) {
	sup := store.Suppression{Address: strings.ToLower(address)}
	var created, until int64
	err := s.queryRow(ctx, `SELECT reason, created, until FROM suppressions WHERE address = ? AND until > ?`, sup.Address, now.Unix()).
		Scan(&sup.Reason, &created, &until)
	if errors.Is(err, sql.ErrNoRows) {
		return sup, false, nil
	}
	sup.Created, sup.Until = time.Unix(created, 0), time.Unix(until, 0)
	return sup, err == nil, err
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
	return s.write(ctx, func(tx *wtx) error {
		return expectOne(tx.Exec(`DELETE FROM suppressions WHERE address = ?`, strings.ToLower(address)))("suppression of " + address)
	})
}
