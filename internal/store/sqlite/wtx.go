package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"

	"mailroom/internal/store"
)

// hotStatements are prepared once on the writer connection: every accepted
// message runs them, and parsing SQL each time cost a fifth of the CPU of
// the accept path (profiled under load).
var hotStatements = []string{
	sqlSavepoint, sqlRelease, sqlRollbackTo,
	sqlInsertMessage, sqlInsertSummary, sqlMailbox, sqlSetMailbox, sqlInsertCopy, sqlUsed, sqlSetUsed, sqlEnqueue, sqlSequence, sqlSetSequence,
	// and the queue's, per message delivered
	sqlClaim, sqlRecordResult, sqlMessageUsed, sqlDeleteEntries, sqlDeleteMessage,
	// and the events', per message and per result
	sqlInsertLog, sqlInsertEvent,
	// and STORE's, per message changed
	sqlFlagsOf, sqlSetFlags,
}

const (
	sqlSavepoint     = `SAVEPOINT w`
	sqlRelease       = `RELEASE w`
	sqlRollbackTo    = `ROLLBACK TO w`
	sqlInsertMessage = `INSERT INTO messages(id, queue_id, received, size, envelope, from_hdr, subject, body, body_file) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`
	sqlInsertSummary = `INSERT INTO message_summaries(message_id, summary) VALUES (?, ?)`
	sqlMailbox       = `SELECT id, uidnext, highest_modseq FROM mailboxes WHERE user_id = ? AND name = ?`
	sqlSetMailbox    = `UPDATE mailboxes SET uidnext = ?, highest_modseq = ? WHERE id = ?`
	sqlInsertCopy    = `INSERT INTO mailbox_messages(mailbox_id, uid, message_id, prefix, size, internal_date, modseq, flags) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`
	sqlUsed          = `SELECT used_bytes, quota_bytes FROM users WHERE id = ?`
	sqlSetUsed       = `UPDATE users SET used_bytes = ? WHERE id = ?`
	sqlMessageUsed   = `SELECT EXISTS (SELECT 1 FROM mailbox_messages WHERE message_id = ?)
		OR EXISTS (SELECT 1 FROM queue WHERE message_id = ? AND state IN ('pending', 'deferred'))`
	sqlDeleteEntries = `DELETE FROM queue WHERE message_id = ?`
	sqlDeleteMessage = `DELETE FROM messages WHERE id = ? RETURNING body_file`
	sqlEnqueue       = `INSERT INTO queue(id, message_id, address, domain, notify, orcpt, state, next_attempt, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`
	sqlFlagsOf       = `SELECT flags, modseq FROM mailbox_messages WHERE mailbox_id = ? AND uid = ?`
	sqlSetFlags      = `UPDATE mailbox_messages SET flags = ?, modseq = ? WHERE mailbox_id = ? AND uid = ?`
	sqlSequence      = `SELECT next FROM sequences WHERE name = ?`
	sqlSetSequence   = `UPDATE sequences SET next = ? WHERE name = ?`
)

// prepare prepares the hot statements on the writer connection.
func (s *Store) prepare() error {
	s.stmts = make(map[string]*sql.Stmt, len(hotStatements))
	for _, q := range hotStatements {
		st, err := s.wdb.Prepare(q)
		if err != nil {
			return fmt.Errorf("store: prepare %q: %w", q, err)
		}
		s.stmts[q] = st
	}
	return nil
}

// wtx is a write transaction of the group committer: the methods of
// sql.Tx, using the prepared form of hot statements.
type wtx struct {
	tx    *sql.Tx
	stmts map[string]*sql.Stmt
	// bound holds the hot statements bound to tx, each bound once per
	// batch: binding registers the statement with the transaction (a
	// lock and a map entry each time), 2.5% of the server's CPU when
	// done per use.
	bound map[string]*sql.Stmt
	after []func() // run in order once the transaction has committed
	undo  []func() // undo in-memory changes of the current write, newest last

	// The counters that every delivered copy changes (a mailbox's next UID
	// and MODSEQ, a user's used bytes) are read once per batch, counted in
	// memory and written once before the commit: two statements per batch
	// instead of two per message.
	mailboxes map[mailboxKey]*mailboxCounters
	used      map[int64]*usedCounter
	seqs      map[string]*seqCounter

	bodies       *bodyCache // the store's, for deletions to drop their entries
	defaultQuota int64      // the store's, for users without their own

	// touched are the users whose mailboxes changed in this batch, for the
	// watchers once the batch has committed.
	touched map[int64]*touch
}

// touch is what changed in one user's mailboxes in a batch.
type touch struct {
	mailbox int64 // 0: more than one, or which one is not known
	// counters of the mailbox whose messages changed, for its HIGHESTMODSEQ
	// once committed; nil when something else changed (the mailbox was
	// deleted or renamed, or mail came from elsewhere).
	counters *mailboxCounters
}

// changed records that something of user's mailboxes changed (mailboxID 0:
// which one is not known), for the watchers once the batch has committed.
func (w *wtx) changed(user, mailboxID int64) {
	w.touch(user, mailboxID, nil)
}

// changedMessages records that messages of a user's mailbox changed (added,
// flags, expunged): the watchers learn its HIGHESTMODSEQ after the commit.
func (w *wtx) changedMessages(user int64, mb *mailboxCounters) {
	w.touch(user, mb.id, mb)
}

func (w *wtx) touch(user, mailboxID int64, counters *mailboxCounters) {
	if w.touched == nil {
		w.touched = map[int64]*touch{}
	}
	t := w.touched[user]
	switch {
	case t == nil:
		w.touched[user] = &touch{mailbox: mailboxID, counters: counters}
	case t.mailbox != mailboxID:
		t.mailbox, t.counters = 0, nil
	case counters == nil:
		t.counters = nil
	}
}

// event is the wake-up of a user's watchers for what the batch changed.
func (t *touch) event(user int64) store.MailChange {
	c := store.MailChange{UserID: user, MailboxID: t.mailbox}
	if t.counters != nil && t.mailbox != 0 {
		c.HighestModSeq = t.counters.modseq
	}
	return c
}

type mailboxKey struct {
	user int64
	name string
}

type mailboxCounters struct {
	id      int64
	uidnext uint32
	modseq  int64
	changed bool
}

type usedCounter struct {
	bytes   int64
	quota   int64 // the user's own quota_bytes (0: the store's default)
	changed bool
}

type seqCounter struct {
	next    int64
	changed bool
}

// Tables whose row ids come from the sequences table.
const (
	seqMessages  = "messages"
	seqQueue     = "queue"
	seqMailboxes = "mailboxes"
)

// nextID takes the next row id of a table: never one a row had before.
func (w *wtx) nextID(table string) (int64, error) {
	c := w.seqs[table]
	if c == nil {
		c = &seqCounter{}
		if err := w.QueryRow(sqlSequence, table).Scan(&c.next); err != nil {
			return 0, fmt.Errorf("sequence %s: %w", table, err)
		}
		if w.seqs == nil {
			w.seqs = map[string]*seqCounter{}
		}
		w.seqs[table] = c
	}
	prev := *c
	w.undo = append(w.undo, func() { *c = prev })
	id := c.next
	c.next, c.changed = id+1, true
	return id, nil
}

// nextUID takes the next UID and MODSEQ of a user's mailbox.
// insertMessage stores a message's row, its body inline or in file, and
// its summary when it has one.
func (w *wtx) insertMessage(id int64, queueID string, received, size int64, envelope, from, subject string, inline []byte, file string, summary []byte) error {
	if _, err := w.Exec(sqlInsertMessage, id, queueID, received, size, envelope, from, subject, inline, nullString(file)); err != nil {
		return err
	}
	if len(summary) == 0 {
		return nil
	}
	_, err := w.Exec(sqlInsertSummary, id, summary)
	return err
}

func (w *wtx) nextUID(user int64, name string) (mailboxID int64, uid uint32, modseq int64, err error) {
	mb, err := w.mailbox(user, name)
	if err != nil {
		return 0, 0, 0, err
	}
	uid, modseq = mb.uidnext, mb.modseq+1
	mb.uidnext, mb.modseq, mb.changed = uid+1, modseq, true
	return mb.id, uid, modseq, nil
}

// nextModSeq takes the next MODSEQ of a user's mailbox, for a change that
// adds no message (an expunge).
func (w *wtx) nextModSeq(user int64, name string) (mailboxID int64, modseq int64, err error) {
	mb, err := w.mailbox(user, name)
	if err != nil {
		return 0, 0, err
	}
	mb.modseq++
	mb.changed = true
	return mb.id, mb.modseq, nil
}

// mailbox returns the counters of a user's mailbox, read once per batch,
// with an undo entry for the change about to be made.
func (w *wtx) mailbox(user int64, name string) (*mailboxCounters, error) {
	k := mailboxKey{user, name}
	mb := w.mailboxes[k]
	if mb == nil {
		mb = &mailboxCounters{}
		if err := w.QueryRow(sqlMailbox, user, name).Scan(&mb.id, &mb.uidnext, &mb.modseq); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return nil, fmt.Errorf("mailbox %q of user %d: %w", name, user, store.ErrNotFound)
			}
			return nil, err
		}
		if w.mailboxes == nil {
			w.mailboxes = map[mailboxKey]*mailboxCounters{}
		}
		w.mailboxes[k] = mb
	}
	prev := *mb
	w.undo = append(w.undo, func() { *mb = prev })
	return mb, nil
}

// addUsed adds size to a user's used bytes and returns the new figure and
// the quota in force (the user's own, else the store's default; 0 or less:
// none).
func (w *wtx) addUsed(user, size int64) (used, quota int64, err error) {
	u := w.used[user]
	if u == nil {
		u = &usedCounter{}
		if err := w.QueryRow(sqlUsed, user).Scan(&u.bytes, &u.quota); err != nil {
			return 0, 0, err
		}
		if w.used == nil {
			w.used = map[int64]*usedCounter{}
		}
		w.used[user] = u
	}
	prev := *u
	w.undo = append(w.undo, func() { *u = prev })
	u.bytes, u.changed = u.bytes+size, true
	quota = u.quota
	if quota == 0 {
		quota = w.defaultQuota
	}
	return u.bytes, quota, nil
}

// undoTo undoes the in-memory changes made since mark, newest first: the
// write that made them failed and its statements were rolled back.
func (w *wtx) undoTo(mark int) {
	for i := len(w.undo) - 1; i >= mark; i-- {
		w.undo[i]()
	}
	w.undo = w.undo[:mark]
}

// flushCounters writes the counters changed in this batch.
func (w *wtx) flushCounters() error {
	for _, mb := range w.mailboxes {
		if mb.changed {
			if _, err := w.Exec(sqlSetMailbox, mb.uidnext, mb.modseq, mb.id); err != nil {
				return err
			}
			mb.changed = false
		}
	}
	for id, u := range w.used {
		if u.changed {
			if _, err := w.Exec(sqlSetUsed, u.bytes, id); err != nil {
				return err
			}
			u.changed = false
		}
	}
	for name, c := range w.seqs {
		if c.changed {
			if _, err := w.Exec(sqlSetSequence, c.next, name); err != nil {
				return err
			}
			c.changed = false
		}
	}
	return nil
}

// onCommit runs fn after the transaction has committed, unless the write
// that registers it fails (its changes are undone).
func (w *wtx) onCommit(fn func()) { w.after = append(w.after, fn) }

// stmt returns the prepared form of q bound to the transaction, or nil
// if q is not a hot statement.
func (w *wtx) stmt(q string) *sql.Stmt {
	if st := w.bound[q]; st != nil {
		return st
	}
	st, ok := w.stmts[q]
	if !ok {
		return nil
	}
	if w.bound == nil {
		w.bound = make(map[string]*sql.Stmt, len(w.stmts))
	}
	st = w.tx.Stmt(st)
	w.bound[q] = st
	return st
}

// Exec runs a statement that returns no rows.
func (w *wtx) Exec(q string, args ...any) (sql.Result, error) {
	if st := w.stmt(q); st != nil {
		return st.Exec(args...)
	}
	return w.tx.Exec(q, args...)
}

// QueryRow runs a statement that returns at most one row.
func (w *wtx) QueryRow(q string, args ...any) *sql.Row {
	if st := w.stmt(q); st != nil {
		return st.QueryRow(args...)
	}
	return w.tx.QueryRow(q, args...)
}

// Query runs a statement that returns rows.
func (w *wtx) Query(q string, args ...any) (*sql.Rows, error) {
	return w.tx.Query(q, args...)
}

// readPool is a pool of reader connections and the statements prepared
// on it.
type readPool struct {
	db    *sql.DB
	stmts sync.Map // query -> *sql.Stmt
}

// stmt returns the pool's prepared form of q, preparing it on first use
// (database/sql prepares it again on each pooled connection as needed).
func (p *readPool) stmt(ctx context.Context, q string) (*sql.Stmt, error) {
	if st, ok := p.stmts.Load(q); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := p.db.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	if prev, loaded := p.stmts.LoadOrStore(q, st); loaded {
		st.Close()
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}

// queryRow is db.QueryRowContext with a prepared statement.
func (p *readPool) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	st, err := p.stmt(ctx, q)
	if err != nil {
		return p.db.QueryRowContext(ctx, q, args...) // reports the same error
	}
	return st.QueryRowContext(ctx, args...)
}

// query is db.QueryContext with a prepared statement.
func (p *readPool) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	st, err := p.stmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// close closes the statements and the connections.
func (p *readPool) close() error {
	p.stmts.Range(func(_, st any) bool { st.(*sql.Stmt).Close(); return true })
	return p.db.Close()
}

// queryRow and query read through the readers that map the database.
func (s *Store) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	return s.reads.queryRow(ctx, q, args...)
}

func (s *Store) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return s.reads.query(ctx, q, args...)
}
