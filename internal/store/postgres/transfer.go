package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"mailroom/internal/store"
)

var (
	_ store.Exporter = (*Store)(nil)
	_ store.Importer = (*Store)(nil)
)

// identities maps the names of store.Sequences to their PostgreSQL
// sequences.
var identities = map[string]string{
	"users": "users_id_seq", "mailboxes": "mailboxes_id_seq", "messages": "messages_id_seq",
	"queue": "queue_id_seq", "dkim_keys": "dkim_keys_id_seq", "dmarc_reports": "dmarc_reports_id_seq",
	"mailbox_snapshots": "mailbox_snapshots_saved", "events": "events_id_seq",
	"webhooks": "webhooks_id_seq", "hook_deliveries": "hook_deliveries_id_seq",
}

// exportFrom is the SELECT list and source of a logical table.
func exportFrom(t store.Table) (list, src string) {
	switch t.Name {
	case "messages":
		return "id, queue_id, received, size, envelope::text, from_hdr, subject, body, chunked", "messages"
	case "sequences":
		var parts []string
		for _, name := range store.Sequences {
			parts = append(parts, fmt.Sprintf(`SELECT '%s' AS name, coalesce((SELECT last_value FROM pg_sequences
				WHERE schemaname = current_schema() AND sequencename = '%s'), 0) + 1 AS next`, name, identities[name]))
		}
		return "name, next", "(" + strings.Join(parts, " UNION ALL ") + ") seqs"
	}
	names := t.Names()
	for i, c := range t.Columns {
		if c.Kind == store.KindJSON {
			names[i] += "::text"
		}
	}
	return strings.Join(names, ", "), t.Name
}

// Export reads a logical table (store.Exporter).
func (s *Store) Export(ctx context.Context, t store.Table, after store.Row, fn func(store.Row) error) error {
	list, src := exportFrom(t)
	cond, args := t.After(after, func(n int) string { return "$" + strconv.Itoa(n) })
	rows, err := s.pool.Query(ctx, "SELECT "+list+" FROM "+src+" WHERE "+cond+" ORDER BY "+t.OrderBy(), args...)
	if err != nil {
		return fmt.Errorf("store: read %s: %w", t.Name, err)
	}
	defer rows.Close()
	for rows.Next() {
		ptrs := make([]any, len(t.Columns), len(t.Columns)+1)
		for i, c := range t.Columns {
			switch c.Kind {
			case store.KindInt:
				ptrs[i] = new(int64)
			case store.KindBool:
				ptrs[i] = new(bool)
			case store.KindText, store.KindJSON:
				ptrs[i] = new(string)
			case store.KindBytes:
				ptrs[i] = new([]byte)
			}
		}
		var chunked bool
		if t.Name == "messages" {
			ptrs = append(ptrs, &chunked)
		}
		if err := rows.Scan(ptrs...); err != nil {
			return fmt.Errorf("store: read %s: %w", t.Name, err)
		}
		r := make(store.Row, len(t.Columns))
		for i := range r {
			switch v := ptrs[i].(type) {
			case *int64:
				r[i] = *v
			case *bool:
				r[i] = *v
			case *string:
				r[i] = *v
			case *[]byte:
				r[i] = append([]byte{}, *v...) // never nil: NOT NULL where it goes
			}
		}
		if chunked {
			body, err := io.ReadAll(s.large.open(ctx, r[0].(int64)))
			if err != nil {
				return err
			}
			r[len(r)-1] = body
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return rows.Err()
}

// CountRows counts a logical table's rows (store.Exporter).
func (s *Store) CountRows(ctx context.Context, t store.Table) (int64, error) {
	_, src := exportFrom(t)
	var n int64
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM "+src).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count %s: %w", t.Name, err)
	}
	return n, nil
}

// The progress of a copy into this store is kept in store_copy until the
// copy is verified (FinishImport).
const createCopyProgress = `CREATE TABLE IF NOT EXISTS store_copy (
	tbl  text PRIMARY KEY,
	last jsonb,
	done boolean NOT NULL DEFAULT false)`

// ImportState says where a copy into this store stands (store.Importer).
// The progress table is made only in a store that takes a copy.
func (s *Store) ImportState(ctx context.Context) (map[string]store.Row, map[string]bool, bool, error) {
	last, done := map[string]store.Row{}, map[string]bool{}
	var begun bool
	if err := s.pool.QueryRow(ctx, `SELECT to_regclass('store_copy') IS NOT NULL`).Scan(&begun); err != nil {
		return nil, nil, false, fmt.Errorf("store: look for a copy under way: %w", err)
	}
	if begun {
		rows, err := s.pool.Query(ctx, `SELECT tbl, coalesce(last::text, ''), done FROM store_copy`)
		if err != nil {
			return nil, nil, false, fmt.Errorf("store: the copy's progress: %w", err)
		}
		var (
			name, key string
			finished  bool
		)
		_, err = pgx.ForEachRow(rows, []any{&name, &key, &finished}, func() error {
			t, ok := store.TableNamed(name)
			if !ok {
				return fmt.Errorf("the copy's progress names a table %q this Mailroom does not know", name)
			}
			done[name] = finished
			if key != "" {
				r, err := decodeKey(t, key)
				if err != nil {
					return err
				}
				last[name] = r
			}
			return nil
		})
		if err != nil {
			return nil, nil, false, fmt.Errorf("store: the copy's progress: %w", err)
		}
		return last, done, true, nil
	}
	for _, t := range store.Tables {
		if t.Name == "secrets" || t.Name == "sequences" {
			continue
		}
		var some bool
		if err := s.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM "+t.Name+")").Scan(&some); err != nil {
			return nil, nil, false, fmt.Errorf("store: look into %s: %w", t.Name, err)
		}
		if some {
			return last, done, false, nil
		}
	}
	if _, err := s.pool.Exec(ctx, createCopyProgress); err != nil {
		return nil, nil, false, fmt.Errorf("store: the copy's progress table: %w", err)
	}
	return last, done, true, nil
}

// decodeKey reads a key kept as a JSON array back into its Go types.
func decodeKey(t store.Table, text string) (store.Row, error) {
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber()
	var vals []any
	if err := dec.Decode(&vals); err != nil || len(vals) != t.Key {
		return nil, fmt.Errorf("the copy's progress for %s is not a key: %q", t.Name, text)
	}
	r := make(store.Row, t.Key)
	for i, v := range vals {
		switch n := v.(type) {
		case json.Number:
			k, err := n.Int64()
			if err != nil {
				return nil, fmt.Errorf("the copy's progress for %s: %w", t.Name, err)
			}
			r[i] = k
		case string:
			r[i] = n
		default:
			return nil, fmt.Errorf("the copy's progress for %s is not a key: %q", t.Name, text)
		}
	}
	return r, nil
}

// Import writes rows of a logical table and the last one's key in one
// transaction (store.Importer).
func (s *Store) Import(ctx context.Context, t store.Table, rows []store.Row) error {
	if len(rows) == 0 {
		return nil
	}
	key, err := json.Marshal([]any(rows[len(rows)-1][:t.Key]))
	if err != nil {
		return err
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := s.importRows(ctx, tx, t, rows); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO store_copy(tbl, last) VALUES ($1, $2::text::jsonb)
			ON CONFLICT (tbl) DO UPDATE SET last = EXCLUDED.last`, t.Name, string(key))
		return err
	})
	if err != nil {
		return fmt.Errorf("store: write %s: %w", t.Name, err)
	}
	return nil
}

// importRows writes the rows: through COPY, except where a row is more
// than a row here (large bodies, through largeBodies; sequences) or may be
// there already (the secrets a node made).
func (s *Store) importRows(ctx context.Context, tx pgx.Tx, t store.Table, rows []store.Row) error {
	switch t.Name {
	case "sequences":
		for _, r := range rows {
			seq, ok := identities[r[0].(string)]
			if !ok {
				return fmt.Errorf("no sequence %q here", r[0])
			}
			next := r[1].(int64)
			if _, err := tx.Exec(ctx, `SELECT setval($1, greatest($2::bigint, 1), $3)`, seq, next-1, next > 1); err != nil {
				return err
			}
		}
		return nil
	case "secrets":
		for _, r := range rows {
			if _, err := tx.Exec(ctx, `INSERT INTO secrets(name, value) VALUES ($1, $2)
				ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value`, r[0], r[1]); err != nil {
				return err
			}
		}
		return nil
	case "messages":
		plain := make([][]any, len(rows))
		var large []store.Row
		for i, r := range rows {
			body, _ := r[7].([]byte)
			row := append([]any{}, r[:7]...)
			if len(body) > chunkSize {
				row = append(row, nil, true)
				large = append(large, r)
			} else {
				row = append(row, body, false)
			}
			plain[i] = row
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"messages"}, append(t.Names(), "chunked"), pgx.CopyFromRows(plain)); err != nil {
			return err
		}
		for _, r := range large {
			body := r[7].([]byte)
			if _, err := s.large.put(ctx, tx, r[0].(int64), body[:chunkSize+1], bytes.NewReader(body[chunkSize+1:])); err != nil {
				return err
			}
		}
		return nil
	}
	vals := make([][]any, len(rows))
	for i, r := range rows {
		vals[i] = r
	}
	_, err := tx.CopyFrom(ctx, pgx.Identifier{t.Name}, t.Names(), pgx.CopyFromRows(vals))
	return err
}

// ImportDone records a table as copied whole (store.Importer).
func (s *Store) ImportDone(ctx context.Context, t store.Table) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO store_copy(tbl, done) VALUES ($1, true)
		ON CONFLICT (tbl) DO UPDATE SET done = true`, t.Name)
	if err != nil {
		return fmt.Errorf("store: record %s as copied: %w", t.Name, err)
	}
	return nil
}

// FinishImport forgets a verified copy's progress (store.Importer).
func (s *Store) FinishImport(ctx context.Context) error {
	if _, err := s.pool.Exec(ctx, `DROP TABLE IF EXISTS store_copy`); err != nil {
		return fmt.Errorf("store: drop the copy's progress: %w", err)
	}
	return nil
}
