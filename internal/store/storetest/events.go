package storetest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"mailroom/internal/store"
)

func eventTests() []test {
	return []test{
		{"a message accepted with its log entry and events is found with them, its status its last event's", testEventsAccepted},
		{"a result's event is recorded with it and becomes its message's status", testEventsResults},
		{"the message log is searched by recipient, sender, subject, tag, status, direction, domain and time", testMessageQueries},
		{"events are selected by message, recipient, kind, domain and time, newest first, in pages", testEventQueries},
		{"events are counted once each, under their domain and each tag, and added up by period", testEventCounts},
		{"old events, log entries and counts are deleted in batches; newer ones stay", testDeleteEvents},
	}
}

// loggedMessage is a message from alice@a.example to a remote recipient
// and a local one, with its log entry and acceptance events.
func loggedMessage(t *testing.T, s store.Store, subject string, at time.Time, tags ...string) *store.Message {
	alice := addUserOnce(t, s, "alice@a.example")
	m := queuedMessage(textBody(subject), "carol@far.example")
	m.Local = []store.LocalTarget{inbox(alice)}
	m.Subject = subject
	m.Received = at
	m.Log = &store.LoggedMessage{QueueID: m.QueueID, Direction: store.Outbound, User: "alice@a.example", Domain: "a.example",
		Sender: "alice@a.example", From: "Alice <alice@a.example>", Subject: subject, MessageID: "<" + subject + "@a.example>",
		Size: int64(len(textBody(subject))), Recipients: []string{"carol@far.example", "alice@a.example"},
		Stream: "transactional", Tags: tags, Metadata: map[string]string{"order": subject}}
	m.Events = []store.Event{
		{Kind: store.EventReceived, QueueID: m.QueueID, Recipient: "alice@a.example", Domain: "a.example"},
		{Kind: store.EventAccepted, QueueID: m.QueueID, Recipient: "Carol@far.example", Domain: "a.example"},
	}
	accept(t, s, m)
	return m
}

func addUserOnce(t *testing.T, s store.Store, address string) store.User {
	if u, err := s.User(t.Context(), address); err == nil {
		return u
	}
	return addUser(t, s, address)
}

func testEventsAccepted(t *testing.T, s store.Store) {
	ctx := t.Context()
	at := time.Now().Add(-time.Minute).Truncate(time.Microsecond)
	m := loggedMessage(t, s, "Order 1", at, "receipt", "eu")
	got, err := s.LoggedMessages(ctx, store.MessageQuery{QueueID: m.QueueID})
	if err != nil || len(got) != 1 {
		t.Fatalf("LoggedMessages = %+v, %v", got, err)
	}
	want := *m.Log
	want.Created, want.Status = at, store.EventAccepted
	g := got[0]
	if !g.Created.Equal(want.Created) {
		t.Errorf("Created = %v, want %v", g.Created, want.Created)
	}
	g.Created = want.Created
	if fmt.Sprint(g) != fmt.Sprint(want) {
		t.Errorf("logged message =\n%+v\nwant\n%+v", g, want)
	}
	es, err := s.Events(ctx, store.EventQuery{QueueID: m.QueueID})
	if err != nil || len(es) != 2 {
		t.Fatalf("Events = %+v, %v", es, err)
	}
	// Newest first; addresses lower case; the message's time.
	if es[0].Kind != store.EventAccepted || es[0].Recipient != "carol@far.example" || es[1].Kind != store.EventReceived ||
		!es[0].Time.Equal(at) || es[0].ID <= es[1].ID || es[0].Domain != "a.example" {
		t.Errorf("Events = %+v", es)
	}
	// A message without a log entry leaves none.
	plain := queuedMessage(textBody("plain"), "x@far.example")
	accept(t, s, plain)
	if got, err := s.LoggedMessages(ctx, store.MessageQuery{QueueID: plain.QueueID}); err != nil || len(got) != 0 {
		t.Errorf("a message without Log was logged: %+v, %v", got, err)
	}
}

func testEventsResults(t *testing.T, s store.Store) {
	ctx := t.Context()
	m := loggedMessage(t, s, "Order 2", time.Now())
	due, err := s.ClaimDue(ctx, time.Now(), time.Minute, 10)
	if err != nil || len(due) != 1 {
		t.Fatalf("ClaimDue = %+v, %v", due, err)
	}
	ev := &store.Event{Kind: store.EventDeferred, QueueID: m.QueueID, Recipient: "carol@far.example", Domain: "a.example",
		Detail: "451 4.7.1 greylisted", Remote: "mx.far.example", Attempt: 1}
	err = s.RecordResults(ctx, []store.QueueResult{{ID: due[0].ID, State: store.StateDeferred, NextAttempt: time.Now(), Error: ev.Detail, Event: ev}})
	if err != nil {
		t.Fatal(err)
	}
	status := func() string {
		got, err := s.LoggedMessages(ctx, store.MessageQuery{QueueID: m.QueueID})
		if err != nil || len(got) != 1 {
			t.Fatalf("LoggedMessages = %+v, %v", got, err)
		}
		return got[0].Status
	}
	if st := status(); st != store.EventDeferred {
		t.Errorf("status after a deferral = %q", st)
	}
	es, _ := s.Events(ctx, store.EventQuery{QueueID: m.QueueID, Limit: 1})
	if len(es) != 1 || es[0].Detail != ev.Detail || es[0].Remote != ev.Remote || es[0].Attempt != 1 || es[0].Kind != store.EventDeferred {
		t.Errorf("the deferral's event = %+v", es)
	}
	due, _ = s.ClaimDue(ctx, time.Now().Add(time.Second), time.Minute, 10)
	if len(due) != 1 {
		t.Fatalf("ClaimDue = %+v", due)
	}
	ev = &store.Event{Kind: store.EventBounced, QueueID: m.QueueID, Recipient: "carol@far.example", Domain: "a.example",
		Detail: "550 5.1.1 no such user", Class: "hard", Attempt: 2}
	if err := s.RecordResults(ctx, []store.QueueResult{{ID: due[0].ID, State: store.StateFailed, Error: ev.Detail, Event: ev}}); err != nil {
		t.Fatal(err)
	}
	if st := status(); st != store.EventBounced {
		t.Errorf("status after a bounce = %q", st)
	}
	// An event added apart (a complaint) changes the status too; one of no
	// message is kept on its own.
	if err := s.AddEvents(ctx, []store.Event{
		{Kind: store.EventComplained, QueueID: m.QueueID, Recipient: "carol@far.example", Domain: "a.example"},
		{Kind: store.EventSuppressed, Recipient: "dave@far.example", Domain: "a.example", Detail: "on the suppression list"},
	}); err != nil {
		t.Fatal(err)
	}
	if st := status(); st != store.EventComplained {
		t.Errorf("status after a complaint = %q", st)
	}
	if es, err := s.Events(ctx, store.EventQuery{Recipient: "dave@far.example"}); err != nil || len(es) != 1 || es[0].QueueID != "" {
		t.Errorf("the event of no message = %+v, %v", es, err)
	}
	if es, _ := s.Events(ctx, store.EventQuery{QueueID: m.QueueID}); len(es) != 5 {
		t.Errorf("the message has %d events, want 5: %+v", len(es), es)
	}
}

func testMessageQueries(t *testing.T, s store.Store) {
	ctx := t.Context()
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	a := loggedMessage(t, s, "Invoice 100% paid", base, "billing")
	b := loggedMessage(t, s, "Welcome aboard", base.Add(time.Minute), "onboarding", "eu")
	c := loggedMessage(t, s, "invoice_reminder", base.Add(2*time.Minute), "billing")
	// c is inbound to another domain.
	if err := s.AddEvents(ctx, []store.Event{{Kind: store.EventDelivered, QueueID: b.QueueID, Recipient: "carol@far.example", Domain: "a.example"}}); err != nil {
		t.Fatal(err)
	}
	d := queuedMessage(textBody("in"))
	d.Log = &store.LoggedMessage{QueueID: d.QueueID, Direction: store.Inbound, Domain: "b.example", Sender: "x@elsewhere.example",
		Subject: "Hello from outside", Recipients: []string{"bob@b.example"}}
	d.Events = []store.Event{{Kind: store.EventReceived, QueueID: d.QueueID, Recipient: "bob@b.example", Domain: "b.example"}}
	d.Received = base.Add(3 * time.Minute)
	accept(t, s, d)

	ids := func(ms []store.LoggedMessage) []string {
		var out []string
		for _, m := range ms {
			out = append(out, m.QueueID)
		}
		return out
	}
	for _, c := range []struct {
		name string
		q    store.MessageQuery
		want []string
	}{
		{"all, newest first", store.MessageQuery{}, []string{d.QueueID, c.QueueID, b.QueueID, a.QueueID}},
		{"by recipient", store.MessageQuery{Recipient: "BOB@b.example"}, []string{d.QueueID}},
		{"by sender", store.MessageQuery{Sender: "x@elsewhere.example"}, []string{d.QueueID}},
		{"by a part of the subject, any case", store.MessageQuery{Subject: "INVOICE"}, []string{c.QueueID, a.QueueID}},
		{"a % in the subject is literal", store.MessageQuery{Subject: "100%"}, []string{a.QueueID}},
		{"an _ in the subject is literal", store.MessageQuery{Subject: "e_r"}, []string{c.QueueID}},
		{"by tag", store.MessageQuery{Tag: "billing"}, []string{c.QueueID, a.QueueID}},
		{"by status", store.MessageQuery{Status: store.EventDelivered}, []string{b.QueueID}},
		{"by direction", store.MessageQuery{Direction: store.Inbound}, []string{d.QueueID}},
		{"within domains", store.MessageQuery{Domains: []string{"b.example"}}, []string{d.QueueID}},
		{"within no domain", store.MessageQuery{Domains: []string{}}, nil},
		{"since and until", store.MessageQuery{Since: base.Add(time.Minute), Until: base.Add(3 * time.Minute)}, []string{c.QueueID, b.QueueID}},
		{"a page", store.MessageQuery{Before: base.Add(2 * time.Minute), Limit: 1}, []string{b.QueueID}},
		{"conditions together", store.MessageQuery{Tag: "billing", Subject: "paid", Domains: []string{"a.example"}}, []string{a.QueueID}},
	} {
		got, err := s.LoggedMessages(ctx, c.q)
		if err != nil || !slices.Equal(ids(got), c.want) {
			t.Errorf("%s: LoggedMessages(%+v) = %v, %v; want %v", c.name, c.q, ids(got), err, c.want)
		}
	}
}

func testEventQueries(t *testing.T, s store.Store) {
	ctx := t.Context()
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	var all []store.Event
	for i := range 6 {
		e := store.Event{Time: base.Add(time.Duration(i) * time.Minute), Kind: store.EventDelivered, QueueID: fmt.Sprint("q", i%2),
			Recipient: fmt.Sprintf("r%d@far.example", i%3), Domain: []string{"a.example", "b.example"}[i%2]}
		if i == 5 {
			e.Kind = store.EventBounced
		}
		all = append(all, e)
	}
	if err := s.AddEvents(ctx, all); err != nil {
		t.Fatal(err)
	}
	times := func(es []store.Event) []int {
		var out []int
		for _, e := range es {
			out = append(out, int(e.Time.Sub(base)/time.Minute))
		}
		return out
	}
	newest, err := s.Events(ctx, store.EventQuery{Limit: 2})
	if err != nil || !slices.Equal(times(newest), []int{5, 4}) {
		t.Fatalf("the newest two = %v, %v", times(newest), err)
	}
	for _, c := range []struct {
		name string
		q    store.EventQuery
		want []int
	}{
		{"by message", store.EventQuery{QueueID: "q1"}, []int{5, 3, 1}},
		{"by recipient", store.EventQuery{Recipient: "R0@far.example"}, []int{3, 0}},
		{"by kind", store.EventQuery{Kind: store.EventBounced}, []int{5}},
		{"within domains", store.EventQuery{Domains: []string{"a.example"}}, []int{4, 2, 0}},
		{"since and until", store.EventQuery{Since: base.Add(2 * time.Minute), Until: base.Add(4 * time.Minute)}, []int{3, 2}},
		{"the next page", store.EventQuery{Before: newest[1].ID, Limit: 2}, []int{3, 2}},
	} {
		got, err := s.Events(ctx, c.q)
		if err != nil || !slices.Equal(times(got), c.want) {
			t.Errorf("%s: Events(%+v) = %v, %v; want %v", c.name, c.q, times(got), err, c.want)
		}
	}
}

func testEventCounts(t *testing.T, s store.Store) {
	ctx := t.Context()
	hour := time.Now().Truncate(time.Hour).Add(-2 * time.Hour)
	loggedMessage(t, s, "tagged", hour.Add(5*time.Minute), "billing") // received + accepted at :05
	loggedMessage(t, s, "untagged", hour.Add(65*time.Minute))         // the next hour
	var evs []store.Event
	for i := range 40 {
		evs = append(evs, store.Event{Time: hour.Add(time.Duration(i) * time.Minute), Kind: store.EventDelivered, Domain: "b.example"})
	}
	if err := s.AddEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	// Four counters at once, in small batches: each event once.
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := 0
	for range 4 {
		wg.Go(func() {
			for {
				n, err := s.CountEvents(ctx, 7)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				total += n
				mu.Unlock()
				if n == 0 {
					return
				}
			}
		})
	}
	wg.Wait()
	if total != 44 {
		t.Errorf("CountEvents counted %d events, want 44", total)
	}
	if n, err := s.CountEvents(ctx, 100); n != 0 || err != nil {
		t.Errorf("CountEvents again = %d, %v", n, err)
	}
	type row struct {
		min  int
		kind string
		n    int64
	}
	rows := func(q store.CountQuery) []row {
		cs, err := s.EventCounts(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		var out []row
		for _, c := range cs {
			out = append(out, row{int(c.Time.Sub(hour) / time.Minute), c.Kind, c.Count})
		}
		return out
	}
	for _, c := range []struct {
		name string
		q    store.CountQuery
		want []row
	}{
		{"hourly, every domain", store.CountQuery{Since: hour, Until: hour.Add(2 * time.Hour), Step: time.Hour},
			[]row{{0, "accepted", 1}, {0, "delivered", 40}, {0, "received", 1}, {60, "accepted", 1}, {60, "received", 1}}},
		{"hourly, one domain", store.CountQuery{Domains: []string{"a.example"}, Since: hour, Until: hour.Add(2 * time.Hour), Step: time.Hour},
			[]row{{0, "accepted", 1}, {0, "received", 1}, {60, "accepted", 1}, {60, "received", 1}}},
		{"one tag", store.CountQuery{Tag: "billing", Step: time.Hour}, []row{{0, "accepted", 1}, {0, "received", 1}}},
		{"by ten minutes, a window", store.CountQuery{Domains: []string{"b.example"}, Since: hour.Add(10 * time.Minute), Until: hour.Add(30 * time.Minute), Step: 10 * time.Minute},
			[]row{{10, "delivered", 10}, {20, "delivered", 10}}},
	} {
		if got := rows(c.q); fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("%s: EventCounts = %v, want %v", c.name, got, c.want)
		}
	}
}

func testDeleteEvents(t *testing.T, s store.Store) {
	ctx := t.Context()
	old := time.Now().Add(-40 * 24 * time.Hour)
	for i := range 3 {
		loggedMessage(t, s, fmt.Sprint("old ", i), old.Add(time.Duration(i)*time.Minute))
	}
	fresh := loggedMessage(t, s, "fresh", time.Now())
	if _, err := s.CountEvents(ctx, 100); err != nil {
		t.Fatal(err)
	}
	cutoff := time.Now().Add(-30 * 24 * time.Hour)
	total := 0
	for range 20 {
		n, err := s.DeleteEvents(ctx, cutoff, 2)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if n > 6 {
			t.Errorf("one batch of 2 deleted %d rows", n)
		}
		total += n
	}
	// 3 log entries, 6 events, 2 counts (received, accepted) of each of 3 minutes.
	if total != 15 {
		t.Errorf("deleted %d rows, want 15", total)
	}
	ms, _ := s.LoggedMessages(ctx, store.MessageQuery{})
	es, _ := s.Events(ctx, store.EventQuery{})
	cs, _ := s.EventCounts(ctx, store.CountQuery{Step: time.Hour})
	if len(ms) != 1 || ms[0].QueueID != fresh.QueueID || len(es) != 2 || len(cs) != 2 {
		t.Errorf("left: %d log entries, %d events, %d counts; want 1, 2, 2", len(ms), len(es), len(cs))
	}
}
