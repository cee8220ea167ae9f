package store

import (
	"context"
	"encoding/json"
	"time"
)

// EventInbound is the webhook event of a message received for a local
// user, posted with the message itself (parsed and raw) for applications
// that receive mail.
const EventInbound = "inbound"

// Webhook is an endpoint that events are posted to.
type Webhook struct {
	ID int64 `json:"id"`
	// Owner is whose events it gets: "@domain" (that domain's) or "*"
	// (every domain's).
	Owner  string   `json:"owner"`
	URL    string   `json:"url"`
	Events []string `json:"events"` // event kinds, and EventInbound
	// Secrets sign each delivery: the current one first, then the one
	// being replaced while a rotation lasts (both signatures are sent).
	Secrets []string  `json:"-"`
	Created time.Time `json:"created"`
}

// Webhook delivery states.
const (
	HookPending   = "pending"
	HookDelivered = "delivered"
	HookFailed    = "failed" // given up (a day of retries) or refused for good
)

// HookDelivery is one event to post to one webhook, until it is taken (a
// 2xx answer) or given up.
type HookDelivery struct {
	ID        int64 `json:"id"`
	WebhookID int64 `json:"webhook_id"`
	// Kind is what is posted: the event's kind, or EventInbound.
	Kind        string    `json:"kind"`
	Event       Event     `json:"event"`
	State       string    `json:"state"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt"`
	Created     time.Time `json:"created"`
	// The last attempt's HTTP status (0: no answer) and error.
	LastStatus int    `json:"last_status,omitempty"`
	LastError  string `json:"last_error,omitempty"`
}

// HookAttempt is one attempt of a delivery.
type HookAttempt struct {
	DeliveryID int64         `json:"delivery_id"`
	Time       time.Time     `json:"time"`
	Status     int           `json:"status"` // 0: no HTTP answer
	Error      string        `json:"error,omitempty"`
	Duration   time.Duration `json:"duration"`
}

// HookResult is the outcome of an attempt, to record.
type HookResult struct {
	DeliveryID  int64
	State       string    // HookDelivered, HookPending (again at NextAttempt) or HookFailed
	NextAttempt time.Time // for HookPending
	Attempt     HookAttempt
}

// Webhooks keeps webhook endpoints and the deliveries of events to them.
// Deliveries are made from events as they are counted (CountEvents): an
// event counted is an event whose deliveries exist, in one transaction.
type Webhooks interface {
	AddWebhook(ctx context.Context, w Webhook) (Webhook, error)
	Webhooks(ctx context.Context, owner string) ([]Webhook, error) // "" for all
	Webhook(ctx context.Context, id int64) (Webhook, error)
	DeleteWebhook(ctx context.Context, id int64) error
	// SetWebhookSecrets replaces a webhook's secrets (a rotation).
	SetWebhookSecrets(ctx context.Context, id int64, secrets []string) error

	// ClaimHookDeliveries takes up to limit pending deliveries due at now
	// for lease (not claimed again meanwhile), oldest first.
	ClaimHookDeliveries(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]HookDelivery, error)
	// RecordHookResults records attempts' outcomes.
	RecordHookResults(ctx context.Context, results []HookResult) error
	// HookDeliveries lists a webhook's deliveries, newest first (state ""
	// for all).
	HookDeliveries(ctx context.Context, webhookID int64, state string, limit int) ([]HookDelivery, error)
	// HookAttempts lists a delivery's attempts, oldest first.
	HookAttempts(ctx context.Context, deliveryID int64) ([]HookAttempt, error)
	// RetryHookDelivery makes a delivery (failed or pending) due now.
	RetryHookDelivery(ctx context.Context, id int64, now time.Time) error
	// DeleteHookDeliveries removes up to limit final deliveries (and
	// their attempts) created before before.
	DeleteHookDeliveries(ctx context.Context, before time.Time, limit int) (int, error)
}

// Scanner is a row of either backend's driver (database/sql, pgx).
type Scanner interface{ Scan(dest ...any) error }

// ScanWebhook reads a webhook from the columns id, owner, url, events,
// secrets (JSON text), created (unix seconds).
func ScanWebhook(row Scanner) (Webhook, error) {
	var w Webhook
	var events, secrets string
	var created int64
	if err := row.Scan(&w.ID, &w.Owner, &w.URL, &events, &secrets, &created); err != nil {
		return w, err
	}
	w.Events = HookEventList(events)
	w.Created = time.Unix(created, 0)
	return w, json.Unmarshal([]byte(secrets), &w.Secrets)
}
