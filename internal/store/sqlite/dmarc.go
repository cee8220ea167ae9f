package sqlite

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"mailroom/internal/store"
)

// AddDMARCReport keeps an aggregate report.
func (s *Store) AddDMARCReport(ctx context.Context, r store.DMARCReport) error {
	rows, err := json.Marshal(r.Rows)
	if err != nil {
		return err
	}
	return s.write(ctx, func(tx *wtx) error {
		_, err := tx.Exec(`INSERT INTO dmarc_reports(received, org, email, report_id, domain, policy, begin_at, end_at, rows) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			r.Received.Unix(), r.Org, r.Email, r.ReportID, r.Domain, r.Policy, r.Begin.Unix(), r.End.Unix(), string(rows))
		if isUniqueViolation(err) {
			return fmt.Errorf("DMARC report %s of %s: %w", r.ReportID, r.Org, store.ErrExists)
		}
		return err
	})
}

// DMARCReportsOf returns the reports about a domain, the newest first.
func (s *Store) DMARCReportsOf(ctx context.Context, domain string, since time.Time) ([]store.DMARCReport, error) {
	q, err := s.query(ctx, `SELECT id, received, org, email, report_id, domain, policy, begin_at, end_at, rows FROM dmarc_reports
		WHERE (domain = ?1 OR ?1 = '') AND end_at >= ?2 ORDER BY end_at DESC, id DESC`, domain, since.Unix())
	if err != nil {
		return nil, fmt.Errorf("store: read the DMARC reports: %w", err)
	}
	defer q.Close()
	var out []store.DMARCReport
	for q.Next() {
		var r store.DMARCReport
		var received, begin, end int64
		var rows string
		if err := q.Scan(&r.ID, &received, &r.Org, &r.Email, &r.ReportID, &r.Domain, &r.Policy, &begin, &end, &rows); err != nil {
			return nil, fmt.Errorf("store: read the DMARC reports: %w", err)
		}
		r.Received, r.Begin, r.End = time.Unix(received, 0), time.Unix(begin, 0), time.Unix(end, 0)
		if err := json.Unmarshal([]byte(rows), &r.Rows); err != nil {
			return nil, fmt.Errorf("store: DMARC report %d: %w", r.ID, err)
		}
		out = append(out, r)
	}
	return out, q.Err()
}

// SaveMTASTSPolicy keeps a domain's MTA-STS policy. It is written without
// its own fsync, like flag changes: losing it costs one fetch.
func (s *Store) SaveMTASTSPolicy(ctx context.Context, p store.MTASTSPolicy) error {
	return s.writeLazy(ctx, false, func(tx *wtx) error {
		_, err := tx.Exec(`INSERT INTO mta_sts_policies(domain, id, policy, fetched, expires) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT(domain) DO UPDATE SET id = excluded.id, policy = excluded.policy, fetched = excluded.fetched, expires = excluded.expires`,
			p.Domain, p.ID, p.Text, p.Fetched.Unix(), p.Expires.Unix())
		return err
	})
}

// MTASTSPolicy returns a domain's kept MTA-STS policy.
func (s *Store) MTASTSPolicy(ctx context.Context, domain string) (store.MTASTSPolicy, error) {
	p := store.MTASTSPolicy{Domain: domain}
	var fetched, expires int64
	err := s.queryRow(ctx, `SELECT id, policy, fetched, expires FROM mta_sts_policies WHERE domain = ?`, domain).Scan(&p.ID, &p.Text, &fetched, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return p, fmt.Errorf("MTA-STS policy of %s: %w", domain, store.ErrNotFound)
	}
	if err != nil {
		return p, fmt.Errorf("store: read the MTA-STS policy of %s: %w", domain, err)
	}
	p.Fetched, p.Expires = time.Unix(fetched, 0), time.Unix(expires, 0)
	return p, nil
}

// Secret returns a named secret, made on first use.
func (s *Store) Secret(ctx context.Context, name string, size int) ([]byte, error) {
	var v []byte
	err := s.queryRow(ctx, `SELECT value FROM secrets WHERE name = ?`, name).Scan(&v)
	if err == nil {
		return v, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("store: read the secret %s: %w", name, err)
	}
	fresh := make([]byte, size)
	if _, err := rand.Read(fresh); err != nil {
		return nil, err
	}
	// Two callers at once: the first insert wins, and both read it back.
	err = s.write(ctx, func(tx *wtx) error {
		_, err := tx.Exec(`INSERT INTO secrets(name, value) VALUES (?, ?) ON CONFLICT(name) DO NOTHING`, name, fresh)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: keep the secret %s: %w", name, err)
	}
	if err := s.queryRow(ctx, `SELECT value FROM secrets WHERE name = ?`, name).Scan(&v); err != nil {
		return nil, fmt.Errorf("store: read the secret %s: %w", name, err)
	}
	return v, nil
}
