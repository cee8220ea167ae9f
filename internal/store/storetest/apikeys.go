package storetest

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"mailroom/internal/store"
)

func apiKeyTests() []test {
	return []test{
		{"API keys are found by their hash, listed by owner, and revoked", testAPIKeys},
		{"an idempotency key is begun once, replayed once finished, and taken over after its lease", testIdempotency},
	}
}

func testAPIKeys(t *testing.T, s store.Store) {
	ctx := t.Context()
	now := time.Now().Truncate(time.Second)
	keys := []store.APIKey{
		{ID: "k1", Name: "shop", Owner: "@a.example", Scopes: []string{store.ScopeSend}, Created: now},
		{ID: "k2", Name: "reports", Owner: "alice@a.example", Scopes: []string{store.ScopeRead, store.ScopeSend}, RatePerMinute: 60, Created: now},
		{ID: "k3", Name: "ops", Owner: "*", Scopes: []string{store.ScopeAdmin, store.ScopeRead}, Created: now},
	}
	for i, k := range keys {
		if err := s.AddAPIKey(ctx, k, "hash-"+k.ID); err != nil {
			t.Fatalf("AddAPIKey(%d): %v", i, err)
		}
	}
	if err := s.AddAPIKey(ctx, store.APIKey{ID: "k1", Name: "again", Owner: "@a.example", Scopes: []string{"send"}, Created: now}, "other"); !errors.Is(err, store.ErrExists) {
		t.Errorf("a taken ID: %v, want ErrExists", err)
	}
	got, err := s.APIKeyByHash(ctx, "hash-k2", now)
	if err != nil || got.ID != "k2" || got.Owner != "alice@a.example" || !slices.Equal(got.Scopes, keys[1].Scopes) || got.RatePerMinute != 60 || !got.Created.Equal(now) {
		t.Errorf("APIKeyByHash = %+v, %v", got, err)
	}
	if _, err := s.APIKeyByHash(ctx, "hash-none", now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("an unknown hash: %v, want ErrNotFound", err)
	}
	names := func(ks []store.APIKey) []string {
		var out []string
		for _, k := range ks {
			out = append(out, k.ID)
		}
		return out
	}
	if all, err := s.APIKeys(ctx, ""); err != nil || !slices.Equal(names(all), []string{"k3", "k1", "k2"}) {
		t.Errorf("APIKeys(all) = %v, %v", names(all), err)
	}
	if mine, err := s.APIKeys(ctx, "@a.example"); err != nil || !slices.Equal(names(mine), []string{"k1"}) {
		t.Errorf("APIKeys(@a.example) = %v, %v", names(mine), err)
	}
	// The use is recorded (without waiting: look until it shows).
	deadline := time.Now().Add(5 * time.Second)
	for {
		ks, _ := s.APIKeys(ctx, "alice@a.example")
		if len(ks) == 1 && ks[0].LastUsed.Equal(now) {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("the key's use was not recorded: %+v", ks)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.DeleteAPIKey(ctx, "k2"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.APIKeyByHash(ctx, "hash-k2", now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a revoked key still works: %v", err)
	}
	if err := s.DeleteAPIKey(ctx, "k2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("revoking twice: %v, want ErrNotFound", err)
	}
}

func testIdempotency(t *testing.T, s store.Store) {
	ctx := t.Context()
	now := time.Now()
	lease := time.Minute
	// Eight at once: one begins.
	var wg sync.WaitGroup
	var mu sync.Mutex
	began := 0
	for range 8 {
		wg.Go(func() {
			st, err := s.BeginIdempotent(ctx, "k1", "order-1", "req-a", now, lease)
			if err != nil {
				t.Error(err)
				return
			}
			if st.Began {
				mu.Lock()
				began++
				mu.Unlock()
			} else if st.Status != 0 || st.Request != "req-a" {
				t.Errorf("a held key: %+v", st)
			}
		})
	}
	wg.Wait()
	if began != 1 {
		t.Fatalf("%d of 8 concurrent requests began, want 1", began)
	}
	if err := s.FinishIdempotent(ctx, "k1", "order-1", 202, []byte(`{"id":"x"}`)); err != nil {
		t.Fatal(err)
	}
	st, err := s.BeginIdempotent(ctx, "k1", "order-1", "req-b", now.Add(2*lease), lease)
	if err != nil || st.Began || st.Status != 202 || string(st.Response) != `{"id":"x"}` || st.Request != "req-a" {
		t.Errorf("a finished key, even after its lease = %+v, %v", st, err)
	}
	// Another key of the same name under another API key is its own.
	if st, _ := s.BeginIdempotent(ctx, "k2", "order-1", "req-a", now, lease); !st.Began {
		t.Errorf("the same key under another API key was held: %+v", st)
	}
	// One begun and never finished is taken over after its lease.
	if st, _ := s.BeginIdempotent(ctx, "k1", "order-2", "req-c", now, lease); !st.Began {
		t.Fatal("a new key was not begun")
	}
	if st, _ := s.BeginIdempotent(ctx, "k1", "order-2", "req-c", now.Add(lease/2), lease); st.Began || st.Status != 0 {
		t.Errorf("a key under way was begun again within its lease: %+v", st)
	}
	if st, _ := s.BeginIdempotent(ctx, "k1", "order-2", "req-c", now.Add(2*lease), lease); !st.Began {
		t.Errorf("a key under way was not taken over after its lease: %+v", st)
	}
	// One released (it failed for now) is begun again at once.
	if err := s.FinishIdempotent(ctx, "k1", "order-2", 0, nil); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.BeginIdempotent(ctx, "k1", "order-2", "req-c", now.Add(2*lease+time.Second), lease); !st.Began {
		t.Errorf("a released key was not begun again: %+v", st)
	}
	if n, err := s.DeleteIdempotent(ctx, now.Add(time.Second)); err != nil || n != 2 {
		t.Errorf("DeleteIdempotent = %d, %v; want the 2 claimed at the start", n, err)
	}
}
