package sqlite

import (
	"database/sql"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"mailroom/internal/store"
)

// TestMigrationToMailAccess: a store made before mail access (schema 10,
// with a user, a delivered message and a queued one) opens with every user
// given the special-use mailboxes and subscriptions, a UIDVALIDITY counter
// past the ones used, and ids that go on after the largest ever given.
func TestMigrationToMailAccess(t *testing.T) {
	dir := t.TempDir()
	oldStore(t, dir, 10,
		`INSERT INTO domains(name, created) VALUES ('a.example', 0)`,
		`INSERT INTO users(id, address, domain, created) VALUES (7, 'alice@a.example', 'a.example', 0)`,
		`INSERT INTO mailboxes(id, user_id, name, uidvalidity, uidnext, highest_modseq) VALUES (3, 7, 'INBOX', 4000000000, 2, 2)`,
		`INSERT INTO messages(id, queue_id, received, size, envelope, body) VALUES (41, 'q1', 0, 3, '{}', 'abc')`,
		`INSERT INTO mailbox_messages(mailbox_id, uid, message_id, prefix, size, internal_date, modseq) VALUES (3, 1, 41, '', 3, 0, 2)`,
		`INSERT INTO messages(id, queue_id, received, size, envelope, body) VALUES (42, 'q2', 0, 3, '{"mail_from":"a@a.example"}', 'abc')`,
		`INSERT INTO queue(id, message_id, address, domain, state, next_attempt, created) VALUES (90, 42, 'b@far.example', 'far.example', 'pending', 0, 0)`,
	)
	s := open(t, dir, Options{})
	defer s.Close()
	ctx := t.Context()
	mbs, err := s.ListMailboxes(ctx, 7)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mb := range mbs {
		names = append(names, mb.Name)
		if mb.Name != store.Inbox && mb.UIDValidity <= 4000000000 {
			t.Errorf("%s has UIDVALIDITY %d, not past INBOX's", mb.Name, mb.UIDValidity)
		}
		if !mb.Subscribed {
			t.Errorf("%s is not subscribed", mb.Name)
		}
	}
	if want := []string{"Archive", "Drafts", "INBOX", "Junk", "Sent", "Trash"}; !slices.Equal(names, want) {
		t.Errorf("mailboxes %v, want %v", names, want)
	}
	if st, err := s.MailboxState(ctx, 7, store.Inbox); err != nil || len(st.States) != 1 || st.UIDNext != 2 {
		t.Errorf("INBOX after the migration: %+v, %v", st, err)
	}
	mb, err := s.CreateMailbox(ctx, 7, "New", "")
	if err != nil || mb.ID <= 3 || mb.UIDValidity <= 4000000000 {
		t.Errorf("a mailbox made after the migration: %+v, %v", mb, err)
	}
	m := &store.Message{QueueID: store.NewQueueID(), Body: strings.NewReader("x"), Remote: []store.QueuedRecipient{{Address: "c@far.example", Domain: "far.example"}}}
	if err := s.Accept(ctx, m); err != nil {
		t.Fatal(err)
	}
	es, _ := s.QueueEntries(ctx, m.QueueID)
	if len(es) != 1 || es[0].ID <= 90 || es[0].MessageID <= 42 {
		t.Errorf("ids after the migration: %+v", es)
	}
	old2, _ := s.QueueEntries(ctx, "q2")
	if len(old2) != 1 || old2[0].SMTPEnvelope.MailFrom != "a@a.example" {
		t.Errorf("the queued message's envelope after the migration: %+v", old2)
	}
}

// oldStore makes a store in dir at an older schema version, with rows.
func oldStore(t *testing.T, dir string, version int, rows ...string) {
	t.Helper()
	q := url.Values{}
	q.Add("_pragma", "foreign_keys(1)")
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "mailroom.db")+"?"+q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i, m := range migrations[:version] {
		if _, err := db.Exec(m); err != nil {
			t.Fatalf("migration %d: %v", i+1, err)
		}
	}
	for _, stmt := range append([]string{fmt.Sprintf("PRAGMA user_version = %d", version)}, rows...) {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
}

// TestMigrationSummariesTable: summaries kept in the messages table move
// to their own and go with their message when it is expunged.
func TestMigrationSummariesTable(t *testing.T) {
	dir := t.TempDir()
	oldStore(t, dir, 12,
		`INSERT INTO domains(name, created) VALUES ('a.example', 0)`,
		`INSERT INTO users(id, address, domain, created) VALUES (7, 'alice@a.example', 'a.example', 0)`,
		`INSERT INTO mailboxes(id, user_id, name, uidvalidity, uidnext, highest_modseq) VALUES (3, 7, 'INBOX', 5, 2, 2)`,
		`INSERT INTO messages(id, queue_id, received, size, envelope, body, summary) VALUES (41, 'q1', 0, 3, '{}', 'abc', 'the summary')`,
		`INSERT INTO mailbox_messages(mailbox_id, uid, message_id, prefix, size, internal_date, modseq) VALUES (3, 1, 41, '', 3, 0, 2)`,
	)
	s := open(t, dir, Options{})
	defer s.Close()
	ctx := t.Context()
	var got string
	if err := s.Summaries(ctx, 7, store.Inbox, []uint32{1}, func(mi store.MessageInfo) error {
		got = string(mi.Summary)
		return nil
	}); err != nil || got != "the summary" {
		t.Fatalf("summary after the migration: %q, %v", got, err)
	}
	if err := s.SaveSummary(ctx, 7, store.Inbox, 1, []byte("a newer one")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Expunge(ctx, 7, store.Inbox, []uint32{1}); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s.reads.db.QueryRowContext(ctx, "SELECT count(*) FROM message_summaries").Scan(&n); err != nil || n != 0 {
		t.Errorf("%d summaries left after the message was expunged (%v)", n, err)
	}
}
