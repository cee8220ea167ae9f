package tally

import (
	"testing"
	"time"

	"mailroom/internal/store"
	"mailroom/internal/store/sqlite"
)

// TestRecorder: counts of equal rows add up in memory and in the store
// across flushes; a report is due once its period has ended, and is gone
// once done.
func TestRecorder(t *testing.T) {
	ctx := t.Context()
	st, err := sqlite.Open(ctx, t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r := New(store.TallyTLSRPT, time.Hour)
	at := time.Date(2026, 12, 6, 10, 15, 0, 0, time.UTC)
	type row struct{ R string }
	r.Add("a.example", row{"ok"}, at)
	r.Add("a.example", row{"ok"}, at.Add(time.Minute))
	r.Add("b.example", row{"fail"}, at)
	if err := r.Flush(ctx, st); err != nil {
		t.Fatal(err)
	}
	r.Add("a.example", row{"ok"}, at.Add(2*time.Minute))
	r.Add("a.example", row{"ok"}, at.Add(time.Hour)) // the next period
	if err := r.Flush(ctx, st); err != nil {
		t.Fatal(err)
	}
	if due, _ := r.Due(ctx, st, at); len(due) != 0 {
		t.Fatalf("due before the period ended: %+v", due)
	}
	due, err := r.Due(ctx, st, at.Add(50*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(due) != 2 || due[0].Domain != "a.example" || len(due[0].Rows) != 1 || due[0].Rows[0].Count != 3 || due[0].Rows[0].Key != `{"R":"ok"}` ||
		!due[0].Begin.Equal(time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)) || !due[0].End.Equal(due[0].Begin.Add(time.Hour)) ||
		due[1].Domain != "b.example" || due[1].Rows[0].Count != 1 {
		t.Fatalf("due = %+v", due)
	}
	for _, d := range due {
		if err := r.Done(ctx, st, d); err != nil {
			t.Fatal(err)
		}
	}
	if due, _ := r.Due(ctx, st, at.Add(50*time.Minute)); len(due) != 0 {
		t.Fatalf("due after done: %+v", due)
	}
	if due, _ := r.Due(ctx, st, at.Add(2*time.Hour)); len(due) != 1 || due[0].Rows[0].Count != 1 {
		t.Fatalf("the next period: %+v", due)
	}
}
