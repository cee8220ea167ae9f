package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"mailroom/internal/store"
)

const queueColumns = `SELECT q.id, m.queue_id, q.message_id, q.address, q.domain, q.notify, q.orcpt, q.state, q.attempts,
	q.next_attempt, q.last_error, q.held, q.created, json_extract(m.envelope, '$.mail_from'), m.size, m.envelope, q.warned, q.active
	FROM queue q JOIN messages m ON m.id = q.message_id`

// The scheduler's statements, named so that a test can check their query
// plans: each finds its rows through an index, so a large deferred queue
// costs nothing until it is due.
const (
	// sqlClaimDue reads the due entries through queue_due, in its order.
	sqlClaimDue = queueColumns + ` WHERE q.state IN ('pending', 'deferred') AND q.held = 0 AND q.next_attempt <= ?
			ORDER BY q.next_attempt LIMIT ?`
	sqlClaim = `UPDATE queue SET active = 1, next_attempt = ? WHERE id = ?`
	// sqlNextDue reads the first entry of queue_due.
	sqlNextDue = `SELECT min(next_attempt) FROM queue WHERE state IN ('pending', 'deferred') AND held = 0`
	// sqlReleaseAllClaims finds the active entries through queue_active.
	sqlReleaseAllClaims = `UPDATE queue SET active = 0, next_attempt = ? WHERE active = 1`
	sqlReleaseClaim     = `UPDATE queue SET active = 0, next_attempt = ? WHERE id = ? AND active = 1`
	sqlRecordResult     = `UPDATE queue SET state = ?, active = 0, attempts = attempts + 1, next_attempt = ?, last_error = ?, warned = warned OR ?
				WHERE id = ? AND state IN ('pending', 'deferred') RETURNING message_id`
)

func scanEntry(r scanner) (store.QueueEntry, error) {
	var e store.QueueEntry
	var notify string
	var next, created int64
	var held, warned, active int
	var from sql.NullString
	var env []byte
	err := r.Scan(&e.ID, &e.QueueID, &e.MessageID, &e.Recipient.Address, &e.Recipient.Domain, &notify, &e.Recipient.ORcpt,
		&e.State, &e.Attempts, &next, &e.LastError, &held, &created, &from, &e.Size, &env, &warned, &active)
	if err == nil {
		err = decodeEnvelope(env, &e.SMTPEnvelope)
	}
	if notify != "" {
		e.Recipient.Notify = strings.Split(notify, ",")
	}
	e.NextAttempt, e.Created, e.Held, e.MailFrom, e.Warned = time.Unix(0, next), time.Unix(0, created), held != 0, from.String, warned != 0
	e.Active = active != 0
	return e, err
}

func (s *Store) entries(ctx context.Context, q string, args ...any) ([]store.QueueEntry, error) {
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.QueueEntry
	for rows.Next() {
		e, err := scanEntry(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// ClaimDue claims due entries, oldest due first.
func (s *Store) ClaimDue(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]store.QueueEntry, error) {
	var out []store.QueueEntry
	err := s.write(ctx, func(tx *wtx) error {
		out = out[:0]
		rows, err := tx.Query(sqlClaimDue, now.UnixNano(), limit)
		if err != nil {
			return err
		}
		for rows.Next() {
			e, err := scanEntry(rows)
			if err != nil {
				rows.Close()
				return err
			}
			out = append(out, e)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		until := now.Add(lease).UnixNano()
		for i := range out {
			if _, err := tx.Exec(sqlClaim, until, out[i].ID); err != nil {
				return err
			}
			out[i].Active = true
		}
		return nil
	})
	return out, err
}

// ReleaseClaims makes active entries wait again, due at at.
func (s *Store) ReleaseClaims(ctx context.Context, ids []int64, at time.Time) error {
	return s.write(ctx, func(tx *wtx) error {
		if ids == nil {
			_, err := tx.Exec(sqlReleaseAllClaims, at.UnixNano())
			return err
		}
		for _, id := range ids {
			if _, err := tx.Exec(sqlReleaseClaim, at.UnixNano(), id); err != nil {
				return err
			}
		}
		return nil
	})
}

// RenewClaims extends active claims.
func (s *Store) RenewClaims(ctx context.Context, ids []int64, until time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	return s.writeLazy(ctx, false, func(tx *wtx) error {
		for _, id := range ids {
			if _, err := tx.Exec(`UPDATE queue SET next_attempt = ? WHERE id = ? AND active = 1`, until.UnixNano(), id); err != nil {
				return err
			}
		}
		return nil
	})
}

// NextDue returns the earliest due time of a waiting entry.
func (s *Store) NextDue(ctx context.Context) (time.Time, bool, error) {
	var next sql.NullInt64
	err := s.queryRow(ctx, sqlNextDue).Scan(&next)
	if err != nil || !next.Valid {
		return time.Time{}, false, err
	}
	return time.Unix(0, next.Int64), true, nil
}

// QueueEntries lists entries, of one queue ID or all, oldest first.
func (s *Store) QueueEntries(ctx context.Context, queueID string) ([]store.QueueEntry, error) {
	if queueID == "" {
		return s.entries(ctx, queueColumns+` ORDER BY q.created, q.id`)
	}
	return s.entries(ctx, sqlEntriesOf, queueID)
}

// QueueStats counts the entries in one pass over the queue table (no
// join, nothing decoded), so that it stays cheap on a large queue.
func (s *Store) QueueStats(ctx context.Context) (store.QueueStats, error) {
	var st store.QueueStats
	var oldest sql.NullInt64
	err := s.queryRow(ctx, sqlQueueStats).Scan(&st.Pending, &st.Deferred, &st.Delivered, &st.Failed, &st.Held, &st.Sending, &st.Total, &oldest)
	if err != nil {
		return st, storageErr("queue stats", err)
	}
	if oldest.Valid {
		st.Oldest = time.Unix(0, oldest.Int64)
	}
	return st, nil
}

const sqlQueueStats = `SELECT count(*) FILTER (WHERE state = 'pending'), count(*) FILTER (WHERE state = 'deferred'),
	count(*) FILTER (WHERE state = 'delivered'), count(*) FILTER (WHERE state = 'failed'),
	count(*) FILTER (WHERE held <> 0), count(*) FILTER (WHERE active <> 0), count(*),
	min(created) FILTER (WHERE state IN ('pending', 'deferred')) FROM queue`

// sqlEntriesOf finds one message's entries through its indexes. (One
// statement for both cases, `WHERE ? = ” OR m.queue_id = ?`, made SQLite
// read the whole queue for one message.)
const sqlEntriesOf = queueColumns + ` WHERE m.queue_id = ? ORDER BY q.created, q.id`

// RecordResults applies attempt outcomes and removes messages that are
// done with.
func (s *Store) RecordResults(ctx context.Context, results []store.QueueResult) error {
	var files []string
	err := s.write(ctx, func(tx *wtx) error {
		var msgIDs []int64
		for _, r := range results {
			var msgID int64
			err := tx.QueryRow(sqlRecordResult, r.State, r.NextAttempt.UnixNano(), r.Error, r.Warned, r.ID).Scan(&msgID)
			if errors.Is(err, sql.ErrNoRows) {
				continue // deleted or already final meanwhile
			}
			if err != nil {
				return err
			}
			if r.State == store.StateDelivered || r.State == store.StateFailed {
				msgIDs = append(msgIDs, msgID)
			}
			if r.Event != nil {
				if err := insertEvents(tx, []store.Event{*r.Event}, time.Now()); err != nil {
					return err
				}
			}
		}
		var err error
		files, err = deleteUnreferenced(tx, msgIDs)
		return err
	})
	if err == nil {
		s.removeBlobs(files)
	}
	return err
}

// OpenQueued returns a queued message's body: from the body cache while
// the message is fresh, from the database after.
func (s *Store) OpenQueued(ctx context.Context, messageID int64) (io.ReadCloser, error) {
	if b, ok := s.bodies.get(messageID); ok {
		return io.NopCloser(bytes.NewReader(b)), nil
	}
	var body []byte
	var file sql.NullString
	err := s.queryRow(ctx, `SELECT body, body_file FROM messages WHERE id = ?`, messageID).Scan(&body, &file)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("queued message %d: %w", messageID, store.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	if !file.Valid {
		return io.NopCloser(bytes.NewReader(body)), nil
	}
	f, err := s.openBlob(file.String)
	if err != nil {
		return nil, err
	}
	return f, nil
}

// waiting returns the condition for entries not yet final, of one queue
// ID or all for "", and its arguments.
func waiting(queueID string) (string, []any) {
	if queueID == "" {
		return waitingAll, nil
	}
	return waitingOf, []any{queueID}
}

// waitingOf finds one message's entries through queue_message. (One
// condition for both cases, `? = ” OR message_id IN …`, made SQLite read
// the whole queue for one message.)
const (
	waitingAll = ` state IN ('pending', 'deferred')`
	waitingOf  = ` state IN ('pending', 'deferred') AND message_id IN (SELECT id FROM messages WHERE queue_id = ?)`
)

// updateWaiting applies set to the waiting entries of queueID (all for
// "") that also meet cond.
func (s *Store) updateWaiting(ctx context.Context, set, cond, queueID string, args ...any) (int, error) {
	var n int64
	err := s.write(ctx, func(tx *wtx) error {
		w, wargs := waiting(queueID)
		res, err := tx.Exec(`UPDATE queue SET `+set+` WHERE `+cond+` AND`+w, append(args, wargs...)...)
		if err != nil {
			return err
		}
		n, _ = res.RowsAffected()
		return nil
	})
	return int(n), err
}

// SetHeld holds or releases waiting entries.
func (s *Store) SetHeld(ctx context.Context, queueID string, held bool) (int, error) {
	h := 0
	if held {
		h = 1
	}
	n, err := s.updateWaiting(ctx, "held = ?", "1", queueID, h)
	if err == nil && n > 0 && !held {
		s.queuemark.changed()
	}
	return n, err
}

// OnQueueDue calls f whenever another process (the CLI) made queue entries
// due now (queue retry, release), so that the runner looks at once instead
// of at its next scan. Where the stamps cannot be watched (no inotify) f is
// not called and the runner finds the entries at its next scan.
func (s *Store) OnQueueDue(f func()) { s.queuemark.onChange.Store(&f) }

// RetryNow makes waiting entries due now, except those under way.
func (s *Store) RetryNow(ctx context.Context, queueID string) (int, error) {
	n, err := s.updateWaiting(ctx, "next_attempt = ?", "active = 0", queueID, time.Now().UnixNano())
	if err == nil && n > 0 {
		s.queuemark.changed()
	}
	return n, err
}

// DeleteQueued removes waiting entries without delivering them.
func (s *Store) DeleteQueued(ctx context.Context, queueID string) (int, error) {
	var n int64
	var files []string
	// A server beside this process keeps a cached body until it ages
	// out: the message's ID is never given to another.
	err := s.write(ctx, func(tx *wtx) error {
		w, wargs := waiting(queueID)
		rows, err := tx.Query(`DELETE FROM queue WHERE`+w+` RETURNING message_id`, wargs...)
		if err != nil {
			return err
		}
		var ids []int64
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			ids = append(ids, id)
		}
		rows.Close()
		n = int64(len(ids))
		files, err = deleteUnreferenced(tx, ids)
		return err
	})
	if err == nil {
		s.removeBlobs(files)
	}
	return int(n), err
}

// OpenByQueueID returns the body of the message accepted under queueID.
func (s *Store) OpenByQueueID(ctx context.Context, queueID string) (io.ReadCloser, error) {
	var id int64
	err := s.queryRow(ctx, `SELECT id FROM messages WHERE queue_id = ? ORDER BY id LIMIT 1`, queueID).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("message %s: %w", queueID, store.ErrNotFound)
	}
	if err != nil {
		return nil, storageErr("open message", err)
	}
	return s.OpenQueued(ctx, id)
}
