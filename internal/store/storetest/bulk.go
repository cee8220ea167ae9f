package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"

	"mailroom/internal/store"
)

// testReadMessages: ReadMessages hands over each message as OpenMessage
// reads it (prefix and body, inline or in a file), in UID order, skipping
// UIDs the mailbox does not have, and stops at fn's error.
func testReadMessages(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := addUser(t, s, "alice@a.example")
	accept(t, s, message(textBody("delivered"), "delivered", inbox(u)))
	first := appendText(t, s, u.ID, store.Inbox, "appended")
	res, err := s.Append(ctx, u.ID, store.Inbox, []store.AppendMessage{{Body: bytes.NewReader(bigBody())}})
	if err != nil {
		t.Fatal(err)
	}
	gone := appendText(t, s, u.ID, store.Inbox, "expunged")
	if _, err := s.Expunge(ctx, u.ID, store.Inbox, []uint32{gone}); err != nil {
		t.Fatal(err)
	}
	uids := []uint32{res.UIDs[0], 1, gone, first, 999}
	var got []uint32
	err = s.ReadMessages(ctx, u.ID, store.Inbox, uids, func(uid uint32, r io.Reader) error {
		got = append(got, uid)
		b, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		rc, _, err := s.OpenMessage(ctx, u.ID, store.Inbox, uid)
		if err != nil {
			return err
		}
		defer rc.Close()
		want, _ := io.ReadAll(rc)
		if !bytes.Equal(b, want) {
			t.Errorf("message %d: %d octets read, OpenMessage reads %d", uid, len(b), len(want))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []uint32{1, first, res.UIDs[0]}; !slices.Equal(got, want) {
		t.Errorf("ReadMessages read %v, want %v", got, want)
	}
	stop := errors.New("stop")
	n := 0
	err = s.ReadMessages(ctx, u.ID, store.Inbox, uids, func(uint32, io.Reader) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("ReadMessages with fn failing: %v after %d calls", err, n)
	}
	if err := s.ReadMessages(ctx, u.ID, "Nope", uids, func(uint32, io.Reader) error { return nil }); err != nil {
		t.Errorf("ReadMessages of a missing mailbox: %v, want nothing read", err)
	}
}

// testSnapshots: a mailbox's snapshot is kept and read back with the
// mailbox's ID and UIDVALIDITY, an older one does not replace a newer, and
// it goes with the mailbox.
func testSnapshots(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := addUser(t, s, "alice@a.example")
	other := addUser(t, s, "bob@a.example")
	if _, err := s.Snapshot(ctx, u.ID, store.Inbox); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Snapshot before any was saved: %v, want ErrNotFound", err)
	}
	for i := range 10 { // MODSEQs up to past 10, for the snapshots below
		appendText(t, s, u.ID, store.Inbox, fmt.Sprint("message ", i))
	}
	mb, err := s.Mailbox(ctx, u.ID, store.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	save := func(modseq int64, data string) {
		t.Helper()
		if err := s.SaveSnapshot(ctx, u.ID, store.Snapshot{MailboxID: mb.ID, ModSeq: modseq, Data: []byte(data)}); err != nil {
			t.Fatal(err)
		}
	}
	save(5, "five")
	save(9, "nine")
	save(7, "seven") // older: kept out
	sn, err := s.Snapshot(ctx, u.ID, store.Inbox)
	if err != nil || sn.MailboxID != mb.ID || sn.UIDValidity != mb.UIDValidity || sn.ModSeq != 9 || string(sn.Data) != "nine" {
		t.Fatalf("Snapshot = %+v, %v; want mailbox %d/%d at 9, \"nine\"", sn, err, mb.ID, mb.UIDValidity)
	}
	save(9, "nine again") // the same MODSEQ: written anew
	if sn, _ := s.Snapshot(ctx, u.ID, store.Inbox); string(sn.Data) != "nine again" {
		t.Errorf("a snapshot of the same MODSEQ left %q", sn.Data)
	}
	// One beyond the mailbox's HIGHESTMODSEQ (no server saves such) is
	// replaced by the next one saved, however old.
	st, err := s.MailboxState(ctx, u.ID, store.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	save(st.HighestModSeq+1000, "from the future")
	save(st.HighestModSeq, "now")
	if sn, _ := s.Snapshot(ctx, u.ID, store.Inbox); string(sn.Data) != "now" {
		t.Errorf("a snapshot beyond the mailbox's HIGHESTMODSEQ stayed: %q", sn.Data)
	}
	save(st.HighestModSeq, "nine")
	// Another user's mailbox is not written through a guessed ID.
	if err := s.SaveSnapshot(ctx, other.ID, store.Snapshot{MailboxID: mb.ID, ModSeq: 99, Data: []byte("bob's")}); err != nil {
		t.Fatal(err)
	}
	if sn, _ := s.Snapshot(ctx, u.ID, store.Inbox); string(sn.Data) != "nine" {
		t.Errorf("another user's SaveSnapshot wrote %q", sn.Data)
	}
	if _, err := s.CreateMailbox(ctx, u.ID, "Work", ""); err != nil {
		t.Fatal(err)
	}
	work, _ := s.Mailbox(ctx, u.ID, "Work")
	if err := s.SaveSnapshot(ctx, u.ID, store.Snapshot{MailboxID: work.ID, ModSeq: 3, Data: []byte("work")}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMailbox(ctx, u.ID, "Work"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateMailbox(ctx, u.ID, "Work", ""); err != nil {
		t.Fatal(err)
	}
	if sn, err := s.Snapshot(ctx, u.ID, "Work"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a mailbox made again has the old one's snapshot: %+v, %v", sn, err)
	}
}

// testSnapshotsListed: Snapshots lists every user's snapshots, the most
// recently saved first (a save refused as older does not count), stops
// when told, and leaves out a deleted mailbox's.
func testSnapshotsListed(t *testing.T, s store.Store) {
	ctx := t.Context()
	alice := addUser(t, s, "alice@a.example")
	bob := addUser(t, s, "bob@a.example")
	for _, name := range []string{"Work", "Old"} {
		if _, err := s.CreateMailbox(ctx, alice.ID, name, ""); err != nil {
			t.Fatal(err)
		}
	}
	appendText(t, s, alice.ID, store.Inbox, "a message")
	appendText(t, s, alice.ID, store.Inbox, "another")
	save := func(u store.User, name string, modseq int64, data string) {
		t.Helper()
		mb, err := s.Mailbox(ctx, u.ID, name)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.SaveSnapshot(ctx, u.ID, store.Snapshot{MailboxID: mb.ID, ModSeq: modseq, Data: []byte(data)}); err != nil {
			t.Fatal(err)
		}
	}
	list := func(limit int) []string {
		t.Helper()
		var got []string
		err := s.Snapshots(ctx, func(userID int64, mailbox string, sn store.Snapshot) bool {
			mb, err := s.Mailbox(ctx, userID, mailbox)
			if err != nil || mb.ID != sn.MailboxID || mb.UIDValidity != sn.UIDValidity {
				t.Errorf("snapshot of %d %q names mailbox %d/%d, the mailbox is %+v (%v)", userID, mailbox, sn.MailboxID, sn.UIDValidity, mb, err)
			}
			who := "alice"
			if userID == bob.ID {
				who = "bob"
			}
			got = append(got, fmt.Sprintf("%s %s %d %s", who, mailbox, sn.ModSeq, sn.Data))
			return len(got) < limit
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := list(10); len(got) != 0 {
		t.Fatalf("Snapshots before any was saved: %q", got)
	}
	save(alice, store.Inbox, 1, "one")
	save(bob, store.Inbox, 0, "bob's")
	save(alice, "Old", 0, "old")
	save(alice, "Work", 0, "work")
	save(alice, store.Inbox, 2, "two")
	save(bob, store.Inbox, 0, "bob's again") // the same MODSEQ: saved anew, so the latest
	save(alice, store.Inbox, 1, "stale")     // older than the one kept: not saved, not moved
	if err := s.DeleteMailbox(ctx, alice.ID, "Old"); err != nil {
		t.Fatal(err)
	}
	want := []string{"bob INBOX 0 bob's again", "alice INBOX 2 two", "alice Work 0 work"}
	if got := list(10); !slices.Equal(got, want) {
		t.Errorf("Snapshots listed %q, want %q", got, want)
	}
	if got := list(2); !slices.Equal(got, want[:2]) {
		t.Errorf("Snapshots told to stop after 2 listed %q", got)
	}
}
