package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"strings"

	"mailroom/internal/store"
)

var _ store.Exporter = (*Store)(nil)

// exportSelect is the SELECT list of a logical table where the embedded
// store's columns differ, and what follows FROM.
var exportSelect = map[string]struct{ list, from string }{
	// A large body is a file of its own (body_file, read by scanRow).
	"messages": {"id, queue_id, received, size, envelope, from_hdr, subject, body, body_file", "messages"},
	// Tombstones outlive their mailbox here (no foreign key).
	"expunged": {"mailbox_id, uid, modseq", "expunged WHERE mailbox_id IN (SELECT id FROM mailboxes)"},
	// Counted: up to the counter's mark (the PostgreSQL store marks each).
	"events": {"id, time, kind, queue_id, recipient, domain, detail, remote, class, attempt, " +
		"id <= (SELECT next FROM sequences WHERE name = 'events_counted') AS counted", "events"},
	// The next value of each identity: the counted ones (sequences), the
	// AUTOINCREMENT ones (sqlite_sequence), else the largest given + 1.
	"sequences": {"name, next", `(SELECT 'users' AS name, coalesce(max(id), 0) + 1 AS next FROM users
		UNION ALL SELECT name, next FROM sequences WHERE name IN ('mailboxes', 'messages', 'queue')
		UNION ALL SELECT 'dkim_keys', max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'dkim_keys'), 0), coalesce(max(id), 0)) + 1 FROM dkim_keys
		UNION ALL SELECT 'dmarc_reports', max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'dmarc_reports'), 0), coalesce(max(id), 0)) + 1 FROM dmarc_reports
		UNION ALL SELECT 'mailbox_snapshots', coalesce(max(saved), 0) + 1 FROM mailbox_snapshots
		UNION ALL SELECT 'events', coalesce(max(id), 0) + 1 FROM events
		UNION ALL SELECT 'webhooks', max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'webhooks'), 0), coalesce(max(id), 0)) + 1 FROM webhooks
		UNION ALL SELECT 'hook_deliveries', max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'hook_deliveries'), 0), coalesce(max(id), 0)) + 1 FROM hook_deliveries)`},
}

// from is what the table's rows are read from.
func from(t store.Table) (list, src string) {
	if e, ok := exportSelect[t.Name]; ok {
		return e.list, e.from
	}
	return strings.Join(t.Names(), ", "), t.Name
}

// Export reads a logical table (store.Exporter) in one read transaction.
func (s *Store) Export(ctx context.Context, t store.Table, after store.Row, fn func(store.Row) error) error {
	list, src := from(t)
	cond, args := t.After(after, func(int) string { return "?" })
	q := "SELECT " + list + " FROM " + src
	if strings.Contains(src, " WHERE ") {
		q = "SELECT * FROM (" + q + ")"
	}
	rows, err := s.reads.db.QueryContext(ctx, q+" WHERE "+cond+" ORDER BY "+t.OrderBy(), args...)
	if err != nil {
		return fmt.Errorf("store: read %s: %w", t.Name, err)
	}
	defer rows.Close()
	for rows.Next() {
		r, err := s.scanRow(t, rows)
		if err != nil {
			return fmt.Errorf("store: read %s: %w", t.Name, err)
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return rows.Err()
}

// scanRow reads one row of t into its neutral form.
func (s *Store) scanRow(t store.Table, rows *sql.Rows) (store.Row, error) {
	ptrs := make([]any, len(t.Columns), len(t.Columns)+1)
	for i, c := range t.Columns {
		switch c.Kind {
		case store.KindInt, store.KindBool:
			ptrs[i] = new(int64)
		case store.KindText, store.KindJSON:
			ptrs[i] = new(string)
		case store.KindBytes:
			ptrs[i] = new([]byte)
		}
	}
	var file sql.NullString
	if t.Name == "messages" {
		ptrs = append(ptrs, &file)
	}
	if err := rows.Scan(ptrs...); err != nil {
		return nil, err
	}
	r := make(store.Row, len(t.Columns))
	for i, c := range t.Columns {
		switch v := ptrs[i].(type) {
		case *int64:
			if c.Kind == store.KindBool {
				r[i] = *v != 0
			} else {
				r[i] = *v
			}
		case *string:
			r[i] = *v
		case *[]byte:
			r[i] = append([]byte{}, *v...) // never nil: NOT NULL where it goes
		}
	}
	if file.Valid {
		err := s.withBlob(file.String, func(f *os.File) error {
			b, err := io.ReadAll(f)
			r[len(r)-1] = b
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	return r, nil
}

// CountRows counts a logical table's rows (store.Exporter).
func (s *Store) CountRows(ctx context.Context, t store.Table) (int64, error) {
	_, src := from(t)
	var n int64
	if err := s.reads.db.QueryRowContext(ctx, "SELECT count(*) FROM "+src).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count %s: %w", t.Name, err)
	}
	return n, nil
}
