// Package postgres is the shared store: store.Store on PostgreSQL (pgx),
// for several Mailroom nodes in front of one database that PostgreSQL
// keeps safe and replicated ([store] url = "postgres://...").
//
// It passes the conformance suite (internal/store/storetest) as the
// embedded store does. Changes to mail are heard across nodes through
// LISTEN/NOTIFY; the outbound queue's claims are leases, so that nodes
// share the work and a dead node's claims pass to the others.
//
// The schema is migrated forward by the first node that starts with a
// newer Mailroom; each migration says the oldest Mailroom that still works
// with it (expand, then contract), and a node refuses a schema newer than
// it knows unless every migration it lacks is one it still works with.
package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"mailroom/internal/store"
)

// Store is the PostgreSQL store.
type Store struct {
	pool         *pgxpool.Pool
	large        largeBodies // bodies over chunkSize
	defaultQuota atomic.Int64
	watchers     store.Watchers // the sessions waiting for changes to mailboxes
	nodeID       string         // this process's, in its NOTIFYs, which its listener skips
	node         string         // the node's name, which owns its queue claims across restarts
	pendMu       sync.Mutex
	pending      map[pgx.Tx][]store.MailChange // what open transactions changed, for the watchers
	queueDue     atomic.Pointer[func()]        // OnQueueDue's
	stopListen   context.CancelFunc
	listened     chan struct{} // closed when the listener has stopped
}

var _ store.Store = (*Store)(nil)

// Options configure a store.
type Options struct {
	// DefaultQuota is the quota of users without one of their own, in
	// octets (0: none).
	DefaultQuota int64
	// MaxConns bounds the connections to the database (0: the URL's
	// pool_max_conns, else 20); each node adds as many to what the
	// server's max_connections must allow.
	MaxConns int32
	// Node names this node in the shared store, the same across its
	// restarts: it owns the queue claims the node makes, so that a node
	// restarted after a crash releases its own at once. "" for a name of
	// this process only (its claims pass to others when their lease ends).
	Node string
}

// Open connects to the database at url, migrates its schema forward when
// it is older than this Mailroom's, and refuses one it does not know.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("store: the PostgreSQL url: %w", err)
	}
	if !strings.Contains(url, "pool_max_conns") { // the URL's, when it says
		cfg.MaxConns = 20
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: connect to PostgreSQL: %w", err)
	}
	id := make([]byte, 8)
	rand.Read(id)
	s := &Store{pool: pool, large: chunks{pool}, nodeID: hex.EncodeToString(id), node: opts.Node, pending: map[pgx.Tx][]store.MailChange{}}
	if s.node == "" {
		s.node = s.nodeID
	}
	s.defaultQuota.Store(opts.DefaultQuota)
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.stopListen, s.listened = cancel, make(chan struct{})
	ready := make(chan struct{})
	go s.listen(lctx, cfg.ConnConfig.Copy(), sync.OnceFunc(func() { close(ready) }))
	select { // changes from other nodes are heard from the start
	case <-ready:
	case <-ctx.Done():
		s.Close()
		return nil, ctx.Err()
	}
	return s, nil
}

// Close stops listening and closes the connections.
func (s *Store) Close() error {
	s.stopListen()
	<-s.listened
	s.pool.Close()
	return nil
}

// SetDefaultQuota sets the quota of users without one of their own, in
// octets (0: none), for the configuration reloaded.
func (s *Store) SetDefaultQuota(octets int64) { s.defaultQuota.Store(octets) }

// PostgreSQL error codes the store tells apart.
const (
	codeUniqueViolation      = "23505"
	codeForeignKeyViolation  = "23503"
	codeSerializationFailure = "40001"
	codeDeadlockDetected     = "40P01"
)

func isCode(err error, code string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == code
}

// tx runs fn in a serializable transaction (see retry).
func (s *Store) tx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return s.retry(ctx, pgx.Serializable, fn)
}

// retry runs fn in a transaction (run), again when PostgreSQL could not
// serialize it with another or broke a deadlock by failing it (a few
// times, then the error).
func (s *Store) retry(ctx context.Context, level pgx.TxIsoLevel, fn func(tx pgx.Tx) error) error {
	for attempt := 0; ; attempt++ {
		err := s.run(ctx, level, fn)
		if err == nil || attempt == 8 || !(isCode(err, codeSerializationFailure) || isCode(err, codeDeadlockDetected)) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt+1) * 5 * time.Millisecond):
		}
	}
}

// run runs fn in one transaction and commits it; then this node's
// watchers hear of the mail it changed (notify).
func (s *Store) run(ctx context.Context, level pgx.TxIsoLevel, fn func(tx pgx.Tx) error) error {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: level})
	if err != nil {
		return err
	}
	err = fn(tx)
	if err == nil {
		err = tx.Commit(ctx)
	} else {
		tx.Rollback(context.WithoutCancel(ctx))
	}
	changes := s.takePending(tx)
	if err == nil {
		s.wake(changes)
	}
	return err
}

// expectOne turns "no row affected" into store.ErrNotFound.
func expectOne(tag pgconn.CommandTag, err error) func(what string) error {
	return func(what string) error {
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("%s: %w", what, store.ErrNotFound)
		}
		return nil
	}
}

// unixOrZero is t in unix seconds, 0 for the zero time.
func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// timeOrZero is the inverse of unixOrZero.
func timeOrZero(sec int64) time.Time {
	if sec == 0 {
		return time.Time{}
	}
	return time.Unix(sec, 0)
}

// Usage counts the users and their mailboxes' bytes, and asks the size of
// the database (tables, indexes, TOAST: bodies included).
func (s *Store) Usage(ctx context.Context) (store.Usage, error) {
	var u store.Usage
	err := s.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM users), (SELECT coalesce(sum(used_bytes), 0)::bigint FROM users),
		pg_database_size(current_database())`).Scan(&u.Users, &u.MailboxBytes, &u.DatabaseBytes)
	if err != nil {
		return u, fmt.Errorf("%w: usage: %w", store.ErrStorage, err)
	}
	return u, nil
}
