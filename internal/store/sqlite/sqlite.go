// Package sqlite is Mailroom's embedded store: one SQLite database in WAL
// mode (through the pure-Go modernc.org/sqlite, so the binary stays static)
// plus a blobs/ folder for large message bodies. All writes go through one
// group committer, so that many sessions share each fsync. Other processes
// (the CLI while the server runs) open the same database safely.
//
// docs/design/0002-storage-engine.md records why.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"mailroom/internal/store"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Options tune a Store; the zero value is the default.
type Options struct {
	// InlineLimit is the largest body kept inside the database; larger
	// bodies go to their own fsynced file. Default 1 MiB.
	InlineLimit int64
	// MaxBatch bounds how many writes share one commit. Default 512.
	MaxBatch int
	// DefaultQuota is the quota of users without one of their own, in
	// octets; 0 for none (SetDefaultQuota changes it).
	DefaultQuota int64
	// AnnounceMail makes changes to mailboxes wake the IMAP sessions of a
	// server running beside this process (the CLI's imports and deletes):
	// a stamp is touched after each commit that changed mail.
	AnnounceMail bool
}

// Store is the SQLite implementation of store.Store.
type Store struct {
	dir  string
	opts Options
	wdb  *sql.DB // one connection: all writes, through the committer
	// syncNormal: wdb commits without a WAL fsync (synchronous=NORMAL)
	// since the last batch was all lazy; the committer's alone.
	syncNormal bool
	reads      readPool // readers, mapping the database
	// feed are readers that do not map the database, for the small reads
	// every session makes after every change (Changes): a reader that
	// maps the database unmaps it at its first read after any commit, and
	// maps and faults the pages in again; with four sessions changing
	// flags, that was half the server's time.
	feed readPool
	// termDocs are the search index's term counts lately read (rarest).
	termDocs termCounts
	reqs     chan *writeReq
	done     chan struct{} // closed when the committer has finished

	// mu guards closed and every send on reqs: senders hold it shared,
	// Close exclusively while it closes reqs, so no send can meet a
	// closed channel.
	mu     sync.RWMutex
	closed bool
	stmts  map[string]*sql.Stmt // hot statements prepared on wdb

	dircache *dirCache // domains, users and aliases looked up
	supcache *dirCache // suppressions looked up
	// queuemark caches nothing: its stamp tells a running server that the
	// CLI made queue entries due (queue retry, release).
	queuemark *dirCache
	// mailmark caches nothing either: its stamp tells a running server
	// that another process changed mail (Options.AnnounceMail).
	mailmark *dirCache
	stamps   io.Closer  // the watch of the stamps, if any
	bodies   *bodyCache // bodies of messages queued for relay

	defaultQuota atomic.Int64
	watchers     store.Watchers // the sessions waiting for changes to mailboxes

	walReset        atomic.Bool // the checkpointer asks the committer to let the WAL start over
	stopCheckpoints chan struct{}
	checkpointsDone chan struct{}
	close           sync.Once
	closeErr        error
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the store in dir.
func Open(ctx context.Context, dir string, opts Options) (*Store, error) {
	if opts.InlineLimit <= 0 {
		opts.InlineLimit = 1 << 20
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 512
	}
	if err := os.MkdirAll(filepath.Join(dir, "blobs"), 0o750); err != nil {
		return nil, fmt.Errorf("store: create data directory: %w", err)
	}
	// The backup lock is made by whoever opens the store first (the server,
	// as its own user), not by a backup run as root.
	if f, err := os.OpenFile(filepath.Join(dir, backupLock), os.O_RDONLY|os.O_CREATE|syscall.O_NOFOLLOW, 0o640); err == nil {
		f.Close()
	}
	path := filepath.Join(dir, "mailroom.db")
	if err := checkDatabaseFiles(dir, "mailroom.db"); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	dsn := func(pragmas ...string) string {
		q := url.Values{}
		for _, p := range append([]string{"journal_mode(WAL)", "synchronous(FULL)", "busy_timeout(10000)", "foreign_keys(1)"}, pragmas...) {
			q.Add("_pragma", p)
		}
		q.Set("_txlock", "immediate")
		return "file:" + path + "?" + q.Encode()
	}
	// The writer never checkpoints: a checkpoint copies the WAL into the
	// database and fsyncs it, and doing that inside the commit path stalled
	// every session waiting for its 250. The checkpointer does it beside.
	// Its sub-journal (the pages each savepoint of a group commit first
	// changes, kept to roll that one write back) stays in memory
	// (temp_store): on disk, past 64 KiB, it was a write system call per
	// page, a sixth of the server's time when relaying (profiled).
	wdb, err := sql.Open("sqlite", dsn("wal_autocheckpoint(0)", "temp_store(MEMORY)"))
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	wdb.SetMaxOpenConns(1)
	// Readers map the database file (the first GiB) instead of reading it
	// page by page: listing a mailbox touches a page or two per message, and
	// pread's system call was a sixth of FETCH's time.
	rdb, err := sql.Open("sqlite", dsn(fmt.Sprintf("mmap_size(%d)", readerMapSize)))
	if err != nil {
		wdb.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	rdb.SetMaxOpenConns(8)
	// and keeps them: database/sql keeps two idle by default, and with more
	// sessions reading at once every read opened a connection (a file, its
	// map, its pragmas) and prepared its statement again.
	rdb.SetMaxIdleConns(8)
	fdb, err := sql.Open("sqlite", dsn("mmap_size(0)"))
	if err != nil {
		wdb.Close()
		rdb.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	fdb.SetMaxOpenConns(4)
	fdb.SetMaxIdleConns(4)
	s := &Store{dir: dir, opts: opts, wdb: wdb, reads: readPool{db: rdb}, feed: readPool{db: fdb},
		reqs: make(chan *writeReq, 1024), done: make(chan struct{}),
		stopCheckpoints: make(chan struct{}), checkpointsDone: make(chan struct{})}
	s.defaultQuota.Store(opts.DefaultQuota)
	err = s.migrate(ctx)
	if err == nil {
		err = s.prepare()
	}
	if err == nil {
		s.bodies = newBodyCache(bodyCacheLimit)
		s.dircache, err = newDirCache(dir, stampDirectory, s.bodies.clear)
	}
	if err == nil {
		s.supcache, err = newDirCache(dir, stampSuppressions, nil)
	}
	if err == nil {
		s.queuemark, err = newDirCache(dir, stampQueue, nil)
	}
	if err == nil {
		s.mailmark, err = newDirCache(dir, stampMail, nil)
	}
	if err == nil {
		wake := s.watchers.NotifyAll
		s.mailmark.onChange.Store(&wake)
		s.stamps = watchCaches(dir, s.dircache, s.supcache, s.queuemark, s.mailmark)
	}
	if err != nil {
		wdb.Close()
		rdb.Close()
		fdb.Close()
		return nil, err
	}
	go s.checkpointer()
	go s.committer()
	return s, nil
}

func (s *Store) migrate(ctx context.Context) error {
	// Nothing pending: open without writing, so that the server starts and
	// the CLI works on a full disk.
	var current int
	if err := s.reads.db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&current); err == nil && current == len(migrations) {
		return nil
	}
	conn, err := s.wdb.Conn(ctx)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer conn.Close()
	// BEGIN IMMEDIATE so two processes starting at once migrate in turn.
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	var version int
	if err := conn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		conn.ExecContext(ctx, "ROLLBACK")
		return fmt.Errorf("store: read schema version: %w", err)
	}
	if version > len(migrations) {
		conn.ExecContext(ctx, "ROLLBACK")
		return fmt.Errorf("store: the database has schema version %d, newer than this mailroom (%d): upgrade mailroom", version, len(migrations))
	}
	for i := version; i < len(migrations); i++ {
		if _, err := conn.ExecContext(ctx, migrations[i]); err != nil {
			conn.ExecContext(ctx, "ROLLBACK")
			return fmt.Errorf("store: migration %d: %w", i+1, err)
		}
	}
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", len(migrations))); err != nil {
		conn.ExecContext(ctx, "ROLLBACK")
		return fmt.Errorf("store: migrate: %w", err)
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	return nil
}

// Close waits for queued writes and closes the database. Writes after
// Close fail with store.ErrStorage.
func (s *Store) Close() error {
	s.close.Do(func() {
		s.mu.Lock()
		s.closed = true
		close(s.reqs)
		s.mu.Unlock()
		<-s.done
		close(s.stopCheckpoints)
		<-s.checkpointsDone
		s.dircache.close()
		s.supcache.close()
		s.queuemark.close()
		s.mailmark.close()
		if s.stamps != nil {
			s.stamps.Close()
		}
		// Leave a small WAL behind; harmless if another process has the
		// database open and the checkpoint cannot finish.
		s.wdb.Exec("PRAGMA wal_checkpoint(TRUNCATE)")
		for _, st := range s.stmts {
			st.Close()
		}
		s.closeErr = errors.Join(s.wdb.Close(), s.reads.close(), s.feed.close())
	})
	return s.closeErr
}

// checkpointInterval is how often the checkpointer copies committed WAL
// frames into the database file; walResetFrames is the WAL length (in
// pages) past which the committer finishes a checkpoint itself so that the
// WAL starts over.
// readerMapSize is how much of the database file each reader connection
// maps (address space, not memory: the pages are the kernel's cache).
const readerMapSize = 1 << 30

const (
	checkpointInterval = 250 * time.Millisecond
	walResetFrames     = 8192 // 32 MiB of 4 KiB pages
)

// checkpointer runs passive WAL checkpoints on a reader connection, which
// proceed while the committer goes on appending to the WAL (SQLite's WAL
// mode allows one checkpointer beside one writer). Once a checkpoint has
// caught up, the next commit starts the WAL over from its beginning, so the
// file stays bounded.
func (s *Store) checkpointer() {
	defer close(s.checkpointsDone)
	t := time.NewTicker(checkpointInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stopCheckpoints:
			return
		case <-t.C:
			var busy, frames, done int
			err := s.reads.db.QueryRow("PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &done)
			if err == nil && frames > walResetFrames {
				s.walReset.Store(true)
			}
		}
	}
}

// finishCheckpoint runs on the committer between batches when the WAL has
// grown long: under constant load a checkpoint beside the writer never
// catches up with it, and only a fully copied WAL is started over. The
// checkpointer has already copied most frames, so this pause is short.
func (s *Store) finishCheckpoint() {
	if s.walReset.CompareAndSwap(true, false) {
		s.wdb.Exec("PRAGMA wal_checkpoint(PASSIVE)")
	}
}

// writeReq is one unit of work for the group committer.
type writeReq struct {
	fn  func(tx *wtx) error
	err chan error
	// counted: fn changes mailbox and usage counters only through
	// wtx.nextUID and wtx.addUsed. Any other write runs after the batch's
	// counters are written and forgotten, so it reads and changes the
	// rows themselves.
	counted bool
	// lazy: fn changes only state whose loss in a power failure (not in a
	// crash of the process) costs nothing that matters: flags, \Recent
	// claims, summaries, the search index. A batch of lazy writes only is
	// committed without a WAL fsync (synchronous=NORMAL: consistent, and
	// durable with the next fsync); Dovecot does not fsync flag changes
	// either (mail_fsync=optimized). Mail itself and expunges are never
	// lazy.
	lazy bool
}

// write runs fn in a write transaction shared with other concurrent writes
// and returns once that transaction is durably committed (or fn failed, in
// which case none of fn's changes remain). It waits for the outcome even
// when ctx ends, since the work may already be committed.
func (s *Store) write(ctx context.Context, fn func(tx *wtx) error) error {
	return s.writeReq(ctx, &writeReq{fn: fn, err: make(chan error, 1)})
}

// writeCounted is write for a fn that is counted (writeReq.counted).
func (s *Store) writeCounted(ctx context.Context, fn func(tx *wtx) error) error {
	return s.writeReq(ctx, &writeReq{fn: fn, err: make(chan error, 1), counted: true})
}

// writeLazy is write for a fn that is lazy (writeReq.lazy), and counted
// when counted.
func (s *Store) writeLazy(ctx context.Context, counted bool, fn func(tx *wtx) error) error {
	return s.writeReq(ctx, &writeReq{fn: fn, err: make(chan error, 1), counted: counted, lazy: true})
}

func (s *Store) writeReq(ctx context.Context, req *writeReq) error {
	if err := s.enqueue(ctx, req); err != nil {
		return err
	}
	return <-req.err
}

// enqueue hands req to the committer, unless the store is closed. Close
// waits for a blocked send: the committer keeps draining until then.
func (s *Store) enqueue(ctx context.Context, req *writeReq) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return fmt.Errorf("store: closed: %w", store.ErrStorage)
	}
	select {
	case s.reqs <- req:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// committer runs the batches: each pending request gets a savepoint inside
// one transaction, so a failing request is undone alone, and the whole
// batch costs one commit (one WAL fsync).
func (s *Store) committer() {
	defer close(s.done)
	for req := range s.reqs {
		batch := []*writeReq{req}
	drain:
		for len(batch) < s.opts.MaxBatch {
			select {
			case r, ok := <-s.reqs:
				if !ok {
					break drain
				}
				batch = append(batch, r)
			default:
				break drain
			}
		}
		s.commitBatch(batch)
		s.finishCheckpoint()
	}
}

func (s *Store) commitBatch(batch []*writeReq) {
	ctx := context.Background()
	errs := make([]error, len(batch))
	lazy := true
	for _, r := range batch {
		lazy = lazy && r.lazy
	}
	// The writer connection's mode changes only when a batch needs the
	// other one (a run of STOREs pays nothing per batch).
	if lazy != s.syncNormal {
		mode := "FULL"
		if lazy {
			mode = "NORMAL"
		}
		if _, err := s.wdb.Exec(`PRAGMA synchronous = ` + mode); err != nil {
			failAll(batch, storageErr("synchronous", err))
			return
		}
		s.syncNormal = lazy
	}
	sqlTx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		failAll(batch, storageErr("begin", err))
		return
	}
	tx := &wtx{tx: sqlTx, stmts: s.stmts, bodies: s.bodies, defaultQuota: s.defaultQuota.Load()}
	for i, r := range batch {
		if !r.counted {
			// Outside any savepoint: a failure of r cannot undo it.
			if err := tx.flushCounters(); err != nil {
				sqlTx.Rollback()
				failAll(batch, storageErr("counters", err))
				return
			}
			tx.mailboxes, tx.used, tx.seqs = nil, nil, nil
		}
		if _, err := tx.Exec(sqlSavepoint); err != nil {
			sqlTx.Rollback()
			failAll(batch, storageErr("savepoint", err))
			return
		}
		mark, undoMark := len(tx.after), len(tx.undo)
		errs[i] = r.fn(tx)
		if errs[i] != nil {
			tx.after = tx.after[:mark]
			tx.undoTo(undoMark)
			if _, err := tx.Exec(sqlRollbackTo); err != nil {
				sqlTx.Rollback()
				failAll(batch, storageErr("rollback", err))
				return
			}
		}
		if _, err := tx.Exec(sqlRelease); err != nil {
			sqlTx.Rollback()
			failAll(batch, storageErr("release", err))
			return
		}
	}
	if err := tx.flushCounters(); err != nil {
		sqlTx.Rollback()
		failAll(batch, storageErr("counters", err))
		return
	}
	if err := sqlTx.Commit(); err != nil {
		failAll(batch, storageErr("commit", err))
		return
	}
	for _, fn := range tx.after {
		fn()
	}
	for user, t := range tx.touched {
		s.watchers.Notify(t.event(user))
	}
	if s.opts.AnnounceMail && len(tx.touched) > 0 {
		if err := s.mailmark.touch(); err != nil {
			slog.Warn("store: could not tell a running server that mail changed; its IMAP sessions see it at their next command",
				"err", fmt.Errorf("write %s: %w", s.mailmark.stampPath, err))
		}
	}
	for i, r := range batch {
		r.err <- errs[i]
	}
}

func failAll(batch []*writeReq, err error) {
	for _, r := range batch {
		r.err <- err
	}
}

// storageErr marks err as a storage failure (store.ErrStorage).
func storageErr(op string, err error) error {
	return fmt.Errorf("store: %s: %w: %w", op, store.ErrStorage, err)
}

// isUniqueViolation reports whether err is a UNIQUE or PRIMARY KEY conflict.
func isUniqueViolation(err error) bool {
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed")
}

// Usage counts the users and their mailboxes' bytes, and sizes the
// database file, its write-ahead log and the large bodies' files.
func (s *Store) Usage(ctx context.Context) (store.Usage, error) {
	var u store.Usage
	var pages, pageSize int64
	err := s.queryRow(ctx, `SELECT (SELECT count(*) FROM users), (SELECT coalesce(sum(used_bytes), 0) FROM users),
		(SELECT page_count FROM pragma_page_count()), (SELECT page_size FROM pragma_page_size())`).Scan(&u.Users, &u.MailboxBytes, &pages, &pageSize)
	if err != nil {
		return u, storageErr("usage", err)
	}
	u.DatabaseBytes = pages * pageSize
	if fi, err := os.Lstat(filepath.Join(s.dir, "mailroom.db-wal")); err == nil {
		u.DatabaseBytes += fi.Size()
	}
	err = filepath.WalkDir(filepath.Join(s.dir, "blobs"), func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if fi, err := d.Info(); err == nil {
			u.DatabaseBytes += fi.Size()
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return u, storageErr("usage", err)
	}
	return u, nil
}
