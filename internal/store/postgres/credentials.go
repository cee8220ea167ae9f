package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"mailroom/internal/store"
)

// AddAppPassword stores an app password hash for a user.
func (s *Store) AddAppPassword(ctx context.Context, address, name, hash string) error {
	tag, err := s.pool.Exec(ctx, `INSERT INTO app_passwords(user_id, name, hash, created) SELECT id, $2, $3, $4 FROM users WHERE address = $1`,
		address, name, hash, time.Now().Unix())
	if isCode(err, codeUniqueViolation) {
		return fmt.Errorf("app password %q of %s: %w", name, address, store.ErrExists)
	}
	return expectOne(tag, err)("user " + address)
}

// AppPasswords lists a user's app passwords by name.
func (s *Store) AppPasswords(ctx context.Context, address string) ([]store.AppPassword, error) {
	if _, err := s.User(ctx, address); err != nil {
		return nil, err
	}
	rows, _ := s.pool.Query(ctx, `SELECT a.name, a.created, a.last_used FROM app_passwords a JOIN users u ON u.id = a.user_id
		WHERE u.address = $1 ORDER BY a.name`, address)
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.AppPassword, error) {
		var p store.AppPassword
		var created, used int64
		err := r.Scan(&p.Name, &created, &used)
		p.Created, p.LastUsed = time.Unix(created, 0), timeOrZero(used)
		return p, err
	})
}

// DeleteAppPassword revokes an app password.
func (s *Store) DeleteAppPassword(ctx context.Context, address, name string) error {
	return expectOne(s.pool.Exec(ctx, `DELETE FROM app_passwords WHERE name = $1 AND user_id = (SELECT id FROM users WHERE address = $2)`,
		name, address))(fmt.Sprintf("app password %q of %s", name, address))
}

// UserByAppPassword finds the owner of an app password hash and records
// the use (in the same statement: no write after the login).
func (s *Store) UserByAppPassword(ctx context.Context, hash string) (store.User, string, error) {
	var name string
	var id int64
	err := s.pool.QueryRow(ctx, `UPDATE app_passwords SET last_used = $2 WHERE hash = $1 RETURNING user_id, name`, hash, time.Now().Unix()).Scan(&id, &name)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.User{}, "", fmt.Errorf("app password: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.User{}, "", err
	}
	u, err := scanUser(s.pool.QueryRow(ctx, userColumns+` WHERE id = $1`, id))
	return s.withQuota(u), name, err
}

// AddSenderGrant lets a user send as pattern.
func (s *Store) AddSenderGrant(ctx context.Context, address, pattern string) error {
	tag, err := s.pool.Exec(ctx, `INSERT INTO sender_grants(user_id, pattern, created) SELECT id, $2, $3 FROM users WHERE address = $1`,
		address, pattern, time.Now().Unix())
	if isCode(err, codeUniqueViolation) {
		return fmt.Errorf("grant %s to %s: %w", pattern, address, store.ErrExists)
	}
	return expectOne(tag, err)("user " + address)
}

// SenderGrants lists what a user may send as besides their own addresses.
func (s *Store) SenderGrants(ctx context.Context, address string) ([]string, error) {
	rows, _ := s.pool.Query(ctx, `SELECT g.pattern FROM sender_grants g JOIN users u ON u.id = g.user_id WHERE u.address = $1 ORDER BY g.pattern`, address)
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// DeleteSenderGrant withdraws a grant.
func (s *Store) DeleteSenderGrant(ctx context.Context, address, pattern string) error {
	return expectOne(s.pool.Exec(ctx, `DELETE FROM sender_grants WHERE pattern = $1 AND user_id = (SELECT id FROM users WHERE address = $2)`,
		pattern, address))(fmt.Sprintf("grant %s of %s", pattern, address))
}

// Suppress adds or replaces a suppression.
func (s *Store) Suppress(ctx context.Context, sup store.Suppression) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO suppressions(address, reason, created, until) VALUES ($1, $2, $3, $4)
		ON CONFLICT (address) DO UPDATE SET reason = excluded.reason, created = excluded.created, until = excluded.until`,
		strings.ToLower(sup.Address), sup.Reason, sup.Created.Unix(), sup.Until.Unix())
	return err
}

// Suppressed reports whether address is suppressed at now.
func (s *Store) Suppressed(ctx context.Context, address string, now time.Time) (store.Suppression, bool, error) {
	sup := store.Suppression{Address: strings.ToLower(address)}
	var created, until int64
	err := s.pool.QueryRow(ctx, `SELECT reason, created, until FROM suppressions WHERE address = $1`, sup.Address).Scan(&sup.Reason, &created, &until)
	if errors.Is(err, pgx.ErrNoRows) {
		return sup, false, nil
	}
	if err != nil {
		return sup, false, err
	}
	sup.Created, sup.Until = time.Unix(created, 0), time.Unix(until, 0)
	return sup, sup.Until.After(now), nil
}

// SuppressionList lists suppressions by address.
func (s *Store) SuppressionList(ctx context.Context) ([]store.Suppression, error) {
	rows, _ := s.pool.Query(ctx, `SELECT address, reason, created, until FROM suppressions ORDER BY address`)
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Suppression, error) {
		var sup store.Suppression
		var created, until int64
		err := r.Scan(&sup.Address, &sup.Reason, &created, &until)
		sup.Created, sup.Until = time.Unix(created, 0), time.Unix(until, 0)
		return sup, err
	})
}

// Unsuppress removes a suppression.
func (s *Store) Unsuppress(ctx context.Context, address string) error {
	return expectOne(s.pool.Exec(ctx, `DELETE FROM suppressions WHERE address = $1`, strings.ToLower(address)))("suppression of " + address)
}
