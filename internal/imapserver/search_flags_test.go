package imapserver

import (
	"fmt"
	"testing"

	"mailroom/internal/imapwire"
	"mailroom/internal/store"
)

// BenchmarkSearchFlags: SEARCH on flags alone over 100,000 messages, a
// quarter unseen (what a client asks of a large mailbox).
func BenchmarkSearchFlags(b *testing.B) {
	seen := []string{store.FlagSeen}
	benchSearch(b, "UNSEEN", 25_000, func(i int) []string {
		if i%4 != 0 {
			return seen
		}
		return nil
	})
}

// benchSearch times a search over 100,000 messages with the flags given,
// checking how many it finds.
func benchSearch(b *testing.B, keys string, want int, flags func(i int) []string) {
	sel := &selected{}
	for i := range 100_000 {
		sel.msgs = append(sel.msgs, sel.msgOf(store.MessageState{UID: uint32(i + 1), Flags: flags(i), ModSeq: 1}))
	}
	s := &session{sel: sel}
	root, err := parseSearchKeys((&imapwire.Command{Args: []byte(keys)}).Parser())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		found, err := s.search(root)
		if err != nil || len(found) != want {
			b.Fatalf("%d found, %v", len(found), err)
		}
	}
}

// TestSearchOnFlags: a search on flags alone, answered once per set of
// flags, finds what the general evaluation (per message) finds.
func TestSearchOnFlags(t *testing.T) {
	sel := &selected{}
	sets := [][]string{nil, {store.FlagSeen}, {store.FlagSeen, store.FlagFlagged}, {store.FlagDeleted}, {"$Work", store.FlagSeen}, {"$work"}, {store.FlagAnswered, store.FlagDraft}}
	for i := range 500 {
		sel.msgs = append(sel.msgs, sel.msgOf(store.MessageState{UID: uint32(2*i + 1), Flags: sets[(i*3+i/7)%len(sets)], ModSeq: 1}))
	}
	s := &session{sel: sel}
	for _, q := range []string{"UNSEEN", "SEEN FLAGGED", "NOT DELETED", "OR ANSWERED DELETED", "KEYWORD $WORK", "UNKEYWORD $Work SEEN",
		"ALL", "NOT (SEEN OR FLAGGED DRAFT)", "UNDRAFT UNANSWERED UNFLAGGED UNDELETED"} {
		parse := func(q string) *criterion {
			root, err := parseSearchKeys((&imapwire.Command{Args: []byte(q)}).Parser())
			if err != nil {
				t.Fatalf("%s: %v", q, err)
			}
			return root
		}
		root := parse(q)
		if !root.onFlags() {
			t.Fatalf("%s: not seen as a search on flags", q)
		}
		got, _ := s.search(root)
		general := parse("UID 1:* " + q) // not on flags alone: per message
		if general.onFlags() {
			t.Fatal("UID taken for a flag")
		}
		want, _ := s.search(general)
		if fmt.Sprint(got) != fmt.Sprint(want) || len(want) == 0 && q != "UNDRAFT UNANSWERED UNFLAGGED UNDELETED" {
			t.Errorf("%s: %d found on flags, %d per message", q, len(got), len(want))
		}
	}
}

// BenchmarkSearchUIDRange: SEARCH with a UID range over 100,000 messages
// (the range is resolved once, not per message).
func BenchmarkSearchUIDRange(b *testing.B) {
	benchSearch(b, "UID 50001:* MODSEQ 1", 50_000, func(int) []string { return nil })
}
