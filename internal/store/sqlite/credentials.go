package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"mailroom/internal/store"
)

// AddAppPassword stores an app password hash for a user.
func (s *Store) AddAppPassword(ctx context.Context, address, name, hash string) error {
	return s.write(ctx, func(tx *wtx) error {
		id, err := userID(tx, address)
		if err != nil {
			return err
		}
		_, err = tx.Exec(`INSERT INTO app_passwords(user_id, name, hash, created) VALUES (?, ?, ?, ?)`, id, name, hash, time.Now().Unix())
		if isUniqueViolation(err) {
			return fmt.Errorf("app password %q of %s: %w", name, address, store.ErrExists)
		}
		return err
	})
}

// AppPasswords lists a user's app passwords by name.
func (s *Store) AppPasswords(ctx context.Context, address string) ([]store.AppPassword, error) {
	if _, err := s.User(ctx, address); err != nil {
		return nil, err
	}
	rows, err := s.query(ctx, `SELECT a.name, a.created, a.last_used FROM app_passwords a JOIN users u ON u.id = a.user_id
		WHERE u.address = ? ORDER BY a.name`, address)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.AppPassword
	for rows.Next() {
		var p store.AppPassword
		var created, used int64
		if err := rows.Scan(&p.Name, &created, &used); err != nil {
			return nil, err
		}
		p.Created = time.Unix(created, 0)
		if used > 0 {
			p.LastUsed = time.Unix(used, 0)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// DeleteAppPassword revokes an app password.
func (s *Store) DeleteAppPassword(ctx context.Context, address, name string) error {
	return s.write(ctx, func(tx *wtx) error {
		return expectOne(tx.Exec(`DELETE FROM app_passwords WHERE name = ? AND user_id = (SELECT id FROM users WHERE address = ?)`,
			name, address))(fmt.Sprintf("app password %q of %s", name, address))
	})
}

// UserByAppPassword finds the owner of an app password hash.
func (s *Store) UserByAppPassword(ctx context.Context, hash string) (store.User, string, error) {
	var name string
	var id int64
	err := s.queryRow(ctx, `SELECT user_id, name FROM app_passwords WHERE hash = ?`, hash).Scan(&id, &name)
	if errors.Is(err, sql.ErrNoRows) {
		return store.User{}, "", fmt.Errorf("app password: %w", store.ErrNotFound)
	}
	if err != nil {
		return store.User{}, "", err
	}
	u, err := scanUser(s.queryRow(ctx, userColumns+` WHERE id = ?`, id))
	if err != nil {
		return u, "", err
	}
	u = s.withQuota(u)
	// Recording the use is best effort: a login must not wait on it.
	go s.write(context.Background(), func(tx *wtx) error {
		_, err := tx.Exec(`UPDATE app_passwords SET last_used = ? WHERE hash = ?`, time.Now().Unix(), hash)
		return err
	})
	return u, name, nil
}

// AddSenderGrant lets a user send as pattern.
func (s *Store) AddSenderGrant(ctx context.Context, address, pattern string) error {
	return s.write(ctx, func(tx *wtx) error {
		res, err := tx.Exec(`INSERT INTO sender_grants(user_id, pattern, created) SELECT id, ?, ? FROM users WHERE address = ?`,
			pattern, time.Now().Unix(), address)
		if isUniqueViolation(err) {
			return fmt.Errorf("grant %s to %s: %w", pattern, address, store.ErrExists)
		}
		return expectOne(res, err)("user " + address)
	})
}

// SenderGrants lists what a user may send as besides their own addresses.
func (s *Store) SenderGrants(ctx context.Context, address string) ([]string, error) {
	rows, err := s.query(ctx, `SELECT g.pattern FROM sender_grants g JOIN users u ON u.id = g.user_id WHERE u.address = ? ORDER BY g.pattern`, address)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// DeleteSenderGrant withdraws a grant.
func (s *Store) DeleteSenderGrant(ctx context.Context, address, pattern string) error {
	return s.write(ctx, func(tx *wtx) error {
		return expectOne(tx.Exec(`DELETE FROM sender_grants WHERE pattern = ? AND user_id = (SELECT id FROM users WHERE address = ?)`,
			pattern, address))(fmt.Sprintf("grant %s of %s", pattern, address))
	})
}
