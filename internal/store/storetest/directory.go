package storetest

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"mailroom/internal/store"
)

func domainTests() []test {
	return []test{
		{"added domains are listed by name and fetched one by one", testDomainsAddListGet},
		{"adding a domain twice fails with ErrExists and keeps the first", testDomainDuplicate},
		{"a missing domain is ErrNotFound to fetch and to delete", testDomainMissing},
		{"a deleted domain is gone and can be added again", testDomainDelete},
		{"a domain with users or aliases cannot be deleted (ErrInUse)", testDomainInUse},
	}
}

func userTests() []test {
	return []test{
		{"a new user is stored as returned and has an empty INBOX", testUserAdd},
		{"adding a user twice fails with ErrExists and keeps the first", testUserDuplicate},
		{"a user in an unknown domain is ErrNotFound", testUserUnknownDomain},
		{"a user cannot take an alias's address (ErrExists)", testUserOverAlias},
		{"users are listed by address, of one domain or all", testUsersList},
		{"SetPassword replaces the hash of an existing user only", testSetPassword},
		{"a missing user is ErrNotFound to fetch and to delete", testUserMissing},
		{"deleting a user removes their mailboxes but not other users' copies", testDeleteUser},
	}
}

func aliasTests() []test {
	return []test{
		{"aliases are added, fetched, listed by address and deleted", testAliases},
		{"adding an alias twice fails with ErrExists", testAliasDuplicate},
		{"an alias in an unknown domain is ErrNotFound", testAliasUnknownDomain},
		{"an alias cannot take a user's address (ErrExists)", testAliasOverUser},
	}
}

func domainNames(t *testing.T, s store.Store) []string {
	t.Helper()
	ds, err := s.Domains(t.Context())
	if err != nil {
		t.Fatalf("Domains: %v", err)
	}
	var names []string
	for _, d := range ds {
		names = append(names, d.Name)
	}
	return names
}

func testDomainsAddListGet(t *testing.T, s store.Store) {
	ctx := t.Context()
	start := time.Now()
	addDomain(t, s, "b.example")
	if err := s.AddDomain(ctx, store.Domain{Name: "a.example", CatchAll: "postmaster@a.example"}); err != nil {
		t.Fatalf("AddDomain: %v", err)
	}
	if got, want := domainNames(t, s), []string{"a.example", "b.example"}; !slices.Equal(got, want) {
		t.Errorf("Domains = %q, want %q", got, want)
	}
	d, err := s.Domain(ctx, "a.example")
	if err != nil {
		t.Fatalf("Domain: %v", err)
	}
	if d.Name != "a.example" || d.CatchAll != "postmaster@a.example" {
		t.Errorf("Domain = %+v, want a.example with catch-all postmaster@a.example", d)
	}
	wantRecent(t, "Domain.Created", d.Created, start)
}

func testDomainDuplicate(t *testing.T, s store.Store) {
	ctx := t.Context()
	addDomain(t, s, "a.example")
	err := s.AddDomain(ctx, store.Domain{Name: "a.example", CatchAll: "other@a.example"})
	wantErr(t, "second AddDomain", err, store.ErrExists)
	d, err := s.Domain(ctx, "a.example")
	if err != nil || d.CatchAll != "" {
		t.Errorf("after the duplicate, Domain = %+v, %v; want the first, unchanged", d, err)
	}
}

func testDomainMissing(t *testing.T, s store.Store) {
	_, err := s.Domain(t.Context(), "nowhere.example")
	wantErr(t, "Domain", err, store.ErrNotFound)
	wantErr(t, "DeleteDomain", s.DeleteDomain(t.Context(), "nowhere.example"), store.ErrNotFound)
	if names := domainNames(t, s); len(names) != 0 {
		t.Errorf("Domains of an empty store = %q, want none", names)
	}
}

func testDomainDelete(t *testing.T, s store.Store) {
	ctx := t.Context()
	addDomain(t, s, "a.example")
	addDomain(t, s, "b.example")
	if err := s.DeleteDomain(ctx, "a.example"); err != nil {
		t.Fatalf("DeleteDomain: %v", err)
	}
	_, err := s.Domain(ctx, "a.example")
	wantErr(t, "Domain after delete", err, store.ErrNotFound)
	if got, want := domainNames(t, s), []string{"b.example"}; !slices.Equal(got, want) {
		t.Errorf("Domains = %q, want %q", got, want)
	}
	addDomain(t, s, "a.example")
}

func testDomainInUse(t *testing.T, s store.Store) {
	ctx := t.Context()
	addUser(t, s, "alice@users.example")
	addDomain(t, s, "aliases.example")
	if err := s.AddAlias(ctx, store.Alias{Address: "info@aliases.example", Targets: []string{"alice@users.example"}}); err != nil {
		t.Fatalf("AddAlias: %v", err)
	}
	for _, c := range []struct {
		domain string
		free   func() error
	}{
		{"users.example", func() error { return s.DeleteUser(ctx, "alice@users.example") }},
		{"aliases.example", func() error { return s.DeleteAlias(ctx, "info@aliases.example") }},
	} {
		wantErr(t, "DeleteDomain("+c.domain+")", s.DeleteDomain(ctx, c.domain), store.ErrInUse)
		if _, err := s.Domain(ctx, c.domain); err != nil {
			t.Errorf("Domain(%s) after the refused delete: %v", c.domain, err)
		}
		if err := c.free(); err != nil {
			t.Fatalf("emptying %s: %v", c.domain, err)
		}
		if err := s.DeleteDomain(ctx, c.domain); err != nil {
			t.Errorf("DeleteDomain(%s) once empty: %v", c.domain, err)
		}
	}
}

func testUserAdd(t *testing.T, s store.Store) {
	ctx := t.Context()
	addDomain(t, s, "a.example")
	start := time.Now()
	u, err := s.AddUser(ctx, store.User{Address: "alice@a.example", PasswordHash: "h1", QuotaBytes: 1 << 20})
	if err != nil {
		t.Fatalf("AddUser: %v", err)
	}
	if u.ID == 0 {
		t.Errorf("AddUser returned ID 0")
	}
	got := user(t, s, "alice@a.example")
	if got.ID != u.ID || got.Address != "alice@a.example" || got.PasswordHash != "h1" ||
		got.QuotaBytes != 1<<20 || got.UsedBytes != 0 || !got.Created.Equal(u.Created) {
		t.Errorf("User = %+v, want what AddUser returned: %+v", got, u)
	}
	wantRecent(t, "User.Created", got.Created, start)
	bob := addUser(t, s, "bob@a.example")
	if bob.ID == u.ID {
		t.Errorf("two users share ID %d", u.ID)
	}

	st := status(t, s, u.ID, store.Inbox)
	if st.Name != store.Inbox || st.UIDValidity == 0 || st.UIDNext != 1 || st.Messages != 0 {
		t.Errorf("MailboxStatus(INBOX) = %+v, want INBOX, UIDValidity != 0, UIDNext 1, no messages", st)
	}
	if ms := list(t, s, u.ID, store.Inbox); len(ms) != 0 {
		t.Errorf("Messages(INBOX) of a new user = %+v, want none", ms)
	}
	_, err = s.MailboxStatus(ctx, u.ID, "No such mailbox")
	wantErr(t, "MailboxStatus of a missing mailbox", err, store.ErrNotFound)
}

func testUserDuplicate(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := addUser(t, s, "alice@a.example")
	_, err := s.AddUser(ctx, store.User{Address: "alice@a.example", PasswordHash: "other"})
	wantErr(t, "second AddUser", err, store.ErrExists)
	if got := user(t, s, "alice@a.example"); got.ID != u.ID || got.PasswordHash != u.PasswordHash {
		t.Errorf("after the duplicate, User = %+v, want %+v", got, u)
	}
}

func testUserUnknownDomain(t *testing.T, s store.Store) {
	ctx := t.Context()
	_, err := s.AddUser(ctx, store.User{Address: "alice@nowhere.example"})
	wantErr(t, "AddUser", err, store.ErrNotFound)
	_, err = s.User(ctx, "alice@nowhere.example")
	wantErr(t, "User after the failed add", err, store.ErrNotFound)
}

func testUserOverAlias(t *testing.T, s store.Store) {
	ctx := t.Context()
	addDomain(t, s, "a.example")
	if err := s.AddAlias(ctx, store.Alias{Address: "info@a.example", Targets: []string{"x@b.example"}}); err != nil {
		t.Fatalf("AddAlias: %v", err)
	}
	_, err := s.AddUser(ctx, store.User{Address: "info@a.example"})
	wantErr(t, "AddUser over an alias", err, store.ErrExists)
	_, err = s.User(ctx, "info@a.example")
	wantErr(t, "User after the refused add", err, store.ErrNotFound)
}

func testAliasOverUser(t *testing.T, s store.Store) {
	ctx := t.Context()
	addUser(t, s, "alice@a.example")
	err := s.AddAlias(ctx, store.Alias{Address: "alice@a.example", Targets: []string{"x@b.example"}})
	wantErr(t, "AddAlias over a user", err, store.ErrExists)
	_, err = s.Alias(ctx, "alice@a.example")
	wantErr(t, "Alias after the refused add", err, store.ErrNotFound)
}

func testUsersList(t *testing.T, s store.Store) {
	ctx := t.Context()
	addUser(t, s, "carol@a.example")
	addUser(t, s, "bob@b.example")
	addUser(t, s, "alice@a.example")
	addDomain(t, s, "empty.example")
	for _, c := range []struct {
		domain string
		want   []string
	}{
		{"a.example", []string{"alice@a.example", "carol@a.example"}},
		{"b.example", []string{"bob@b.example"}},
		{"empty.example", nil},
		{"", []string{"alice@a.example", "bob@b.example", "carol@a.example"}},
	} {
		us, err := s.Users(ctx, c.domain)
		if err != nil {
			t.Fatalf("Users(%q): %v", c.domain, err)
		}
		var got []string
		for _, u := range us {
			got = append(got, u.Address)
			if u.ID == 0 || u.PasswordHash != "hash-of-"+u.Address {
				t.Errorf("Users(%q) lists %+v, want its ID and password hash", c.domain, u)
			}
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("Users(%q) = %q, want %q", c.domain, got, c.want)
		}
	}
}

func testSetPassword(t *testing.T, s store.Store) {
	ctx := t.Context()
	addUser(t, s, "alice@a.example")
	bob := addUser(t, s, "bob@a.example")
	if err := s.SetPassword(ctx, "alice@a.example", store.Secrets{Hash: "new-hash", SCRAMSHA256: "new-scram", CRAMMD5: "new-cram"}); err != nil {
		t.Fatalf("SetPassword: %v", err)
	}
	if got := user(t, s, "alice@a.example"); got.PasswordHash != "new-hash" || got.SCRAMSHA256 != "new-scram" || got.CRAMMD5 != "new-cram" {
		t.Errorf("PasswordHash, SCRAMSHA256 = %q, %q; want new-hash, new-scram", got.PasswordHash, got.SCRAMSHA256)
	}
	if got := user(t, s, "bob@a.example").PasswordHash; got != bob.PasswordHash {
		t.Errorf("another user's PasswordHash changed to %q", got)
	}
	wantErr(t, "SetPassword of a missing user", s.SetPassword(ctx, "nobody@a.example", store.Secrets{Hash: "x"}), store.ErrNotFound)
}

func testUserMissing(t *testing.T, s store.Store) {
	addDomain(t, s, "a.example")
	_, err := s.User(t.Context(), "nobody@a.example")
	wantErr(t, "User", err, store.ErrNotFound)
	wantErr(t, "DeleteUser", s.DeleteUser(t.Context(), "nobody@a.example"), store.ErrNotFound)
}

func testDeleteUser(t *testing.T, s store.Store) {
	ctx := t.Context()
	alice := addUser(t, s, "alice@a.example")
	bob := addUser(t, s, "bob@a.example")
	big := bigBody()
	accept(t, s, message(textBody("shared"), "shared", inbox(alice), inbox(bob)))
	accept(t, s, message(big, "shared big", inbox(alice), inbox(bob)))
	accept(t, s, message(textBody("alice only"), "alice only", inbox(alice)))
	accept(t, s, message(big, "alice only big", inbox(alice)))

	if err := s.DeleteUser(ctx, alice.Address); err != nil {
		t.Fatalf("DeleteUser: %v", err)
	}
	_, err := s.User(ctx, alice.Address)
	wantErr(t, "User after delete", err, store.ErrNotFound)
	_, err = s.MailboxStatus(ctx, alice.ID, store.Inbox)
	wantErr(t, "MailboxStatus of the deleted user's INBOX", err, store.ErrNotFound)
	if ms, err := s.Messages(ctx, alice.ID, store.Inbox); len(ms) != 0 {
		t.Errorf("Messages of the deleted user = %d messages, %v; want none", len(ms), err)
	}
	_, _, err = s.OpenMessage(ctx, alice.ID, store.Inbox, 1)
	wantErr(t, "OpenMessage of the deleted user's message", err, store.ErrNotFound)

	// Bob's copies of the shared messages survive, byte for byte.
	if st := status(t, s, bob.ID, store.Inbox); st.Messages != 2 {
		t.Errorf("bob's INBOX has %d messages, want 2", st.Messages)
	}
	for uid, body := range map[uint32][]byte{1: textBody("shared"), 2: big} {
		got, _ := read(t, s, bob.ID, store.Inbox, uid)
		if want := append(inbox(bob).Prefix, body...); !bytes.Equal(got, want) {
			t.Errorf("bob's message %d after alice's deletion: %d bytes, want the %d delivered", uid, len(got), len(want))
		}
	}

	// The address can be taken again, by a new user with a new, empty INBOX.
	again := addUser(t, s, alice.Address)
	if st := status(t, s, again.ID, store.Inbox); st.Messages != 0 || st.UIDNext != 1 {
		t.Errorf("the re-added user's INBOX = %+v, want empty with UIDNext 1", st)
	}
	if u := user(t, s, alice.Address); u.UsedBytes != 0 {
		t.Errorf("the re-added user's UsedBytes = %d, want 0", u.UsedBytes)
	}
}

func testAliases(t *testing.T, s store.Store) {
	ctx := t.Context()
	addDomain(t, s, "a.example")
	addDomain(t, s, "b.example")
	start := time.Now()
	aliases := []store.Alias{
		{Address: "postmaster@a.example", Targets: []string{"zed@a.example", "alice@elsewhere.example"}},
		{Address: "info@b.example", Targets: []string{"bob@b.example"}},
		{Address: "abuse@a.example", Targets: []string{"postmaster@a.example"}},
	}
	for _, a := range aliases {
		if err := s.AddAlias(ctx, a); err != nil {
			t.Fatalf("AddAlias(%s): %v", a.Address, err)
		}
	}
	a, err := s.Alias(ctx, "postmaster@a.example")
	if err != nil {
		t.Fatalf("Alias: %v", err)
	}
	if a.Address != "postmaster@a.example" || !slices.Equal(a.Targets, aliases[0].Targets) {
		t.Errorf("Alias = %+v, want %+v (targets in order)", a, aliases[0])
	}
	wantRecent(t, "Alias.Created", a.Created, start)

	for _, c := range []struct {
		domain string
		want   []string
	}{
		{"a.example", []string{"abuse@a.example", "postmaster@a.example"}},
		{"b.example", []string{"info@b.example"}},
		{"", []string{"abuse@a.example", "info@b.example", "postmaster@a.example"}},
	} {
		as, err := s.Aliases(ctx, c.domain)
		if err != nil {
			t.Fatalf("Aliases(%q): %v", c.domain, err)
		}
		var got []string
		for _, a := range as {
			got = append(got, a.Address)
			if len(a.Targets) == 0 {
				t.Errorf("Aliases(%q) lists %s without its targets", c.domain, a.Address)
			}
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("Aliases(%q) = %q, want %q", c.domain, got, c.want)
		}
	}

	if err := s.DeleteAlias(ctx, "postmaster@a.example"); err != nil {
		t.Fatalf("DeleteAlias: %v", err)
	}
	_, err = s.Alias(ctx, "postmaster@a.example")
	wantErr(t, "Alias after delete", err, store.ErrNotFound)
	wantErr(t, "DeleteAlias again", s.DeleteAlias(ctx, "postmaster@a.example"), store.ErrNotFound)
	if as, _ := s.Aliases(ctx, ""); len(as) != 2 {
		t.Errorf("after one delete, Aliases lists %d, want 2", len(as))
	}
}

func testAliasDuplicate(t *testing.T, s store.Store) {
	ctx := t.Context()
	addDomain(t, s, "a.example")
	a := store.Alias{Address: "info@a.example", Targets: []string{"x@b.example"}}
	if err := s.AddAlias(ctx, a); err != nil {
		t.Fatalf("AddAlias: %v", err)
	}
	a.Targets = []string{"y@b.example"}
	wantErr(t, "second AddAlias", s.AddAlias(ctx, a), store.ErrExists)
	if got, err := s.Alias(ctx, a.Address); err != nil || !slices.Equal(got.Targets, []string{"x@b.example"}) {
		t.Errorf("after the duplicate, Alias = %+v, %v; want the first, unchanged", got, err)
	}
}

func testAliasUnknownDomain(t *testing.T, s store.Store) {
	ctx := t.Context()
	err := s.AddAlias(ctx, store.Alias{Address: "info@nowhere.example", Targets: []string{"x@b.example"}})
	wantErr(t, "AddAlias", err, store.ErrNotFound)
	_, err = s.Alias(ctx, "info@nowhere.example")
	wantErr(t, "Alias after the failed add", err, store.ErrNotFound)
}
