package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"mailroom/internal/store"
)

func mailTests() []test {
	return []test{
		{"a new user has INBOX and the special-use mailboxes, subscribed", testDefaultMailboxes},
		{"mailboxes are created, listed and deleted, with the right errors", testMailboxLifecycle},
		{"a name deleted and made again gets a new UIDVALIDITY", testUIDValidityNeverRepeats},
		{"rename takes the mailboxes below and the subscriptions along", testRenameHierarchy},
		{"renaming INBOX moves its messages and leaves it empty", testRenameInbox},
		{"subscriptions need no mailbox", testSubscriptions},
		{"append stores messages with flags and dates under ascending UIDs", testAppend},
		{"append over the quota stores none of the messages", testAppendOverQuota},
		{"flags change under new MODSEQs, and UNCHANGEDSINCE holds", testSetFlags},
		{"the mailbox state counts unseen, deleted and octets", testMailboxState},
		{"changes since a MODSEQ list changed and vanished messages", testChanges},
		{"copy keeps flags and dates; move leaves tombstones", testCopyMove},
		{"copy over the quota copies nothing", testCopyOverQuota},
		{"summaries are read without bodies, and saved again", testSummaries},
		{"many messages are read in one go, as OpenMessage reads each", testReadMessages},
		{"a mailbox's snapshot is kept, never replaced by an older one, and goes with it", testSnapshots},
		{"snapshots are listed, the most recently saved first", testSnapshotsListed},
		{"a watcher is woken by every committed change", testWatch},
		{"a wake-up names the mailbox and its HIGHESTMODSEQ; pending ones merge", testWatchModSeq},
		{"each new message is recent to one claim only", testClaimRecent},
	}
}

func listNames(t *testing.T, s store.Store, userID int64) []string {
	t.Helper()
	mbs, err := s.ListMailboxes(t.Context(), userID)
	if err != nil {
		t.Fatalf("ListMailboxes: %v", err)
	}
	var names []string
	for _, mb := range mbs {
		names = append(names, mb.Name)
	}
	return names
}

func testDefaultMailboxes(t *testing.T, s store.Store) {
	u := addUser(t, s, "alice@a.example")
	mbs, err := s.ListMailboxes(t.Context(), u.ID)
	if err != nil {
		t.Fatal(err)
	}
	uses := map[string]string{}
	for _, mb := range mbs {
		uses[mb.Name] = mb.SpecialUse
		if !mb.Subscribed || mb.UIDValidity == 0 {
			t.Errorf("%s: subscribed %v, UIDVALIDITY %d", mb.Name, mb.Subscribed, mb.UIDValidity)
		}
	}
	want := map[string]string{"INBOX": "", "Drafts": `\Drafts`, "Sent": `\Sent`, "Junk": `\Junk`, "Trash": `\Trash`, "Archive": `\Archive`}
	if len(uses) != len(want) {
		t.Errorf("mailboxes %v, want %v", uses, want)
	}
	for name, use := range want {
		if got, ok := uses[name]; !ok || got != use {
			t.Errorf("%s: special use %q (present %v), want %q", name, got, ok, use)
		}
	}
}

func testMailboxLifecycle(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := addUser(t, s, "alice@a.example")
	mb, err := s.CreateMailbox(ctx, u.ID, "Projects/2024", "")
	if err != nil || mb.ID == 0 || mb.UIDValidity == 0 {
		t.Fatalf("CreateMailbox = %+v, %v", mb, err)
	}
	_, err = s.CreateMailbox(ctx, u.ID, "Projects/2024", "")
	wantErr(t, "CreateMailbox of a name taken", err, store.ErrExists)
	got, err := s.Mailbox(ctx, u.ID, "Projects/2024")
	if err != nil || got.ID != mb.ID || got.UIDValidity != mb.UIDValidity || got.Subscribed {
		t.Errorf("Mailbox = %+v, %v; want %+v, not subscribed", got, err, mb)
	}
	if names := listNames(t, s, u.ID); !slices.Contains(names, "Projects/2024") {
		t.Errorf("ListMailboxes = %v, lacks Projects/2024", names)
	}
	appendText(t, s, u.ID, "Projects/2024", "in a folder")
	before, _ := s.User(ctx, u.Address)
	if err := s.DeleteMailbox(ctx, u.ID, "Projects/2024"); err != nil {
		t.Fatal(err)
	}
	after, _ := s.User(ctx, u.Address)
	if after.UsedBytes >= before.UsedBytes {
		t.Errorf("used bytes %d after deleting a mailbox with a message, before %d", after.UsedBytes, before.UsedBytes)
	}
	_, err = s.Mailbox(ctx, u.ID, "Projects/2024")
	wantErr(t, "Mailbox after DeleteMailbox", err, store.ErrNotFound)
	wantErr(t, "DeleteMailbox of a missing one", s.DeleteMailbox(ctx, u.ID, "Projects/2024"), store.ErrNotFound)
	wantErr(t, "DeleteMailbox of INBOX", s.DeleteMailbox(ctx, u.ID, store.Inbox), store.ErrInUse)
	// Another user's names are their own.
	bob := addUser(t, s, "bob@a.example")
	if _, err := s.CreateMailbox(ctx, bob.ID, "Projects/2024", ""); err != nil {
		t.Errorf("bob's CreateMailbox of a name alice had: %v", err)
	}
}

func testUIDValidityNeverRepeats(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := addUser(t, s, "alice@a.example")
	seen := map[uint32]bool{}
	for _, mb := range mustList(t, s, u.ID) {
		seen[mb.UIDValidity] = true
	}
	for range 5 {
		mb, err := s.CreateMailbox(ctx, u.ID, "Again", "")
		if err != nil {
			t.Fatal(err)
		}
		if seen[mb.UIDValidity] {
			t.Fatalf("UIDVALIDITY %d given twice", mb.UIDValidity)
		}
		seen[mb.UIDValidity] = true
		if err := s.DeleteMailbox(ctx, u.ID, "Again"); err != nil {
			t.Fatal(err)
		}
	}
}

func mustList(t *testing.T, s store.Store, userID int64) []store.MailboxInfo {
	t.Helper()
	mbs, err := s.ListMailboxes(t.Context(), userID)
	if err != nil {
		t.Fatal(err)
	}
	return mbs
}

func testRenameHierarchy(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := addUser(t, s, "alice@a.example")
	for _, name := range []string{"Work", "Work/A", "Work/A/B", "Workshop"} {
		if _, err := s.CreateMailbox(ctx, u.ID, name, ""); err != nil {
			t.Fatal(err)
		}
	}
	s.SetSubscribed(ctx, u.ID, "Work/A", true)
	a, _ := s.Mailbox(ctx, u.ID, "Work/A")
	appendText(t, s, u.ID, "Work/A", "moved along")
	if err := s.RenameMailbox(ctx, u.ID, "Work", "Job"); err != nil {
		t.Fatal(err)
	}
	names := listNames(t, s, u.ID)
	for _, want := range []string{"Job", "Job/A", "Job/A/B", "Workshop"} {
		if !slices.Contains(names, want) {
			t.Errorf("after rename: %v lacks %s", names, want)
		}
	}
	for _, gone := range []string{"Work", "Work/A", "Work/A/B"} {
		if slices.Contains(names, gone) {
			t.Errorf("after rename: %v still has %s", names, gone)
		}
	}
	got, err := s.Mailbox(ctx, u.ID, "Job/A")
	if err != nil || got.UIDValidity != a.UIDValidity || !got.Subscribed {
		t.Errorf("Job/A = %+v, %v; want UIDVALIDITY %d kept and subscribed", got, err, a.UIDValidity)
	}
	if st, err := s.MailboxState(ctx, u.ID, "Job/A"); err != nil || len(st.States) != 1 {
		t.Errorf("Job/A has %d messages (%v), want 1", len(st.States), err)
	}
	wantErr(t, "RenameMailbox onto a name taken", s.RenameMailbox(ctx, u.ID, "Job", "Workshop"), store.ErrExists)
	wantErr(t, "RenameMailbox of a missing one", s.RenameMailbox(ctx, u.ID, "Nope", "Other"), store.ErrNotFound)
	if err := s.RenameMailbox(ctx, u.ID, "Job", "Job/Inside"); err == nil {
		t.Error("RenameMailbox below itself succeeded")
	}
}

func testRenameInbox(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := addUser(t, s, "alice@a.example")
	accept(t, s, message(textBody("one"), "one", inbox(u)))
	accept(t, s, message(textBody("two"), "two", inbox(u)))
	before, _ := s.MailboxStatus(ctx, u.ID, store.Inbox)
	if err := s.RenameMailbox(ctx, u.ID, store.Inbox, "Old mail"); err != nil {
		t.Fatal(err)
	}
	st, err := s.MailboxState(ctx, u.ID, store.Inbox)
	if err != nil || len(st.States) != 0 || st.UIDValidity != before.UIDValidity || st.UIDNext != before.UIDNext {
		t.Errorf("INBOX after rename: %+v, %v; want empty, same UIDVALIDITY and UIDNEXT", st.MailboxStatus, err)
	}
	old, err := s.MailboxState(ctx, u.ID, "Old mail")
	if err != nil || len(old.States) != 2 {
		t.Errorf("Old mail: %d messages, %v; want 2", len(old.States), err)
	}
	ch, err := s.Changes(ctx, u.ID, store.Inbox, before.HighestModSeq)
	if err != nil || len(ch.Vanished) != 2 {
		t.Errorf("INBOX changes after rename: vanished %v, %v; want both messages", ch.Vanished, err)
	}
	// Mail still arrives in INBOX.
	accept(t, s, message(textBody("three"), "three", inbox(u)))
	if st, _ := s.MailboxState(ctx, u.ID, store.Inbox); len(st.States) != 1 || st.States[0].UID != before.UIDNext {
		t.Errorf("INBOX after a delivery: %+v", st.States)
	}
}

func testSubscriptions(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := addUser(t, s, "alice@a.example")
	for _, name := range []string{"Nowhere/yet", "Sent"} {
		if err := s.SetSubscribed(ctx, u.ID, name, true); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetSubscribed(ctx, u.ID, "Junk", false); err != nil {
		t.Fatal(err)
	}
	subs, err := s.Subscriptions(ctx, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"Archive", "Drafts", "INBOX", "Nowhere/yet", "Sent", "Trash"}
	if !slices.Equal(subs, want) {
		t.Errorf("Subscriptions = %v, want %v", subs, want)
	}
	// Deleting a mailbox keeps its subscription (RFC 9051 6.3.9).
	s.DeleteMailbox(ctx, u.ID, "Trash")
	if subs, _ := s.Subscriptions(ctx, u.ID); !slices.Contains(subs, "Trash") {
		t.Errorf("Subscriptions after deleting Trash = %v, lost it", subs)
	}
}

// appendText appends one small message and returns its UID.
func appendText(t *testing.T, s store.Store, userID int64, mailbox, subject string, flags ...string) uint32 {
	t.Helper()
	res, err := s.Append(t.Context(), userID, mailbox, []store.AppendMessage{{Body: bytes.NewReader(textBody(subject)), Flags: flags, Subject: subject}})
	if err != nil {
		t.Fatalf("Append to %s: %v", mailbox, err)
	}
	return res.UIDs[0]
}

func testAppend(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := addUser(t, s, "alice@a.example")
	date := time.Date(2001, 2, 3, 4, 5, 6, 0, time.FixedZone("-0500", -5*3600))
	big := bigBody()
	res, err := s.Append(ctx, u.ID, "Drafts", []store.AppendMessage{
		{Body: bytes.NewReader(textBody("first")), Flags: []string{store.FlagDraft, "$Label1"}, InternalDate: date, Subject: "first"},
		{Body: bytes.NewReader(big), Size: int64(len(big))},
	})
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := s.Mailbox(ctx, u.ID, "Drafts")
	if res.UIDValidity != mb.UIDValidity || len(res.UIDs) != 2 || res.UIDs[1] != res.UIDs[0]+1 {
		t.Fatalf("Append = %+v, want two ascending UIDs under UIDVALIDITY %d", res, mb.UIDValidity)
	}
	rc, mi, err := s.OpenMessage(ctx, u.ID, "Drafts", res.UIDs[0])
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(body, textBody("first")) || !mi.Date.Equal(date) || !slices.Equal(mi.Flags, []string{store.FlagDraft, "$Label1"}) || mi.ModSeq == 0 {
		t.Errorf("first appended: %q, date %v, flags %v, modseq %d", body, mi.Date, mi.Flags, mi.ModSeq)
	}
	rc, mi, err = s.OpenMessage(ctx, u.ID, "Drafts", res.UIDs[1])
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(body, big) || mi.Size != int64(len(big)) || time.Since(mi.Date) > time.Minute {
		t.Errorf("second appended: %d octets (size %d), date %v; want %d octets dated now", len(body), mi.Size, mi.Date, len(big))
	}
	_, err = s.Append(ctx, u.ID, "Nope", []store.AppendMessage{{Body: strings.NewReader("x")}})
	wantErr(t, "Append to a missing mailbox", err, store.ErrNotFound)
	if u2, _ := s.User(ctx, u.Address); u2.UsedBytes != int64(len(big)+len(textBody("first"))) {
		t.Errorf("used bytes %d after appending, want %d", u2.UsedBytes, len(big)+len(textBody("first")))
	}
}

func testAppendOverQuota(t *testing.T, s store.Store) {
	ctx := t.Context()
	addDomain(t, s, "a.example")
	u, err := s.AddUser(ctx, store.User{Address: "alice@a.example", QuotaBytes: 100})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.Append(ctx, u.ID, store.Inbox, []store.AppendMessage{
		{Body: strings.NewReader("Subject: a\r\n\r\nfits\r\n")},
		{Body: strings.NewReader("Subject: b\r\n\r\n" + strings.Repeat("x", 200) + "\r\n")},
	})
	var qe *store.QuotaError
	if !errors.As(err, &qe) {
		t.Fatalf("Append over the quota = %v, want a QuotaError", err)
	}
	if st, _ := s.MailboxState(ctx, u.ID, store.Inbox); len(st.States) != 0 {
		t.Errorf("%d messages stored by a refused append", len(st.States))
	}
	if u2, _ := s.User(ctx, u.Address); u2.UsedBytes != 0 {
		t.Errorf("used bytes %d after a refused append", u2.UsedBytes)
	}
}

func testSetFlags(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := addUser(t, s, "alice@a.example")
	a := appendText(t, s, u.ID, store.Inbox, "a")
	b := appendText(t, s, u.ID, store.Inbox, "b", store.FlagFlagged)
	st, _ := s.MailboxState(ctx, u.ID, store.Inbox)
	res, err := s.SetFlags(ctx, u.ID, store.Inbox, store.FlagChange{UIDs: []uint32{a, b, 999}, Op: store.FlagsAdd, Flags: []string{store.FlagSeen}})
	if err != nil || len(res.Changed) != 2 {
		t.Fatalf("SetFlags add = %+v, %v", res, err)
	}
	if !slices.Equal(res.Changed[1].Flags, []string{store.FlagFlagged, store.FlagSeen}) || res.Changed[0].ModSeq <= st.HighestModSeq ||
		res.Changed[1].ModSeq <= res.Changed[0].ModSeq {
		t.Errorf("after +FLAGS: %+v (highest before %d)", res.Changed, st.HighestModSeq)
	}
	// Nothing to change: no new MODSEQ.
	again, _ := s.SetFlags(ctx, u.ID, store.Inbox, store.FlagChange{UIDs: []uint32{a}, Op: store.FlagsAdd, Flags: []string{store.FlagSeen}})
	if len(again.Changed) != 0 {
		t.Errorf("adding a flag a message has changed it: %+v", again)
	}
	res, _ = s.SetFlags(ctx, u.ID, store.Inbox, store.FlagChange{UIDs: []uint32{b}, Op: store.FlagsRemove, Flags: []string{store.FlagFlagged}})
	if len(res.Changed) != 1 || !slices.Equal(res.Changed[0].Flags, []string{store.FlagSeen}) {
		t.Errorf("after -FLAGS: %+v", res.Changed)
	}
	res, _ = s.SetFlags(ctx, u.ID, store.Inbox, store.FlagChange{UIDs: []uint32{a}, Op: store.FlagsReplace, Flags: []string{"$Work", "$Work"}})
	if len(res.Changed) != 1 || !slices.Equal(res.Changed[0].Flags, []string{"$Work"}) {
		t.Errorf("after FLAGS: %+v", res.Changed)
	}
	// UNCHANGEDSINCE b's MODSEQ, below a's (changed last): a is left
	// alone and reported.
	now, _ := s.MailboxState(ctx, u.ID, store.Inbox)
	res, err = s.SetFlags(ctx, u.ID, store.Inbox, store.FlagChange{UIDs: []uint32{a, b}, Op: store.FlagsAdd, Flags: []string{store.FlagAnswered},
		UnchangedSince: now.States[1].ModSeq})
	if err != nil || len(res.Changed) != 1 || res.Changed[0].UID != b || !slices.Equal(res.Modified, []uint32{a}) {
		t.Errorf("UNCHANGEDSINCE %d: %+v, %v; want b changed, a modified", now.States[1].ModSeq, res, err)
	}
	after, _ := s.MailboxState(ctx, u.ID, store.Inbox)
	if after.HighestModSeq != res.Changed[0].ModSeq {
		t.Errorf("HIGHESTMODSEQ %d, the last change's %d", after.HighestModSeq, res.Changed[0].ModSeq)
	}
}

func testMailboxState(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := addUser(t, s, "alice@a.example")
	appendText(t, s, u.ID, store.Inbox, "new")
	appendText(t, s, u.ID, store.Inbox, "read", store.FlagSeen)
	appendText(t, s, u.ID, store.Inbox, "gone", store.FlagSeen, store.FlagDeleted)
	st, err := s.MailboxState(ctx, u.ID, store.Inbox)
	if err != nil {
		t.Fatal(err)
	}
	size := int64(len(textBody("new")) + len(textBody("read")) + len(textBody("gone")))
	if st.Messages != 3 || len(st.States) != 3 || st.Unseen != 1 || st.Deleted != 1 || st.Size != size || st.ID == 0 {
		t.Errorf("MailboxState = %+v, want 3 messages, 1 unseen, 1 deleted, %d octets", st.MailboxStatus, size)
	}
	status, err := s.MailboxStatus(ctx, u.ID, store.Inbox)
	if err != nil || status != st.MailboxStatus {
		t.Errorf("MailboxStatus = %+v, %v; MailboxState says %+v", status, err, st.MailboxStatus)
	}
	_, err = s.MailboxState(ctx, u.ID, "Nope")
	wantErr(t, "MailboxState of a missing mailbox", err, store.ErrNotFound)
}

func testChanges(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := addUser(t, s, "alice@a.example")
	a := appendText(t, s, u.ID, store.Inbox, "a")
	b := appendText(t, s, u.ID, store.Inbox, "b")
	mark, _ := s.MailboxStatus(ctx, u.ID, store.Inbox)
	c := appendText(t, s, u.ID, store.Inbox, "c")
	s.SetFlags(ctx, u.ID, store.Inbox, store.FlagChange{UIDs: []uint32{a}, Op: store.FlagsAdd, Flags: []string{store.FlagSeen}})
	if _, err := s.Expunge(ctx, u.ID, store.Inbox, []uint32{b}); err != nil {
		t.Fatal(err)
	}
	ch, err := s.Changes(ctx, u.ID, store.Inbox, mark.HighestModSeq)
	if err != nil {
		t.Fatal(err)
	}
	var changed []uint32
	for _, m := range ch.Changed {
		changed = append(changed, m.UID)
	}
	if !slices.Equal(changed, []uint32{a, c}) || !slices.Equal(ch.Vanished, []uint32{b}) || ch.HighestModSeq <= mark.HighestModSeq ||
		ch.UIDNext != c+1 || ch.ID == 0 {
		t.Errorf("Changes = changed %v, vanished %v, %+v; want [%d %d], [%d]", changed, ch.Vanished, ch.MailboxStatus, a, c, b)
	}
	all, _ := s.Changes(ctx, u.ID, store.Inbox, 0)
	if len(all.Changed) != 2 || len(all.Vanished) != 0 {
		t.Errorf("Changes since 0 = %+v, want every message and no vanished", all)
	}
	now, _ := s.Changes(ctx, u.ID, store.Inbox, ch.HighestModSeq)
	if len(now.Changed) != 0 || len(now.Vanished) != 0 {
		t.Errorf("Changes since the latest = %+v, want none", now)
	}
}

func testCopyMove(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := addUser(t, s, "alice@a.example")
	a := appendText(t, s, u.ID, store.Inbox, "a", store.FlagSeen, "$Keep")
	b := appendText(t, s, u.ID, store.Inbox, "b")
	_, srcInfo, _ := s.OpenMessage(ctx, u.ID, store.Inbox, a)
	res, err := s.Copy(ctx, u.ID, store.Inbox, []uint32{a, 777, b}, "Archive", false)
	if err != nil {
		t.Fatal(err)
	}
	arch, _ := s.Mailbox(ctx, u.ID, "Archive")
	if res.UIDValidity != arch.UIDValidity || !slices.Equal(res.From, []uint32{a, b}) || len(res.To) != 2 {
		t.Fatalf("Copy = %+v", res)
	}
	rc, mi, err := s.OpenMessage(ctx, u.ID, "Archive", res.To[0])
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(body, textBody("a")) || !slices.Equal(mi.Flags, []string{store.FlagSeen, "$Keep"}) || !mi.Date.Equal(srcInfo.Date) {
		t.Errorf("copy: %q, flags %v, date %v (source %v)", body, mi.Flags, mi.Date, srcInfo.Date)
	}
	used, _ := s.User(ctx, u.Address)
	if want := 2 * int64(len(textBody("a"))+len(textBody("b"))); used.UsedBytes != want {
		t.Errorf("used bytes after copying both: %d, want %d", used.UsedBytes, want)
	}
	mark, _ := s.MailboxStatus(ctx, u.ID, store.Inbox)
	mv, err := s.Copy(ctx, u.ID, store.Inbox, []uint32{b}, "Trash", true)
	if err != nil || len(mv.To) != 1 {
		t.Fatalf("Move = %+v, %v", mv, err)
	}
	ch, _ := s.Changes(ctx, u.ID, store.Inbox, mark.HighestModSeq)
	if st := status(t, s, u.ID, store.Inbox); !slices.Equal(ch.Vanished, []uint32{b}) || st.Messages != 1 {
		t.Errorf("source after move: vanished %v, %d messages", ch.Vanished, st.Messages)
	}
	if after, _ := s.User(ctx, u.Address); after.UsedBytes != used.UsedBytes {
		t.Errorf("used bytes after a move: %d, before %d", after.UsedBytes, used.UsedBytes)
	}
	_, err = s.Copy(ctx, u.ID, store.Inbox, []uint32{a}, "Nope", false)
	wantErr(t, "Copy to a missing mailbox", err, store.ErrNotFound)
}

func testCopyOverQuota(t *testing.T, s store.Store) {
	ctx := t.Context()
	addDomain(t, s, "a.example")
	u, _ := s.AddUser(ctx, store.User{Address: "alice@a.example", QuotaBytes: int64(len(textBody("a"))*2 + 10)})
	a := appendText(t, s, u.ID, store.Inbox, "a")
	b := appendText(t, s, u.ID, store.Inbox, "b")
	_, err := s.Copy(ctx, u.ID, store.Inbox, []uint32{a, b}, "Archive", false)
	var qe *store.QuotaError
	if !errors.As(err, &qe) {
		t.Fatalf("Copy over the quota = %v, want a QuotaError", err)
	}
	if st, _ := s.MailboxState(ctx, u.ID, "Archive"); len(st.States) != 0 {
		t.Errorf("a refused copy left %d messages", len(st.States))
	}
	// A move takes no more room.
	if _, err := s.Copy(ctx, u.ID, store.Inbox, []uint32{a, b}, "Archive", true); err != nil {
		t.Errorf("Move within a full quota: %v", err)
	}
}

func testSummaries(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := addUser(t, s, "alice@a.example")
	m := message(textBody("with"), "with", inbox(u))
	m.Summary = []byte("parsed structure")
	accept(t, s, m)
	accept(t, s, message(textBody("without"), "without", inbox(u)))
	appendText(t, s, u.ID, store.Inbox, "third")
	var got []store.MessageInfo
	err := s.Summaries(ctx, u.ID, store.Inbox, []uint32{3, 1, 2, 9}, func(mi store.MessageInfo) error {
		got = append(got, mi)
		return nil
	})
	if err != nil || len(got) != 3 {
		t.Fatalf("Summaries = %d, %v", len(got), err)
	}
	if string(got[0].Summary) != "parsed structure" || got[0].PrefixSize != len(inbox(u).Prefix) || string(got[0].Prefix) != string(inbox(u).Prefix) ||
		got[0].Size != int64(len(textBody("with"))+len(inbox(u).Prefix)) || got[1].Summary != nil || got[2].UID != 3 {
		t.Errorf("Summaries = %+v", got)
	}
	if err := s.SaveSummary(ctx, u.ID, store.Inbox, 2, []byte("saved")); err != nil {
		t.Fatal(err)
	}
	s.SaveSummary(ctx, u.ID, store.Inbox, 1, []byte("a newer parser's"))
	got = nil
	s.Summaries(ctx, u.ID, store.Inbox, []uint32{1, 2}, func(mi store.MessageInfo) error {
		got = append(got, mi)
		return nil
	})
	if len(got) != 2 || string(got[0].Summary) != "a newer parser's" || string(got[1].Summary) != "saved" {
		t.Errorf("after SaveSummary: %q, %q", got[0].Summary, got[1].Summary)
	}
	// A few UIDs far apart (a search's matches in a large mailbox).
	for i := range 30 {
		appendText(t, s, u.ID, store.Inbox, fmt.Sprint("more ", i))
	}
	var uids []uint32
	s.Summaries(ctx, u.ID, store.Inbox, []uint32{33, 1, 17, 99}, func(mi store.MessageInfo) error {
		uids = append(uids, mi.UID)
		return nil
	})
	if !slices.Equal(uids, []uint32{1, 17, 33}) {
		t.Errorf("Summaries of UIDs far apart = %v, want [1 17 33]", uids)
	}
	stop := errors.New("stop")
	n := 0
	err = s.Summaries(ctx, u.ID, store.Inbox, []uint32{1, 2, 3}, func(store.MessageInfo) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("Summaries with fn failing: %v after %d calls", err, n)
	}
}

func testWatch(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := addUser(t, s, "alice@a.example")
	other := addUser(t, s, "bob@a.example")
	ch, stop := s.Watch(u.ID)
	defer stop()
	wake := func(what string) {
		t.Helper()
		select {
		case c := <-ch:
			if c.UserID != u.ID {
				t.Errorf("%s: woken for user %d", what, c.UserID)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no wake-up", what)
		}
	}
	accept(t, s, message(textBody("delivered"), "delivered", inbox(u)))
	wake("a delivery")
	uid := appendText(t, s, u.ID, store.Inbox, "appended")
	wake("an append")
	s.SetFlags(ctx, u.ID, store.Inbox, store.FlagChange{UIDs: []uint32{uid}, Op: store.FlagsAdd, Flags: []string{store.FlagSeen}})
	wake("a flag change")
	s.Expunge(ctx, u.ID, store.Inbox, []uint32{uid})
	wake("an expunge")
	accept(t, s, message(textBody("to bob"), "to bob", inbox(other)))
	select {
	case c := <-ch:
		t.Errorf("woken by bob's mail: %+v", c)
	case <-time.After(100 * time.Millisecond):
	}
	stop()
	accept(t, s, message(textBody("after stop"), "after stop", inbox(u)))
	select {
	case c := <-ch:
		t.Errorf("woken after stop: %+v", c)
	case <-time.After(100 * time.Millisecond):
	}
}

func testWatchModSeq(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := addUser(t, s, "alice@a.example")
	uid := appendText(t, s, u.ID, store.Inbox, "first")
	ch, stop := s.Watch(u.ID)
	defer stop()
	next := func(what string) store.MailChange {
		t.Helper()
		select {
		case c := <-ch:
			return c
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no wake-up", what)
		}
		return store.MailChange{}
	}
	status := func() store.MailboxState {
		t.Helper()
		st, err := s.MailboxState(ctx, u.ID, store.Inbox)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	if _, err := s.SetFlags(ctx, u.ID, store.Inbox, store.FlagChange{UIDs: []uint32{uid}, Op: store.FlagsAdd, Flags: []string{store.FlagSeen}}); err != nil {
		t.Fatal(err)
	}
	st := status()
	if c := next("a flag change"); c.MailboxID != st.ID || c.HighestModSeq != st.HighestModSeq {
		t.Errorf("a flag change woke with %+v, want mailbox %d at MODSEQ %d", c, st.ID, st.HighestModSeq)
	}
	// Two changes while the first wake-up is not taken: one wake-up, at
	// the later MODSEQ.
	appendText(t, s, u.ID, store.Inbox, "second")
	if _, err := s.Expunge(ctx, u.ID, store.Inbox, []uint32{uid}); err != nil {
		t.Fatal(err)
	}
	st = status()
	if c := next("an append and an expunge"); c.MailboxID != st.ID || c.HighestModSeq != st.HighestModSeq {
		t.Errorf("an append and an expunge woke with %+v, want mailbox %d at MODSEQ %d", c, st.ID, st.HighestModSeq)
	}
	// Changes to two mailboxes merge into "any mailbox".
	appendText(t, s, u.ID, store.Inbox, "third")
	appendText(t, s, u.ID, "Drafts", "draft")
	if c := next("two mailboxes"); c.MailboxID != 0 || c.HighestModSeq != 0 {
		t.Errorf("changes to two mailboxes woke with %+v, want any mailbox", c)
	}
	// A deleted or renamed mailbox is not a change of messages: no MODSEQ.
	if _, err := s.CreateMailbox(ctx, u.ID, "Work", ""); err != nil {
		t.Fatal(err)
	}
	next("a new mailbox")
	appendText(t, s, u.ID, "Work", "work")
	next("an append")
	if err := s.DeleteMailbox(ctx, u.ID, "Work"); err != nil {
		t.Fatal(err)
	}
	if c := next("a deletion"); c.HighestModSeq != 0 {
		t.Errorf("a deleted mailbox woke with %+v, want no MODSEQ", c)
	}
	select {
	case c := <-ch:
		t.Errorf("a wake-up left over: %+v", c)
	case <-time.After(50 * time.Millisecond):
	}
}

func testIDsNotReused(t *testing.T, s store.Store) {
	ctx := t.Context()
	seen := map[int64]bool{}
	for i := range 3 {
		m := queuedMessage(textBody("queued"), "far@remote.example")
		accept(t, s, m)
		es, err := s.QueueEntries(ctx, m.QueueID)
		if err != nil || len(es) != 1 {
			t.Fatalf("QueueEntries: %v, %v", es, err)
		}
		if seen[es[0].ID] || seen[-es[0].MessageID] {
			t.Fatalf("round %d: entry %d or message %d given before", i, es[0].ID, es[0].MessageID)
		}
		seen[es[0].ID], seen[-es[0].MessageID] = true, true
		if _, err := s.DeleteQueued(ctx, m.QueueID); err != nil {
			t.Fatal(err)
		}
	}
	u := addUser(t, s, "alice@a.example")
	ids := map[int64]bool{}
	for range 3 {
		mb, err := s.CreateMailbox(ctx, u.ID, "Temp", "")
		if err != nil {
			t.Fatal(err)
		}
		if ids[mb.ID] {
			t.Fatalf("mailbox id %d given twice", mb.ID)
		}
		ids[mb.ID] = true
		s.DeleteMailbox(ctx, u.ID, "Temp")
	}
}

func testClaimRecent(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := addUser(t, s, "alice@a.example")
	a := appendText(t, s, u.ID, store.Inbox, "a")
	appendText(t, s, u.ID, store.Inbox, "b")
	if st, _ := s.MailboxStatus(ctx, u.ID, store.Inbox); st.Recent != 2 || st.RecentUID != a {
		t.Errorf("before a claim: %d recent from UID %d, want 2 from %d", st.Recent, st.RecentUID, a)
	}
	from, err := s.ClaimRecent(ctx, u.ID, store.Inbox)
	if err != nil || from != a {
		t.Fatalf("ClaimRecent = %d, %v; want %d", from, err, a)
	}
	st, _ := s.MailboxState(ctx, u.ID, store.Inbox)
	if st.Recent != 0 || st.RecentUID != st.UIDNext {
		t.Errorf("after the claim: %d recent from UID %d (UIDNEXT %d)", st.Recent, st.RecentUID, st.UIDNext)
	}
	c := appendText(t, s, u.ID, store.Inbox, "c")
	if ch, _ := s.Changes(ctx, u.ID, store.Inbox, st.HighestModSeq); ch.RecentUID != c {
		t.Errorf("Changes.RecentUID = %d, want %d", ch.RecentUID, c)
	}
	if from, _ := s.ClaimRecent(ctx, u.ID, store.Inbox); from != c {
		t.Errorf("the second claim starts at %d, want %d", from, c)
	}
	if from, _ := s.ClaimRecent(ctx, u.ID, store.Inbox); from != c+1 {
		t.Errorf("a claim with nothing new starts at %d, want %d (UIDNEXT)", from, c+1)
	}
	_, err = s.ClaimRecent(ctx, u.ID, "Nope")
	wantErr(t, "ClaimRecent of a missing mailbox", err, store.ErrNotFound)
}
