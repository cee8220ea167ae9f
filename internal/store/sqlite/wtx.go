package sqlite

import (
	"context"
	"database/sql"
	"fmt"
)

// hotStatements are prepared once on the writer connection: every accepted
// message runs them, and parsing SQL each time cost a fifth of the CPU of
// the accept path (profiled under load).
var hotStatements = []string{
	sqlSavepoint, sqlRelease, sqlRollbackTo,
	sqlInsertMessage, sqlNextUID, sqlInsertCopy, sqlAddUsed, sqlEnqueue,
	// and the queue's, per message delivered
	sqlClaim, sqlRecordResult, sqlMessageUsed, sqlDeleteEntries, sqlDeleteMessage,
}

const (
	sqlSavepoint     = `SAVEPOINT w`
	sqlRelease       = `RELEASE w`
	sqlRollbackTo    = `ROLLBACK TO w`
	sqlInsertMessage = `INSERT INTO messages(queue_id, received, size, envelope, from_hdr, subject, body, body_file) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`
	sqlNextUID       = `UPDATE mailboxes SET uidnext = uidnext + 1, highest_modseq = highest_modseq + 1
		WHERE user_id = ? AND name = ? RETURNING id, uidnext - 1, highest_modseq`
	sqlInsertCopy  = `INSERT INTO mailbox_messages(mailbox_id, uid, message_id, prefix, size, internal_date, modseq) VALUES (?, ?, ?, ?, ?, ?, ?)`
	sqlAddUsed     = `UPDATE users SET used_bytes = used_bytes + ? WHERE id = ? RETURNING used_bytes`
	sqlMessageUsed = `SELECT EXISTS (SELECT 1 FROM mailbox_messages WHERE message_id = ?)
		OR EXISTS (SELECT 1 FROM queue WHERE message_id = ? AND state IN ('pending', 'deferred'))`
	sqlDeleteEntries = `DELETE FROM queue WHERE message_id = ?`
	sqlDeleteMessage = `DELETE FROM messages WHERE id = ? RETURNING body_file`
	sqlEnqueue       = `INSERT INTO queue(message_id, address, domain, notify, orcpt, state, next_attempt, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`
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
	after []func() // run in order once the transaction has committed

	bodies *bodyCache // the store's, for deletions to drop their entries
}

// onCommit runs fn after the transaction has committed, unless the write
// that registers it fails (its changes are undone).
func (w *wtx) onCommit(fn func()) { w.after = append(w.after, fn) }

func (w *wtx) stmt(q string) *sql.Stmt {
	if st, ok := w.stmts[q]; ok {
		return w.tx.Stmt(st)
	}
	return nil
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

// readStmt returns the reader pool's prepared form of q, preparing it on
// first use (database/sql prepares it again on each pooled connection as
// needed).
func (s *Store) readStmt(ctx context.Context, q string) (*sql.Stmt, error) {
	if st, ok := s.readStmts.Load(q); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := s.rdb.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	if prev, loaded := s.readStmts.LoadOrStore(q, st); loaded {
		st.Close()
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}

// queryRow is rdb.QueryRowContext with a prepared statement.
func (s *Store) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	st, err := s.readStmt(ctx, q)
	if err != nil {
		return s.rdb.QueryRowContext(ctx, q, args...) // reports the same error
	}
	return st.QueryRowContext(ctx, args...)
}

// query is rdb.QueryContext with a prepared statement.
func (s *Store) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	st, err := s.readStmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}
