package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"mailroom/internal/store"
)

const queueColumns = `SELECT q.id, m.queue_id, q.message_id, q.address, q.domain, q.notify, q.orcpt, q.state, q.attempts,
	q.next_attempt, q.last_error, q.held, q.created, m.size, m.envelope, q.warned, q.active
	FROM queue q JOIN messages m ON m.id = q.message_id`

func scanEntry(r pgx.Row) (store.QueueEntry, error) {
	var e store.QueueEntry
	var notify string
	var next, created int64
	var env []byte
	err := r.Scan(&e.ID, &e.QueueID, &e.MessageID, &e.Recipient.Address, &e.Recipient.Domain, &notify, &e.Recipient.ORcpt,
		&e.State, &e.Attempts, &next, &e.LastError, &e.Held, &created, &e.Size, &env, &e.Warned, &e.Active)
	if err == nil {
		err = json.Unmarshal(env, &e.SMTPEnvelope)
	}
	if notify != "" {
		e.Recipient.Notify = strings.Split(notify, ",")
	}
	e.NextAttempt, e.Created, e.MailFrom = time.Unix(0, next), time.Unix(0, created), e.SMTPEnvelope.MailFrom
	return e, err
}

func (s *Store) entries(ctx context.Context, q string, args ...any) ([]store.QueueEntry, error) {
	rows, _ := s.pool.Query(ctx, q, args...)
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.QueueEntry, error) { return scanEntry(r) })
}

// ClaimDue claims due entries, oldest due first, with a lease: the claim
// is this node's until the lease ends; then, if the node has not recorded
// a result (it died), the entry is due again for any node. Entries another
// node is claiming at the same moment are skipped, not waited for.
func (s *Store) ClaimDue(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]store.QueueEntry, error) {
	var out []store.QueueEntry
	err := s.retry(ctx, pgx.ReadCommitted, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `UPDATE queue SET active = true, owner = $1, next_attempt = $2
			WHERE id IN (SELECT id FROM queue WHERE state IN ('pending', 'deferred') AND NOT held AND next_attempt <= $3
				ORDER BY next_attempt LIMIT $4 FOR UPDATE SKIP LOCKED)
			RETURNING id`, s.node, now.Add(lease).UnixNano(), now.UnixNano(), limit)
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil || len(ids) == 0 {
			return err
		}
		rows, _ = tx.Query(ctx, queueColumns+` WHERE q.id = ANY($1) ORDER BY q.next_attempt, q.id`, ids)
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.QueueEntry, error) { return scanEntry(r) })
		return err
	})
	return out, err
}

// ReleaseClaims makes this node's active entries (those listed, or all)
// wait again, due at at. Another node's claims are left to it, or to the
// end of their lease.
func (s *Store) ReleaseClaims(ctx context.Context, ids []int64, at time.Time) error {
	var err error
	if ids == nil {
		_, err = s.pool.Exec(ctx, `UPDATE queue SET active = false, owner = '', next_attempt = $1 WHERE active AND owner = $2`, at.UnixNano(), s.node)
	} else {
		_, err = s.pool.Exec(ctx, `UPDATE queue SET active = false, owner = '', next_attempt = $1 WHERE active AND id = ANY($2)`, at.UnixNano(), ids)
	}
	return err
}

// RenewClaims extends this node's active claims.
func (s *Store) RenewClaims(ctx context.Context, ids []int64, until time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := s.pool.Exec(ctx, `UPDATE queue SET next_attempt = $1 WHERE active AND owner = $2 AND id = ANY($3)`, until.UnixNano(), s.node, ids)
	return err
}

// NextDue returns the earliest due time of a waiting entry.
func (s *Store) NextDue(ctx context.Context) (time.Time, bool, error) {
	var next *int64
	err := s.pool.QueryRow(ctx, `SELECT min(next_attempt) FROM queue WHERE state IN ('pending', 'deferred') AND NOT held`).Scan(&next)
	if err != nil || next == nil {
		return time.Time{}, false, err
	}
	return time.Unix(0, *next), true, nil
}

// QueueEntries lists entries, of one queue ID or all, oldest first.
func (s *Store) QueueEntries(ctx context.Context, queueID string) ([]store.QueueEntry, error) {
	if queueID == "" {
		return s.entries(ctx, queueColumns+` ORDER BY q.created, q.id`)
	}
	return s.entries(ctx, queueColumns+` WHERE m.queue_id = $1 ORDER BY q.created, q.id`, queueID)
}

// QueueStats counts the entries.
func (s *Store) QueueStats(ctx context.Context) (store.QueueStats, error) {
	var st store.QueueStats
	var oldest *int64
	err := s.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state = 'pending'), count(*) FILTER (WHERE state = 'deferred'),
		count(*) FILTER (WHERE state = 'delivered'), count(*) FILTER (WHERE state = 'failed'),
		count(*) FILTER (WHERE held), count(*) FILTER (WHERE active), count(*),
		min(created) FILTER (WHERE state IN ('pending', 'deferred')) FROM queue`).
		Scan(&st.Pending, &st.Deferred, &st.Delivered, &st.Failed, &st.Held, &st.Sending, &st.Total, &oldest)
	if err != nil {
		return st, fmt.Errorf("%w: queue stats: %w", store.ErrStorage, err)
	}
	if oldest != nil {
		st.Oldest = time.Unix(0, *oldest)
	}
	return st, nil
}

// RecordResults applies attempt outcomes and removes messages that are
// done with, in one transaction.
func (s *Store) RecordResults(ctx context.Context, results []store.QueueResult) error {
	return s.retry(ctx, pgx.ReadCommitted, func(tx pgx.Tx) error {
		var msgIDs []int64
		for _, r := range results {
			var msgID int64
			err := tx.QueryRow(ctx, `UPDATE queue SET state = $1, active = false, owner = '', attempts = attempts + 1, next_attempt = $2,
				last_error = $3, warned = warned OR $4 WHERE id = $5 AND state IN ('pending', 'deferred') RETURNING message_id`,
				r.State, r.NextAttempt.UnixNano(), r.Error, r.Warned, r.ID).Scan(&msgID)
			if errors.Is(err, pgx.ErrNoRows) {
				continue // deleted or already final meanwhile
			}
			if err != nil {
				return err
			}
			if r.State == store.StateDelivered || r.State == store.StateFailed {
				msgIDs = append(msgIDs, msgID)
			}
			if r.Event != nil {
				if err := insertEvents(ctx, tx, []store.Event{*r.Event}, time.Now()); err != nil {
					return err
				}
			}
		}
		return deleteUnreferenced(ctx, tx, msgIDs)
	})
}

// OpenQueued returns a queued message's body.
func (s *Store) OpenQueued(ctx context.Context, messageID int64) (io.ReadCloser, error) {
	var body []byte
	var chunked bool
	err := s.pool.QueryRow(ctx, `SELECT body, chunked FROM messages WHERE id = $1`, messageID).Scan(&body, &chunked)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("queued message %d: %w", messageID, store.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	if chunked {
		return io.NopCloser(s.large.open(ctx, messageID)), nil
	}
	return io.NopCloser(bytes.NewReader(body)), nil
}

// waiting is the condition for entries not yet final, of one queue ID
// ($1) or all (when $1 is empty).
const waiting = ` state IN ('pending', 'deferred') AND ($1 = '' OR message_id IN (SELECT id FROM messages WHERE queue_id = $1))`

// SetHeld holds or releases waiting entries; released ones wake every
// node's queue runner.
func (s *Store) SetHeld(ctx context.Context, queueID string, held bool) (int, error) {
	return s.updateWaiting(ctx, !held, `UPDATE queue SET held = $2 WHERE`+waiting, queueID, held)
}

// RetryNow makes waiting entries due now, except those under way, and
// wakes every node's queue runner.
func (s *Store) RetryNow(ctx context.Context, queueID string) (int, error) {
	return s.updateWaiting(ctx, true, `UPDATE queue SET next_attempt = $2 WHERE NOT active AND`+waiting, queueID, time.Now().UnixNano())
}

// updateWaiting runs an update of waiting entries; when due is set and
// it changed some, the queue runners of every node hear of it.
func (s *Store) updateWaiting(ctx context.Context, due bool, q string, args ...any) (int, error) {
	var n int64
	err := s.run(ctx, pgx.ReadCommitted, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, q, args...)
		if err != nil {
			return err
		}
		if n = tag.RowsAffected(); n > 0 && due {
			_, err = tx.Exec(ctx, `SELECT pg_notify($1, '')`, queueChannel)
		}
		return err
	})
	return int(n), err
}

// OnQueueDue calls f whenever entries were made due now (queue retry or
// release, from the CLI or another node), so that the runner looks at
// once instead of at its next scan.
func (s *Store) OnQueueDue(f func()) { s.queueDue.Store(&f) }

// DeleteQueued removes waiting entries without delivering them.
func (s *Store) DeleteQueued(ctx context.Context, queueID string) (int, error) {
	var n int
	err := s.retry(ctx, pgx.ReadCommitted, func(tx pgx.Tx) error {
		rows, _ := tx.Query(ctx, `DELETE FROM queue WHERE`+waiting+` RETURNING message_id`, queueID)
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return err
		}
		n = len(ids)
		return deleteUnreferenced(ctx, tx, ids)
	})
	return n, err
}

// OpenByQueueID returns the body of the message accepted under queueID.
func (s *Store) OpenByQueueID(ctx context.Context, queueID string) (io.ReadCloser, error) {
	var id int64
	err := s.pool.QueryRow(ctx, `SELECT id FROM messages WHERE queue_id = $1 ORDER BY id LIMIT 1`, queueID).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("message %s: %w", queueID, store.ErrNotFound)
	}
	if err != nil {
		return nil, storageError("open message", err)
	}
	return s.OpenQueued(ctx, id)
}
