package postgres

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"mailroom/internal/store"
)

// AddDKIMKey keeps a domain's new DKIM key.
func (s *Store) AddDKIMKey(ctx context.Context, k store.DKIMKey) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO dkim_keys(domain, selector, algorithm, private_key, created, sign_from, retire_at) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		k.Domain, k.Selector, k.Algorithm, k.PrivateKey, k.Created.Unix(), k.SignFrom.Unix(), unixOrZero(k.RetireAt))
	switch {
	case isCode(err, codeUniqueViolation):
		return fmt.Errorf("DKIM selector %s of %s: %w", k.Selector, k.Domain, store.ErrExists)
	case isCode(err, codeForeignKeyViolation):
		return fmt.Errorf("domain %s: %w", k.Domain, store.ErrNotFound)
	}
	return err
}

// DKIMKeysOf returns a domain's DKIM keys, oldest first, or every domain's.
func (s *Store) DKIMKeysOf(ctx context.Context, domain string) ([]store.DKIMKey, error) {
	rows, _ := s.pool.Query(ctx, `SELECT domain, selector, algorithm, private_key, created, sign_from, retire_at FROM dkim_keys
		WHERE domain = $1 OR $1 = '' ORDER BY domain, created, id`, domain)
	keys, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.DKIMKey, error) {
		var k store.DKIMKey
		var created, from, retire int64
		err := r.Scan(&k.Domain, &k.Selector, &k.Algorithm, &k.PrivateKey, &created, &from, &retire)
		k.Created, k.SignFrom, k.RetireAt = time.Unix(created, 0), time.Unix(from, 0), timeOrZero(retire)
		return k, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: read the DKIM keys: %w", err)
	}
	return keys, nil
}

// RetireDKIMKey sets when a key stops being published.
func (s *Store) RetireDKIMKey(ctx context.Context, domain, selector string, at time.Time) error {
	return expectOne(s.pool.Exec(ctx, `UPDATE dkim_keys SET retire_at = $1 WHERE domain = $2 AND selector = $3`, unixOrZero(at), domain, selector))("DKIM selector " + selector + " of " + domain)
}

// DeleteDKIMKey forgets a key.
func (s *Store) DeleteDKIMKey(ctx context.Context, domain, selector string) error {
	return expectOne(s.pool.Exec(ctx, `DELETE FROM dkim_keys WHERE domain = $1 AND selector = $2`, domain, selector))("DKIM selector " + selector + " of " + domain)
}

// AddDMARCReport keeps an aggregate report received.
func (s *Store) AddDMARCReport(ctx context.Context, r store.DMARCReport) error {
	rows, err := json.Marshal(r.Rows)
	if err != nil {
		return err
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO dmarc_reports(received, org, email, report_id, domain, policy, begin_at, end_at, rows) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		r.Received.Unix(), r.Org, r.Email, r.ReportID, r.Domain, r.Policy, r.Begin.Unix(), r.End.Unix(), rows)
	if isCode(err, codeUniqueViolation) {
		return fmt.Errorf("DMARC report %s of %s: %w", r.ReportID, r.Org, store.ErrExists)
	}
	return err
}

// DMARCReportsOf returns the reports about a domain, the newest first.
func (s *Store) DMARCReportsOf(ctx context.Context, domain string, since time.Time) ([]store.DMARCReport, error) {
	rows, _ := s.pool.Query(ctx, `SELECT id, received, org, email, report_id, domain, policy, begin_at, end_at, rows FROM dmarc_reports
		WHERE (domain = $1 OR $1 = '') AND end_at >= $2 ORDER BY end_at DESC, id DESC`, domain, since.Unix())
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.DMARCReport, error) {
		var r store.DMARCReport
		var received, begin, end int64
		var data []byte
		if err := row.Scan(&r.ID, &received, &r.Org, &r.Email, &r.ReportID, &r.Domain, &r.Policy, &begin, &end, &data); err != nil {
			return r, err
		}
		r.Received, r.Begin, r.End = time.Unix(received, 0), time.Unix(begin, 0), time.Unix(end, 0)
		return r, json.Unmarshal(data, &r.Rows)
	})
	if err != nil {
		return nil, fmt.Errorf("store: read the DMARC reports: %w", err)
	}
	return out, nil
}

// SaveMTASTSPolicy keeps a domain's MTA-STS policy.
func (s *Store) SaveMTASTSPolicy(ctx context.Context, p store.MTASTSPolicy) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO mta_sts_policies(domain, id, policy, fetched, expires) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (domain) DO UPDATE SET id = excluded.id, policy = excluded.policy, fetched = excluded.fetched, expires = excluded.expires`,
		p.Domain, p.ID, p.Text, p.Fetched.Unix(), p.Expires.Unix())
	return err
}

// MTASTSPolicy returns a domain's kept MTA-STS policy.
func (s *Store) MTASTSPolicy(ctx context.Context, domain string) (store.MTASTSPolicy, error) {
	p := store.MTASTSPolicy{Domain: domain}
	var fetched, expires int64
	err := s.pool.QueryRow(ctx, `SELECT id, policy, fetched, expires FROM mta_sts_policies WHERE domain = $1`, domain).Scan(&p.ID, &p.Text, &fetched, &expires)
	if errors.Is(err, pgx.ErrNoRows) {
		return p, fmt.Errorf("MTA-STS policy of %s: %w", domain, store.ErrNotFound)
	}
	if err != nil {
		return p, fmt.Errorf("store: read the MTA-STS policy of %s: %w", domain, err)
	}
	p.Fetched, p.Expires = time.Unix(fetched, 0), time.Unix(expires, 0)
	return p, nil
}

// Secret returns a named secret, made on first use: the first node's
// insert wins, and every caller reads the one kept.
func (s *Store) Secret(ctx context.Context, name string, size int) ([]byte, error) {
	fresh := make([]byte, size)
	if _, err := rand.Read(fresh); err != nil {
		return nil, err
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO secrets(name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING`, name, fresh); err != nil {
		return nil, fmt.Errorf("store: keep the secret %s: %w", name, err)
	}
	var v []byte
	if err := s.pool.QueryRow(ctx, `SELECT value FROM secrets WHERE name = $1`, name).Scan(&v); err != nil {
		return nil, fmt.Errorf("store: read the secret %s: %w", name, err)
	}
	return v, nil
}

// AddTallies adds counts, in one statement per kind of row.
func (s *Store) AddTallies(ctx context.Context, ts []store.Tally) error {
	if len(ts) == 0 {
		return nil
	}
	batch := &pgx.Batch{}
	for _, t := range ts {
		batch.Queue(`INSERT INTO report_tallies(kind, period, domain, key, count) VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (kind, period, domain, key) DO UPDATE SET count = report_tallies.count + excluded.count`,
			t.Kind, t.Period.Unix(), t.Domain, t.Key, t.Count)
	}
	return s.pool.SendBatch(ctx, batch).Close()
}

// TalliesOf returns one kind's rows of periods that began before before.
func (s *Store) TalliesOf(ctx context.Context, kind string, before time.Time, limit int) ([]store.Tally, error) {
	if limit <= 0 {
		limit = -1
	}
	rows, _ := s.pool.Query(ctx, `SELECT period, domain, key, count FROM (
		SELECT period, domain, key, count, row_number() OVER (PARTITION BY period, domain ORDER BY count DESC, key) AS n
		FROM report_tallies WHERE kind = $1 AND period < $2) t
		WHERE $3 < 0 OR n <= $3 ORDER BY period, domain, key`, kind, before.Unix(), limit)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Tally, error) {
		t := store.Tally{Kind: kind}
		var period int64
		err := r.Scan(&period, &t.Domain, &t.Key, &t.Count)
		t.Period = time.Unix(period, 0)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("store: read the %s tallies: %w", kind, err)
	}
	return out, nil
}

// DeleteTallies removes one domain's (or every domain's) rows of a period.
func (s *Store) DeleteTallies(ctx context.Context, kind string, period time.Time, domain string) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM report_tallies WHERE kind = $1 AND period = $2 AND ($3 = '' OR domain = $3)`, kind, period.Unix(), domain)
	return err
}
