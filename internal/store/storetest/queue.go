package storetest

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"mailroom/internal/store"
)

func queueTests() []test {
	return []test{
		{"ids are never given twice (queue entries, messages, mailboxes)", testIDsNotReused},
		{"remote recipients are queued with the message and come due", testQueueAccept},
		{"results move entries on, and a message all done with is removed", testQueueResults},
		{"held entries are not due; retry makes them due; delete removes them", testQueueControls},
		{"claimed entries are not claimed again until released or recorded", testQueueClaims},
		{"a message with a local copy outlives its delivered queue entries", testQueueLocalCopy},
		{"queue stats count entries by state, held and sending", testQueueStats},
	}
}

func testQueueStats(t *testing.T, s store.Store) {
	ctx := t.Context()
	if n, err := s.QueueStats(ctx); err != nil || n != (store.QueueStats{}) {
		t.Fatalf("QueueStats of an empty queue = %+v, %v", n, err)
	}
	a := queuedMessage(textBody("a"), "a@remote.example", "b@remote.example", "c@remote.example")
	b := queuedMessage(textBody("b"), "d@remote.example")
	b.QueueID = a.QueueID + "b"
	a.Received = time.Now().Add(-2 * time.Hour).Truncate(time.Millisecond)
	b.Received = time.Now().Add(-time.Hour)
	accept(t, s, a)
	accept(t, s, b)
	if _, err := s.SetHeld(ctx, b.QueueID, true); err != nil {
		t.Fatal(err)
	}
	due, err := s.ClaimDue(ctx, time.Now(), time.Minute, 10)
	if err != nil || len(due) != 3 {
		t.Fatalf("ClaimDue = %+v, %v", due, err)
	}
	byAddr := map[string]int64{}
	for _, e := range due {
		byAddr[e.Recipient.Address] = e.ID
	}
	err = s.RecordResults(ctx, []store.QueueResult{
		{ID: byAddr["a@remote.example"], State: store.StateDelivered},
		{ID: byAddr["b@remote.example"], State: store.StateDeferred, NextAttempt: time.Now().Add(time.Hour), Error: "451 try later"},
	})
	if err != nil {
		t.Fatal(err)
	}
	// c: claimed, still pending; d: pending and held; a: delivered, kept
	// while its message has entries waiting; b: deferred.
	// The oldest waiting entries are a's (b and c).
	want := store.QueueStats{Pending: 2, Deferred: 1, Delivered: 1, Held: 1, Sending: 1, Total: 4, Oldest: a.Received}
	if n, err := s.QueueStats(ctx); err != nil || n != want {
		t.Errorf("QueueStats = %+v, %v; want %+v", n, err, want)
	}
	// Once a's entries are done, the oldest is b's.
	err = s.RecordResults(ctx, []store.QueueResult{
		{ID: byAddr["b@remote.example"], State: store.StateFailed, Error: "550 no"},
		{ID: byAddr["c@remote.example"], State: store.StateDelivered},
	})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.QueueStats(ctx); err != nil || !n.Oldest.Equal(b.Received) {
		t.Errorf("QueueStats.Oldest = %v, %v; want %v", n.Oldest, err, b.Received)
	}
}

func queuedMessage(body []byte, to ...string) *store.Message {
	m := message(body, "queued")
	for _, a := range to {
		_, d, _ := bytes.Cut([]byte(a), []byte("@"))
		m.Remote = append(m.Remote, store.QueuedRecipient{Address: a, Domain: string(d), Notify: []string{"FAILURE", "DELAY"}, ORcpt: "rfc822;" + a})
	}
	return m
}

func testQueueAccept(t *testing.T, s store.Store) {
	ctx := t.Context()
	body := textBody("queued")
	m := queuedMessage(body, "x@remote.example", "y@other.example")
	m.Received = time.Now().Add(-time.Minute)
	accept(t, s, m)
	es, err := s.QueueEntries(ctx, "")
	if err != nil || len(es) != 2 {
		t.Fatalf("QueueEntries = %v, %v", es, err)
	}
	e := es[0]
	if e.QueueID != m.QueueID || e.State != store.StatePending || e.Recipient.Domain != "remote.example" ||
		len(e.Recipient.Notify) != 2 || e.Recipient.ORcpt != "rfc822;x@remote.example" || e.MailFrom != "sender@remote.example" || e.Size != int64(len(body)) {
		t.Errorf("entry: %+v", e)
	}
	if due, _ := s.ClaimDue(ctx, m.Received.Add(-time.Hour), time.Minute, 10); len(due) != 0 {
		t.Errorf("%d entries due before they were queued", len(due))
	}
	if next, ok, err := s.NextDue(ctx); err != nil || !ok || next.After(time.Now()) {
		t.Errorf("NextDue = %v, %v, %v", next, ok, err)
	}
	due, err := s.ClaimDue(ctx, time.Now(), time.Minute, 10)
	if err != nil || len(due) != 2 || !due[0].Active || due[0].Recipient.Address != e.Recipient.Address {
		t.Fatalf("ClaimDue = %+v, %v", due, err)
	}
	rc, err := s.OpenQueued(ctx, e.MessageID)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, body) {
		t.Errorf("OpenQueued gave %q", got)
	}
}

func testQueueResults(t *testing.T, s store.Store) {
	ctx := t.Context()
	m := queuedMessage(textBody("r"), "x@remote.example", "y@remote.example")
	accept(t, s, m)
	es, _ := s.QueueEntries(ctx, m.QueueID)
	later := time.Now().Add(time.Hour).Truncate(time.Second)
	if err := s.RecordResults(ctx, []store.QueueResult{
		{ID: es[0].ID, State: store.StateDelivered},
		{ID: es[1].ID, State: store.StateDeferred, NextAttempt: later, Error: "451 4.3.0 try later"},
	}); err != nil {
		t.Fatal(err)
	}
	if due, _ := s.ClaimDue(ctx, time.Now(), time.Minute, 10); len(due) != 0 {
		t.Errorf("%d entries due after the attempt", len(due))
	}
	if next, ok, _ := s.NextDue(ctx); !ok || !next.Equal(later) {
		t.Errorf("NextDue = %v, %v; want %v", next, ok, later)
	}
	es, _ = s.QueueEntries(ctx, m.QueueID)
	if es[0].State != store.StateDelivered || es[1].State != store.StateDeferred || es[1].Attempts != 1 || es[1].LastError != "451 4.3.0 try later" {
		t.Errorf("entries after the attempt: %+v", es)
	}
	if err := s.RecordResults(ctx, []store.QueueResult{{ID: es[1].ID, State: store.StateFailed, Error: "550 5.1.1 no such user"}}); err != nil {
		t.Fatal(err)
	}
	if es, _ := s.QueueEntries(ctx, m.QueueID); len(es) != 0 {
		t.Errorf("a message all done with is still queued: %+v", es)
	}
	if _, err := s.OpenQueued(ctx, es[0].MessageID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("its body is still there: %v", err)
	}
	if _, ok, _ := s.NextDue(ctx); ok {
		t.Error("NextDue reports an entry in an empty queue")
	}
}

func testQueueControls(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := queuedMessage(textBody("a"), "x@remote.example")
	b := queuedMessage(textBody("b"), "y@remote.example")
	b.QueueID = a.QueueID + "b"
	accept(t, s, a)
	accept(t, s, b)
	if n, err := s.SetHeld(ctx, a.QueueID, true); err != nil || n != 1 {
		t.Fatalf("SetHeld = %d, %v", n, err)
	}
	if due, _ := s.ClaimDue(ctx, time.Now(), time.Minute, 10); len(due) != 1 || due[0].QueueID != b.QueueID {
		t.Errorf("due with a held: %+v", due)
	}
	s.SetHeld(ctx, a.QueueID, false)
	es, _ := s.QueueEntries(ctx, "")
	s.RecordResults(ctx, []store.QueueResult{{ID: es[0].ID, State: store.StateDeferred, NextAttempt: time.Now().Add(time.Hour)},
		{ID: es[1].ID, State: store.StateDeferred, NextAttempt: time.Now().Add(time.Hour)}})
	if n, err := s.RetryNow(ctx, ""); err != nil || n != 2 {
		t.Errorf("RetryNow = %d, %v", n, err)
	}
	if due, _ := s.ClaimDue(ctx, time.Now().Add(time.Second), time.Minute, 10); len(due) != 2 {
		t.Errorf("%d due after RetryNow", len(due))
	}
	if n, err := s.DeleteQueued(ctx, b.QueueID); err != nil || n != 1 {
		t.Errorf("DeleteQueued = %d, %v", n, err)
	}
	if es, _ := s.QueueEntries(ctx, ""); len(es) != 1 || es[0].QueueID != a.QueueID {
		t.Errorf("after delete: %+v", es)
	}
}

func testQueueClaims(t *testing.T, s store.Store) {
	ctx := t.Context()
	m := queuedMessage(textBody("c"), "x@remote.example", "y@remote.example", "z@remote.example")
	accept(t, s, m)
	now := time.Now()
	first, err := s.ClaimDue(ctx, now, time.Hour, 2)
	if err != nil || len(first) != 2 {
		t.Fatalf("ClaimDue = %+v, %v", first, err)
	}
	second, _ := s.ClaimDue(ctx, now.Add(time.Minute), time.Hour, 10)
	if len(second) != 1 || second[0].ID == first[0].ID || second[0].ID == first[1].ID {
		t.Fatalf("second claim: %+v", second)
	}
	if n, err := s.RetryNow(ctx, ""); err != nil || n != 0 {
		t.Errorf("RetryNow touched %d active entries (%v)", n, err)
	}
	if due, _ := s.ClaimDue(ctx, now.Add(2*time.Minute), time.Hour, 10); len(due) != 0 {
		t.Errorf("active entries claimed again: %+v", due)
	}
	// A renewed claim lasts until its new end.
	if err := s.RenewClaims(ctx, []int64{second[0].ID}, now.Add(3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	// The claim ends when it runs out, when released, or with a result.
	if due, _ := s.ClaimDue(ctx, now.Add(60*time.Minute+30*time.Second), time.Hour, 10); len(due) != 2 {
		t.Errorf("%d entries claimed after the first claim ran out, want 2", len(due))
	}
	if due, _ := s.ClaimDue(ctx, now.Add(2*time.Hour), time.Hour, 10); len(due) != 0 {
		t.Errorf("a renewed claim was claimed again before its new end: %+v", due)
	}
	if err := s.ReleaseClaims(ctx, []int64{second[0].ID}, now); err != nil {
		t.Fatal(err)
	}
	es, _ := s.QueueEntries(ctx, m.QueueID)
	for _, e := range es {
		if e.Active != (e.ID != second[0].ID) || e.Attempts != 0 {
			t.Errorf("entry after release: %+v", e)
		}
	}
	if err := s.RecordResults(ctx, []store.QueueResult{{ID: first[0].ID, State: store.StateDeferred, NextAttempt: now.Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	if err := s.ReleaseClaims(ctx, nil, now); err != nil {
		t.Fatal(err)
	}
	due, _ := s.ClaimDue(ctx, now.Add(time.Second), time.Hour, 10)
	if len(due) != 2 {
		t.Errorf("after releasing all: %d due, want 2 (one is deferred for an hour)", len(due))
	}
	for _, e := range due {
		if e.ID == first[0].ID {
			t.Error("an entry with a recorded result was released by ReleaseClaims(nil)")
		}
	}
}

func testQueueLocalCopy(t *testing.T, s store.Store) {
	ctx := t.Context()
	alice := addUser(t, s, "alice@a.example")
	body := textBody("both")
	m := queuedMessage(body, "x@remote.example")
	m.Local = []store.LocalTarget{inbox(alice)}
	accept(t, s, m)
	es, _ := s.QueueEntries(ctx, m.QueueID)
	if err := s.RecordResults(ctx, []store.QueueResult{{ID: es[0].ID, State: store.StateDelivered}}); err != nil {
		t.Fatal(err)
	}
	got, _ := read(t, s, alice.ID, store.Inbox, 1)
	if !bytes.HasSuffix(got, body) {
		t.Error("the local copy is gone with the queue entry")
	}
}

func suppressionTests() []test {
	return []test{{"suppressions are added, found until they end, listed and removed", testSuppressions}}
}

func testSuppressions(t *testing.T, s store.Store) {
	ctx := t.Context()
	now := time.Now().Truncate(time.Second)
	if err := s.Suppress(ctx, store.Suppression{Address: "Gone@Remote.example", Reason: "550 5.1.1", Created: now, Until: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	sup, ok, err := s.Suppressed(ctx, "gone@remote.example", now)
	if err != nil || !ok || sup.Reason != "550 5.1.1" || !sup.Until.Equal(now.Add(time.Hour)) {
		t.Errorf("Suppressed = %+v, %v, %v", sup, ok, err)
	}
	if _, ok, _ := s.Suppressed(ctx, "gone@remote.example", now.Add(2*time.Hour)); ok {
		t.Error("a suppression outlives its end")
	}
	s.Suppress(ctx, store.Suppression{Address: "gone@remote.example", Reason: "again", Created: now, Until: now.Add(2 * time.Hour)})
	list, err := s.SuppressionList(ctx)
	if err != nil || len(list) != 1 || list[0].Reason != "again" {
		t.Errorf("SuppressionList = %+v, %v", list, err)
	}
	if err := s.Unsuppress(ctx, "GONE@remote.example"); err != nil {
		t.Fatal(err)
	}
	if err := s.Unsuppress(ctx, "gone@remote.example"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("removing twice: %v", err)
	}
}
