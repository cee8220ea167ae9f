package daemon

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"mailroom/internal/tally"
)

// TestToEach: a report goes once to each destination, at most
// maxDestinations of them; one that failed is tried again at the next
// round, those that had it are not sent it again.
func TestToEach(t *testing.T) {
	r := &reports{sent: map[string]bool{}}
	rep := tally.Report{Domain: "example.com", Begin: time.Unix(1_800_000_000, 0)}
	var got []string
	fail := map[string]bool{"b@x.example": true}
	send := func(dest string) error {
		got = append(got, dest)
		if fail[dest] {
			return fmt.Errorf("limit reached")
		}
		return nil
	}
	dests := []string{"a@x.example", "b@x.example", "c@x.example", "d@x.example", "e@x.example", "f@x.example"}
	err := r.toEach("DMARC", rep, 0, dests, send)
	if !errors.Is(err, errRetry) || !slices.Equal(got, dests[:5]) {
		t.Fatalf("first round: sent to %q, err %v; want the first five and a retry", got, err)
	}
	got, fail = nil, nil
	if err := r.toEach("DMARC", rep, 0, dests, send); err != nil || !slices.Equal(got, []string{"b@x.example"}) {
		t.Fatalf("second round: sent to %q, err %v; want b alone", got, err)
	}
	got = nil
	if err := r.toEach("DMARC", rep, 1, dests[:1], send); err != nil || len(got) != 1 {
		t.Fatalf("another report of the same period (another policy): sent to %q, err %v", got, err)
	}
}
