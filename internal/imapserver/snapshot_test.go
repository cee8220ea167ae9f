package imapserver

import (
	"slices"
	"testing"

	"mailroom/internal/store"
)

// TestViewsFromSnapshot: after a restart (no view kept), a mailbox's view
// is its saved snapshot brought up to date, the same as a fresh read; a
// snapshot that does not decode is passed over.
func TestViewsFromSnapshot(t *testing.T) {
	const n = viewMin + 100
	st, user := viewStore(t, n)
	ctx := t.Context()
	var first views
	v1, _, err := first.load(ctx, st, user, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	sn, err := st.Snapshot(ctx, user, "INBOX")
	if err != nil || sn.ModSeq != v1.highest {
		t.Fatalf("no snapshot saved at the view's MODSEQ %d: %+v, %v", v1.highest, sn.ModSeq, err)
	}
	appendN(t, st, user, "INBOX", n, 10)
	if _, err := st.Expunge(ctx, user, "INBOX", []uint32{3, n + 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.SetFlags(ctx, user, "INBOX", store.FlagChange{UIDs: []uint32{1, n + 5}, Op: store.FlagsAdd, Flags: []string{"$Later"}}); err != nil {
		t.Fatal(err)
	}
	v2 := loadAfterRestart(t, st, user)
	if v2.snapModSeq != sn.ModSeq {
		t.Errorf("the view was not made from the snapshot at %d (it says %d)", sn.ModSeq, v2.snapModSeq)
	}

	// A snapshot that does not decode (here one claiming a MODSEQ the
	// mailbox has not reached): read afresh, and saved anew.
	if err := st.SaveSnapshot(ctx, user, store.Snapshot{MailboxID: v2.id, ModSeq: v2.highest + 1, Data: []byte{snapshotVersion, 0xff}}); err != nil {
		t.Fatal(err)
	}
	v3 := loadAfterRestart(t, st, user)
	sn, err = st.Snapshot(ctx, user, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decodeView(sn.Data, sn.MailboxID, sn.ModSeq); err != nil || sn.ModSeq != v3.highest {
		t.Errorf("the snapshot that did not decode is still there (MODSEQ %d, view at %d): %v", sn.ModSeq, v3.highest, err)
	}
}

// TestViewsPreload: after a start the views of the snapshots saved last
// are kept before any SELECT, up to date with the changes since and
// within the bound; a mailbox deleted since, a snapshot that does not
// decode and a view a session already loaded are left alone.
func TestViewsPreload(t *testing.T) {
	const n = viewMin + 50
	st, user := viewStore(t, n)
	ctx := t.Context()
	for _, name := range []string{"Work", "Gone", "Broken"} {
		if _, err := st.CreateMailbox(ctx, user, name, ""); err != nil {
			t.Fatal(err)
		}
		appendN(t, st, user, name, 0, n)
	}
	var before views
	for _, name := range []string{"Gone", "Broken", "Work", "INBOX"} { // INBOX saved last
		if _, _, err := before.load(ctx, st, user, name); err != nil {
			t.Fatal(err)
		}
	}
	appendN(t, st, user, "INBOX", n, 5)
	if _, err := st.SetFlags(ctx, user, "INBOX", store.FlagChange{UIDs: []uint32{2}, Op: store.FlagsAdd, Flags: []string{"$Later"}}); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteMailbox(ctx, user, "Gone"); err != nil {
		t.Fatal(err)
	}
	broken, _ := st.Snapshot(ctx, user, "Broken")
	if err := st.SaveSnapshot(ctx, user, store.Snapshot{MailboxID: broken.MailboxID, ModSeq: broken.ModSeq, Data: []byte{snapshotVersion}}); err != nil {
		t.Fatal(err)
	}

	// Room for one: INBOX, saved last.
	small := views{max: n + 10}
	if mailboxes, _, err := small.preload(ctx, st); err != nil || mailboxes != 1 || small.get(viewKey{user, "INBOX"}) == nil {
		t.Fatalf("preload with room for one view kept %d, %v; want INBOX", mailboxes, err)
	}

	// Room for two: INBOX and Work; Broken's does not decode.
	after := views{max: 2*n + 10}
	mailboxes, messages, err := after.preload(ctx, st)
	if err != nil || mailboxes != 2 || messages != 2*n+5 {
		t.Fatalf("preload = %d mailboxes, %d messages, %v; want INBOX and Work, %d messages", mailboxes, messages, err, 2*n+5)
	}
	for _, name := range []string{"INBOX", "Work"} {
		v := after.get(viewKey{user, name})
		if v == nil {
			t.Fatalf("%s was not preloaded", name)
		}
		status, err := st.Changes(ctx, user, name, v.highest)
		if err != nil {
			t.Fatal(err)
		}
		sameAsStore(t, st, user, name, v, status.MailboxStatus)
	}
	if after.get(viewKey{user, "Broken"}) != nil || after.get(viewKey{user, "Gone"}) != nil {
		t.Error("a snapshot that does not decode, or a deleted mailbox's, was preloaded")
	}

	// A view kept already (a session's SELECT was quicker) stays.
	var busy views
	v, _, err := busy.load(ctx, st, user, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := busy.preload(ctx, st); err != nil {
		t.Fatal(err)
	}
	if busy.get(viewKey{user, "INBOX"}) != v {
		t.Error("preload replaced a view a session had loaded")
	}
}

// loadAfterRestart loads INBOX's view as a server that keeps none yet,
// and checks it against a fresh read.
func loadAfterRestart(t *testing.T, st store.Mail, user int64) *view {
	t.Helper()
	var restarted views
	v, status, err := restarted.load(t.Context(), st, user, "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	sameAsStore(t, st, user, "INBOX", v, status)
	return v
}

// FuzzDecodeView: any octets decode to an error or to a view whose UIDs
// ascend and whose flag set indexes hold, which encodes to the same
// octets.
func FuzzDecodeView(f *testing.F) {
	v := &view{uidValidity: 7}
	for i, flags := range [][]string{nil, {store.FlagSeen}, {store.FlagSeen, "$Work"}} {
		v.msgs = append(v.msgs, msg{UID: uint32(3*i + 1), fs: v.flags.of(flags), ModSeq: int64(i + 2)})
	}
	f.Add(encodeView(v))
	f.Add([]byte{snapshotVersion})
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := decodeView(data, 1, 1)
		if err != nil {
			return
		}
		for i, m := range v.msgs {
			if i > 0 && m.UID <= v.msgs[i-1].UID || int(m.fs) >= len(v.flags.sets) {
				t.Fatalf("message %d: UID %d after %d, flag set %d of %d", i, m.UID, v.msgs[max(i-1, 0)].UID, m.fs, len(v.flags.sets))
			}
		}
		// Numbers may have been written longer than needed: the view, not
		// the octets, must come back.
		again, err := decodeView(encodeView(v), 1, 1)
		if err != nil || again.uidValidity != v.uidValidity || !slices.Equal(again.msgs, v.msgs) ||
			!slices.EqualFunc(again.flags.sets, v.flags.sets, slices.Equal[[]string]) {
			t.Fatalf("encoded and decoded again: %v, %+v, was %+v", err, again, v)
		}
	})
}
