package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"mailroom/internal/store"
)

// AddWebhook stores a new webhook.
func (s *Store) AddWebhook(ctx context.Context, w store.Webhook) (store.Webhook, error) {
	secrets, _ := json.Marshal(w.Secrets)
	err := s.write(ctx, func(tx *wtx) error {
		return tx.QueryRow(`INSERT INTO webhooks(owner, url, events, secrets, created) VALUES (?, ?, ?, ?, ?) RETURNING id`,
			w.Owner, w.URL, store.HookEvents(w.Events), string(secrets), w.Created.Unix()).Scan(&w.ID)
	})
	if err != nil {
		return w, storageErr("add webhook", err)
	}
	return w, nil
}

const webhookColumns = `SELECT id, owner, url, events, secrets, created FROM webhooks`

// Webhooks lists the webhooks of owner ("" for all).
func (s *Store) Webhooks(ctx context.Context, owner string) ([]store.Webhook, error) {
	rows, err := s.query(ctx, webhookColumns+` WHERE ? = '' OR owner = ? ORDER BY id`, owner, owner)
	if err != nil {
		return nil, storageErr("webhooks", err)
	}
	defer rows.Close()
	var out []store.Webhook
	for rows.Next() {
		w, err := store.ScanWebhook(rows)
		if err != nil {
			return nil, storageErr("webhooks", err)
		}
		out = append(out, w)
	}
	return out, rows.Err()
}

// Webhook returns one webhook.
func (s *Store) Webhook(ctx context.Context, id int64) (store.Webhook, error) {
	w, err := store.ScanWebhook(s.queryRow(ctx, webhookColumns+` WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return w, fmt.Errorf("webhook %d: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return w, storageErr("webhook", err)
	}
	return w, nil
}

// DeleteWebhook removes a webhook with its deliveries.
func (s *Store) DeleteWebhook(ctx context.Context, id int64) error {
	return s.write(ctx, func(tx *wtx) error {
		res, err := tx.Exec(`DELETE FROM webhooks WHERE id = ?`, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("webhook %d: %w", id, store.ErrNotFound)
		}
		return nil
	})
}

// SetWebhookSecrets replaces a webhook's secrets.
func (s *Store) SetWebhookSecrets(ctx context.Context, id int64, secrets []string) error {
	js, _ := json.Marshal(secrets)
	return s.write(ctx, func(tx *wtx) error {
		res, err := tx.Exec(`UPDATE webhooks SET secrets = ? WHERE id = ?`, string(js), id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("webhook %d: %w", id, store.ErrNotFound)
		}
		return nil
	})
}

const hookColumns = `SELECT d.id, d.webhook_id, d.kind, d.state, d.attempts, d.next_attempt, d.created, d.last_status, d.last_error,
	coalesce(e.id, 0), coalesce(e.time, 0), coalesce(e.kind, ''), coalesce(e.queue_id, ''), coalesce(e.recipient, ''), coalesce(e.domain, ''),
	coalesce(e.detail, ''), coalesce(e.remote, ''), coalesce(e.class, ''), coalesce(e.attempt, 0)
	FROM hook_deliveries d LEFT JOIN events e ON e.id = d.event_id`

func scanHook(rows *sql.Rows) (store.HookDelivery, error) {
	var d store.HookDelivery
	var next, created, et int64
	e := &d.Event
	err := rows.Scan(&d.ID, &d.WebhookID, &d.Kind, &d.State, &d.Attempts, &next, &created, &d.LastStatus, &d.LastError,
		&e.ID, &et, &e.Kind, &e.QueueID, &e.Recipient, &e.Domain, &e.Detail, &e.Remote, &e.Class, &e.Attempt)
	d.NextAttempt, d.Created, e.Time = time.Unix(0, next), time.Unix(0, created), time.Unix(0, et)
	return d, err
}

func (s *Store) hooks(ctx context.Context, q string, args ...any) ([]store.HookDelivery, error) {
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, storageErr("webhook deliveries", err)
	}
	defer rows.Close()
	var out []store.HookDelivery
	for rows.Next() {
		d, err := scanHook(rows)
		if err != nil {
			return nil, storageErr("webhook deliveries", err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}

// ClaimHookDeliveries takes due deliveries by moving their next attempt
// to the lease's end.
func (s *Store) ClaimHookDeliveries(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]store.HookDelivery, error) {
	var ids []any
	err := s.write(ctx, func(tx *wtx) error {
		ids = ids[:0]
		rows, err := tx.Query(`UPDATE hook_deliveries SET next_attempt = ? WHERE id IN (SELECT id FROM hook_deliveries
			WHERE state = 'pending' AND next_attempt <= ? ORDER BY next_attempt LIMIT ?) RETURNING id`, now.Add(lease).UnixNano(), now.UnixNano(), limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return rows.Err()
	})
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	marks := "?" + strings.Repeat(", ?", len(ids)-1)
	return s.hooks(ctx, hookColumns+` WHERE d.id IN (`+marks+`) ORDER BY d.next_attempt, d.id`, ids...)
}

// RecordHookResults records attempts.
func (s *Store) RecordHookResults(ctx context.Context, results []store.HookResult) error {
	err := s.write(ctx, func(tx *wtx) error {
		for _, r := range results {
			a := r.Attempt
			if _, err := tx.Exec(`UPDATE hook_deliveries SET state = ?, attempts = attempts + 1, next_attempt = ?, last_status = ?, last_error = ? WHERE id = ?`,
				r.State, r.NextAttempt.UnixNano(), a.Status, a.Error, r.DeliveryID); err != nil {
				return err
			}
			if _, err := tx.Exec(`INSERT INTO hook_attempts(delivery_id, time, status, error, duration) SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM hook_deliveries WHERE id = ?)`,
				r.DeliveryID, a.Time.UnixNano(), a.Status, a.Error, int64(a.Duration), r.DeliveryID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return storageErr("record webhook results", err)
	}
	return nil
}

// HookDeliveries lists a webhook's deliveries, newest first.
func (s *Store) HookDeliveries(ctx context.Context, webhookID int64, state string, limit int) ([]store.HookDelivery, error) {
	return s.hooks(ctx, hookColumns+` WHERE d.webhook_id = ? AND (? = '' OR d.state = ?) ORDER BY d.id DESC LIMIT ?`, webhookID, state, state, limit)
}

// HookAttempts lists a delivery's attempts, oldest first.
func (s *Store) HookAttempts(ctx context.Context, deliveryID int64) ([]store.HookAttempt, error) {
	rows, err := s.query(ctx, `SELECT delivery_id, time, status, error, duration FROM hook_attempts WHERE delivery_id = ? ORDER BY time`, deliveryID)
	if err != nil {
		return nil, storageErr("webhook attempts", err)
	}
	defer rows.Close()
	var out []store.HookAttempt
	for rows.Next() {
		var a store.HookAttempt
		var t, d int64
		if err := rows.Scan(&a.DeliveryID, &t, &a.Status, &a.Error, &d); err != nil {
			return nil, storageErr("webhook attempts", err)
		}
		a.Time, a.Duration = time.Unix(0, t), time.Duration(d)
		out = append(out, a)
	}
	return out, rows.Err()
}

// RetryHookDelivery makes a delivery due now.
func (s *Store) RetryHookDelivery(ctx context.Context, id int64, now time.Time) error {
	return s.write(ctx, func(tx *wtx) error {
		res, err := tx.Exec(`UPDATE hook_deliveries SET state = 'pending', next_attempt = ? WHERE id = ? AND state <> 'delivered'`, now.UnixNano(), id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("webhook delivery %d (not found, or delivered): %w", id, store.ErrNotFound)
		}
		return nil
	})
}

// DeleteHookDeliveries removes old final deliveries.
func (s *Store) DeleteHookDeliveries(ctx context.Context, before time.Time, limit int) (int, error) {
	var n int64
	err := s.write(ctx, func(tx *wtx) error {
		res, err := tx.Exec(`DELETE FROM hook_deliveries WHERE id IN (SELECT id FROM hook_deliveries WHERE created < ? AND state <> 'pending' ORDER BY created LIMIT ?)`,
			before.UnixNano(), limit)
		if err == nil {
			n, _ = res.RowsAffected()
		}
		return err
	})
	if err != nil {
		return 0, storageErr("delete webhook deliveries", err)
	}
	return int(n), nil
}
