package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"mailroom/internal/store"
)

// AddAPIKey stores a new key.
func (s *Store) AddAPIKey(ctx context.Context, k store.APIKey, hash string) error {
	err := s.write(ctx, func(tx *wtx) error {
		_, err := tx.Exec(`INSERT INTO api_keys(id, hash, name, owner, scopes, rate, created) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			k.ID, hash, k.Name, k.Owner, strings.Join(k.Scopes, ","), k.RatePerMinute, k.Created.Unix())
		if isUniqueViolation(err) {
			return fmt.Errorf("API key %s: %w", k.ID, store.ErrExists)
		}
		return err
	})
	if err != nil && !errors.Is(err, store.ErrExists) {
		return storageErr("add API key", err)
	}
	return err
}

const apiKeyColumns = `SELECT id, name, owner, scopes, rate, created, last_used FROM api_keys`

// APIKeys lists the keys of owner ("" for all).
func (s *Store) APIKeys(ctx context.Context, owner string) ([]store.APIKey, error) {
	rows, err := s.query(ctx, apiKeyColumns+` WHERE ? = '' OR owner = ? ORDER BY owner, name, id`, owner, owner)
	if err != nil {
		return nil, storageErr("API keys", err)
	}
	defer rows.Close()
	var out []store.APIKey
	for rows.Next() {
		k, err := store.ScanAPIKey(rows)
		if err != nil {
			return nil, storageErr("API keys", err)
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// DeleteAPIKey revokes a key.
func (s *Store) DeleteAPIKey(ctx context.Context, id string) error {
	return s.write(ctx, func(tx *wtx) error {
		res, err := tx.Exec(`DELETE FROM api_keys WHERE id = ?`, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("API key %s: %w", id, store.ErrNotFound)
		}
		return nil
	})
}

// APIKeyByHash finds a key by its token's hash, and records its use at
// most once a minute (without waiting for it).
func (s *Store) APIKeyByHash(ctx context.Context, hash string, now time.Time) (store.APIKey, error) {
	k, err := store.ScanAPIKey(s.queryRow(ctx, apiKeyColumns+` WHERE hash = ?`, hash))
	if errors.Is(err, sql.ErrNoRows) {
		return k, fmt.Errorf("API key: %w", store.ErrNotFound)
	}
	if err != nil {
		return k, storageErr("API key", err)
	}
	if now.Sub(k.LastUsed) >= time.Minute {
		go s.writeLazy(context.Background(), false, func(tx *wtx) error {
			_, err := tx.Exec(`UPDATE api_keys SET last_used = ? WHERE id = ?`, now.Unix(), k.ID)
			return err
		})
	}
	return k, nil
}

// BeginIdempotent claims an idempotency key (the committer runs one write
// at a time: the read and the claim are one step).
func (s *Store) BeginIdempotent(ctx context.Context, keyID, key, request string, now time.Time, lease time.Duration) (store.Idempotent, error) {
	var out store.Idempotent
	err := s.write(ctx, func(tx *wtx) error {
		out = store.Idempotent{}
		var created int64
		err := tx.QueryRow(`SELECT request, status, response, created FROM idempotency_keys WHERE key_id = ? AND key = ?`, keyID, key).
			Scan(&out.Request, &out.Status, &out.Response, &created)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return err
		case out.Status != 0 || now.Sub(time.Unix(0, created)) < lease:
			return nil // held
		}
		out = store.Idempotent{Began: true, Request: request}
		_, err = tx.Exec(`INSERT INTO idempotency_keys(key_id, key, request, created) VALUES (?, ?, ?, ?)
			ON CONFLICT(key_id, key) DO UPDATE SET request = excluded.request, status = 0, response = x'', created = excluded.created`,
			keyID, key, request, now.UnixNano())
		return err
	})
	if err != nil {
		return out, storageErr("idempotency key", err)
	}
	return out, nil
}

// FinishIdempotent records a response.
func (s *Store) FinishIdempotent(ctx context.Context, keyID, key string, status int, response []byte) error {
	err := s.write(ctx, func(tx *wtx) error {
		if status == 0 { // released: free to be begun again at once
			_, err := tx.Exec(`UPDATE idempotency_keys SET created = 0 WHERE key_id = ? AND key = ? AND status = 0`, keyID, key)
			return err
		}
		_, err := tx.Exec(`UPDATE idempotency_keys SET status = ?, response = ? WHERE key_id = ? AND key = ?`, status, response, keyID, key)
		return err
	})
	if err != nil {
		return storageErr("idempotency key", err)
	}
	return nil
}

// DeleteIdempotent forgets old idempotency keys.
func (s *Store) DeleteIdempotent(ctx context.Context, before time.Time) (int, error) {
	var n int64
	err := s.write(ctx, func(tx *wtx) error {
		res, err := tx.Exec(`DELETE FROM idempotency_keys WHERE created < ?`, before.UnixNano())
		if err == nil {
			n, _ = res.RowsAffected()
		}
		return err
	})
	if err != nil {
		return 0, storageErr("idempotency keys", err)
	}
	return int(n), nil
}
