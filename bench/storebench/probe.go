package main

import (
	"database/sql"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
	bolt "go.etcd.io/bbolt"
)

// runProbe plays the mail server's CLI: a second process that reads and
// writes the SQLite database while the benchmark process is committing.
func runProbe(path string, dur time.Duration) error {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return probePebble(path)
	}
	if strings.HasSuffix(path, ".bolt") {
		return probeBolt(path)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_txlock=immediate")
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	// A schema change from the second process, too.
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS cli_log (id INTEGER PRIMARY KEY, at INTEGER, note TEXT)`); err != nil {
		return fmt.Errorf("create table: %w", err)
	}
	var reads, writes []time.Duration
	var firstCount, lastCount int64 = -1, -1
	deadline := time.Now().Add(dur)
	for i := 0; i < 10000 && time.Now().Before(deadline); i++ {
		t0 := time.Now()
		var cnt int64
		var maxID sql.NullInt64
		if err := db.QueryRow(`SELECT count(*), max(id) FROM messages`).Scan(&cnt, &maxID); err != nil {
			return fmt.Errorf("read: %w", err)
		}
		reads = append(reads, time.Since(t0))
		if firstCount < 0 {
			firstCount = cnt
		}
		lastCount = cnt

		t0 = time.Now()
		tx, err := db.Begin()
		if err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		if _, err := tx.Exec(`INSERT INTO cli_log (at, note) VALUES (?, ?)`, time.Now().UnixNano(), "probe"); err != nil {
			tx.Rollback()
			return fmt.Errorf("insert: %w", err)
		}
		if _, err := tx.Exec(`UPDATE messages SET date = date + 0 WHERE id = ?`, maxID); err != nil {
			tx.Rollback()
			return fmt.Errorf("update: %w", err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		writes = append(writes, time.Since(t0))
		time.Sleep(50 * time.Millisecond)
	}
	var logged int64
	if err := db.QueryRow(`SELECT count(*) FROM cli_log`).Scan(&logged); err != nil {
		return err
	}
	fmt.Printf("PROBE ok reads=%d writes=%d messages_seen=%d->%d cli_rows=%d read_p50ms=%.2f read_maxms=%.2f write_p50ms=%.2f write_maxms=%.2f\n",
		len(reads), len(writes), firstCount, lastCount, logged,
		msPct(reads, 0.5), msPct(reads, 1), msPct(writes, 0.5), msPct(writes, 1))
	return nil
}

func msPct(d []time.Duration, p float64) float64 {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(p*float64(len(s))+0.5) - 1
	i = max(0, min(i, len(s)-1))
	return float64(s[i]) / 1e6
}

// probeBolt tries to open a bbolt file held by another process, read-only.
func probeBolt(path string) error {
	t0 := time.Now()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 2 * time.Second})
	if err != nil {
		fmt.Printf("PROBE bbolt read-only open failed after %.1fs: %v\n", time.Since(t0).Seconds(), err)
		return nil
	}
	db.Close()
	fmt.Printf("PROBE bbolt read-only open ok\n")
	return nil
}

// probePebble tries to open a pebble directory held by another process.
func probePebble(dir string) error {
	db, err := pebble.Open(dir, &pebble.Options{ReadOnly: true, Logger: quietLogger{}})
	if err != nil {
		fmt.Printf("PROBE pebble read-only open failed: %v\n", err)
		return nil
	}
	db.Close()
	fmt.Printf("PROBE pebble read-only open ok\n")
	return nil
}
