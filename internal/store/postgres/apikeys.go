package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"mailroom/internal/store"
)

// AddAPIKey stores a new key.
func (s *Store) AddAPIKey(ctx context.Context, k store.APIKey, hash string) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO api_keys(id, hash, name, owner, scopes, rate, created) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		k.ID, hash, k.Name, k.Owner, strings.Join(k.Scopes, ","), k.RatePerMinute, k.Created.Unix())
	if isCode(err, codeUniqueViolation) {
		return fmt.Errorf("API key %s: %w", k.ID, store.ErrExists)
	}
	if err != nil {
		return fmt.Errorf("%w: add API key: %w", store.ErrStorage, err)
	}
	return nil
}

const apiKeyColumns = `SELECT id, name, owner, scopes, rate, created, last_used FROM api_keys`

// APIKeys lists the keys of owner ("" for all).
func (s *Store) APIKeys(ctx context.Context, owner string) ([]store.APIKey, error) {
	rows, err := s.pool.Query(ctx, apiKeyColumns+` WHERE $1 = '' OR owner = $1 ORDER BY owner, name, id`, owner)
	if err != nil {
		return nil, fmt.Errorf("%w: API keys: %w", store.ErrStorage, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.APIKey, error) { return store.ScanAPIKey(r) })
	if err != nil {
		return nil, fmt.Errorf("%w: API keys: %w", store.ErrStorage, err)
	}
	return out, nil
}

// DeleteAPIKey revokes a key.
func (s *Store) DeleteAPIKey(ctx context.Context, id string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM api_keys WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("%w: delete API key: %w", store.ErrStorage, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("API key %s: %w", id, store.ErrNotFound)
	}
	return nil
}

// APIKeyByHash finds a key by its token's hash, and records its use at
// most once a minute (in the same statement).
func (s *Store) APIKeyByHash(ctx context.Context, hash string, now time.Time) (store.APIKey, error) {
	k, err := store.ScanAPIKey(s.pool.QueryRow(ctx, apiKeyColumns+` WHERE hash = $1`, hash))
	if errors.Is(err, pgx.ErrNoRows) {
		return k, fmt.Errorf("API key: %w", store.ErrNotFound)
	}
	if err != nil {
		return k, fmt.Errorf("%w: API key: %w", store.ErrStorage, err)
	}
	if now.Sub(k.LastUsed) >= time.Minute {
		go s.pool.Exec(context.Background(), `UPDATE api_keys SET last_used = $1 WHERE id = $2 AND last_used < $1 - 60`, now.Unix(), k.ID)
	}
	return k, nil
}

// BeginIdempotent claims an idempotency key in one statement: a new key is
// inserted, a held one whose lease ran out is taken over; otherwise the
// row as it is says who holds it.
func (s *Store) BeginIdempotent(ctx context.Context, keyID, key, request string, now time.Time, lease time.Duration) (store.Idempotent, error) {
	var out store.Idempotent
	err := s.retry(ctx, pgx.ReadCommitted, func(tx pgx.Tx) error {
		out = store.Idempotent{}
		var began bool
		err := tx.QueryRow(ctx, `INSERT INTO idempotency_keys(key_id, key, request, created) VALUES ($1, $2, $3, $4)
			ON CONFLICT (key_id, key) DO UPDATE SET request = excluded.request, status = 0, response = '', created = excluded.created
			WHERE idempotency_keys.status = 0 AND idempotency_keys.created < $5
			RETURNING true`, keyID, key, request, now.UnixNano(), now.Add(-lease).UnixNano()).Scan(&began)
		if err == nil {
			out = store.Idempotent{Began: true, Request: request}
			return nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		return tx.QueryRow(ctx, `SELECT request, status, response FROM idempotency_keys WHERE key_id = $1 AND key = $2`, keyID, key).
			Scan(&out.Request, &out.Status, &out.Response)
	})
	if err != nil {
		return out, fmt.Errorf("%w: idempotency key: %w", store.ErrStorage, err)
	}
	return out, nil
}

// FinishIdempotent records a response.
func (s *Store) FinishIdempotent(ctx context.Context, keyID, key string, status int, response []byte) error {
	var err error
	if status == 0 { // released: free to be begun again at once
		_, err = s.pool.Exec(ctx, `UPDATE idempotency_keys SET created = 0 WHERE key_id = $1 AND key = $2 AND status = 0`, keyID, key)
	} else {
		_, err = s.pool.Exec(ctx, `UPDATE idempotency_keys SET status = $1, response = $2 WHERE key_id = $3 AND key = $4`, status, response, keyID, key)
	}
	if err != nil {
		return fmt.Errorf("%w: idempotency key: %w", store.ErrStorage, err)
	}
	return nil
}

// DeleteIdempotent forgets old idempotency keys.
func (s *Store) DeleteIdempotent(ctx context.Context, before time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM idempotency_keys WHERE created < $1`, before.UnixNano())
	if err != nil {
		return 0, fmt.Errorf("%w: idempotency keys: %w", store.ErrStorage, err)
	}
	return int(tag.RowsAffected()), nil
}
