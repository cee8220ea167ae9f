package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"mailroom/internal/store"
)

// AddSession stores a new session.
func (s *Store) AddSession(ctx context.Context, hash string, ss store.Session) error {
	return s.write(ctx, func(tx *wtx) error {
		_, err := tx.Exec(`INSERT INTO sessions(hash, username, csrf, created, last_seen) VALUES (?, ?, ?, ?, ?)`,
			hash, ss.User, ss.CSRF, ss.Created.UnixNano(), ss.LastSeen.UnixNano())
		return err
	})
}

// Session returns a session.
func (s *Store) Session(ctx context.Context, hash string) (store.Session, error) {
	var ss store.Session
	var created, seen int64
	err := s.queryRow(ctx, `SELECT username, csrf, created, last_seen FROM sessions WHERE hash = ?`, hash).Scan(&ss.User, &ss.CSRF, &created, &seen)
	if errors.Is(err, sql.ErrNoRows) {
		return ss, fmt.Errorf("session: %w", store.ErrNotFound)
	}
	if err != nil {
		return ss, storageErr("session", err)
	}
	ss.Created, ss.LastSeen = time.Unix(0, created), time.Unix(0, seen)
	return ss, nil
}

// TouchSession records a session's use (without an fsync of its own).
func (s *Store) TouchSession(ctx context.Context, hash string, now time.Time) error {
	return s.writeLazy(ctx, false, func(tx *wtx) error {
		_, err := tx.Exec(`UPDATE sessions SET last_seen = ? WHERE hash = ?`, now.UnixNano(), hash)
		return err
	})
}

// DeleteSession ends a session.
func (s *Store) DeleteSession(ctx context.Context, hash string) error {
	return s.write(ctx, func(tx *wtx) error {
		_, err := tx.Exec(`DELETE FROM sessions WHERE hash = ?`, hash)
		return err
	})
}

// DeleteSessions ends a user's sessions (or everyone's) last seen before before.
func (s *Store) DeleteSessions(ctx context.Context, user string, before time.Time) (int, error) {
	var n int64
	err := s.write(ctx, func(tx *wtx) error {
		res, err := tx.Exec(`DELETE FROM sessions WHERE (? = '' OR username = ?) AND last_seen < ?`, user, user, before.UnixNano())
		if err == nil {
			n, _ = res.RowsAffected()
		}
		return err
	})
	return int(n), err
}
