package storetest

import (
	"errors"
	"testing"

	"mailroom/internal/store"
)

func credentialTests() []test {
	return []test{
		{"app passwords are added, found by hash, listed and revoked", testAppPasswords},
		{"app password names are unique per user and need a user", testAppPasswordErrors},
		{"deleting a user deletes their app passwords", testAppPasswordsGoWithUser},
		{"sender grants are added, listed and withdrawn, and go with the user", testSenderGrants},
		{"user settings are stored and read back", testUserSettings},
	}
}

func testAppPasswords(t *testing.T, s store.Store) {
	alice := addUser(t, s, "alice@a.example")
	ctx := t.Context()
	for _, n := range []string{"phone", "laptop"} {
		if err := s.AddAppPassword(ctx, alice.Address, n, "hash-"+n); err != nil {
			t.Fatal(err)
		}
	}
	u, name, err := s.UserByAppPassword(ctx, "hash-phone")
	if err != nil || u.ID != alice.ID || name != "phone" {
		t.Fatalf("UserByAppPassword = %+v, %q, %v", u, name, err)
	}
	list, err := s.AppPasswords(ctx, alice.Address)
	if err != nil || len(list) != 2 || list[0].Name != "laptop" || list[1].Name != "phone" {
		t.Fatalf("AppPasswords = %+v, %v", list, err)
	}
	if err := s.DeleteAppPassword(ctx, alice.Address, "phone"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.UserByAppPassword(ctx, "hash-phone"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a revoked app password still works: %v", err)
	}
	if err := s.DeleteAppPassword(ctx, alice.Address, "phone"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("revoking twice: %v", err)
	}
}

func testAppPasswordErrors(t *testing.T, s store.Store) {
	alice := addUser(t, s, "alice@a.example")
	bob := addUser(t, s, "bob@a.example")
	ctx := t.Context()
	if err := s.AddAppPassword(ctx, alice.Address, "phone", "h1"); err != nil {
		t.Fatal(err)
	}
	if err := s.AddAppPassword(ctx, alice.Address, "phone", "h2"); !errors.Is(err, store.ErrExists) {
		t.Errorf("a second 'phone' for alice: %v", err)
	}
	if err := s.AddAppPassword(ctx, bob.Address, "phone", "h3"); err != nil {
		t.Errorf("bob's 'phone': %v", err)
	}
	if err := s.AddAppPassword(ctx, "nobody@a.example", "x", "h4"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("an app password for nobody: %v", err)
	}
	if _, err := s.AppPasswords(ctx, "nobody@a.example"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("listing nobody's app passwords: %v", err)
	}
}

func testAppPasswordsGoWithUser(t *testing.T, s store.Store) {
	alice := addUser(t, s, "alice@a.example")
	ctx := t.Context()
	s.AddAppPassword(ctx, alice.Address, "phone", "h1")
	if err := s.DeleteUser(ctx, alice.Address); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.UserByAppPassword(ctx, "h1"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the app password of a deleted user still works: %v", err)
	}
}

func testSenderGrants(t *testing.T, s store.Store) {
	alice := addUser(t, s, "alice@a.example")
	ctx := t.Context()
	for _, p := range []string{"@b.example", "news@c.example"} {
		if err := s.AddSenderGrant(ctx, alice.Address, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddSenderGrant(ctx, alice.Address, "@b.example"); !errors.Is(err, store.ErrExists) {
		t.Errorf("a duplicate grant: %v", err)
	}
	if err := s.AddSenderGrant(ctx, "nobody@a.example", "*"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a grant to nobody: %v", err)
	}
	got, err := s.SenderGrants(ctx, alice.Address)
	if err != nil || len(got) != 2 || got[0] != "@b.example" {
		t.Fatalf("SenderGrants = %v, %v", got, err)
	}
	if err := s.DeleteSenderGrant(ctx, alice.Address, "@b.example"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSenderGrant(ctx, alice.Address, "@b.example"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleting twice: %v", err)
	}
	if err := s.DeleteUser(ctx, alice.Address); err != nil {
		t.Fatalf("deleting a user with grants: %v", err)
	}
}

func testUserSettings(t *testing.T, s store.Store) {
	alice := addUser(t, s, "alice@a.example")
	ctx := t.Context()
	if u := user(t, s, alice.Address); u.Settings != (store.UserSettings{}) {
		t.Errorf("a new user has settings %+v", u.Settings)
	}
	want := store.UserSettings{RequireSCRAM: true, MaxMessagesPerDay: 7}
	if err := s.SetUserSettings(ctx, alice.Address, want); err != nil {
		t.Fatal(err)
	}
	if u := user(t, s, alice.Address); u.Settings != want {
		t.Errorf("settings = %+v, want %+v", u.Settings, want)
	}
	if err := s.SetUserSettings(ctx, "nobody@a.example", want); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("settings of nobody: %v", err)
	}
}
