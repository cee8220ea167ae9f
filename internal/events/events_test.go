package events

import (
	"log/slog"
	"testing"
	"time"

	"mailroom/internal/store"
	"mailroom/internal/store/sqlite"
)

// TestKeeper: Count adds up more events than one batch; SweepOld deletes
// what is older than the retention and keeps the rest, and keeps all with
// a retention of zero.
func TestKeeper(t *testing.T) {
	ctx := t.Context()
	st, err := sqlite.Open(ctx, t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	var evs []store.Event
	for i := range 2*batch + 5 {
		at := now.Add(-time.Duration(i%2) * 40 * 24 * time.Hour) // every other one 40 days old
		evs = append(evs, store.Event{Time: at, Kind: store.EventDelivered, Domain: "a.example"})
	}
	if err := st.AddEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	keep := time.Duration(0)
	k := New(st, func() time.Duration { return keep }, slog.New(slog.DiscardHandler))
	k.Count(ctx)
	cs, err := st.EventCounts(ctx, store.CountQuery{Step: 24 * time.Hour * 365})
	var total int64
	for _, c := range cs {
		total += c.Count
	}
	if err != nil || total != int64(len(evs)) {
		t.Fatalf("counted %d events (%v), want %d", total, err, len(evs))
	}
	k.SweepOld(ctx, now)
	if es, _ := st.Events(ctx, store.EventQuery{Limit: 1000}); len(es) != 1000 {
		t.Fatalf("a retention of 0 deleted events: %d left of the first 1000", len(es))
	}
	keep = 30 * 24 * time.Hour
	k.SweepOld(ctx, now)
	left := 0
	for q := (store.EventQuery{Limit: 1000}); ; {
		es, err := st.Events(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			if now.Sub(e.Time) > keep {
				t.Fatalf("an event of %v was kept", e.Time)
			}
		}
		left += len(es)
		if len(es) < 1000 {
			break
		}
		q.Before = es[len(es)-1].ID
	}
	if left != batch+3 {
		t.Errorf("%d events left, want %d", left, batch+3)
	}
}
