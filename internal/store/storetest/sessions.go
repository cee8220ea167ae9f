package storetest

import (
	"errors"
	"testing"
	"time"

	"mailroom/internal/store"
)

func sessionTests() []test {
	return []test{
		{"sessions are found by their hash, touched, ended one by one, per user and by age", testSessions},
	}
}

func testSessions(t *testing.T, s store.Store) {
	ctx := t.Context()
	now := time.Now()
	for _, c := range []struct {
		hash, user string
		seen       time.Time
	}{{"h1", "alice@a.example", now}, {"h2", "alice@a.example", now.Add(-3 * time.Hour)}, {"h3", "bob@a.example", now.Add(-3 * time.Hour)}} {
		if err := s.AddSession(ctx, c.hash, store.Session{User: c.user, CSRF: "csrf-" + c.hash, Created: c.seen, LastSeen: c.seen}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Session(ctx, "h1")
	if err != nil || got.User != "alice@a.example" || got.CSRF != "csrf-h1" || !got.LastSeen.Equal(now) {
		t.Errorf("Session = %+v, %v", got, err)
	}
	if _, err := s.Session(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("an unknown session: %v", err)
	}
	later := now.Add(time.Minute)
	if err := s.TouchSession(ctx, "h2", later); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Session(ctx, "h2"); !got.LastSeen.Equal(later) {
		t.Errorf("touched: %+v", got)
	}
	// Idle ones go (h3); a user's all go (h1, h2).
	if n, err := s.DeleteSessions(ctx, "", now.Add(-time.Hour)); err != nil || n != 1 {
		t.Errorf("DeleteSessions(idle) = %d, %v", n, err)
	}
	if n, err := s.DeleteSessions(ctx, "alice@a.example", now.Add(time.Hour)); err != nil || n != 2 {
		t.Errorf("DeleteSessions(alice) = %d, %v", n, err)
	}
	if err := s.AddSession(ctx, "h4", store.Session{User: "x@a.example", CSRF: "c", Created: now, LastSeen: now}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSession(ctx, "h4"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Session(ctx, "h4"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("an ended session: %v", err)
	}
}
