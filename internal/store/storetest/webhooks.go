package storetest

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"testing"
	"time"

	"mailroom/internal/store"
)

func webhookTests() []test {
	return []test{
		{"webhooks are kept, listed by owner, their secrets replaced, deleted with their deliveries", testWebhooks},
		{"counting events makes a delivery per event and webhook that takes it; inbound mail for inbound hooks", testHookFanOut},
		{"deliveries are claimed once until their lease ends, and their attempts recorded", testHookDeliveries},
	}
}

func testWebhooks(t *testing.T, s store.Store) {
	ctx := t.Context()
	now := time.Now().Truncate(time.Second)
	a, err := s.AddWebhook(ctx, store.Webhook{Owner: "@a.example", URL: "https://a.example/hook", Events: []string{"delivered", "bounced"}, Secrets: []string{"one"}, Created: now})
	if err != nil || a.ID == 0 {
		t.Fatalf("AddWebhook = %+v, %v", a, err)
	}
	b, _ := s.AddWebhook(ctx, store.Webhook{Owner: "*", URL: "https://ops.example/hook", Events: []string{"bounced"}, Secrets: []string{"two"}, Created: now})
	got, err := s.Webhook(ctx, a.ID)
	if err != nil || got.URL != a.URL || !slices.Equal(got.Events, a.Events) || !slices.Equal(got.Secrets, []string{"one"}) || !got.Created.Equal(now) || got.Owner != "@a.example" {
		t.Errorf("Webhook = %+v, %v", got, err)
	}
	if ws, _ := s.Webhooks(ctx, "*"); len(ws) != 1 || ws[0].ID != b.ID {
		t.Errorf("Webhooks(*) = %+v", ws)
	}
	if ws, _ := s.Webhooks(ctx, ""); len(ws) != 2 {
		t.Errorf("Webhooks() = %+v", ws)
	}
	if err := s.SetWebhookSecrets(ctx, a.ID, []string{"new", "one"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Webhook(ctx, a.ID); !slices.Equal(got.Secrets, []string{"new", "one"}) {
		t.Errorf("secrets after a rotation = %v", got.Secrets)
	}
	if err := s.DeleteWebhook(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Webhook(ctx, a.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a deleted webhook: %v", err)
	}
	if err := s.DeleteWebhook(ctx, a.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("deleting twice: %v", err)
	}
	if err := s.SetWebhookSecrets(ctx, a.ID, []string{"x"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("rotating a deleted webhook: %v", err)
	}
}

// countAll counts every event (and so makes their deliveries).
func countAll(t *testing.T, s store.Store) {
	for {
		n, err := s.CountEvents(t.Context(), 100)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
	}
}

func testHookFanOut(t *testing.T, s store.Store) {
	ctx := t.Context()
	now := time.Now()
	domainHook, _ := s.AddWebhook(ctx, store.Webhook{Owner: "@a.example", URL: "https://a.example/h", Events: []string{"accepted", "received"}, Secrets: []string{"s"}, Created: now})
	allHook, _ := s.AddWebhook(ctx, store.Webhook{Owner: "*", URL: "https://ops.example/h", Events: []string{"bounced", "inbound"}, Secrets: []string{"s"}, Created: now})
	otherHook, _ := s.AddWebhook(ctx, store.Webhook{Owner: "@b.example", URL: "https://b.example/h", Events: []string{"accepted"}, Secrets: []string{"s"}, Created: now})
	loggedMessage(t, s, "out", now) // outbound from a.example: received (alice) and accepted (carol)
	in := queuedMessage(textBody("in"))
	in.Log = &store.LoggedMessage{QueueID: in.QueueID, Direction: store.Inbound, Domain: "a.example", Sender: "x@elsewhere.example", Recipients: []string{"alice@a.example"}}
	in.Events = []store.Event{{Kind: store.EventReceived, QueueID: in.QueueID, Recipient: "alice@a.example", Domain: "a.example"}}
	accept(t, s, in)
	if err := s.AddEvents(ctx, []store.Event{{Kind: store.EventBounced, Recipient: "z@far.example", Domain: "c.example"}}); err != nil {
		t.Fatal(err)
	}
	countAll(t, s)
	kinds := func(id int64) []string {
		ds, err := s.HookDeliveries(ctx, id, "", 100)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, d := range ds {
			if d.State != store.HookPending || d.Event.ID == 0 || d.WebhookID != id {
				t.Errorf("delivery %+v", d)
			}
			out = append(out, d.Kind+":"+d.Event.Recipient)
		}
		sort.Strings(out)
		return out
	}
	if got, want := kinds(domainHook.ID), []string{"accepted:carol@far.example", "received:alice@a.example", "received:alice@a.example"}; !slices.Equal(got, want) {
		t.Errorf("the domain's hook got %v, want %v", got, want)
	}
	if got, want := kinds(allHook.ID), []string{"bounced:z@far.example", "inbound:alice@a.example"}; !slices.Equal(got, want) {
		t.Errorf("the server's hook got %v, want %v", got, want)
	}
	if got := kinds(otherHook.ID); len(got) != 0 {
		t.Errorf("another domain's hook got %v", got)
	}
	// Counting again makes nothing twice.
	countAll(t, s)
	if got := kinds(domainHook.ID); len(got) != 3 {
		t.Errorf("after counting again: %v", got)
	}
	// The inbound message itself, by its queue ID, for the inbound post.
	rc, err := s.OpenByQueueID(ctx, in.QueueID)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(rc)
	rc.Close()
	if string(body) != string(textBody("in")) {
		t.Errorf("OpenByQueueID = %q", body)
	}
	if _, err := s.OpenByQueueID(ctx, "NOSUCH"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("an unknown queue ID: %v", err)
	}
}

func testHookDeliveries(t *testing.T, s store.Store) {
	ctx := t.Context()
	now := time.Now()
	hook, _ := s.AddWebhook(ctx, store.Webhook{Owner: "*", URL: "https://ops.example/h", Events: []string{"delivered"}, Secrets: []string{"s"}, Created: now})
	var evs []store.Event
	for i := range 3 {
		evs = append(evs, store.Event{Kind: store.EventDelivered, Recipient: fmt.Sprintf("r%d@far.example", i), Domain: "a.example", Detail: "250 ok"})
	}
	if err := s.AddEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	countAll(t, s)
	first, err := s.ClaimHookDeliveries(ctx, now.Add(time.Second), time.Minute, 2)
	if err != nil || len(first) != 2 || first[0].Event.Detail != "250 ok" || first[0].Kind != "delivered" {
		t.Fatalf("ClaimHookDeliveries = %+v, %v", first, err)
	}
	second, _ := s.ClaimHookDeliveries(ctx, now.Add(time.Second), time.Minute, 10)
	if len(second) != 1 {
		t.Fatalf("a second claim got %d, want the 1 left", len(second))
	}
	if again, _ := s.ClaimHookDeliveries(ctx, now.Add(30*time.Second), time.Minute, 10); len(again) != 0 {
		t.Errorf("claimed again within the lease: %+v", again)
	}
	att := func(status int, e string) store.HookAttempt {
		return store.HookAttempt{Time: now.Add(2 * time.Second), Status: status, Error: e, Duration: 15 * time.Millisecond}
	}
	err = s.RecordHookResults(ctx, []store.HookResult{
		{DeliveryID: first[0].ID, State: store.HookDelivered, Attempt: att(200, "")},
		{DeliveryID: first[1].ID, State: store.HookPending, NextAttempt: now.Add(10 * time.Second), Attempt: att(503, "503 Service Unavailable")},
		{DeliveryID: second[0].ID, State: store.HookFailed, Attempt: att(0, "connection refused")},
	})
	if err != nil {
		t.Fatal(err)
	}
	ds, _ := s.HookDeliveries(ctx, hook.ID, "", 10)
	byID := map[int64]store.HookDelivery{}
	for _, d := range ds {
		byID[d.ID] = d
	}
	if d := byID[first[1].ID]; d.State != store.HookPending || d.Attempts != 1 || d.LastStatus != 503 || d.LastError != "503 Service Unavailable" {
		t.Errorf("the deferred delivery = %+v", d)
	}
	if d := byID[first[0].ID]; d.State != store.HookDelivered || d.LastStatus != 200 {
		t.Errorf("the delivered one = %+v", d)
	}
	if failed, _ := s.HookDeliveries(ctx, hook.ID, store.HookFailed, 10); len(failed) != 1 || failed[0].ID != second[0].ID {
		t.Errorf("the failed ones = %+v", failed)
	}
	as, err := s.HookAttempts(ctx, first[1].ID)
	if err != nil || len(as) != 1 || as[0].Status != 503 || as[0].Duration != 15*time.Millisecond {
		t.Errorf("HookAttempts = %+v, %v", as, err)
	}
	// Due again at its time; a failed one made due by a retry.
	if due, _ := s.ClaimHookDeliveries(ctx, now.Add(11*time.Second), time.Minute, 10); len(due) != 1 || due[0].ID != first[1].ID {
		t.Errorf("due after its backoff: %+v", due)
	}
	if err := s.RetryHookDelivery(ctx, second[0].ID, now.Add(12*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := s.RetryHookDelivery(ctx, first[0].ID, now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("retrying a delivered one: %v", err)
	}
	if due, _ := s.ClaimHookDeliveries(ctx, now.Add(13*time.Second), time.Minute, 10); len(due) != 1 || due[0].ID != second[0].ID {
		t.Errorf("due after a retry: %+v", due)
	}
	// Old final deliveries go; pending ones stay.
	if n, err := s.DeleteHookDeliveries(ctx, now.Add(time.Hour), 10); err != nil || n != 1 {
		t.Errorf("DeleteHookDeliveries = %d, %v; want the delivered one", n, err)
	}
	if err := s.DeleteWebhook(ctx, hook.ID); err != nil {
		t.Fatal(err)
	}
	if ds, _ := s.HookDeliveries(ctx, hook.ID, "", 10); len(ds) != 0 {
		t.Errorf("deliveries outlived their webhook: %+v", ds)
	}
}
