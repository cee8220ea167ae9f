package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"mailroom/internal/store"
)

func acceptTests() []test {
	return []test{
		{"one message to two users lands in each INBOX under UID 1", testAcceptTwoUsers},
		{"UIDs and MODSEQs ascend in each mailbox independently", testUIDsAscend},
		{"UsedBytes grows by the size of each copy; Usage adds them up", testUsedBytes},
		{"a copy over its quota fails with a QuotaError and leaves nothing", testAcceptOverQuota},
		{"a message to a missing user or mailbox fails with ErrNotFound and leaves nothing", testAcceptMissingTarget},
		{"a body above the inline limit round-trips byte for byte", testBigBody},
		{"the stored size is counted from the body when Message.Size is unset", testSizeUnset},
		{"a message without a date is dated when accepted", testReceivedUnset},
		{"a copy without a prefix is the body alone", testNoPrefix},
		{"concurrent Accepts give each mailbox UIDs 1..N without gaps or duplicates", testConcurrentAccept},
	}
}

func readTests() []test {
	return []test{
		{"OpenMessage returns the prefix and body exactly, with the message's details", testOpenMessage},
		{"Messages lists a mailbox in UID order with From, Subject, date and size", testMessagesList},
		{"a missing message or mailbox is ErrNotFound to OpenMessage", testOpenMissing},
		{"Expunge removes copies, gives their space back and keeps a body another copy uses", testExpunge},
	}
}

func testExpunge(t *testing.T, s store.Store) {
	ctx := t.Context()
	alice, bob := addUser(t, s, "alice@a.example"), addUser(t, s, "bob@a.example")
	accept(t, s, message(textBody("one"), "one", inbox(alice)))
	accept(t, s, message(bigBody(), "shared", inbox(alice), inbox(bob)))
	accept(t, s, message(textBody("three"), "three", inbox(alice)))
	before := user(t, s, alice.Address).UsedBytes
	modseq := status(t, s, alice.ID, store.Inbox).HighestModSeq
	removed, err := s.Expunge(ctx, alice.ID, store.Inbox, []uint32{2, 1, 99})
	if err != nil || !slices.Equal(removed, []uint32{2, 1}) {
		t.Fatalf("Expunge(2, 1, 99) = %v, %v; want [2 1]", removed, err)
	}
	var uids []uint32
	for _, m := range list(t, s, alice.ID, store.Inbox) {
		uids = append(uids, m.UID)
	}
	if !slices.Equal(uids, []uint32{3}) {
		t.Errorf("alice's INBOX after the expunge holds UIDs %v, want [3]", uids)
	}
	want := before - int64(len(textBody("one"))+len(bigBody())+2*len(inbox(alice).Prefix))
	if got := user(t, s, alice.Address).UsedBytes; got != want {
		t.Errorf("UsedBytes after the expunge = %d, want %d", got, want)
	}
	if st := status(t, s, alice.ID, store.Inbox); st.HighestModSeq <= modseq || st.UIDNext != 4 || st.Messages != 1 {
		t.Errorf("status after the expunge = %+v: MODSEQ must grow past %d, UIDNext stay 4", st, modseq)
	}
	rc, _, err := s.OpenMessage(ctx, alice.ID, store.Inbox, 2)
	if rc != nil {
		rc.Close()
	}
	wantErr(t, "OpenMessage of an expunged message", err, store.ErrNotFound)
	// bob's copy of the shared message is whole.
	rc, _, err = s.OpenMessage(ctx, bob.ID, store.Inbox, 1)
	if err != nil {
		t.Fatalf("bob's copy of the shared message: %v", err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, append(inbox(bob).Prefix, bigBody()...)) {
		t.Error("bob's copy of the shared message changed when alice's was expunged")
	}
	_, err = s.Expunge(ctx, alice.ID, "No such mailbox", []uint32{1})
	wantErr(t, "Expunge from a missing mailbox", err, store.ErrNotFound)
}

func testAcceptTwoUsers(t *testing.T, s store.Store) {
	alice := addUser(t, s, "alice@a.example")
	bob := addUser(t, s, "bob@b.example")
	body := textBody("hello")
	m := message(body, "hello", inbox(alice), inbox(bob))
	accept(t, s, m)
	for _, u := range []store.User{alice, bob} {
		ms := list(t, s, u.ID, store.Inbox)
		if len(ms) != 1 || ms[0].UID != 1 || ms[0].QueueID != m.QueueID {
			t.Errorf("%s's INBOX = %+v, want one message, UID 1, queue ID %s", u.Address, ms, m.QueueID)
			continue
		}
		got, _ := read(t, s, u.ID, store.Inbox, 1)
		if want := append(inbox(u).Prefix, body...); !bytes.Equal(got, want) {
			t.Errorf("%s's copy = %q, want %q", u.Address, got, want)
		}
		if st := status(t, s, u.ID, store.Inbox); st.UIDNext != 2 || st.Messages != 1 {
			t.Errorf("%s's INBOX status = %+v, want UIDNext 2, 1 message", u.Address, st)
		}
	}
}

func testUIDsAscend(t *testing.T, s store.Store) {
	alice := addUser(t, s, "alice@a.example")
	bob := addUser(t, s, "bob@a.example")
	// Bob receives some messages in between, which must not disturb
	// alice's numbering.
	accept(t, s, message(textBody("bob 1"), "bob 1", inbox(bob)))
	accept(t, s, message(textBody("bob 2"), "bob 2", inbox(bob)))
	validity := status(t, s, alice.ID, store.Inbox).UIDValidity
	lastHighest := status(t, s, alice.ID, store.Inbox).HighestModSeq
	var lastModSeq int64
	for i := 1; i <= 3; i++ {
		subject := fmt.Sprintf("alice %d", i)
		accept(t, s, message(textBody(subject), subject, inbox(alice)))
		accept(t, s, message(textBody("bob again"), "bob again", inbox(bob)))

		ms := list(t, s, alice.ID, store.Inbox)
		if len(ms) != i {
			t.Fatalf("after %d messages, alice's INBOX lists %d", i, len(ms))
		}
		last := ms[i-1]
		if last.UID != uint32(i) || last.Subject != subject {
			t.Errorf("message %d: UID %d, subject %q; want UID %d, %q", i, last.UID, last.Subject, i, subject)
		}
		if last.ModSeq <= lastModSeq {
			t.Errorf("message %d: MODSEQ %d, not above the previous %d", i, last.ModSeq, lastModSeq)
		}
		lastModSeq = last.ModSeq
		st := status(t, s, alice.ID, store.Inbox)
		if st.UIDNext != uint32(i+1) || st.Messages != i || st.UIDValidity != validity {
			t.Errorf("after message %d, status = %+v, want UIDNext %d, %d messages, UIDValidity %d", i, st, i+1, i, validity)
		}
		// RFC 7162 3.1.1: the highest mod-sequence of all messages.
		if st.HighestModSeq <= lastHighest || st.HighestModSeq != last.ModSeq {
			t.Errorf("after message %d, HighestModSeq = %d, want %d (above %d)", i, st.HighestModSeq, last.ModSeq, lastHighest)
		}
		lastHighest = st.HighestModSeq
	}
	if n := len(list(t, s, bob.ID, store.Inbox)); n != 5 {
		t.Errorf("bob's INBOX lists %d messages, want 5", n)
	}
}

func testUsedBytes(t *testing.T, s store.Store) {
	before, err := s.Usage(t.Context())
	if err != nil || before.Users != 0 || before.MailboxBytes != 0 {
		t.Fatalf("Usage of an empty store = %+v, %v", before, err)
	}
	alice := addUser(t, s, "alice@a.example")
	bob := addUser(t, s, "bob@a.example")
	var want int64
	for i, body := range [][]byte{textBody("one"), textBody("two, a little longer"), bigBody()} {
		m := message(body, fmt.Sprint(i), inbox(alice), inbox(bob))
		accept(t, s, m)
		want += int64(len(body) + len(inbox(alice).Prefix))
		if got := user(t, s, alice.Address).UsedBytes; got != want {
			t.Errorf("after message %d, UsedBytes = %d, want %d", i, got, want)
		}
	}
	var sum int64
	for _, mi := range list(t, s, alice.ID, store.Inbox) {
		sum += mi.Size
	}
	if sum != want {
		t.Errorf("the sizes listed add up to %d, want UsedBytes %d", sum, want)
	}
	// Usage: two users, each with every message; the database holds at
	// least the large body (once) beyond what it held before.
	u, err := s.Usage(t.Context())
	total := want + user(t, s, bob.Address).UsedBytes
	if err != nil || u.Users != 2 || u.MailboxBytes != total || u.DatabaseBytes < before.DatabaseBytes+int64(len(bigBody())) {
		t.Errorf("Usage = %+v, %v; want 2 users, %d mailbox bytes, and at least %d database bytes", u, err, total, before.DatabaseBytes+int64(len(bigBody())))
	}
}

func testAcceptMissingTarget(t *testing.T, s store.Store) {
	alice := addUser(t, s, "alice@a.example")
	accept(t, s, message(textBody("first"), "first", inbox(alice)))
	before := status(t, s, alice.ID, store.Inbox)
	for _, c := range []struct {
		name   string
		target store.LocalTarget
	}{
		{"a missing user", store.LocalTarget{UserID: alice.ID + 1000, Mailbox: store.Inbox}},
		{"a missing mailbox", store.LocalTarget{UserID: alice.ID, Mailbox: "No such mailbox"}},
	} {
		for _, body := range [][]byte{textBody("doomed"), bigBody()} {
			// The good copy comes first, so that it is already written
			// when the bad one fails.
			err := s.Accept(t.Context(), message(body, "doomed", inbox(alice), c.target))
			wantErr(t, "Accept to "+c.name, err, store.ErrNotFound)
		}
	}
	after := status(t, s, alice.ID, store.Inbox)
	if after.UIDNext != before.UIDNext || after.Messages != before.Messages || after.HighestModSeq != before.HighestModSeq {
		t.Errorf("after the failed Accepts, status = %+v, want it unchanged from %+v", after, before)
	}
	if ms := list(t, s, alice.ID, store.Inbox); len(ms) != 1 || ms[0].Subject != "first" {
		t.Errorf("after the failed Accepts, the INBOX lists %+v, want only the first message", ms)
	}
	if got, want := user(t, s, alice.Address).UsedBytes, int64(len(textBody("first"))+len(inbox(alice).Prefix)); got != want {
		t.Errorf("after the failed Accepts, UsedBytes = %d, want %d", got, want)
	}
	// The next message takes the next UID, as if nothing had happened.
	accept(t, s, message(textBody("second"), "second", inbox(alice)))
	if ms := list(t, s, alice.ID, store.Inbox); len(ms) != 2 || ms[1].UID != before.UIDNext {
		t.Errorf("the next message got %+v, want UID %d", ms, before.UIDNext)
	}
}

func testBigBody(t *testing.T, s store.Store) {
	alice := addUser(t, s, "alice@a.example")
	bob := addUser(t, s, "bob@a.example")
	body := bigBody()
	accept(t, s, message(body, "big", inbox(alice), inbox(bob)))
	for _, u := range []store.User{alice, bob} {
		got, mi := read(t, s, u.ID, store.Inbox, 1)
		want := append(inbox(u).Prefix, body...)
		if !bytes.Equal(got, want) {
			t.Errorf("%s's copy: %d bytes differing from the %d delivered", u.Address, len(got), len(want))
		}
		if mi.Size != int64(len(want)) {
			t.Errorf("%s's copy: Size %d, want %d", u.Address, mi.Size, len(want))
		}
	}
}

func testSizeUnset(t *testing.T, s store.Store) {
	alice := addUser(t, s, "alice@a.example")
	for i, body := range [][]byte{textBody("small"), bigBody()} {
		m := message(body, "unsized", inbox(alice))
		m.Size = 0
		accept(t, s, m)
		got, mi := read(t, s, alice.ID, store.Inbox, uint32(i+1))
		want := append(inbox(alice).Prefix, body...)
		if !bytes.Equal(got, want) || mi.Size != int64(len(want)) {
			t.Errorf("message %d: read %d bytes, Size %d; want the %d delivered", i+1, len(got), mi.Size, len(want))
		}
	}
}

func testNoPrefix(t *testing.T, s store.Store) {
	alice := addUser(t, s, "alice@a.example")
	body := textBody("bare")
	accept(t, s, message(body, "bare", store.LocalTarget{UserID: alice.ID, Mailbox: store.Inbox}))
	got, mi := read(t, s, alice.ID, store.Inbox, 1)
	if !bytes.Equal(got, body) || mi.Size != int64(len(body)) {
		t.Errorf("read %q (Size %d), want the body alone", got, mi.Size)
	}
}

func testReceivedUnset(t *testing.T, s store.Store) {
	alice := addUser(t, s, "alice@a.example")
	m := message(textBody("undated"), "undated", inbox(alice))
	m.Received = time.Time{}
	start := time.Now()
	accept(t, s, m)
	_, mi := read(t, s, alice.ID, store.Inbox, 1)
	wantRecent(t, "Date", mi.Date, start)
}

func testConcurrentAccept(t *testing.T, s store.Store) {
	const senders, perSender = 50, 20
	users := make([]store.User, 5)
	for i := range users {
		users[i] = addUser(t, s, fmt.Sprintf("user%d@a.example", i))
	}
	// Sender g delivers each message to two users, g and g+1 (mod 5), so
	// that every mailbox is contended by several senders at once.
	var mu sync.Mutex
	sent := map[int64][]string{} // user ID: queue IDs
	var wg sync.WaitGroup
	for g := range senders {
		wg.Go(func() {
			for i := range perSender {
				a, b := users[g%len(users)], users[(g+1)%len(users)]
				subject := fmt.Sprintf("sender %d message %d", g, i)
				m := message(textBody(subject), subject, inbox(a), inbox(b))
				if err := s.Accept(t.Context(), m); err != nil {
					t.Errorf("Accept(%s): %v", subject, err)
					return
				}
				mu.Lock()
				sent[a.ID] = append(sent[a.ID], m.QueueID)
				sent[b.ID] = append(sent[b.ID], m.QueueID)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for _, u := range users {
		n := len(sent[u.ID])
		ms := list(t, s, u.ID, store.Inbox)
		var got []string
		modseqs := map[int64]bool{}
		for i, mi := range ms {
			if mi.UID != uint32(i+1) {
				t.Fatalf("%s: message %d of %d has UID %d, want %d (UIDs 1..N without gaps)", u.Address, i+1, len(ms), mi.UID, i+1)
			}
			if modseqs[mi.ModSeq] {
				t.Errorf("%s: MODSEQ %d used twice", u.Address, mi.ModSeq)
			}
			modseqs[mi.ModSeq] = true
			got = append(got, mi.QueueID)
		}
		slices.Sort(got)
		slices.Sort(sent[u.ID])
		if !slices.Equal(got, sent[u.ID]) {
			t.Errorf("%s: INBOX holds %d messages, want the %d sent to it", u.Address, len(got), n)
		}
		if st := status(t, s, u.ID, store.Inbox); st.UIDNext != uint32(n+1) || st.Messages != n {
			t.Errorf("%s: status %+v, want UIDNext %d, %d messages", u.Address, st, n+1, n)
		}
	}
}

func testOpenMessage(t *testing.T, s store.Store) {
	alice := addUser(t, s, "alice@a.example")
	body := textBody("details")
	m := message(body, "details", inbox(alice))
	m.SMTPEnvelope.SMTPUTF8 = true
	accept(t, s, m)
	got, mi := read(t, s, alice.ID, store.Inbox, 1)
	want := append(inbox(alice).Prefix, body...)
	if !bytes.Equal(got, want) {
		t.Errorf("OpenMessage read %q, want %q", got, want)
	}
	if mi.UserID != alice.ID || mi.Mailbox != store.Inbox || mi.UID != 1 || mi.QueueID != m.QueueID {
		t.Errorf("MessageInfo = %+v, want user %d, INBOX, UID 1, queue ID %s", mi, alice.ID, m.QueueID)
	}
	if mi.Size != int64(len(want)) {
		t.Errorf("Size = %d, want %d (prefix and body)", mi.Size, len(want))
	}
	if !mi.Date.Equal(m.Received) {
		t.Errorf("Date = %v, want the internal date %v", mi.Date, m.Received)
	}
	if mi.From != m.From || mi.Subject != m.Subject {
		t.Errorf("From, Subject = %q, %q; want %q, %q", mi.From, mi.Subject, m.From, m.Subject)
	}
	if mi.ModSeq == 0 || mi.ModSeq != status(t, s, alice.ID, store.Inbox).HighestModSeq {
		t.Errorf("ModSeq = %d, want the mailbox's HighestModSeq", mi.ModSeq)
	}
	env := mi.SMTPEnvelope
	if env.MailFrom != m.SMTPEnvelope.MailFrom || env.EnvID != m.SMTPEnvelope.EnvID || !env.SMTPUTF8 ||
		len(env.Recipients) != 1 || env.Recipients[0].Address != m.SMTPEnvelope.Recipients[0].Address {
		t.Errorf("Envelope = %+v, want %+v", env, m.SMTPEnvelope)
	}
}

func testMessagesList(t *testing.T, s store.Store) {
	alice := addUser(t, s, "alice@a.example")
	subjects := []string{"first", "second", "third"}
	for _, subject := range subjects {
		m := message(textBody(subject), subject, inbox(alice))
		m.From = "From " + subject
		accept(t, s, m)
	}
	ms := list(t, s, alice.ID, store.Inbox)
	if len(ms) != len(subjects) {
		t.Fatalf("Messages lists %d, want %d", len(ms), len(subjects))
	}
	for i, mi := range ms {
		want := store.MessageInfo{
			UserID: alice.ID, Mailbox: store.Inbox, UID: uint32(i + 1),
			Size: int64(len(inbox(alice).Prefix) + len(textBody(subjects[i]))),
			From: "From " + subjects[i], Subject: subjects[i],
		}
		if mi.UserID != want.UserID || mi.Mailbox != want.Mailbox || mi.UID != want.UID ||
			mi.Size != want.Size || mi.From != want.From || mi.Subject != want.Subject || !mi.Date.Equal(received) {
			t.Errorf("Messages[%d] = %+v, want %+v dated %v", i, mi, want, received)
		}
	}
}

func testOpenMissing(t *testing.T, s store.Store) {
	alice := addUser(t, s, "alice@a.example")
	accept(t, s, message(textBody("only"), "only", inbox(alice)))
	for _, c := range []struct {
		name    string
		userID  int64
		mailbox string
		uid     uint32
	}{
		{"a UID not yet given", alice.ID, store.Inbox, 2},
		{"UID 0", alice.ID, store.Inbox, 0},
		{"a missing mailbox", alice.ID, "No such mailbox", 1},
		{"a missing user", alice.ID + 1000, store.Inbox, 1},
	} {
		rc, _, err := s.OpenMessage(t.Context(), c.userID, c.mailbox, c.uid)
		if rc != nil {
			rc.Close()
		}
		wantErr(t, "OpenMessage of "+c.name, err, store.ErrNotFound)
	}
}

func testAcceptOverQuota(t *testing.T, s store.Store) {
	ctx := t.Context()
	body := textBody("quota")
	size := int64(len(body) + len(inbox(store.User{Address: "alice@a.example"}).Prefix))
	addDomain(t, s, "a.example")
	quota := size + size/2 // room for one copy, not two
	alice, err := s.AddUser(ctx, store.User{Address: "alice@a.example", QuotaBytes: quota})
	if err != nil {
		t.Fatal(err)
	}
	if alice.Quota != quota {
		t.Errorf("the new user's Quota = %d, want %d", alice.Quota, quota)
	}
	bob := addUser(t, s, "bob@a.example")
	first := inbox(alice)
	accept(t, s, message(body, "fits", first))
	err = s.Accept(ctx, message(body, "too much", first, inbox(bob)))
	var qe *store.QuotaError
	if !errors.As(err, &qe) || qe.UserID != alice.ID || qe.Used != size || qe.Quota != quota || qe.Size != size {
		t.Fatalf("Accept over quota = %v, want a QuotaError for alice", err)
	}
	if u, _ := s.User(ctx, alice.Address); u.UsedBytes != size {
		t.Errorf("alice's UsedBytes = %d after the refused copy, want %d", u.UsedBytes, size)
	}
	if ms, _ := s.Messages(ctx, bob.ID, store.Inbox); len(ms) != 0 {
		t.Errorf("bob got %d messages from a refused Accept", len(ms))
	}
}
