package sqlite

import (
	"context"
	"fmt"
	"time"

	"mailroom/internal/store"
)

// AddDKIMKey keeps a domain's new DKIM key.
func (s *Store) AddDKIMKey(ctx context.Context, k store.DKIMKey) error {
	return s.write(ctx, func(tx *wtx) error {
		if err := requireDomain(tx, k.Domain); err != nil {
			return err
		}
		_, err := tx.Exec(`INSERT INTO dkim_keys(domain, selector, algorithm, private_key, created, sign_from, retire_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			k.Domain, k.Selector, k.Algorithm, k.PrivateKey, k.Created.Unix(), k.SignFrom.Unix(), unixOrZero(k.RetireAt))
		if isUniqueViolation(err) {
			return fmt.Errorf("DKIM selector %s of %s: %w", k.Selector, k.Domain, store.ErrExists)
		}
		return err
	})
}

// DKIMKeysOf returns a domain's DKIM keys, oldest first, or every domain's.
func (s *Store) DKIMKeysOf(ctx context.Context, domain string) ([]store.DKIMKey, error) {
	rows, err := s.query(ctx, `SELECT domain, selector, algorithm, private_key, created, sign_from, retire_at FROM dkim_keys
		WHERE domain = ?1 OR ?1 = '' ORDER BY domain, created, id`, domain)
	if err != nil {
		return nil, fmt.Errorf("store: read the DKIM keys: %w", err)
	}
	defer rows.Close()
	var out []store.DKIMKey
	for rows.Next() {
		var k store.DKIMKey
		var created, from, retire int64
		if err := rows.Scan(&k.Domain, &k.Selector, &k.Algorithm, &k.PrivateKey, &created, &from, &retire); err != nil {
			return nil, fmt.Errorf("store: read the DKIM keys: %w", err)
		}
		k.Created, k.SignFrom = time.Unix(created, 0), time.Unix(from, 0)
		if retire != 0 {
			k.RetireAt = time.Unix(retire, 0)
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// RetireDKIMKey sets when a key stops being published.
func (s *Store) RetireDKIMKey(ctx context.Context, domain, selector string, at time.Time) error {
	return s.write(ctx, func(tx *wtx) error {
		return expectOne(tx.Exec(`UPDATE dkim_keys SET retire_at = ? WHERE domain = ? AND selector = ?`, unixOrZero(at), domain, selector))("DKIM selector " + selector + " of " + domain)
	})
}

// DeleteDKIMKey forgets a key.
func (s *Store) DeleteDKIMKey(ctx context.Context, domain, selector string) error {
	return s.write(ctx, func(tx *wtx) error {
		return expectOne(tx.Exec(`DELETE FROM dkim_keys WHERE domain = ? AND selector = ?`, domain, selector))("DKIM selector " + selector + " of " + domain)
	})
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}
