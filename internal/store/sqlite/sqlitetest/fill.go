// Package sqlitetest builds large SQLite stores for tests and benchmarks,
// faster than the store's API can: it writes rows straight into the
// database, the rows the API would write (a test in package sqlite
// compares them column by column).
package sqlitetest

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailroom/internal/store"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Deferred describes outbound queue entries as a server leaves them while
// their next hops are down: accepted with remote recipients, tried once,
// and deferred.
type Deferred struct {
	Entries    int       // queue entries in all
	PerMessage int       // recipients per message; default 5
	Domains    int       // distinct recipient domains; default 1,000
	Accepted   time.Time // the messages' Received; default now
	// The entries' next attempts are spread evenly over [From, To), in an
	// order unrelated to their IDs; the first entry is due at From.
	From, To time.Time
	Error    string // the deferring reply; default a 451
}

// AddDeferred writes d's messages and queue entries into the store in dir
// (the directory given to sqlite.Open, which made the schema; the store
// may be open), in one transaction: row for row what Accept and then
// RecordResults with StateDeferred write.
func AddDeferred(ctx context.Context, dir string, d Deferred) error {
	if d.PerMessage <= 0 {
		d.PerMessage = 5
	}
	if d.Domains <= 0 {
		d.Domains = 1000
	}
	if d.Accepted.IsZero() {
		d.Accepted = time.Now()
	}
	if d.Error == "" {
		d.Error = "451 4.3.0 try again later"
	}
	if d.Entries <= 0 || !d.To.After(d.From) {
		return fmt.Errorf("sqlitetest: %d entries over [%v, %v)", d.Entries, d.From, d.To)
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "mailroom.db")+"?_pragma=busy_timeout(10000)&_txlock=immediate")
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	var version int
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil || version == 0 {
		return fmt.Errorf("sqlitetest: no store in %s (open it with sqlite.Open first): %v", dir, err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := insertDeferred(ctx, tx, d); err != nil {
		return fmt.Errorf("sqlitetest: %w", err)
	}
	// The store gives ids from its sequences: move them past the rows made.
	for _, table := range []string{"messages", "queue"} {
		if _, err := tx.ExecContext(ctx, `UPDATE sequences SET next = (SELECT coalesce(max(id), 0) + 1 FROM `+table+`) WHERE name = ?`, table); err != nil {
			return fmt.Errorf("sqlitetest: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	// Leave an empty WAL behind, as a store that has been running for a
	// while would have.
	_, err = db.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)")
	return err
}

// insertDeferred writes the rows, computing each column's value as
// sqlite.Accept and RecordResults compute theirs. The rows go to SQLite as
// two JSON arrays, one statement per table: a statement per row costs five
// times the CPU.
func insertDeferred(ctx context.Context, tx *sql.Tx, d Deferred) error {
	var firstID int64
	if err := tx.QueryRowContext(ctx, `SELECT next FROM sequences WHERE name = 'messages'`).Scan(&firstID); err != nil {
		return err
	}
	var msgs, entries [][]any
	stride := coprimeStride(d.Entries)
	span := float64(d.To.Sub(d.From))
	received := d.Accepted.UnixNano()
	prefix := store.NewQueueID()[:10] // its time part: IDs stay unique and sortable
	for first, m := 0, 0; first < d.Entries; first, m = first+d.PerMessage, m+1 {
		msgID := firstID + int64(m) // the ids the store would give, in turn
		env := store.SMTPEnvelope{MailFrom: fmt.Sprintf("sender%d@example.test", m%100), Client: "192.0.2.1:40000"}
		for j := first; j < min(first+d.PerMessage, d.Entries); j++ {
			r := store.QueuedRecipient{Domain: fmt.Sprintf("d%d.example", j%d.Domains)}
			r.Address = fmt.Sprintf("user%d@%s", j, r.Domain)
			env.Recipients = append(env.Recipients, store.SMTPRecipient{Address: r.Address})
			next := d.From.Add(time.Duration(span * float64(j*stride%d.Entries) / float64(d.Entries)))
			entries = append(entries, []any{msgID, r.Address, strings.ToLower(r.Domain), strings.Join(r.Notify, ","), r.ORcpt, next.UnixNano()})
		}
		envJSON, err := json.Marshal(env)
		if err != nil {
			return err
		}
		subject := fmt.Sprintf("deferred %d", m)
		body := "From: " + env.MailFrom + "\r\nSubject: " + subject + "\r\n\r\nA message the next hops did not take yet.\r\n"
		msgs = append(msgs, []any{msgID, fmt.Sprintf("%s%06x", prefix, m), len(body), string(envJSON), env.MailFrom, subject, body})
	}
	msgJSON, err := json.Marshal(msgs)
	if err != nil {
		return err
	}
	entryJSON, err := json.Marshal(entries)
	if err != nil {
		return err
	}
	// The body is ASCII: as a BLOB, the text's octets.
	if _, err := tx.ExecContext(ctx, `INSERT INTO messages(id, queue_id, received, size, envelope, from_hdr, subject, body, body_file)
		SELECT value->>0, value->>1, ?, value->>2, value->>3, value->>4, value->>5, CAST(value->>6 AS BLOB), NULL FROM json_each(?)`,
		received, string(msgJSON)); err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO queue(message_id, address, domain, notify, orcpt, state, attempts, next_attempt, last_error, created)
		SELECT value->>0, value->>1, value->>2, value->>3, value->>4, ?, 1, value->>5, ?, ? FROM json_each(?)`,
		store.StateDeferred, d.Error, received, string(entryJSON))
	return err
}

// coprimeStride returns a step that visits every residue modulo n once:
// entry j gets slot j*stride mod n.
func coprimeStride(n int) int {
	for s := 7919; ; s += 2 {
		a, b := s, n
		for b != 0 {
			a, b = b, a%b
		}
		if a == 1 {
			return s
		}
	}
}

// SkipIfRace skips a test that builds a large store when the race detector
// is on: it instruments the transpiled SQLite too, which then runs ~25×
// slower (AddDeferred of 100,000 entries: ~50 s of CPU instead of ~2 s).
// Such tests check query plans and counts, not our goroutines; `make test`
// runs them a second time without -race.
func SkipIfRace(tb testing.TB) {
	tb.Helper()
	if raceEnabled {
		tb.Skip("skipped under -race (the race detector slows SQLite ~25×); make test runs it without")
	}
}
