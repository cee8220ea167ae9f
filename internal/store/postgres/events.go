package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"mailroom/internal/store"
)

// sqlHookFanOut makes the webhook deliveries of the events counted.
var sqlHookFanOut = store.HookFanOutSQL(func(n int) string { return fmt.Sprintf("$%d", n) }, "strpos", "e.id = ANY($2)")

// dialect is how PostgreSQL spells the event queries (store.Dialect).
var dialect = store.Dialect{
	Placeholder: func(n int) string { return fmt.Sprintf("$%d", n) },
	ILike:       "ILIKE",
	HasTag:      func(ph string) string { return "tags @> jsonb_build_array(" + ph + "::text)" },
}

// insertLog enters a message in the message log with its first events,
// in one statement.
func insertLog(ctx context.Context, tx pgx.Tx, m *store.LoggedMessage, created time.Time, events []store.Event) error {
	rcpts, _ := json.Marshal(orEmpty(m.Recipients))
	tags, _ := json.Marshal(orEmpty(m.Tags))
	meta := []byte("{}")
	if m.Metadata != nil {
		meta, _ = json.Marshal(m.Metadata)
	}
	_, err := tx.Exec(ctx, `WITH l AS (INSERT INTO message_log(queue_id, created, direction, sent_by, domain, sender, from_hdr, subject,
		message_id, size, recipients, stream, tags, metadata) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
		ON CONFLICT (queue_id) DO NOTHING)
		`+sqlInsertEvents(15),
		append([]any{m.QueueID, created.UnixNano(), m.Direction, m.User, strings.ToLower(m.Domain), m.Sender, m.From, m.Subject, m.MessageID, m.Size,
			string(rcpts), m.Stream, string(tags), string(meta)}, eventColumns(events, created)...)...)
	return err
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// sqlInsertEvents inserts the events given as arrays from parameter
// $first on (eventColumns).
func sqlInsertEvents(first int) string {
	ph := make([]string, 9)
	types := []string{"bigint", "text", "text", "text", "text", "text", "text", "text", "integer"}
	for i := range ph {
		ph[i] = fmt.Sprintf("$%d::%s[]", first+i, types[i])
	}
	return `INSERT INTO events(time, kind, queue_id, recipient, domain, detail, remote, class, attempt)
		SELECT * FROM unnest(` + strings.Join(ph, ", ") + `)`
}

// eventColumns are events as the arrays sqlInsertEvents takes.
func eventColumns(events []store.Event, now time.Time) []any {
	times := make([]int64, len(events))
	var kinds, queueIDs, rcpts, domains, details, remotes, classes []string
	attempts := make([]int32, len(events))
	for i, e := range events {
		t := e.Time
		if t.IsZero() {
			t = now
		}
		times[i] = t.UnixNano()
		kinds = append(kinds, e.Kind)
		queueIDs = append(queueIDs, e.QueueID)
		rcpts = append(rcpts, strings.ToLower(e.Recipient))
		domains = append(domains, strings.ToLower(e.Domain))
		details = append(details, e.Detail)
		remotes = append(remotes, e.Remote)
		classes = append(classes, e.Class)
		attempts[i] = int32(e.Attempt)
	}
	return []any{times, kinds, queueIDs, rcpts, domains, details, remotes, classes, attempts}
}

// insertEvents records events in one statement.
func insertEvents(ctx context.Context, tx pgx.Tx, events []store.Event, now time.Time) error {
	if len(events) == 0 {
		return nil
	}
	_, err := tx.Exec(ctx, sqlInsertEvents(1), eventColumns(events, now)...)
	return err
}

// AddEvents records events of no acceptance or attempt.
func (s *Store) AddEvents(ctx context.Context, events []store.Event) error {
	err := s.retry(ctx, pgx.ReadCommitted, func(tx pgx.Tx) error { return insertEvents(ctx, tx, events, time.Now()) })
	if err != nil {
		return fmt.Errorf("%w: add events: %w", store.ErrStorage, err)
	}
	return nil
}

// Events returns the events q selects, newest first.
func (s *Store) Events(ctx context.Context, q store.EventQuery) ([]store.Event, error) {
	where, args, limit := q.SQL(dialect)
	rows, err := s.pool.Query(ctx, `SELECT id, time, kind, queue_id, recipient, domain, detail, remote, class, attempt FROM events
		WHERE `+where+` ORDER BY id DESC LIMIT `+fmt.Sprint(limit), args...)
	if err != nil {
		return nil, fmt.Errorf("%w: events: %w", store.ErrStorage, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Event, error) {
		var e store.Event
		var t int64
		err := r.Scan(&e.ID, &t, &e.Kind, &e.QueueID, &e.Recipient, &e.Domain, &e.Detail, &e.Remote, &e.Class, &e.Attempt)
		e.Time = time.Unix(0, t)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("%w: events: %w", store.ErrStorage, err)
	}
	return out, nil
}

// LoggedMessages returns the logged messages q selects, newest first.
func (s *Store) LoggedMessages(ctx context.Context, q store.MessageQuery) ([]store.LoggedMessage, error) {
	where, args, limit := q.SQL(dialect)
	rows, err := s.pool.Query(ctx, `SELECT queue_id, created, direction, sent_by, domain, sender, from_hdr, subject, message_id, size,
		recipients::text, stream, tags::text, metadata::text, `+store.StatusSQL+` FROM message_log WHERE `+where+`
		ORDER BY created DESC, queue_id DESC LIMIT `+fmt.Sprint(limit), args...)
	if err != nil {
		return nil, fmt.Errorf("%w: message log: %w", store.ErrStorage, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.LoggedMessage, error) {
		var m store.LoggedMessage
		var created int64
		var rcpts, tags, meta string
		if err := r.Scan(&m.QueueID, &created, &m.Direction, &m.User, &m.Domain, &m.Sender, &m.From, &m.Subject, &m.MessageID, &m.Size,
			&rcpts, &m.Stream, &tags, &meta, &m.Status); err != nil {
			return m, err
		}
		m.Created = time.Unix(0, created)
		return m, store.DecodeLogged(&m, rcpts, tags, meta)
	})
	if err != nil {
		return nil, fmt.Errorf("%w: message log: %w", store.ErrStorage, err)
	}
	return out, nil
}

// CountEvents adds up to limit uncounted events into event_counts. The
// rows are locked as they are read (SKIP LOCKED: nodes counting at once
// take different events), and marked in the same transaction.
func (s *Store) CountEvents(ctx context.Context, limit int) (int, error) {
	n := 0
	err := s.retry(ctx, pgx.ReadCommitted, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT e.id, e.time, e.kind, e.domain, coalesce(l.tags::text, '[]') FROM events e
			LEFT JOIN message_log l ON l.queue_id = e.queue_id AND e.queue_id <> ''
			WHERE NOT e.counted ORDER BY e.id LIMIT $1 FOR UPDATE OF e SKIP LOCKED`, limit)
		if err != nil {
			return err
		}
		counts := map[store.CountKey]int64{}
		var ids []int64
		for rows.Next() {
			var id, t int64
			var kind, domain, tags string
			if err := rows.Scan(&id, &t, &kind, &domain, &tags); err != nil {
				rows.Close()
				return err
			}
			var ts []string
			json.Unmarshal([]byte(tags), &ts)
			store.AddCount(counts, time.Unix(0, t), domain, kind, ts)
			ids = append(ids, id)
		}
		rows.Close()
		n = len(ids)
		if err := rows.Err(); err != nil || n == 0 {
			return err
		}
		var minutes []int64
		var domains, tagList, kinds []string
		var cs []int64
		for k, c := range counts {
			minutes, domains, tagList, kinds, cs = append(minutes, k.Minute), append(domains, k.Domain), append(tagList, k.Tag), append(kinds, k.Kind), append(cs, c)
		}
		_, err = tx.Exec(ctx, `WITH c AS (INSERT INTO event_counts(minute, domain, tag, kind, count)
			SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::bigint[]) ORDER BY 1, 2, 3, 4
			ON CONFLICT (minute, domain, tag, kind) DO UPDATE SET count = event_counts.count + excluded.count)
			UPDATE events SET counted = true WHERE id = ANY($6)`, minutes, domains, tagList, kinds, cs, ids)
		if err != nil {
			return err
		}
		// Their webhook deliveries, with the counts: both or neither.
		_, err = tx.Exec(ctx, sqlHookFanOut, time.Now().UnixNano(), ids)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("%w: count events: %w", store.ErrStorage, err)
	}
	return n, nil
}

// EventCounts returns the counts q selects.
func (s *Store) EventCounts(ctx context.Context, q store.CountQuery) ([]store.EventCount, error) {
	query, args := q.SQL(dialect)
	rows, err := s.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%w: event counts: %w", store.ErrStorage, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.EventCount, error) {
		var c store.EventCount
		var m int64
		err := r.Scan(&m, &c.Kind, &c.Count)
		c.Time = store.MinuteTime(m)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("%w: event counts: %w", store.ErrStorage, err)
	}
	return out, nil
}

// DeleteEvents removes up to limit rows of each table from before before.
func (s *Store) DeleteEvents(ctx context.Context, before time.Time, limit int) (int, error) {
	n := 0
	err := s.retry(ctx, pgx.ReadCommitted, func(tx pgx.Tx) error {
		n = 0
		for _, q := range []struct {
			sql string
			arg int64
		}{
			{`DELETE FROM events WHERE id IN (SELECT id FROM events WHERE time < $1 ORDER BY time LIMIT $2)`, before.UnixNano()},
			{`DELETE FROM message_log WHERE queue_id IN (SELECT queue_id FROM message_log WHERE created < $1 ORDER BY created LIMIT $2)`, before.UnixNano()},
			{`DELETE FROM event_counts WHERE ctid IN (SELECT ctid FROM event_counts WHERE minute < $1 LIMIT $2)`, before.Unix() / 60},
		} {
			tag, err := tx.Exec(ctx, q.sql, q.arg, limit)
			if err != nil {
				return err
			}
			n += int(tag.RowsAffected())
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("%w: delete events: %w", store.ErrStorage, err)
	}
	return n, nil
}
