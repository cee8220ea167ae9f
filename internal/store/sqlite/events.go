package sqlite

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"mailroom/internal/store"
)

// sqlHookFanOut makes the webhook deliveries of the events after a mark up
// to the last counted.
var sqlHookFanOut = store.HookFanOutSQL(func(n int) string { return "?" + strconv.Itoa(n) }, "instr", "e.id > ?2 AND e.id <= ?3")

// dialect is how SQLite spells the event queries (store.Dialect).
var dialect = store.Dialect{
	Placeholder: func(int) string { return "?" },
	ILike:       "LIKE", // case-insensitive for ASCII
	HasTag:      func(ph string) string { return "EXISTS (SELECT 1 FROM json_each(tags) WHERE value = " + ph + ")" },
}

const (
	sqlInsertEvent = `INSERT INTO events(time, kind, queue_id, recipient, domain, detail, remote, class, attempt) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`
	sqlInsertLog   = `INSERT INTO message_log(queue_id, created, direction, sent_by, domain, sender, from_hdr, subject, message_id, size,
		recipients, stream, tags, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(queue_id) DO NOTHING`
)

// insertLog enters a message in the message log.
func insertLog(tx *wtx, m *store.LoggedMessage, created time.Time) error {
	rcpts, _ := json.Marshal(orEmpty(m.Recipients))
	tags, _ := json.Marshal(orEmpty(m.Tags))
	meta, _ := json.Marshal(m.Metadata)
	if m.Metadata == nil {
		meta = []byte("{}")
	}
	_, err := tx.Exec(sqlInsertLog, m.QueueID, created.UnixNano(), m.Direction, m.User, strings.ToLower(m.Domain), m.Sender, m.From, m.Subject, m.MessageID, m.Size,
		string(rcpts), m.Stream, string(tags), string(meta))
	return err
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// insertEvents records events (at now when their time is zero).
func insertEvents(tx *wtx, events []store.Event, now time.Time) error {
	for _, e := range events {
		t := e.Time
		if t.IsZero() {
			t = now
		}
		if _, err := tx.Exec(sqlInsertEvent, t.UnixNano(), e.Kind, e.QueueID, strings.ToLower(e.Recipient), strings.ToLower(e.Domain),
			e.Detail, e.Remote, e.Class, e.Attempt); err != nil {
			return err
		}
	}
	return nil
}

// AddEvents records events of no acceptance or attempt.
func (s *Store) AddEvents(ctx context.Context, events []store.Event) error {
	err := s.write(ctx, func(tx *wtx) error { return insertEvents(tx, events, time.Now()) })
	if err != nil {
		return storageErr("add events", err)
	}
	return nil
}

// Events returns the events q selects, newest first.
func (s *Store) Events(ctx context.Context, q store.EventQuery) ([]store.Event, error) {
	where, args, limit := q.SQL(dialect)
	rows, err := s.query(ctx, `SELECT id, time, kind, queue_id, recipient, domain, detail, remote, class, attempt FROM events
		WHERE `+where+` ORDER BY id DESC LIMIT `+fmt.Sprint(limit), args...)
	if err != nil {
		return nil, storageErr("events", err)
	}
	defer rows.Close()
	var out []store.Event
	for rows.Next() {
		var e store.Event
		var t int64
		if err := rows.Scan(&e.ID, &t, &e.Kind, &e.QueueID, &e.Recipient, &e.Domain, &e.Detail, &e.Remote, &e.Class, &e.Attempt); err != nil {
			return nil, storageErr("events", err)
		}
		e.Time = time.Unix(0, t)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, storageErr("events", err)
	}
	return out, nil
}

// LoggedMessages returns the logged messages q selects, newest first.
func (s *Store) LoggedMessages(ctx context.Context, q store.MessageQuery) ([]store.LoggedMessage, error) {
	where, args, limit := q.SQL(dialect)
	rows, err := s.query(ctx, `SELECT queue_id, created, direction, sent_by, domain, sender, from_hdr, subject, message_id, size,
		recipients, stream, tags, metadata, `+store.StatusSQL+` FROM message_log WHERE `+where+` ORDER BY created DESC, queue_id DESC LIMIT `+fmt.Sprint(limit), args...)
	if err != nil {
		return nil, storageErr("message log", err)
	}
	defer rows.Close()
	var out []store.LoggedMessage
	for rows.Next() {
		var m store.LoggedMessage
		var created int64
		var rcpts, tags, meta string
		if err := rows.Scan(&m.QueueID, &created, &m.Direction, &m.User, &m.Domain, &m.Sender, &m.From, &m.Subject, &m.MessageID, &m.Size,
			&rcpts, &m.Stream, &tags, &meta, &m.Status); err != nil {
			return nil, storageErr("message log", err)
		}
		m.Created = time.Unix(0, created)
		if err := store.DecodeLogged(&m, rcpts, tags, meta); err != nil {
			return nil, storageErr("message log", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, storageErr("message log", err)
	}
	return out, nil
}

// CountEvents adds up to limit events after the last counted into
// event_counts, and makes their webhook deliveries. Event ids grow in commit order (one writer, and only the
// oldest are ever deleted), so the events are read from a snapshot,
// outside the writer, and the write moves the mark only if no other count
// moved it meanwhile.
func (s *Store) CountEvents(ctx context.Context, limit int) (int, error) {
	var mark int64
	if err := s.queryRow(ctx, `SELECT next FROM sequences WHERE name = 'events_counted'`).Scan(&mark); err != nil {
		return 0, storageErr("count events", err)
	}
	rows, err := s.query(ctx, `SELECT e.id, e.time, e.kind, e.domain, coalesce(l.tags, '[]') FROM events e
		LEFT JOIN message_log l ON l.queue_id = e.queue_id AND e.queue_id <> ''
		WHERE e.id > ? ORDER BY e.id LIMIT ?`, mark, limit)
	if err != nil {
		return 0, storageErr("count events", err)
	}
	counts := map[store.CountKey]int64{}
	last, n := mark, 0
	for rows.Next() {
		var t int64
		var kind, domain, tags string
		if err := rows.Scan(&last, &t, &kind, &domain, &tags); err != nil {
			rows.Close()
			return 0, storageErr("count events", err)
		}
		var ts []string
		json.Unmarshal([]byte(tags), &ts)
		store.AddCount(counts, time.Unix(0, t), domain, kind, ts)
		n++
	}
	rows.Close()
	if err := rows.Err(); err != nil || n == 0 {
		return 0, err
	}
	err = s.writeLazy(ctx, false, func(tx *wtx) error {
		res, err := tx.Exec(`UPDATE sequences SET next = ? WHERE name = 'events_counted' AND next = ?`, last, mark)
		if err != nil {
			return err
		}
		if moved, _ := res.RowsAffected(); moved == 0 {
			n = 0 // another count took these
			return nil
		}
		for k, c := range counts {
			if _, err := tx.Exec(`INSERT INTO event_counts(minute, domain, tag, kind, count) VALUES (?, ?, ?, ?, ?)
				ON CONFLICT(minute, domain, tag, kind) DO UPDATE SET count = count + excluded.count`, k.Minute, k.Domain, k.Tag, k.Kind, c); err != nil {
				return err
			}
		}
		// Their webhook deliveries, with the counts: both or neither.
		_, err = tx.Exec(sqlHookFanOut, time.Now().UnixNano(), mark, last)
		return err
	})
	if err != nil {
		return 0, storageErr("count events", err)
	}
	return n, nil
}

// EventCounts returns the counts q selects.
func (s *Store) EventCounts(ctx context.Context, q store.CountQuery) ([]store.EventCount, error) {
	query, args := q.SQL(dialect)
	rows, err := s.query(ctx, query, args...)
	if err != nil {
		return nil, storageErr("event counts", err)
	}
	defer rows.Close()
	var out []store.EventCount
	for rows.Next() {
		var c store.EventCount
		var m int64
		if err := rows.Scan(&m, &c.Kind, &c.Count); err != nil {
			return nil, storageErr("event counts", err)
		}
		c.Time = store.MinuteTime(m)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, storageErr("event counts", err)
	}
	return out, nil
}

// DeleteEvents removes up to limit rows of each table from before before.
func (s *Store) DeleteEvents(ctx context.Context, before time.Time, limit int) (int, error) {
	n := 0
	err := s.write(ctx, func(tx *wtx) error {
		n = 0
		for _, q := range []struct {
			sql string
			arg int64
		}{
			// Never the newest: ids are max+1, and the counter's mark must
			// not see an id again.
			{`DELETE FROM events WHERE id IN (SELECT id FROM events WHERE time < ? AND id < (SELECT max(id) FROM events) ORDER BY time LIMIT ?)`, before.UnixNano()},
			{`DELETE FROM message_log WHERE queue_id IN (SELECT queue_id FROM message_log WHERE created < ? ORDER BY created LIMIT ?)`, before.UnixNano()},
			{`DELETE FROM event_counts WHERE (minute, domain, tag, kind) IN (SELECT minute, domain, tag, kind FROM event_counts WHERE minute < ? LIMIT ?)`, before.Unix() / 60},
		} {
			res, err := tx.Exec(q.sql, q.arg, limit)
			if err != nil {
				return err
			}
			d, _ := res.RowsAffected()
			n += int(d)
		}
		return nil
	})
	if err != nil {
		return 0, storageErr("delete events", err)
	}
	return n, nil
}
