package imapserver

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"mailroom/internal/store"
	"mailroom/internal/store/sqlite"
)

// viewStore is an embedded store with one user whose INBOX has n
// messages, every third \Seen.
func viewStore(t *testing.T, n int) (*sqlite.Store, int64) {
	t.Helper()
	ctx := t.Context()
	st, err := sqlite.Open(ctx, t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.AddDomain(ctx, store.Domain{Name: "v.example"}); err != nil {
		t.Fatal(err)
	}
	u, err := st.AddUser(ctx, store.User{Address: "v@v.example", PasswordHash: "x"})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, st, u.ID, "INBOX", 0, n)
	return st, u.ID
}

func appendN(t *testing.T, st store.Mail, user int64, mailbox string, from, n int) {
	t.Helper()
	var msgs []store.AppendMessage
	for i := from; i < from+n; i++ {
		var flags []string
		if i%3 == 0 {
			flags = []string{store.FlagSeen}
		}
		body := fmt.Sprintf("Subject: %d\r\n\r\nbody %d\r\n", i, i)
		msgs = append(msgs, store.AppendMessage{Body: strings.NewReader(body), Size: int64(len(body)), Flags: flags})
	}
	if _, err := st.Append(t.Context(), user, mailbox, msgs); err != nil {
		t.Fatal(err)
	}
}

// sameAsStore fails unless v holds what the store reads afresh.
func sameAsStore(t *testing.T, st store.Mail, user int64, mailbox string, v *view, status store.MailboxStatus) {
	t.Helper()
	want, err := st.MailboxState(t.Context(), user, mailbox)
	if err != nil {
		t.Fatal(err)
	}
	if v.id != want.ID || v.uidValidity != want.UIDValidity || v.highest != want.HighestModSeq {
		t.Fatalf("view is mailbox %d/%d at MODSEQ %d, the store has %d/%d at %d", v.id, v.uidValidity, v.highest, want.ID, want.UIDValidity, want.HighestModSeq)
	}
	if status.UIDNext != want.UIDNext || status.RecentUID != want.RecentUID || status.HighestModSeq != want.HighestModSeq {
		t.Fatalf("status %+v, the store has %+v", status, want.MailboxStatus)
	}
	if len(v.msgs) != len(want.States) {
		t.Fatalf("view has %d messages, the store %d", len(v.msgs), len(want.States))
	}
	for i, m := range want.States {
		got := v.msgs[i]
		if got.UID != m.UID || got.ModSeq != m.ModSeq || !slices.Equal(v.flags.sets[got.fs], m.Flags) {
			t.Fatalf("message %d: view has UID %d MODSEQ %d flags %q, the store UID %d MODSEQ %d flags %q",
				i+1, got.UID, got.ModSeq, v.flags.sets[got.fs], m.UID, m.ModSeq, m.Flags)
		}
	}
}

// TestViewsFollowChanges: SELECT's kept view, brought up to date from the
// store's changes, is what a fresh read of the mailbox gives, whatever
// changed in between; a view that was kept is not changed by it.
func TestViewsFollowChanges(t *testing.T) {
	const n = viewMin + 200
	tests := []struct {
		name   string
		change func(t *testing.T, st *sqlite.Store, user int64)
	}{
		{"nothing", func(t *testing.T, st *sqlite.Store, user int64) {}},
		{"flags of old and new messages", func(t *testing.T, st *sqlite.Store, user int64) {
			if _, err := st.SetFlags(t.Context(), user, "INBOX", store.FlagChange{UIDs: []uint32{1, 2, 500, n}, Op: store.FlagsAdd, Flags: []string{store.FlagFlagged, "$Label1"}}); err != nil {
				t.Fatal(err)
			}
			if _, err := st.SetFlags(t.Context(), user, "INBOX", store.FlagChange{UIDs: []uint32{3}, Op: store.FlagsReplace}); err != nil {
				t.Fatal(err)
			}
		}},
		{"expunges at the start, middle and end", func(t *testing.T, st *sqlite.Store, user int64) {
			if _, err := st.Expunge(t.Context(), user, "INBOX", []uint32{1, 7, 8, 600, n}); err != nil {
				t.Fatal(err)
			}
		}},
		{"new messages", func(t *testing.T, st *sqlite.Store, user int64) {
			appendN(t, st, user, "INBOX", n, 30)
		}},
		{"new messages, some expunged, flags changed", func(t *testing.T, st *sqlite.Store, user int64) {
			appendN(t, st, user, "INBOX", n, 30)
			if _, err := st.Expunge(t.Context(), user, "INBOX", []uint32{2, n + 3, n + 30}); err != nil {
				t.Fatal(err)
			}
			if _, err := st.SetFlags(t.Context(), user, "INBOX", store.FlagChange{UIDs: []uint32{n + 1, 4}, Op: store.FlagsAdd, Flags: []string{store.FlagDeleted}}); err != nil {
				t.Fatal(err)
			}
		}},
		{"every message expunged", func(t *testing.T, st *sqlite.Store, user int64) {
			uids := make([]uint32, n)
			for i := range uids {
				uids[i] = uint32(i + 1)
			}
			if _, err := st.Expunge(t.Context(), user, "INBOX", uids); err != nil {
				t.Fatal(err)
			}
		}},
		{"recent claimed", func(t *testing.T, st *sqlite.Store, user int64) {
			if _, err := st.ClaimRecent(t.Context(), user, "INBOX"); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, user := viewStore(t, n)
			var vs views
			v1, status, err := vs.load(t.Context(), st, user, "INBOX")
			if err != nil {
				t.Fatal(err)
			}
			sameAsStore(t, st, user, "INBOX", v1, status)
			before := slices.Clone(v1.msgs)
			tt.change(t, st, user)
			v2, status, err := vs.load(t.Context(), st, user, "INBOX")
			if err != nil {
				t.Fatal(err)
			}
			sameAsStore(t, st, user, "INBOX", v2, status)
			if !slices.Equal(before, v1.msgs) {
				t.Fatal("bringing the view up to date changed the view sessions may hold")
			}
			if vs.m[viewKey{user, "INBOX"}] != v2 {
				t.Fatal("the newer view was not kept")
			}
		})
	}
}

// TestViewsMailboxMadeAgain: a mailbox deleted and made again under the
// same name is read afresh, not from the view of the old one.
func TestViewsMailboxMadeAgain(t *testing.T) {
	ctx := t.Context()
	st, user := viewStore(t, 0)
	if _, err := st.CreateMailbox(ctx, user, "Big", ""); err != nil {
		t.Fatal(err)
	}
	appendN(t, st, user, "Big", 0, viewMin)
	var vs views
	old, _, err := vs.load(ctx, st, user, "Big")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteMailbox(ctx, user, "Big"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := vs.load(ctx, st, user, "Big"); err == nil {
		t.Fatal("a deleted mailbox loaded from its view")
	}
	if _, err := st.CreateMailbox(ctx, user, "Big", ""); err != nil {
		t.Fatal(err)
	}
	appendN(t, st, user, "Big", 0, 5)
	v, status, err := vs.load(ctx, st, user, "Big")
	if err != nil {
		t.Fatal(err)
	}
	if v.uidValidity == old.uidValidity {
		t.Fatal("the mailbox made again has the old UIDVALIDITY")
	}
	sameAsStore(t, st, user, "Big", v, status)
}

// TestViewsBounded: views are kept only for large mailboxes, and the
// least recently used go beyond the bound.
func TestViewsBounded(t *testing.T) {
	ctx := t.Context()
	st, user := viewStore(t, 10)
	vs := views{max: 2 * viewMin}
	for _, name := range []string{"A", "B", "C"} {
		if _, err := st.CreateMailbox(ctx, user, name, ""); err != nil {
			t.Fatal(err)
		}
		appendN(t, st, user, name, 0, viewMin)
	}
	load := func(name string) {
		if _, _, err := vs.load(ctx, st, user, name); err != nil {
			t.Fatal(err)
		}
	}
	load("INBOX")
	if len(vs.m) != 0 {
		t.Fatal("the view of a small mailbox was kept")
	}
	load("A")
	load("B")
	load("A") // B is now the least recently used
	load("C")
	if vs.held > vs.max {
		t.Fatalf("views hold %d messages, more than %d", vs.held, vs.max)
	}
	if vs.m[viewKey{user, "B"}] != nil || vs.m[viewKey{user, "A"}] == nil || vs.m[viewKey{user, "C"}] == nil {
		t.Fatalf("kept %v, want A and C", slices.Collect(func(yield func(string) bool) {
			for k := range vs.m {
				if !yield(k.name) {
					return
				}
			}
		}))
	}
}
