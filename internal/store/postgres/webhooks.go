package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"mailroom/internal/store"
)

func storageError(what string, err error) error {
	return fmt.Errorf("%w: %s: %w", store.ErrStorage, what, err)
}

// AddWebhook stores a new webhook.
func (s *Store) AddWebhook(ctx context.Context, w store.Webhook) (store.Webhook, error) {
	secrets, _ := json.Marshal(w.Secrets)
	err := s.pool.QueryRow(ctx, `INSERT INTO webhooks(owner, url, events, secrets, created) VALUES ($1, $2, $3, $4, $5) RETURNING id`,
		w.Owner, w.URL, store.HookEvents(w.Events), string(secrets), w.Created.Unix()).Scan(&w.ID)
	if err != nil {
		return w, storageError("add webhook", err)
	}
	return w, nil
}

const webhookColumns = `SELECT id, owner, url, events, secrets::text, created FROM webhooks`

// Webhooks lists the webhooks of owner ("" for all).
func (s *Store) Webhooks(ctx context.Context, owner string) ([]store.Webhook, error) {
	rows, err := s.pool.Query(ctx, webhookColumns+` WHERE $1 = '' OR owner = $1 ORDER BY id`, owner)
	if err != nil {
		return nil, storageError("webhooks", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Webhook, error) { return store.ScanWebhook(r) })
	if err != nil {
		return nil, storageError("webhooks", err)
	}
	return out, nil
}

// Webhook returns one webhook.
func (s *Store) Webhook(ctx context.Context, id int64) (store.Webhook, error) {
	w, err := store.ScanWebhook(s.pool.QueryRow(ctx, webhookColumns+` WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return w, fmt.Errorf("webhook %d: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return w, storageError("webhook", err)
	}
	return w, nil
}

// exec runs a statement that must change a row, else it is ErrNotFound.
func (s *Store) exec(ctx context.Context, what, q string, args ...any) error {
	tag, err := s.pool.Exec(ctx, q, args...)
	if err != nil {
		return storageError(what, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	return nil
}

// DeleteWebhook removes a webhook with its deliveries.
func (s *Store) DeleteWebhook(ctx context.Context, id int64) error {
	return s.exec(ctx, fmt.Sprintf("webhook %d", id), `DELETE FROM webhooks WHERE id = $1`, id)
}

// SetWebhookSecrets replaces a webhook's secrets.
func (s *Store) SetWebhookSecrets(ctx context.Context, id int64, secrets []string) error {
	js, _ := json.Marshal(secrets)
	return s.exec(ctx, fmt.Sprintf("webhook %d", id), `UPDATE webhooks SET secrets = $1 WHERE id = $2`, string(js), id)
}

const hookColumns = `SELECT d.id, d.webhook_id, d.kind, d.state, d.attempts, d.next_attempt, d.created, d.last_status, d.last_error,
	coalesce(e.id, 0), coalesce(e.time, 0), coalesce(e.kind, ''), coalesce(e.queue_id, ''), coalesce(e.recipient, ''), coalesce(e.domain, ''),
	coalesce(e.detail, ''), coalesce(e.remote, ''), coalesce(e.class, ''), coalesce(e.attempt, 0)
	FROM hook_deliveries d LEFT JOIN events e ON e.id = d.event_id`

func (s *Store) hooks(ctx context.Context, q string, args ...any) ([]store.HookDelivery, error) {
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, storageError("webhook deliveries", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.HookDelivery, error) {
		var d store.HookDelivery
		var next, created, et int64
		e := &d.Event
		err := r.Scan(&d.ID, &d.WebhookID, &d.Kind, &d.State, &d.Attempts, &next, &created, &d.LastStatus, &d.LastError,
			&e.ID, &et, &e.Kind, &e.QueueID, &e.Recipient, &e.Domain, &e.Detail, &e.Remote, &e.Class, &e.Attempt)
		d.NextAttempt, d.Created, e.Time = time.Unix(0, next), time.Unix(0, created), time.Unix(0, et)
		return d, err
	})
	if err != nil {
		return nil, storageError("webhook deliveries", err)
	}
	return out, nil
}

// ClaimHookDeliveries takes due deliveries by moving their next attempt
// to the lease's end; nodes claiming at once skip each other's rows.
func (s *Store) ClaimHookDeliveries(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]store.HookDelivery, error) {
	var ids []int64
	err := s.retry(ctx, pgx.ReadCommitted, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `UPDATE hook_deliveries SET next_attempt = $1 WHERE id IN (SELECT id FROM hook_deliveries
			WHERE state = 'pending' AND next_attempt <= $2 ORDER BY next_attempt LIMIT $3 FOR UPDATE SKIP LOCKED) RETURNING id`,
			now.Add(lease).UnixNano(), now.UnixNano(), limit)
		if err != nil {
			return err
		}
		ids, err = pgx.CollectRows(rows, pgx.RowTo[int64])
		return err
	})
	if err != nil {
		return nil, storageError("claim webhook deliveries", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	return s.hooks(ctx, hookColumns+` WHERE d.id = ANY($1) ORDER BY d.next_attempt, d.id`, ids)
}

// RecordHookResults records attempts.
func (s *Store) RecordHookResults(ctx context.Context, results []store.HookResult) error {
	err := s.retry(ctx, pgx.ReadCommitted, func(tx pgx.Tx) error {
		for _, r := range results {
			a := r.Attempt
			if _, err := tx.Exec(ctx, `WITH d AS (UPDATE hook_deliveries SET state = $1, attempts = attempts + 1, next_attempt = $2, last_status = $3,
				last_error = $4 WHERE id = $5 RETURNING id)
				INSERT INTO hook_attempts(delivery_id, time, status, error, duration) SELECT id, $6, $3, $4, $7 FROM d`,
				r.State, r.NextAttempt.UnixNano(), a.Status, a.Error, r.DeliveryID, a.Time.UnixNano(), int64(a.Duration)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return storageError("record webhook results", err)
	}
	return nil
}

// HookDeliveries lists a webhook's deliveries, newest first.
func (s *Store) HookDeliveries(ctx context.Context, webhookID int64, state string, limit int) ([]store.HookDelivery, error) {
	return s.hooks(ctx, hookColumns+` WHERE d.webhook_id = $1 AND ($2 = '' OR d.state = $2) ORDER BY d.id DESC LIMIT $3`, webhookID, state, limit)
}

// HookAttempts lists a delivery's attempts, oldest first.
func (s *Store) HookAttempts(ctx context.Context, deliveryID int64) ([]store.HookAttempt, error) {
	rows, err := s.pool.Query(ctx, `SELECT delivery_id, time, status, error, duration FROM hook_attempts WHERE delivery_id = $1 ORDER BY time`, deliveryID)
	if err != nil {
		return nil, storageError("webhook attempts", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.HookAttempt, error) {
		var a store.HookAttempt
		var t, d int64
		err := r.Scan(&a.DeliveryID, &t, &a.Status, &a.Error, &d)
		a.Time, a.Duration = time.Unix(0, t), time.Duration(d)
		return a, err
	})
	if err != nil {
		return nil, storageError("webhook attempts", err)
	}
	return out, nil
}

// RetryHookDelivery makes a delivery due now.
func (s *Store) RetryHookDelivery(ctx context.Context, id int64, now time.Time) error {
	return s.exec(ctx, fmt.Sprintf("webhook delivery %d (not found, or delivered)", id),
		`UPDATE hook_deliveries SET state = 'pending', next_attempt = $1 WHERE id = $2 AND state <> 'delivered'`, now.UnixNano(), id)
}

// DeleteHookDeliveries removes old final deliveries.
func (s *Store) DeleteHookDeliveries(ctx context.Context, before time.Time, limit int) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM hook_deliveries WHERE id IN (SELECT id FROM hook_deliveries WHERE created < $1 AND state <> 'pending'
		ORDER BY created LIMIT $2)`, before.UnixNano(), limit)
	if err != nil {
		return 0, storageError("delete webhook deliveries", err)
	}
	return int(tag.RowsAffected()), nil
}
