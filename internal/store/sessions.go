package store

import (
	"context"
	"time"
)

// Session is a signed-in dashboard session, kept under the SHA-256 of its
// cookie's token so that every node knows it and the store never holds
// one usable as it is.
type Session struct {
	User     string
	CSRF     string // the token every form of the session carries
	Created  time.Time
	LastSeen time.Time
}

// Sessions keeps dashboard sessions.
type Sessions interface {
	AddSession(ctx context.Context, hash string, s Session) error
	// Session returns a session by its token's hash; ErrNotFound.
	Session(ctx context.Context, hash string) (Session, error)
	TouchSession(ctx context.Context, hash string, now time.Time) error
	DeleteSession(ctx context.Context, hash string) error
	// DeleteSessions removes a user's sessions ("" for everyone's) last
	// seen before before; returns how many.
	DeleteSessions(ctx context.Context, user string, before time.Time) (int, error)
}
