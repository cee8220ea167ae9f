package main

import (
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"

	_ "modernc.org/sqlite"
)

// sqliteDSN opens path in WAL mode with synchronous=FULL. busy_timeout comes
// first so that a second process holding a lock does not make setup fail.
func sqliteDSN(path string) string {
	return "file:" + path +
		"?_pragma=busy_timeout(10000)" +
		"&_pragma=journal_mode(WAL)" +
		"&_pragma=synchronous(FULL)" +
		"&_txlock=immediate"
}

const sqliteSchema = `
CREATE TABLE IF NOT EXISTS messages (
	id         INTEGER PRIMARY KEY,
	mailbox_id INTEGER NOT NULL,
	uid        INTEGER NOT NULL,
	size       INTEGER NOT NULL,
	date       INTEGER NOT NULL,
	body_path  TEXT,
	UNIQUE (mailbox_id, uid)
);
CREATE TABLE IF NOT EXISTS bodies (
	id   INTEGER PRIMARY KEY,
	data BLOB NOT NULL
);`

type sqliteEngine struct {
	db      *sql.DB
	g       *groupCommitter
	files   bool
	bodyDir string
	dirFile *os.File
	fsyncs  atomic.Int64
	insMsg  *sql.Stmt
	insBody *sql.Stmt
}

func openSQLite(files bool) opener {
	return func(dir string, size int) (Engine, error) {
		db, err := sql.Open("sqlite", sqliteDSN(filepath.Join(dir, "mail.db")))
		if err != nil {
			return nil, err
		}
		db.SetMaxOpenConns(1) // the single writer connection
		var mode string
		if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
			db.Close()
			return nil, fmt.Errorf("journal_mode=%q, err=%v", mode, err)
		}
		if _, err := db.Exec(sqliteSchema); err != nil {
			db.Close()
			return nil, err
		}
		e := &sqliteEngine{db: db, files: files}
		if e.insMsg, err = db.Prepare(`INSERT INTO messages (id, mailbox_id, uid, size, date, body_path) VALUES (?, ?, ?, ?, ?, ?)`); err != nil {
			return nil, err
		}
		if e.insBody, err = db.Prepare(`INSERT INTO bodies (id, data) VALUES (?, ?)`); err != nil {
			return nil, err
		}
		if files {
			e.bodyDir = filepath.Join(dir, "bodies")
			if err := os.Mkdir(e.bodyDir, 0o755); err != nil {
				return nil, err
			}
			if e.dirFile, err = os.Open(e.bodyDir); err != nil {
				return nil, err
			}
		}
		e.g = newGroupCommitter(1024, e.commitBatch)
		return e, nil
	}
}

func (e *sqliteEngine) Commit(m *Msg) error {
	if e.files {
		// The accepting goroutine writes and fsyncs its own body file
		// (in parallel with other writers); the directory entry is made
		// durable once per batch by the committer.
		if err := writeFileSync(filepath.Join(e.bodyDir, bodyName(m.Seq)), m.Body); err != nil {
			return err
		}
		e.fsyncs.Add(1)
	}
	return e.g.Commit(m)
}

func (e *sqliteEngine) commitBatch(batch []*Msg) error {
	if e.files {
		if err := e.dirFile.Sync(); err != nil {
			return err
		}
		e.fsyncs.Add(1)
	}
	tx, err := e.db.Begin() // BEGIN IMMEDIATE via _txlock
	if err != nil {
		return err
	}
	insMsg, insBody := tx.Stmt(e.insMsg), tx.Stmt(e.insBody)
	for _, m := range batch {
		var path any
		if e.files {
			path = bodyName(m.Seq)
		} else if _, err := insBody.Exec(int64(m.Seq), m.Body); err != nil {
			tx.Rollback()
			return err
		}
		if _, err := insMsg.Exec(int64(m.Seq), m.Mailbox, m.UID, len(m.Body), m.Date, path); err != nil {
			tx.Rollback()
			return err
		}
	}
	return tx.Commit() // WAL append + fsync (synchronous=FULL)
}

func (e *sqliteEngine) Close() error {
	e.g.Close()
	if e.dirFile != nil {
		e.dirFile.Close()
	}
	return e.db.Close()
}

func (e *sqliteEngine) Stats() (int64, int64) {
	if e.files {
		return e.g.batches.Load(), e.fsyncs.Load()
	}
	return e.g.batches.Load(), -1
}

func bodyName(seq uint64) string { return fmt.Sprintf("%016x.eml", seq) }

// writeFileSync creates path exclusively, writes data and fsyncs the file.
func writeFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
