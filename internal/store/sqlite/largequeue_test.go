package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	msqlite "modernc.org/sqlite"

	"mailroom/internal/store"
	"mailroom/internal/store/sqlite/sqlitetest"
)

// TestAddDeferredWritesWhatAcceptWrites: the bulk fill that the large
// queue tests use writes, column for column, the rows that Accept and
// RecordResults write for the same messages and outcomes.
func TestAddDeferredWritesWhatAcceptWrites(t *testing.T) {
	ctx := t.Context()
	now := time.Now()
	bulkDir := t.TempDir()
	bulk := open(t, bulkDir, Options{})
	defer bulk.Close()
	if err := sqlitetest.AddDeferred(ctx, bulkDir, sqlitetest.Deferred{Entries: 12, PerMessage: 5, Domains: 4,
		Accepted: now.Add(-time.Minute), From: now.Add(time.Hour), To: now.Add(2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	// The same messages and outcomes through the API, into a second store.
	api := open(t, t.TempDir(), Options{})
	defer api.Close()
	msgs, err := bulk.reads.db.QueryContext(ctx, `SELECT id, queue_id, received, envelope, from_hdr, subject, body FROM messages ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	var results []store.QueueResult
	for msgs.Next() {
		var id, received int64
		var m store.Message
		var env string
		var body []byte
		if err := msgs.Scan(&id, &m.QueueID, &received, &env, &m.From, &m.Subject, &body); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(env), &m.SMTPEnvelope); err != nil {
			t.Fatal(err)
		}
		m.Received, m.Body, m.Size = time.Unix(0, received), bytes.NewReader(body), int64(len(body))
		entries, err := bulk.QueueEntries(ctx, m.QueueID)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			m.Remote = append(m.Remote, e.Recipient)
			results = append(results, store.QueueResult{ID: e.ID, State: e.State, NextAttempt: e.NextAttempt, Error: e.LastError})
		}
		if err := api.Accept(ctx, &m); err != nil {
			t.Fatal(err)
		}
	}
	msgs.Close()
	if err := api.RecordResults(ctx, results); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"messages", "queue"} {
		got, want := dumpTable(t, bulk.reads.db, table), dumpTable(t, api.reads.db, table)
		if len(want) == 0 || !slices.Equal(got, want) {
			t.Errorf("%s: the bulk fill wrote\n%s\nAccept and RecordResults wrote\n%s", table, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}

// dumpTable returns every row of table, each column as its type and SQL
// literal, in rowid order.
func dumpTable(t *testing.T, db *sql.DB, table string) []string {
	t.Helper()
	rows, err := db.Query(`SELECT name FROM pragma_table_info(?) ORDER BY cid`, table)
	if err != nil {
		t.Fatal(err)
	}
	var cols []string
	for rows.Next() {
		var c string
		rows.Scan(&c)
		cols = append(cols, fmt.Sprintf("typeof(%[1]s) || ':' || quote(%[1]s)", c))
	}
	rows.Close()
	rows, err = db.Query(`SELECT ` + strings.Join(cols, ` || ' | ' || `) + ` FROM ` + table + ` ORDER BY rowid`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var r string
		rows.Scan(&r)
		out = append(out, r)
	}
	return out
}

// largeQueue is the size of a queue that must not cost the scheduler
// anything until it is due (issues 5 and 6).
const largeQueue = 100_000

// TestLargeQueue: with 100,000 deferred entries, finding and claiming the
// few due ones, and releasing claims at a restart, read a few index and
// table pages, not the queue; so do the administrator's commands on one
// message. Speed belongs to benchmarks; this counts the work instead: the
// query plans, and the pages SQLite fetches (sqlite3_db_status cache hits
// and misses of the connection).
func TestLargeQueue(t *testing.T) {
	sqlitetest.SkipIfRace(t)
	ctx := t.Context()
	dir := t.TempDir()
	s := open(t, dir, Options{})
	defer func() { s.Close() }()
	now := time.Now()
	from, to := now.Add(time.Hour), now.Add(5*24*time.Hour)
	start := time.Now()
	if err := sqlitetest.AddDeferred(ctx, dir, sqlitetest.Deferred{Entries: largeQueue, From: from, To: to}); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d deferred entries written in %v", largeQueue, time.Since(start).Round(time.Millisecond))
	var due []int64 // three messages accepted since, due now
	for i := range 3 {
		m := &store.Message{QueueID: store.NewQueueID(), SMTPEnvelope: store.SMTPEnvelope{MailFrom: "a@example.test"}, Received: now.Add(-time.Minute),
			Body:   strings.NewReader("Subject: due\r\n\r\nx\r\n"),
			Remote: []store.QueuedRecipient{{Address: fmt.Sprintf("due%d@up.example", i), Domain: "up.example"}}}
		if err := s.Accept(ctx, m); err != nil {
			t.Fatal(err)
		}
		es, _ := s.QueueEntries(ctx, m.QueueID)
		due = append(due, es[0].ID)
	}
	scan := scanPages(t, s)

	t.Run("the queue's statements find their rows through indexes", func(t *testing.T) {
		for _, c := range []struct {
			name, query, want string
			sorts             bool // may sort what it found (one message's entries)
		}{
			{"ClaimDue", sqlClaimDue, "USING INDEX queue_due (next_attempt<?)", false},
			{"ClaimDue's claim", sqlClaim, "USING INTEGER PRIMARY KEY", false},
			{"NextDue", sqlNextDue, "USING INDEX queue_due", false},
			{"ReleaseClaims(nil)", sqlReleaseAllClaims, "USING INDEX queue_active", false},
			{"ReleaseClaims(ids)", sqlReleaseClaim, "USING INTEGER PRIMARY KEY", false},
			{"RecordResults", sqlRecordResult, "USING INTEGER PRIMARY KEY", false},
			// The administrator's, for one queue ID (mailroom queue show,
			// hold, release, retry, delete).
			{"QueueEntries(id)", sqlEntriesOf, "USING INDEX queue_message (message_id=?)", true},
			{"SetHeld(id), RetryNow(id)", `UPDATE queue SET held = 1 WHERE active = 0 AND` + waitingOf, "USING INDEX queue_message (message_id=?)", false},
			{"DeleteQueued(id)", `DELETE FROM queue WHERE` + waitingOf + ` RETURNING message_id`, "USING INDEX queue_message (message_id=?)", false},
		} {
			plan := queryPlan(t, s.reads.db, c.query)
			if !strings.Contains(plan, c.want) || fullScan.MatchString(plan) || !c.sorts && strings.Contains(plan, "TEMP B-TREE") {
				t.Errorf("%s: want %q, no full scan, no sort; the plan is\n%s", c.name, c.want, plan)
			}
		}
	})

	t.Run("the next due time is read from the first entry of the index", func(t *testing.T) {
		c, err := s.reads.db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var next sql.NullInt64
		pages := countPages(t, c, func() {
			if err := c.QueryRowContext(ctx, sqlNextDue).Scan(&next); err != nil {
				t.Fatal(err)
			}
		})
		if want := now.Add(-time.Minute).UnixNano(); next.Int64 != want {
			t.Errorf("next due %v, want %v", time.Unix(0, next.Int64), time.Unix(0, want))
		}
		t.Logf("NextDue: %d pages (a scan of the queue: %d)", pages.read, scan)
		if pages.read > 10 {
			t.Errorf("NextDue read %d pages; the queue is %d pages", pages.read, scan)
		}
	})

	t.Run("claiming reads the due entries, not the deferred ones", func(t *testing.T) {
		var got []store.QueueEntry
		pages := countWriterPages(t, s, func() {
			var err error
			if got, err = s.ClaimDue(ctx, now, time.Minute, 2000); err != nil {
				t.Fatal(err)
			}
		})
		var ids []int64
		for _, e := range got {
			ids = append(ids, e.ID)
		}
		if !slices.Equal(ids, due) {
			t.Errorf("claimed %v, want the due %v", ids, due)
		}
		t.Logf("ClaimDue of %d: %d pages read, %d written (a scan of the queue: %d)", len(got), pages.read, pages.written, scan)
		if pages.read > 20*len(due)+20 {
			t.Errorf("ClaimDue of %d entries read %d pages; the queue is %d pages", len(due), pages.read, scan)
		}
		if next, ok, err := s.NextDue(ctx); err != nil || !ok || !next.Equal(now.Add(time.Minute)) {
			t.Errorf("NextDue = %v, %v, %v; want the claims' end %v", next, ok, err, now.Add(time.Minute))
		}
	})

	t.Run("a restart releases its claims without reading the queue", func(t *testing.T) {
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = open(t, dir, Options{})
		at := time.Now()
		pages := countWriterPages(t, s, func() {
			if err := s.ReleaseClaims(ctx, nil, at); err != nil {
				t.Fatal(err)
			}
		})
		t.Logf("ReleaseClaims(nil) of %d: %d pages read, %d written (a scan of the queue: %d)", len(due), pages.read, pages.written, scan)
		if pages.read > 20*len(due)+20 {
			t.Errorf("releasing %d claims read %d pages; the queue is %d pages", len(due), pages.read, scan)
		}
		if next, ok, err := s.NextDue(ctx); err != nil || !ok || !next.Equal(at) {
			t.Errorf("NextDue = %v, %v, %v; want the release time %v", next, ok, err, at)
		}
		got, err := s.ClaimDue(ctx, at, time.Minute, 2000)
		if err != nil || len(got) != len(due) {
			t.Errorf("after the restart, ClaimDue = %d entries, %v; want the %d released", len(got), err, len(due))
		}
	})
}

// fullScan matches a plan line that reads a whole table (SEARCH without an
// index is one too: a min() that cannot use an index says so).
var fullScan = regexp.MustCompile(`(?m)^(SCAN|SEARCH) \w+$`)

// queryPlan returns EXPLAIN QUERY PLAN's lines for query.
func queryPlan(t *testing.T, db *sql.DB, query string) string {
	t.Helper()
	args := make([]any, strings.Count(query, "?")) // any values: the plan does not depend on them
	for i := range args {
		args[i] = 0
	}
	rows, err := db.Query("EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, detail)
	}
	return strings.Join(lines, "\n")
}

// pages counts the pages one connection fetched (from its cache or the
// file) and wrote.
type pages struct{ read, written int }

// countPages returns the pages c fetched and wrote during fn.
func countPages(t *testing.T, c *sql.Conn, fn func()) pages {
	t.Helper()
	// Pages read through the memory map are not counted: read them
	// through the page cache meanwhile.
	set := func(n int) {
		if _, err := c.ExecContext(t.Context(), fmt.Sprintf("PRAGMA mmap_size = %d", n)); err != nil {
			t.Fatal(err)
		}
	}
	set(0)
	defer set(readerMapSize)
	status(t, c, true)
	fn()
	return status(t, c, false)
}

// countWriterPages returns the pages the store's writer connection fetched
// and wrote during fn, which runs through the committer (the store's one
// writer connection is idle before and after fn).
func countWriterPages(t *testing.T, s *Store, fn func()) pages {
	t.Helper()
	conn := func() *sql.Conn {
		c, err := s.wdb.Conn(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := conn()
	status(t, c, true)
	c.Close()
	fn()
	c = conn()
	defer c.Close()
	return status(t, c, false)
}

// status reads (and with reset, zeroes) c's page counters.
func status(t *testing.T, c *sql.Conn, reset bool) pages {
	t.Helper()
	var p pages
	err := c.Raw(func(dc any) error {
		st := dc.(msqlite.DBStatus)
		for _, op := range []msqlite.DBStatusOp{msqlite.DBStatusCacheHit, msqlite.DBStatusCacheMiss, msqlite.DBStatusCacheWrite} {
			n, _, err := st.Status(op, reset)
			if err != nil {
				return err
			}
			if op == msqlite.DBStatusCacheWrite {
				p.written += n
			} else {
				p.read += n
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// scanPages returns the pages a scan of the whole queue table fetches, and
// so shows that the counters would see one.
func scanPages(t *testing.T, s *Store) int {
	t.Helper()
	c, err := s.reads.db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var n int
	p := countPages(t, c, func() {
		if err := c.QueryRowContext(t.Context(), `SELECT count(*) FROM queue NOT INDEXED WHERE last_error != ''`).Scan(&n); err != nil {
			t.Fatal(err)
		}
	})
	if n != largeQueue || p.read < 1000 {
		t.Fatalf("a scan of %d deferred entries fetched %d pages: the counters do not count", n, p.read)
	}
	return p.read
}

// BenchmarkQueue times the store's side of the scheduler, and accepting a
// message for a remote recipient, with an empty queue and with 100,000
// deferred entries (issue 6: such a queue slows accept by no more than
// 10%). Compare the two halves of each pair; tests/ TestQueueScale does
// the same through the real binary.
func BenchmarkQueue(b *testing.B) {
	for _, n := range []int{0, largeQueue} {
		b.Run(fmt.Sprintf("deferred=%d", n), func(b *testing.B) {
			ctx := context.Background()
			dir := b.TempDir()
			s := open(b, dir, Options{})
			defer s.Close()
			if n > 0 {
				now := time.Now()
				if err := sqlitetest.AddDeferred(ctx, dir, sqlitetest.Deferred{Entries: n, From: now.Add(time.Hour), To: now.Add(5 * 24 * time.Hour)}); err != nil {
					b.Fatal(err)
				}
			}
			b.Run("NextDue", func(b *testing.B) {
				defer reportCPU(b)()
				for b.Loop() {
					if _, _, err := s.NextDue(ctx); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("ClaimDue_none_due", func(b *testing.B) {
				defer reportCPU(b)()
				for b.Loop() {
					if due, err := s.ClaimDue(ctx, time.Now(), time.Minute, 2000); err != nil || len(due) != 0 {
						b.Fatalf("ClaimDue = %d entries, %v", len(due), err)
					}
				}
			})
			// Last: its entries are due.
			b.Run("Accept_relayed", func(b *testing.B) {
				defer reportCPU(b)()
				b.SetParallelism(10) // sessions sharing commits
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						m := &store.Message{QueueID: store.NewQueueID(), SMTPEnvelope: store.SMTPEnvelope{MailFrom: "a@example.test"},
							Body: strings.NewReader(benchBody), Remote: []store.QueuedRecipient{{Address: "x@up.example", Domain: "up.example"}}}
						if err := s.Accept(ctx, m); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		})
	}
}

// reportCPU starts counting the process's CPU time (all its threads: the
// committer's too); the function it returns reports it per iteration,
// which other work on the machine disturbs less than the time per
// iteration.
func reportCPU(b *testing.B) func() {
	cpu := func() time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start := cpu()
	return func() { b.ReportMetric(float64(cpu()-start)/float64(b.N), "cpu-ns/op") }
}

// benchBody is a 2 KiB message.
var benchBody = "From: a@example.test\r\nSubject: bench\r\n\r\n" + strings.Repeat("A line of a message to time, of no interest to anyone at all.\r\n", 32)
