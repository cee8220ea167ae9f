package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"mailroom/internal/store"
)

// AddSession stores a new session.
func (s *Store) AddSession(ctx context.Context, hash string, ss store.Session) error {
	if _, err := s.pool.Exec(ctx, `INSERT INTO sessions(hash, username, csrf, created, last_seen) VALUES ($1, $2, $3, $4, $5)`,
		hash, ss.User, ss.CSRF, ss.Created.UnixNano(), ss.LastSeen.UnixNano()); err != nil {
		return storageError("add session", err)
	}
	return nil
}

// Session returns a session.
func (s *Store) Session(ctx context.Context, hash string) (store.Session, error) {
	var ss store.Session
	var created, seen int64
	err := s.pool.QueryRow(ctx, `SELECT username, csrf, created, last_seen FROM sessions WHERE hash = $1`, hash).Scan(&ss.User, &ss.CSRF, &created, &seen)
	if errors.Is(err, pgx.ErrNoRows) {
		return ss, fmt.Errorf("session: %w", store.ErrNotFound)
	}
	if err != nil {
		return ss, storageError("session", err)
	}
	ss.Created, ss.LastSeen = time.Unix(0, created), time.Unix(0, seen)
	return ss, nil
}

// TouchSession records a session's use.
func (s *Store) TouchSession(ctx context.Context, hash string, now time.Time) error {
	if _, err := s.pool.Exec(ctx, `UPDATE sessions SET last_seen = $1 WHERE hash = $2`, now.UnixNano(), hash); err != nil {
		return storageError("touch session", err)
	}
	return nil
}

// DeleteSession ends a session.
func (s *Store) DeleteSession(ctx context.Context, hash string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM sessions WHERE hash = $1`, hash); err != nil {
		return storageError("delete session", err)
	}
	return nil
}

// DeleteSessions ends a user's sessions (or everyone's) last seen before before.
func (s *Store) DeleteSessions(ctx context.Context, user string, before time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM sessions WHERE ($1 = '' OR username = $1) AND last_seen < $2`, user, before.UnixNano())
	if err != nil {
		return 0, storageError("delete sessions", err)
	}
	return int(tag.RowsAffected()), nil
}
